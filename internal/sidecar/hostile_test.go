package sidecar

import (
	"context"
	"encoding/binary"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/quotaops/quota-operator/internal/config"
	"github.com/quotaops/quota-operator/internal/limiter"
)

// allowAll stands in for the store in this narrow test: it measures the
// sidecar's own memory, not the store's.
type allowAll struct{}

func (allowAll) Decide(_ context.Context, req limiter.Request) (limiter.Decision, error) {
	d := limiter.Decision{Allowed: true, Decider: 0}
	for i := range req.Limits {
		d.Results = append(d.Results, limiter.Result{Limit: i, Allowed: true, Max: 100, Remaining: 99, ResetAfter: time.Second})
	}
	return d, nil
}

// A million distinct client addresses, 64 KiB header values and invalid
// UTF-8 leave the sidecar's heap where it was: it keeps no state per
// client; subjects reach the store only as fixed-size hashes.
func TestHostileTrafficKeepsMemoryBounded(t *testing.T) {
	docs := []*config.Policy{{Schema: 1, Kind: config.KindRateLimitPolicy, Name: "api", Limits: []config.Limit{
		{Name: "per-ip", Algorithm: "FixedWindow", Cost: 1, Key: []config.KeySource{{Source: "ClientIP"}}, Rates: []config.Rate{{Limit: 100, WindowMs: 60000}}},
		{Name: "per-user", Algorithm: "FixedWindow", Cost: 1, Key: []config.KeySource{{Source: "Header", Name: "X-User"}}, Rates: []config.Rate{{Limit: 100, WindowMs: 60000}}},
	}}}
	ps, err := NewPolicies("ns", nil, 1, docs)
	if err != nil {
		t.Fatal(err)
	}
	src := &Source{}
	src.current.Store(ps)
	h := &Handler{Source: src, Enforcer: &Enforcer{Limiter: allowAll{}, Breaker: NewBreaker()},
		Trusted: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")},
		Proxy:   http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) })}
	big := strings.Repeat("x", 64<<10)
	invalid := string([]byte{0xff, 0xfe, 'a', 0xc3, 0x28})
	req := httptest.NewRequest(http.MethodGet, "/v1/items", nil)
	req.RemoteAddr = "127.0.0.1:40000"
	heap := func() uint64 {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	serve := func(i int) {
		var ip [4]byte
		binary.BigEndian.PutUint32(ip[:], uint32(0x0a000000+i))
		req.Header.Set("X-Forwarded-For", netip.AddrFrom4(ip).String())
		switch i % 3 {
		case 0:
			req.Header.Set("X-User", big)
		case 1:
			req.Header.Set("X-User", invalid)
		default:
			req.Header.Del("X-User")
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != http.StatusNoContent || w.Header().Get("X-RateLimit-Limit") != "100" {
			t.Fatalf("request %d: %d %v", i, w.Code, w.Header())
		}
	}
	for i := range 10_000 { // warm up pools and caches
		serve(i)
	}
	before := heap()
	for i := range 1_000_000 {
		serve(i)
	}
	after := heap()
	if after > before+8<<20 {
		t.Fatalf("heap grew from %d to %d bytes over a million clients", before, after)
	}
	t.Logf("heap %d KiB before, %d KiB after a million distinct clients", before>>10, after>>10)
}
