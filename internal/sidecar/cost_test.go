package sidecar_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/quotaops/quota-operator/api/v1alpha1"
	"github.com/quotaops/quota-operator/internal/config"
	"github.com/quotaops/quota-operator/internal/store"
	"github.com/quotaops/quota-operator/internal/store/storetest"
	"github.com/quotaops/quota-operator/internal/testutil/localtest"
	"github.com/quotaops/quota-operator/internal/testutil/redistest"
	"github.com/quotaops/quota-operator/internal/testutil/sidecartest"
)

// costUpstream answers what each path's limit reads its cost from. Its
// /stream sends its first event, then waits for release before the usage
// event, so a test can see that events pass before the stream ends.
type costUpstream struct {
	release chan struct{}
	// slow holds /slow's answers until it is closed.
	slow atomic.Pointer[chan struct{}]
}

func newCostUpstream() *costUpstream {
	u := &costUpstream{release: make(chan struct{}, 1)}
	u.hold()
	return u
}

// hold makes /slow wait; it returns what releases it.
func (u *costUpstream) hold() chan struct{} {
	ch := make(chan struct{})
	u.slow.Store(&ch)
	return ch
}

func (u *costUpstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	units := r.Header.Get("X-Units") // what the test wants this response to cost
	switch r.URL.Path {
	case "/header", "/unknown":
		if units != "" {
			w.Header().Set("X-Usage-Units", units)
		}
		_, _ = io.WriteString(w, "ok")
	case "/slow":
		<-*u.slow.Load()
		w.Header().Set("X-Usage-Units", units)
		_, _ = io.WriteString(w, "ok")
	case "/trailer":
		w.Header().Set("Trailer", "X-Usage-Units")
		_, _ = io.WriteString(w, "first part,")
		w.(http.Flusher).Flush()
		_, _ = io.WriteString(w, "second part")
		w.Header().Set("X-Usage-Units", units)
	case "/json":
		w.Header().Set("Content-Type", "application/json")
		_, _ = fmt.Fprintf(w, `{"id":"x","usage":{"prompt_tokens":1,"total_tokens":%s}}`, units)
	case "/big":
		w.Header().Set("Content-Type", "application/json")
		_, _ = fmt.Fprintf(w, `{"pad":"%s","usage":{"total_tokens":%s}}`, strings.Repeat("x", 2<<20), units)
	case "/stream":
		w.Header().Set("Content-Type", "text/event-stream")
		_, _ = io.WriteString(w, "data: {\"choices\":[{\"delta\":{\"content\":\"Hel\"}}],\"usage\":null}\n\n")
		w.(http.Flusher).Flush()
		<-u.release
		_, _ = io.WriteString(w, "data: {\"choices\":[{\"delta\":{\"content\":\"lo\"}}],\"usage\":null}\n\n")
		_, _ = fmt.Fprintf(w, "data: {\"choices\":[],\"usage\":{\"total_tokens\":%s}}\n\ndata: [DONE]\n\n", units)
	}
}

// costPolicy charges each path what its response says, 100 an hour per
// X-User; /unknown and /big reserve 10, /slow reserves 10.
func costPolicy(ns string) *v1alpha1.RateLimitPolicy {
	limit := func(name, path string, from v1alpha1.CostFrom) v1alpha1.Limit {
		return v1alpha1.Limit{Name: name, Match: &v1alpha1.Match{PathPrefix: path},
			Key:   []v1alpha1.KeySource{{Source: v1alpha1.SourceHeader, Name: "X-User"}},
			Rates: []v1alpha1.Rate{{Limit: 100, Window: "1h"}}, CostFrom: &from}
	}
	header := v1alpha1.CostFrom{ResponseHeader: "X-Usage-Units"}
	tokens := v1alpha1.CostFrom{ResponseJSONPointer: "/usage/total_tokens"}
	reserve10 := func(c v1alpha1.CostFrom) v1alpha1.CostFrom { c.Reserve = 10; return c }
	return &v1alpha1.RateLimitPolicy{
		TypeMeta:   metav1.TypeMeta{APIVersion: v1alpha1.GroupVersion.String(), Kind: "RateLimitPolicy"},
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "costs"},
		Spec: v1alpha1.RateLimitPolicySpec{Limits: []v1alpha1.Limit{
			limit("header", "/header", header), limit("trailer", "/trailer", header), limit("json", "/json", tokens),
			limit("stream", "/stream", tokens), limit("unknown", "/unknown", reserve10(header)), limit("big", "/big", reserve10(tokens)),
			limit("slow", "/slow", reserve10(header)),
		}},
	}
}

// tokenQuota is 100 units a month per X-User that apps use through the
// local API only.
func tokenQuota(ns string) *v1alpha1.UsageQuota {
	return &v1alpha1.UsageQuota{
		TypeMeta:   metav1.TypeMeta{APIVersion: v1alpha1.GroupVersion.String(), Kind: "UsageQuota"},
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "monthly-tokens"},
		Spec: v1alpha1.UsageQuotaSpec{Subject: v1alpha1.Subject{Source: "Header", Name: "X-User"},
			Feature: "tokens", Limit: 100, Period: "Month"},
	}
}

// costSidecar is a sidecar process enforcing costPolicy in namespace ns.
type costSidecar struct {
	sidecarProc
	ns string
}

// costSidecars runs a sidecar process enforcing costPolicy in front of u,
// on Redis (the config published as the operator does) and on memory (the
// policy in a file).
func costSidecars(t *testing.T, u *costUpstream, urls ...string) map[string]costSidecar {
	t.Helper()
	up := httptest.NewServer(u)
	t.Cleanup(up.Close)
	ns := namespace(t)
	var raw []byte
	for _, obj := range []any{costPolicy("local"), tokenQuota("local")} {
		y, err := yaml.Marshal(obj)
		if err != nil {
			t.Fatal(err)
		}
		raw = append(append(raw, "---\n"...), y...)
	}
	dir := t.TempDir()
	file, labels := filepath.Join(dir, "policy.yaml"), filepath.Join(dir, "labels")
	for path, text := range map[string][]byte{file: raw, labels: []byte(`app="llm"` + "\n")} {
		if err := os.WriteFile(path, text, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	out := map[string]costSidecar{
		"memory": {startSidecarProcess(t, []string{"--upstream", up.URL, "--store", "memory://", "--namespace", "local",
			"--policy-file", file, "--pod-labels-file", labels}, nil), "local"},
	}
	for _, url := range append([]string{redisS.URL}, urls...) {
		publishCosts(t, url, ns)
		name := strings.SplitN(url, ":", 2)[0] // redis, or redis+cluster
		out[name] = costSidecar{startSidecarProcess(t, []string{"--upstream", up.URL, "--store", url, "--namespace", ns}, nil), ns}
	}
	return out
}

// publishCosts writes costPolicy and tokenQuota to the store at url, as
// the operator does.
func publishCosts(t *testing.T, url, ns string) {
	t.Helper()
	s, err := store.Open(url)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = s.Close() }()
	rs := s.(*store.Redis)
	sidecartest.Publish(t, rs, costPolicy(ns))
	doc, err := config.CompileUsageQuota(tokenQuota(ns))
	if err != nil {
		t.Fatal(err)
	}
	encoded, _ := doc.Encode()
	if _, err := storetest.PutConfig(context.Background(), rs, ns, doc.ID(), encoded); err != nil {
		t.Fatal(err)
	}
}

// costAnswer is one response through the sidecar, read whole.
type costAnswer struct {
	status  int
	header  http.Header
	trailer http.Header
}

func costGet(t *testing.T, base, path, user, units string) costAnswer {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, base+path, nil)
	req.Header.Set("X-User", user)
	req.Header.Set("X-Units", units)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		t.Fatal(err)
	}
	return costAnswer{status: resp.StatusCode, header: resp.Header, trailer: resp.Trailer}
}

func statuses(t *testing.T, n int, send func() costAnswer) []int {
	t.Helper()
	var out []int
	for range n {
		out = append(out, send().status)
	}
	return out
}

// A limit that takes its cost from the response charges exactly what it
// says, through a sidecar process on Redis and on memory: from a header
// (which the client never sees), a trailer, a JSON body and the last usage
// event of a stream. The request that crosses the limit is served; the
// next is denied.
func TestCostFromTheResponse(t *testing.T) {
	u := newCostUpstream()
	for store, sc := range costSidecars(t, u) {
		t.Run(store, func(t *testing.T) {
			first := costGet(t, sc.proxy, "/header", "alice", "30")
			if got := first.header.Get("X-Usage-Units"); got != "" {
				t.Errorf("the client saw the cost header: %q", got)
			}
			if got := first.header.Get("X-RateLimit-Remaining"); got != "70" {
				t.Errorf("RateLimit remaining %q after a request that cost 30 of 100; want 70, after settling", got)
			}
			cases := []struct {
				path, units string
				want        []int
			}{
				{"/header", "30", []int{200, 200, 200, 429}}, // after the first above
				{"/trailer", "30", []int{200, 200, 200, 200, 429}},
				{"/json", "40", []int{200, 200, 200, 429}},
			}
			for _, c := range cases {
				got := statuses(t, len(c.want), func() costAnswer {
					a := costGet(t, sc.proxy, c.path, "alice", c.units)
					if a.trailer.Get("X-Usage-Units") != "" || a.header.Get("X-Usage-Units") != "" {
						t.Errorf("%s: the client saw the cost: %v %v", c.path, a.header, a.trailer)
					}
					return a
				})
				if fmt.Sprint(got) != fmt.Sprint(c.want) {
					t.Errorf("%s costing %s each: %v; want %v", c.path, c.units, got, c.want)
				}
			}
		})
	}
}

// An event stream passes event by event: the client has the first event
// before the upstream sends the last, and receives every one; the cost is
// the last usage event's.
func TestCostFromAStream(t *testing.T) {
	u := newCostUpstream()
	for store, sc := range costSidecars(t, u) {
		t.Run(store, func(t *testing.T) {
			var got []int
			for i := range 3 {
				got = append(got, streamOnce(t, sc.proxy, u, i == 0))
			}
			if fmt.Sprint(got) != "[200 200 429]" {
				t.Fatalf("streams costing 60 each: %v; want [200 200 429]", got)
			}
		})
	}
}

// streamOnce asks /stream as alice; when hold, the upstream waits for the
// test to have read the first event before it sends the rest.
func streamOnce(t *testing.T, base string, u *costUpstream, hold bool) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, base+"/stream", nil)
	req.Header.Set("X-User", "alice")
	req.Header.Set("X-Units", "60")
	if !hold {
		u.release <- struct{}{} // whoever serves it goes on at once
	}
	// A sidecar that held the stream back would leave the first read
	// waiting: the timeout fails it.
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		select {
		case <-u.release: // nobody took it
		default:
		}
		return resp.StatusCode
	}
	r := bufio.NewReader(resp.Body)
	line, err := r.ReadString('\n')
	if err != nil || !strings.Contains(line, `"Hel"`) {
		t.Fatalf("first event: %q, %v", line, err)
	}
	if hold {
		u.release <- struct{}{}
	}
	rest, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(line+string(rest), "data: "); n != 4 {
		t.Fatalf("%d events reached the client; want 4:\n%s%s", n, line, rest)
	}
	return resp.StatusCode
}

// A response that does not say its cost, says it wrongly or is too big to
// read charges the reserve, and is counted by reason.
func TestUnknownCostChargesTheReserve(t *testing.T) {
	u := newCostUpstream()
	for store, sc := range costSidecars(t, u) {
		t.Run(store, func(t *testing.T) {
			for _, c := range []struct{ path, user, units string }{
				{"/unknown", "bob", ""}, {"/unknown", "bob", "abc"}, {"/unknown", "bob", "-3"}, {"/big", "bob", "5"},
			} {
				if a := costGet(t, sc.proxy, c.path, c.user, c.units); a.status != http.StatusOK {
					t.Fatalf("%s %q: %d", c.path, c.units, a.status)
				}
			}
			// 3 reserves of 10 on /unknown: 70 left, then 69 after a cost of 1.
			if a := costGet(t, sc.proxy, "/unknown", "bob", "1"); a.header.Get("X-RateLimit-Remaining") != "69" {
				t.Errorf("after three unknown costs of reserve 10 and one of 1: remaining %q; want 69", a.header.Get("X-RateLimit-Remaining"))
			}
			body := metrics(t, sc.admin)
			for _, want := range []string{
				`quota_cost_unknown_total{limit="unknown",namespace=%q,policy="costs",reason="missing"} 1`,
				`quota_cost_unknown_total{limit="unknown",namespace=%q,policy="costs",reason="malformed"} 2`,
				`quota_cost_unknown_total{limit="big",namespace=%q,policy="costs",reason="over_bound"} 1`,
				`quota_cost_settled_units_total{limit="unknown",namespace=%q,policy="costs"} 1`,
			} {
				if line := fmt.Sprintf(want, sc.ns); !strings.Contains(body, line+"\n") {
					t.Errorf("no %q in the metrics:\n%s", line, grep(body, "quota_cost"))
				}
			}
		})
	}
}

// 64 requests at once, each reserving 10 of 100: exactly 10 are admitted
// before any settles, and the counter ends at the sum of what those cost,
// on memory, Redis and a Redis Cluster.
func TestCostReserveUnderConcurrency(t *testing.T) {
	u := newCostUpstream()
	cluster, err := redistest.StartCluster(3, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cluster.Close() })
	for store, sc := range costSidecars(t, u, "redis+cluster://"+strings.Join(cluster.Addrs(), ",")) {
		t.Run(store, func(t *testing.T) {
			release := u.hold()
			var mu sync.Mutex
			var admitted, denied int
			var sum int64
			var wg sync.WaitGroup
			for i := range 64 {
				wg.Go(func() {
					units := int64(i % 7)
					a := costGet(t, sc.proxy, "/slow", "carol", strconv.FormatInt(units, 10))
					mu.Lock()
					defer mu.Unlock()
					switch a.status {
					case http.StatusOK:
						admitted, sum = admitted+1, sum+units
					case http.StatusTooManyRequests:
						denied++
					}
				})
			}
			// The denied are answered at once; the admitted wait for slow.
			localtest.WaitFor(t, 10*time.Second, "54 denials", func() error {
				mu.Lock()
				defer mu.Unlock()
				if denied != 54 {
					return fmt.Errorf("%d denied, %d admitted", denied, admitted)
				}
				return nil
			})
			close(release)
			wg.Wait()
			if admitted != 10 {
				t.Fatalf("%d admitted; want 10, with none settled yet", admitted)
			}
			// One more that costs 0: what it leaves is 100 less the others.
			if a := costGet(t, sc.proxy, "/slow", "carol", "0"); a.header.Get("X-RateLimit-Remaining") != strconv.FormatInt(100-sum, 10) {
				t.Fatalf("remaining %q after 10 requests costing %d in all; want %d", a.header.Get("X-RateLimit-Remaining"), sum, 100-sum)
			}
			want := fmt.Sprintf(`quota_cost_settled_units_total{limit="slow",namespace=%q,policy="costs"} %d`, sc.ns, sum)
			if body := metrics(t, sc.admin); !strings.Contains(body, want+"\n") {
				t.Fatalf("no %q in the metrics:\n%s", want, grep(body, "quota_cost"))
			}
		})
	}
}

// The local API reserves units before work whose cost the app learns at
// its end, and settles them once: a replayed settle changes nothing and
// says so, a reservation never settled stays charged when its TTL ends,
// and a settle must name the limit it reserved.
func TestLocalAPIReserveAndSettle(t *testing.T) {
	u := newCostUpstream()
	for store, sc := range costSidecars(t, u) {
		t.Run(store, func(t *testing.T) {
			left := func(want string) {
				t.Helper()
				// A check costs 1, not taken: remaining is after it.
				_, body := call(t, sc.admin, http.MethodPost, "/v1/quotas/tokens/check", `{"key":["dave"]}`)
				if !strings.Contains(body, `"remaining":`+want+`,`) {
					t.Fatalf("check: %s; want remaining %s", body, want)
				}
			}
			status, body := call(t, sc.admin, http.MethodPost, "/v1/quotas/tokens/reserve", `{"key":["dave"],"units":30}`)
			var res struct {
				Allowed     bool   `json:"allowed"`
				Remaining   int64  `json:"remaining"`
				Reservation string `json:"reservation"`
			}
			if err := json.Unmarshal([]byte(body), &res); status != http.StatusOK || err != nil || !res.Allowed || res.Remaining != 70 || res.Reservation == "" {
				t.Fatalf("reserve 30: %d %s; want 200, allowed, 70 remaining and a reservation", status, body)
			}
			settle := `{"reservation":"` + res.Reservation + `","units":%d}`
			steps := []struct {
				path, body string
				status     int
				want       string
			}{
				{"/v1/quotas/tokens/settle", fmt.Sprintf(settle, 12), 200, `{"settled":true,"units":12}`},
				{"/v1/quotas/tokens/settle", fmt.Sprintf(settle, 50), 409, `{"error":"settled already at 12 units; nothing changed","settled":false}`},
				{"/v1/quotas/monthly-tokens/settle", fmt.Sprintf(settle, 50), 404, `{"error":"no such open reservation`},
				{"/v1/quotas/tokens/settle", `{"reservation":"nope","units":1}`, 404, `{"error":"no such open reservation`},
				{"/v1/quotas/tokens/settle", `{"reservation":"nope"}`, 400, `{"error":"units must be the work's cost`},
				{"/v1/quotas/tokens/reserve", `{"key":["dave"],"units":5,"ttl":"1h0m0s0"}`, 400, `{"error":"ttl must be a duration`},
				{"/v1/quotas/tokens/reserve", `{"key":["dave"],"units":99}`, 429, `{"allowed":false,"limit":100,"remaining":88,`},
			}
			for _, s := range steps {
				status, body := call(t, sc.admin, http.MethodPost, s.path, s.body)
				if status != s.status || !strings.HasPrefix(body, s.want) {
					t.Fatalf("POST %s %s: %d %s; want %d %s...", s.path, s.body, status, body, s.status, s.want)
				}
			}
			left("87") // 12 settled
			_, body = call(t, sc.admin, http.MethodPost, "/v1/quotas/tokens/reserve", `{"key":["dave"],"units":20,"ttl":"1s"}`)
			if err := json.Unmarshal([]byte(body), &res); err != nil || res.Reservation == "" {
				t.Fatalf("reserve 20: %s", body)
			}
			time.Sleep(1100 * time.Millisecond)
			status, body = call(t, sc.admin, http.MethodPost, "/v1/quotas/tokens/settle", `{"reservation":"`+res.Reservation+`","units":1}`)
			if status != http.StatusNotFound {
				t.Fatalf("settling an expired reservation: %d %s; want 404", status, body)
			}
			left("67") // the expired reservation's 20 stay charged
		})
	}
}
