package sidecar_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/quotaops/quota-operator/api/v1alpha1"
	"github.com/quotaops/quota-operator/internal/config"
	"github.com/quotaops/quota-operator/internal/limiter"
	"github.com/quotaops/quota-operator/internal/limits"
)

// Per client IP: exactly the limit passes, with exact headers; the next
// requests get 429 and Retry-After; another client has its own counter; the
// app sees the client in X-Forwarded-For.
func TestPerIPLimitExactCountsAndHeaders(t *testing.T) {
	ns := namespace(t)
	sc := start(t, ns)
	sc.publish(t, perIP(ns, 5, "1h"))
	waitReady(t, sc.proxy, "192.0.2.99", "5") // a client of its own
	for _, client := range []string{"10.0.0.1", "10.0.0.2"} {
		for i := range 8 {
			before := time.Now()
			resp := get(t, sc.proxy, client)
			resetMax := int(time.Until(before.Truncate(time.Hour).Add(time.Hour)).Seconds()) + 2
			want := map[string]string{
				"RateLimit-Policy":      `"per-ip";q=5;w=3600`,
				"X-RateLimit-Limit":     "5",
				"X-RateLimit-Remaining": strconv.Itoa(max(0, 4-i)),
			}
			if i < 5 && resp.StatusCode != http.StatusOK || i >= 5 && resp.StatusCode != http.StatusTooManyRequests {
				t.Fatalf("client %s request %d: %s", client, i+1, resp.Status)
			}
			for k, v := range want {
				if got := resp.Header.Get(k); got != v {
					t.Fatalf("client %s request %d: %s = %q; want %q", client, i+1, k, got, v)
				}
			}
			checkReset(t, resp, want["X-RateLimit-Remaining"], resetMax, i >= 5)
			if i == 0 && resp.Header.Get("Seen-Forwarded-For") != client+", 127.0.0.1" {
				t.Fatalf("upstream saw X-Forwarded-For %q", resp.Header.Get("Seen-Forwarded-For"))
			}
		}
	}
}

// checkReset checks that X-RateLimit-Reset is within the window, that
// RateLimit repeats it, and that a denial's Retry-After equals it.
func checkReset(t *testing.T, resp answer, remaining string, resetMax int, denied bool) {
	t.Helper()
	reset := resp.Header.Get("X-RateLimit-Reset")
	if n, err := strconv.Atoi(reset); err != nil || n < 1 || n > resetMax {
		t.Fatalf("X-RateLimit-Reset %q; want 1..%d", reset, resetMax)
	}
	if got, w := resp.Header.Get("RateLimit"), `"per-ip";r=`+remaining+";t="+reset; got != w {
		t.Fatalf("RateLimit %q; want %q", got, w)
	}
	if retry := resp.Header.Get("Retry-After"); denied != (retry == reset) {
		t.Fatalf("Retry-After %q, reset %q, denied %v", retry, reset, denied)
	}
}

// A config change reaches enforcement in under a second.
func TestConfigChangeAppliesWithinASecond(t *testing.T) {
	ns := namespace(t)
	sc := start(t, ns)
	sc.publish(t, perIP(ns, 5, "1h"))
	waitReady(t, sc.proxy, "10.1.0.1", "5")
	for i := range 5 {
		limit := int64(10 + i)
		changed := time.Now()
		sc.publish(t, perIP(ns, limit, "1h"))
		took := waitReady(t, sc.proxy, "10.1.0.1", strconv.FormatInt(limit, 10))
		if took > time.Second {
			t.Fatalf("change %d took %v", i, took)
		}
		t.Logf("change %d enforced %v after it was written", i, time.Since(changed).Round(time.Millisecond))
	}
}

// A DryRun policy never denies, adds no headers, and its metric counts
// would-be denials.
func TestDryRunNeverDenies(t *testing.T) {
	ns := namespace(t)
	sc := start(t, ns)
	sc.publish(t, perIP(ns, 2, "1h", func(p *v1alpha1.RateLimitPolicy) { p.Spec.Enforcement = v1alpha1.DryRun }))
	waitMetric(t, sc.admin, revisionLine(ns, 1))
	for i := range 6 {
		resp := get(t, sc.proxy, "10.2.0.1")
		if resp.StatusCode != http.StatusOK || resp.Header.Get("X-RateLimit-Limit") != "" {
			t.Fatalf("request %d: %s, X-RateLimit-Limit %q", i+1, resp.Status, resp.Header.Get("X-RateLimit-Limit"))
		}
	}
	for _, want := range []string{
		`quota_decisions_total{limit="per-ip",namespace="` + ns + `",policy="api",result="allowed"} 2`,
		`quota_decisions_total{limit="per-ip",namespace="` + ns + `",policy="api",result="dry_run_denied"} 4`,
	} {
		waitMetric(t, sc.admin, want)
	}
}

func waitMetric(t testing.TB, admin, want string) {
	t.Helper()
	var body string
	for start := time.Now(); time.Since(start) < 5*time.Second; time.Sleep(20 * time.Millisecond) {
		if body = metrics(t, admin); strings.Contains(body, want) {
			return
		}
	}
	t.Fatalf("metrics lack %q:\n%s", want, grep(body, "quota_"))
}

// metrics is the text of the admin listener's /metrics.
func metrics(t testing.TB, admin string) string {
	t.Helper()
	resp, err := http.Get(admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	raw, _ := io.ReadAll(resp.Body)
	return string(raw)
}

func grep(text, prefix string) string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if strings.HasPrefix(l, prefix) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// Redis goes away (killed, or hung: paused so connections stay open and
// nothing answers): Open policies keep serving, paying at most the store
// timeout; Closed policies answer 503. Redis returns: both enforce again.
func TestStoreDownFailOpenAndClosed(t *testing.T) {
	for _, tc := range []struct {
		name       string
		down, back func() error
	}{
		// A killed Redis comes back empty; the manager would load the
		// library again at its next store check.
		{"killed", redisS.Stop, func() error { return errors.Join(redisS.Start(), redisS.LoadLibrary()) }},
		{"hung", redisS.Pause, redisS.Resume},
	} {
		t.Run(tc.name, func(t *testing.T) { storeDown(t, tc.down, tc.back) })
	}
}

func storeDown(t *testing.T, down, back func() error) {
	ns := namespace(t)
	sc := start(t, ns)
	closed := func(p *v1alpha1.RateLimitPolicy) {
		p.Name = "closed"
		p.Spec.FailurePolicy = v1alpha1.FailClosed
		p.Spec.Limits[0].Match = &v1alpha1.Match{PathPrefix: "/closed"}
	}
	open := func(p *v1alpha1.RateLimitPolicy) { p.Spec.Limits[0].Match = &v1alpha1.Match{PathPrefix: "/v1"} }
	sc.publish(t, perIP(ns, 100, "1h", open))
	sc.publish(t, perIP(ns, 100, "1h", closed))
	waitReady(t, sc.proxy, "10.3.0.1", "100")
	if err := down(); err != nil {
		t.Fatal(err)
	}
	restored := false
	t.Cleanup(func() {
		if !restored {
			_ = back()
		}
	})
	var slowest time.Duration
	for i := range 20 {
		began := time.Now()
		resp := get(t, sc.proxy, "10.3.0.1")
		took := time.Since(began)
		slowest = max(slowest, took)
		if resp.StatusCode != http.StatusOK || took > 300*time.Millisecond {
			t.Fatalf("open request %d with Redis down: %s after %v", i, resp.Status, took)
		}
		c := getPath(t, sc.proxy, "/closed/x")
		if c.StatusCode != http.StatusServiceUnavailable || c.Header.Get("Retry-After") != "1" {
			t.Fatalf("closed request %d with Redis down: %s, Retry-After %q", i, c.Status, c.Header.Get("Retry-After"))
		}
	}
	t.Logf("slowest open request with Redis down: %v (store timeout 50ms)", slowest.Round(time.Millisecond))
	if err := back(); err != nil {
		t.Fatal(err)
	}
	restored = true
	deadline := time.Now().Add(10 * time.Second)
	for {
		o, c := get(t, sc.proxy, "10.3.0.1"), getPath(t, sc.proxy, "/closed/x")
		if o.Header.Get("X-RateLimit-Limit") == "100" && c.StatusCode == http.StatusOK && c.Header.Get("X-RateLimit-Limit") == "100" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not recovered 10s after Redis returned: open %s %q, closed %s", o.Status, o.Header.Get("X-RateLimit-Limit"), c.Status)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func getPath(t *testing.T, base, path string) answer {
	t.Helper()
	return send(t, base+path, "10.3.0.2")
}

// Malformed requests get a clear 400 from the proxy, never reach the app,
// and do not stop it serving.
func TestMalformedRequestsGet400(t *testing.T) {
	ns := namespace(t)
	sc := start(t, ns)
	sc.publish(t, perIP(ns, 100, "1h"))
	waitReady(t, sc.proxy, "10.4.0.1", "100")
	addr := strings.TrimPrefix(sc.proxy, "http://")
	for name, raw := range map[string]string{
		"header without a colon": "GET / HTTP/1.1\r\nHost: x\r\nBroken header\r\n\r\n",
		"space in a header name": "GET / HTTP/1.1\r\nHost: x\r\nX Bad: 1\r\n\r\n",
		"no Host in HTTP/1.1":    "GET / HTTP/1.1\r\n\r\n",
		"not HTTP":               "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n",
	} {
		t.Run(name, func(t *testing.T) {
			conn, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = conn.Close() }()
			_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
			if _, err := conn.Write([]byte(raw)); err != nil {
				t.Fatal(err)
			}
			status, _ := bufio.NewReader(conn).ReadString('\n')
			if !strings.HasPrefix(status, "HTTP/1.1 400 Bad Request") {
				t.Fatalf("answer %q; want 400", status)
			}
		})
	}
	if resp := get(t, sc.proxy, "10.4.0.1"); resp.StatusCode != http.StatusOK {
		t.Fatalf("after malformed requests: %s", resp.Status)
	}
}

// On the wire the headers are spelled as the IETF draft spells them, and a
// limit of several rates names each by its window as a policy writes it.
// Before: "Ratelimit-Policy: \"per-ip-1m0s\";q=10;w=60, ...".
func TestRateLimitHeadersOnTheWire(t *testing.T) {
	ns := namespace(t)
	sc := start(t, ns)
	sc.publish(t, perIP(ns, 10, "1m", func(p *v1alpha1.RateLimitPolicy) {
		p.Spec.Limits[0].Rates = append(p.Spec.Limits[0].Rates, v1alpha1.Rate{Limit: 100, Window: "1h"})
	}))
	waitReady(t, sc.proxy, "192.0.2.98", "10")
	conn, err := net.Dial("tcp", strings.TrimPrefix(sc.proxy, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close() }()
	if _, err := io.WriteString(conn, "GET /v1/items HTTP/1.1\r\nHost: api\r\nX-Forwarded-For: 192.0.2.97\r\nConnection: close\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	raw, err := io.ReadAll(conn)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"\r\nRateLimit-Policy: \"per-ip-1m\";q=10;w=60, \"per-ip-1h\";q=100;w=3600\r\n",
		"\r\nRateLimit: \"per-ip-1m\";r=9;t=",
	} {
		if !strings.Contains(string(raw), want) {
			t.Errorf("the answer lacks %q:\n%s", want, raw)
		}
	}
	// The older headers, which no specification spells, in any case.
	for _, want := range []string{"\r\nx-ratelimit-limit: 10\r\n", "\r\nx-ratelimit-remaining: 9\r\n", "\r\nx-ratelimit-reset: "} {
		if !strings.Contains(strings.ToLower(string(raw)), want) {
			t.Errorf("the answer lacks %q:\n%s", want, raw)
		}
	}
}

// A reset made by the operator reaches a sidecar that knows the client to
// be over its limit (and so no longer asks the store): the new revision
// that follows the reset makes it ask again.
func TestResetReachesASidecarThatKnewTheKeyOver(t *testing.T) {
	ns := namespace(t)
	sc := start(t, ns)
	p := perIP(ns, 3, "1h")
	sc.publish(t, p)
	waitReady(t, sc.proxy, "192.0.2.99", "3")
	for i := range 5 {
		if got, want := get(t, sc.proxy, "10.2.0.1").StatusCode, map[bool]int{true: 200, false: 429}[i < 3]; got != want {
			t.Fatalf("request %d: %d; want %d", i+1, got, want)
		}
	}
	operator, err := limiter.New(sc.store)
	if err != nil {
		t.Fatal(err)
	}
	doc, _ := config.CompileRateLimitPolicy(p)
	lim, err := limits.ForLimit(ns, doc, doc.Limits[0])
	if err != nil {
		t.Fatal(err)
	}
	lim.Key.Subject = []string{"10.2.0.1"}
	if _, err := operator.Adjust(context.Background(), lim, limiter.Adjustment{ID: "reset-1"}); err != nil {
		t.Fatal(err)
	}
	if resp := get(t, sc.proxy, "10.2.0.1"); resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("before the new revision: %s; want 429 from what the sidecar knew", resp.Status)
	}
	if _, err := sc.store.BumpConfig(context.Background(), ns); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(2 * time.Second)
	for get(t, sc.proxy, "10.2.0.1").StatusCode != http.StatusOK {
		if time.Now().After(deadline) {
			t.Fatal("still denied 2s after the new revision")
		}
		time.Sleep(10 * time.Millisecond)
	}
	for i, want := range []int{200, 200, 429} {
		if got := get(t, sc.proxy, "10.2.0.1").StatusCode; got != want {
			t.Fatalf("after the reset, request %d: %d; want %d (3 in all)", i+2, got, want)
		}
	}
}

// A key the sidecar and the app could read differently is refused with 400
// and a body that says which: a header sent twice (the sidecar read the
// first, an app may read the last), a query parameter twice, or one in a
// query Go cannot parse (a ';', which made Go drop the pair and the limit
// skip). whenKeyMissing: Deny denies a request without its key (429);
// Skip, the default, lets it pass uncounted. Before, a spent key sent
// after a junk one passed, and so did ?api_key=K;x.
func TestAmbiguousAndMissingKeys(t *testing.T) {
	ns := namespace(t)
	sc := start(t, ns)
	sc.publish(t, perIP(ns, 1, "1h", func(p *v1alpha1.RateLimitPolicy) {
		p.Spec.Limits[0].Name = "per-key"
		p.Spec.Limits[0].Key = []v1alpha1.KeySource{{Source: v1alpha1.SourceHeader, Name: "X-Api-Key"}}
		p.Spec.Limits = append(p.Spec.Limits, v1alpha1.Limit{Name: "per-token", Cost: 1, WhenKeyMissing: v1alpha1.KeyMissingDeny,
			Match: &v1alpha1.Match{PathPrefix: "/q/"},
			Key:   []v1alpha1.KeySource{{Source: v1alpha1.SourceQuery, Name: "api_key"}}, Rates: []v1alpha1.Rate{{Limit: 1, Window: "1h"}}})
	}))
	waitMetric(t, sc.admin, revisionLine(ns, 1))
	do := func(path string, keys ...string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, sc.proxy+path, nil)
		for _, k := range keys {
			req.Header.Add("X-Api-Key", k)
		}
		return roundTrip(t, req)
	}
	const twice = "header X-Api-Key appears 2 times: limit per-key of RateLimitPolicy api counts by it, and the app could read another value"
	for i, st := range []struct {
		path string
		keys []string
		code int
		body string // exact, when set
	}{
		{"/v1/items", []string{"real"}, 200, ""},                  // spends real's one request
		{"/v1/items", []string{"real"}, 429, "Too Many Requests"}, // spent
		{"/v1/items", []string{"junk-1", "real"}, 400, twice},     // the bypass of the review
		{"/v1/items", nil, 200, ""},                               // Skip: no key, no limit
		{"/q/x?api_key=K;x", []string{"other"}, 400, "query parameter api_key is in a query that cannot be parsed (invalid semicolon separator in query): limit per-token of RateLimitPolicy api counts by it, and the app could read another value"},
		{"/q/x?api_key=a&api_key=b", []string{"other"}, 400, "query parameter api_key appears 2 times: limit per-token of RateLimitPolicy api counts by it, and the app could read another value"},
		{"/q/x", []string{"other"}, 429, "query parameter api_key is missing: limit per-token of RateLimitPolicy api denies requests without it"},
		{"/q/x?api_key=t1", []string{"third"}, 200, ""},
	} {
		code, body := do(st.path, st.keys...)
		if code != st.code || st.body != "" && body != st.body {
			t.Fatalf("step %d %s %v: %d %q; want %d %q", i, st.path, st.keys, code, body, st.code, st.body)
		}
	}
	line := `quota_decisions_total{limit="%s",namespace="` + ns + `",policy="api",result="%s"} %d`
	for _, want := range []string{fmt.Sprintf(line, "per-key", "bad_key", 1), fmt.Sprintf(line, "per-token", "bad_key", 2),
		fmt.Sprintf(line, "per-token", "key_missing", 1), fmt.Sprintf(line, "per-key", "allowed", 2)} {
		waitMetric(t, sc.admin, want)
	}
}

// IPv6 clients are counted per /64 (the default prefix): addresses of one
// /64 share a counter, another /64 has its own, and IPv4 clients stay
// whole. Before, each address was its own subject, so a client holding a
// /64 had 2^64 counters to spend.
func TestIPv6ClientsCountPerPrefix(t *testing.T) {
	ns := namespace(t)
	sc := start(t, ns)
	sc.publish(t, perIP(ns, 2, "1h"))
	waitReady(t, sc.proxy, "10.9.0.1", "2") // spends one of 10.9.0.1's two
	for i, st := range []struct {
		client string
		code   int
	}{
		{"2001:db8:1:2::a", 200},
		{"2001:db8:1:2::b", 200},                  // same /64: its second
		{"2001:db8:1:2:ffff:ffff:ffff:ffff", 429}, // same /64: over
		{"2001:db8:1:3::a", 200},                  // another /64
		{"10.9.0.1", 200},                         // IPv4: its own, second
		{"10.9.0.2", 200},                         // and whole
		{"10.9.0.1", 429},
	} {
		if got := get(t, sc.proxy, st.client).StatusCode; got != st.code {
			t.Fatalf("step %d from %s: %d; want %d", i, st.client, got, st.code)
		}
	}
}
