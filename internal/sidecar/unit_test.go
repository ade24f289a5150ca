package sidecar

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/quotaops/quota-operator/internal/limiter"
	"github.com/quotaops/quota-operator/internal/store"
	"github.com/quotaops/quota-operator/internal/testutil/fakeclock"
	"github.com/quotaops/quota-operator/internal/testutil/redistest"
)

func TestClientIP(t *testing.T) {
	trusted, err := ParseTrusted("10.0.0.0/8, 192.168.1.1, fd00::/8")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, remote string
		xff          []string
		want         string
	}{
		{"no proxy", "203.0.113.7:5000", nil, "203.0.113.7"},
		{"untrusted peer's header is ignored", "203.0.113.7:5000", []string{"1.2.3.4"}, "203.0.113.7"},
		{"trusted peer", "10.1.2.3:80", []string{"198.51.100.1"}, "198.51.100.1"},
		{"client-supplied entries left of the first untrusted are not believed", "10.1.2.3:80", []string{"6.6.6.6, 198.51.100.1, 10.9.9.9"}, "198.51.100.1"},
		{"several headers read as one list", "192.168.1.1:80", []string{"6.6.6.6", "198.51.100.2, 10.0.0.5"}, "198.51.100.2"},
		{"all trusted: the left-most", "10.1.2.3:80", []string{"10.0.0.9, 10.0.0.8"}, "10.0.0.9"},
		{"garbage stops at the hop that passed it", "10.1.2.3:80", []string{"not-an-ip, 10.0.0.7"}, "10.0.0.7"},
		{"IPv4-mapped IPv6 peer", "[::ffff:203.0.113.9]:80", nil, "203.0.113.9"},
		{"IPv6 through a trusted IPv6 proxy", "[fd00::1]:80", []string{"2001:db8::5"}, "2001:db8::5"},
		{"unparsable peer", "pipe", nil, "invalid IP"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ClientIP(tt.remote, tt.xff, trusted).String(); got != tt.want {
				t.Fatalf("ClientIP = %s; want %s", got, tt.want)
			}
		})
	}
}

// Whatever the header, the answer is the peer or an address from the
// header, and at most maxForwardedHops entries are read.
func FuzzClientIP(f *testing.F) {
	trusted, _ := ParseTrusted("10.0.0.0/8")
	f.Add("10.0.0.1:1", "1.2.3.4, 10.0.0.2")
	f.Add("1.1.1.1:1", strings.Repeat("10.0.0.3,", 100))
	f.Fuzz(func(t *testing.T, remote, xff string) {
		got := ClientIP(remote, []string{xff}, trusted)
		if !got.IsValid() {
			return
		}
		peer, err := netip.ParseAddrPort(remote)
		if err == nil && got == peer.Addr().Unmap() {
			return
		}
		for _, hop := range splitHops([]string{xff}) {
			if a, err := netip.ParseAddr(hop); err == nil && a.Unmap() == got {
				return
			}
		}
		t.Fatalf("ClientIP(%q, %q) = %s: neither the peer nor a header entry", remote, xff, got)
	})
}

func TestReadLabels(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "labels")
	_ = os.WriteFile(good, []byte("app=\"demo-api\"\npod-template-hash=\"5d4f\"\nquote=\"a\\\"b\"\n"), 0o644)
	got, err := ReadLabels(good)
	if err != nil || !reflect.DeepEqual(got, map[string]string{"app": "demo-api", "pod-template-hash": "5d4f", "quote": `a"b`}) {
		t.Fatalf("%v, %v", got, err)
	}
	bad := filepath.Join(dir, "bad")
	_ = os.WriteFile(bad, []byte("app=\"ok\"\nbroken\n"), 0o644)
	if _, err := ReadLabels(bad); err == nil || !strings.Contains(err.Error(), "bad:2: not key=\"value\"") {
		t.Fatalf("error %v", err)
	}
	if got, err := ReadLabels(""); err != nil || len(got) != 0 {
		t.Fatalf("no file: %v, %v", got, err)
	}
}

func TestReadPolicyFiles(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) { _ = os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644) }
	write("a.yaml", "# comment only\n---\napiVersion: policy.quotaops.dev/v1alpha1\nkind: RateLimitPolicy\nmetadata: {name: a}\nspec:\n  selector: {}\n  limits:\n  - {name: l, rates: [{limit: 3, window: 1m}]}\n")
	write("b.yml", "apiVersion: policy.quotaops.dev/v1alpha1\nkind: UsageQuota\nmetadata: {name: b}\nspec:\n  selector: {}\n  subject: {source: ClientIP}\n  limit: 5\n  period: Day\n")
	write("notes.txt", "not yaml at all: [")
	docs, err := ReadPolicyFiles(dir, "team-a")
	if err != nil || len(docs) != 2 || docs[0].ID() != "RateLimitPolicy/a" || docs[1].ID() != "UsageQuota/b" ||
		docs[0].Limits[0].Algorithm != "FixedWindow" || docs[0].Limits[0].Cost != 1 || docs[1].Quota.TimeZone != "UTC" || docs[0].Namespace != "team-a" {
		t.Fatalf("%+v, %v", docs, err)
	}
	for name, text := range map[string]string{
		"other kind":    "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n",
		"unknown field": "apiVersion: policy.quotaops.dev/v1alpha1\nkind: RateLimitPolicy\nmetadata: {name: a}\nspec:\n  selector: {}\n  limitz: []\n",
		"window twice":  "apiVersion: policy.quotaops.dev/v1alpha1\nkind: RateLimitPolicy\nmetadata: {name: a}\nspec:\n  selector: {}\n  limits:\n  - {name: l, rates: [{limit: 3, window: 1m}, {limit: 5, window: 60s}]}\n",
		"bad window":    "apiVersion: policy.quotaops.dev/v1alpha1\nkind: RateLimitPolicy\nmetadata: {name: a}\nspec:\n  selector: {}\n  limits:\n  - {name: l, rates: [{limit: 3, window: forever}]}\n",
	} {
		f := filepath.Join(t.TempDir(), "p.yaml")
		_ = os.WriteFile(f, []byte(text), 0o644)
		docs, err := ReadPolicyFiles(f, "ns")
		if err == nil {
			_, err = NewPolicies("ns", nil, 0, docs)
		}
		if err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestBreaker(t *testing.T) {
	clock := fakeclock.New(time.Unix(0, 0))
	b := &Breaker{Threshold: 3, Cooldown: time.Second, Now: clock.Now}
	fail := errors.New("down")
	for range 3 {
		if !b.Allow() {
			t.Fatal("closed breaker refused")
		}
		b.Record(fail)
	}
	if b.Allow() || !b.Open() {
		t.Fatal("breaker not open after 3 failures")
	}
	clock.Advance(time.Second)
	if !b.Allow() {
		t.Fatal("no probe after the cooldown")
	}
	if b.Allow() {
		t.Fatal("a second probe while the first is in flight")
	}
	b.Record(fail)
	if b.Allow() {
		t.Fatal("a failed probe did not reopen the breaker")
	}
	clock.Advance(time.Second)
	if !b.Allow() {
		t.Fatal("no probe after the second cooldown")
	}
	b.Record(nil)
	if !b.Allow() || b.Open() {
		t.Fatal("a successful probe did not close the breaker")
	}
}

// failingDecider refuses every request with err.
type failingDecider struct{ err error }

func (f failingDecider) Decide(context.Context, limiter.Request) (limiter.Decision, error) {
	return limiter.Decision{}, f.err
}

// A limit the limiter refuses as invalid is answered 400, not by the
// failure policy (the store is fine, so even a Closed policy does not
// apply), and never opens the breaker.
func TestInvalidLimitDoesNotOpenTheBreaker(t *testing.T) {
	b := NewBreaker()
	e := &Enforcer{Limiter: failingDecider{fmt.Errorf("%w: cost", limiter.ErrInvalid)}, Breaker: b}
	applied := []Applied{{Policy: "p", Name: "l", FailClosed: true}}
	for range 10 {
		if v := e.Check(context.Background(), applied); v.StoreFailed || v.Status != http.StatusBadRequest || v.Invalid == nil {
			t.Fatalf("verdict %+v; want 400, not the failure policy", v)
		}
	}
	if b.Open() {
		t.Fatal("invalid limits opened the breaker")
	}
	e.Limiter = failingDecider{errors.New("connection refused")}
	for range 5 {
		e.Check(context.Background(), applied)
	}
	if !b.Open() {
		t.Fatal("five store failures did not open the breaker")
	}
}

// A caller that goes away (a client that gave up, a load tool ending its
// run) cancels its store calls. That says nothing of the store: however
// many do, the breaker stays closed and the next caller is decided by the
// store. Before, 5 cancelled calls opened it and every decision for the
// next second failed open. Nor are they counted as let through by the
// failure policy (before: 20 failed_open).
func TestCallerCancellationDoesNotOpenTheBreaker(t *testing.T) {
	e, b, one := memoryEnforcer(t, "")
	applied := []Applied{one}
	gone, cancel := context.WithCancel(context.Background())
	cancel()
	for range 20 {
		if v := e.Check(gone, applied); !v.StoreFailed {
			t.Fatalf("a cancelled call decided: %+v", v)
		}
	}
	if b.Open() {
		t.Fatal("cancelled calls opened the breaker")
	}
	for result, want := range map[string]float64{ResultCancelled: 20, ResultFailedOpen: 0} {
		if got := decisionCount(e.Metrics, "p", "l", result); got != want {
			t.Errorf("quota_decisions_total{result=%q} %v; want %v", result, got, want)
		}
	}
	if v := e.Check(context.Background(), applied); v.StoreFailed || !v.Decision.Allowed || v.Decision.Results[0].Remaining != 99 {
		t.Fatalf("the next caller: %+v; want a decision by the store", v)
	}
}

// A request the limiter refuses as invalid (two limits naming one counter)
// is the request's fault, not the store's: a 400 with the reason, no
// failure policy, and the breaker stays closed. Before, it went to the
// failure policy: an Open pod let it through, counted failed_open.
func TestInvalidRequestIsNotAStoreFailure(t *testing.T) {
	e, b, one := memoryEnforcer(t, FailOpen)
	for range 10 {
		v := e.Check(context.Background(), []Applied{one, one})
		if v.StoreFailed || v.Status != http.StatusBadRequest || v.Invalid == nil || !strings.Contains(v.Invalid.Error(), "repeats a counter") {
			t.Fatalf("a counter named twice: %+v; want 400 with the reason, no store failure", v)
		}
	}
	if b.Open() {
		t.Fatal("invalid requests opened the breaker")
	}
	if got := decisionCount(e.Metrics, "p", "l", ResultFailedOpen); got != 0 {
		t.Errorf("quota_decisions_total{result=failed_open} %v; want 0", got)
	}
}

// A pod's failure policy override wins over each policy's own, both ways.
func TestFailurePolicyOverride(t *testing.T) {
	down := failingDecider{errors.New("connection refused")}
	tests := []struct {
		override   string
		failClosed bool
		want       int // 0: passes (failed open)
	}{
		{"", true, http.StatusServiceUnavailable},
		{"", false, 0},
		{FailOpen, true, 0},
		{FailClosed, false, http.StatusServiceUnavailable},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%q over closed=%v", tt.override, tt.failClosed), func(t *testing.T) {
			e := &Enforcer{Limiter: down, Breaker: NewBreaker(), FailurePolicy: tt.override}
			v := e.Check(context.Background(), []Applied{{Policy: "p", Name: "l", FailClosed: tt.failClosed}})
			if !v.StoreFailed || v.Status != tt.want {
				t.Fatalf("verdict %+v; want status %d", v, tt.want)
			}
		})
	}
}

// Windows are named as a person writes them in a policy, not in Go's
// duration text (before: "1h0m0s").
func TestWindowText(t *testing.T) {
	for d, want := range map[time.Duration]string{
		time.Second: "1s", 45 * time.Second: "45s", time.Minute: "1m", 90 * time.Second: "90s",
		90 * time.Minute: "90m", time.Hour: "1h", 168 * time.Hour: "168h", 1500 * time.Millisecond: "1.5s",
	} {
		if got := windowText(d); got != want {
			t.Errorf("windowText(%v) = %q; want %q", d, got, want)
		}
	}
}

// While the store is away and the breaker open, a key known to be over its
// limit is still denied, exactly, rather than let through by its Open
// failure policy; other keys fail open. Known denials neither time the
// store nor close the breaker.
func TestKnownOverLimitDeniedWhileTheStoreIsAway(t *testing.T) {
	srv := redistest.StartOrSkip(t)
	s, err := store.Open(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	lim, err := limiter.New(s)
	if err != nil {
		t.Fatal(err)
	}
	b := NewBreaker()
	e := &Enforcer{Limiter: lim, Breaker: b, Timeout: 50 * time.Millisecond, Metrics: NewMetrics("ns", b.Open)}
	subject := func(who string) []Applied {
		return []Applied{{Policy: "p", Name: "l", Limit: limiter.Limit{Algorithm: limiter.FixedWindow, Cost: 1,
			Rates: []limiter.Rate{{Limit: 2, Window: time.Hour}}, Key: limiter.CounterKey{Namespace: "ns", Policy: "p", Limit: "l", Subject: []string{who}}}}}
	}
	fillThenKnow(t, e, subject("hot"))
	if err := srv.Pause(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Resume() })
	for range b.Threshold {
		if v := e.Check(context.Background(), subject("other")); !v.StoreFailed || v.Status != 0 {
			t.Fatalf("another key on a stopped store: %+v; want failed open", v)
		}
	}
	if !b.Open() {
		t.Fatal("the breaker did not open")
	}
	observed := storeObservations(t, e.Metrics)
	for range 10 {
		if v := e.Check(context.Background(), subject("hot")); v.StoreFailed || v.Status != http.StatusTooManyRequests {
			t.Fatalf("the known key with the breaker open: %+v; want 429", v)
		}
	}
	for result, want := range map[string]float64{ResultDenied: 16, ResultFailedOpen: 5} {
		total := decisionCount(e.Metrics, "p", "l", result)
		if total != want {
			t.Errorf("quota_decisions_total{result=%q} %v; want %v", result, total, want)
		}
	}
	if got := storeObservations(t, e.Metrics); got != observed || !b.Open() {
		t.Fatalf("known denials changed the store's account: %d store calls timed (was %d), breaker open %v", got, observed, b.Open())
	}
}

// fillThenKnow uses a limit of 2, is denied by the store, then 5 times
// without it, timing no store call.
func fillThenKnow(t *testing.T, e *Enforcer, applied []Applied) {
	t.Helper()
	for i, want := range []int{0, 0, http.StatusTooManyRequests} {
		if v := e.Check(context.Background(), applied); v.Status != want || v.StoreFailed {
			t.Fatalf("call %d: %+v; want status %d from the store", i, v, want)
		}
	}
	timed := storeObservations(t, e.Metrics)
	for range 5 {
		if v := e.Check(context.Background(), applied); v.Status != http.StatusTooManyRequests {
			t.Fatalf("a known denial: %+v", v)
		}
	}
	if got := storeObservations(t, e.Metrics); got != timed {
		t.Fatalf("5 known denials timed %d store calls", got-timed)
	}
}

// decisionCount is a quota_decisions_total series' value (0 before its
// first decision).
func decisionCount(m *Metrics, policy, limit, result string) float64 {
	c, ok := m.counters.Load(counterKey{"quota_decisions_total", policy, limit, result})
	if !ok {
		return 0
	}
	return float64(c.(*metrics.Counter).Get())
}

// storeObservations is how many store calls quota_store_request_duration_seconds timed.
func storeObservations(t *testing.T, m *Metrics) uint64 {
	t.Helper()
	var out bytes.Buffer
	m.WritePrometheus(&out)
	var n uint64
	for _, line := range strings.Split(out.String(), "\n") {
		if strings.HasPrefix(line, "quota_store_request_duration_seconds_count{") {
			v, err := strconv.ParseUint(line[strings.LastIndexByte(line, ' ')+1:], 10, 64)
			if err != nil {
				t.Fatalf("%q: %v", line, err)
			}
			n += v
		}
	}
	return n
}

// memoryEnforcer is an enforcer on a memory store with failurePolicy, its
// breaker, and one limit of 100 a minute bound to a subject.
func memoryEnforcer(t *testing.T, failurePolicy string) (*Enforcer, *Breaker, Applied) {
	t.Helper()
	mem := store.NewMemory()
	t.Cleanup(func() { _ = mem.Close() })
	lim, err := limiter.New(mem)
	if err != nil {
		t.Fatal(err)
	}
	b := NewBreaker()
	e := &Enforcer{Limiter: lim, Breaker: b, Timeout: 50 * time.Millisecond, Metrics: NewMetrics("ns", b.Open), FailurePolicy: failurePolicy}
	one := Applied{Policy: "p", Name: "l", Limit: limiter.Limit{Algorithm: limiter.FixedWindow, Cost: 1,
		Rates: []limiter.Rate{{Limit: 100, Window: time.Minute}}, Key: limiter.CounterKey{Namespace: "ns", Policy: "p", Limit: "l", Subject: []string{"a"}}}}
	return e, b, one
}
