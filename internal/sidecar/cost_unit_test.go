package sidecar

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quotaops/quota-operator/internal/limiter"
)

// A request the store did not decide (failed open) settles nothing, but
// its cost header and trailer still do not reach the client.
func TestFailedOpenStillHidesTheCost(t *testing.T) {
	header := &costSpec{header: "X-Usage-Units"}
	trailer := &costSpec{header: "X-Trailer-Units"}
	applied := []Applied{{Policy: "p", Name: "a", cost: header}, {Policy: "p", Name: "b", cost: trailer}}
	m := NewMetrics("ns", func() bool { return false })
	p := newPendingCost(&Enforcer{Metrics: m}, Verdict{StoreFailed: true}, applied, http.Header{}, false)
	resp := &http.Response{
		Header:  http.Header{"X-Usage-Units": {"30"}, "Content-Type": {"text/plain"}},
		Trailer: http.Header{"X-Trailer-Units": nil},
	}
	resp.Body = &trailerAtEnd{Reader: strings.NewReader("body"), trailer: resp.Trailer}
	p.readResponse(resp)
	if _, announced := resp.Trailer["X-Trailer-Units"]; announced || resp.Header.Get("X-Usage-Units") != "" {
		t.Fatalf("the cost would reach the client: header %v, trailer %v", resp.Header, resp.Trailer)
	}
	if _, err := io.ReadAll(resp.Body); err != nil {
		t.Fatal(err)
	}
	if len(resp.Trailer) != 0 {
		t.Errorf("the cost trailer reached the client: %v", resp.Trailer)
	}
	var out strings.Builder
	m.WritePrometheus(&out)
	if strings.Contains(out.String(), "quota_cost_") {
		t.Errorf("a failed-open request counted a cost:\n%s", out.String())
	}
}

// trailerAtEnd is a body whose trailer arrives with its end, as the HTTP
// transport fills resp.Trailer before it returns io.EOF.
type trailerAtEnd struct {
	*strings.Reader
	trailer http.Header
}

func (b *trailerAtEnd) Read(p []byte) (int, error) {
	n, err := b.Reader.Read(p)
	if err == io.EOF {
		b.trailer.Set("X-Trailer-Units", "7")
	}
	return n, err
}

func (b *trailerAtEnd) Close() error { return nil }

// flakySettler fails its first fail settles, as a store that is away.
type flakySettler struct {
	fail  atomic.Int64
	calls atomic.Int64
}

func (f *flakySettler) Decide(context.Context, limiter.Request) (limiter.Decision, error) {
	return limiter.Decision{}, errors.New("not used")
}

func (f *flakySettler) Settle(context.Context, limiter.Decision, []limiter.Charge) error {
	f.calls.Add(1)
	if f.fail.Add(-1) >= 0 {
		return errors.New("store away")
	}
	return nil
}

// A settle the store does not take at once is retried in the background
// until it does, and counted once it has; the caller does not wait.
func TestSettleIsRetried(t *testing.T) {
	f := &flakySettler{}
	f.fail.Store(3)
	m := NewMetrics("ns", func() bool { return false })
	e := &Enforcer{Limiter: f, Metrics: m, Breaker: NewBreaker()}
	a := Applied{Policy: "p", Name: "tokens"}
	e.settle(limiter.Decision{}, []Applied{a}, []limiter.Charge{{Units: 42}})
	want := `quota_cost_settled_units_total{limit="tokens",namespace="ns",policy="p"} 42`
	deadline := time.Now().Add(10 * time.Second)
	for {
		var out strings.Builder
		m.WritePrometheus(&out)
		if strings.Contains(out.String(), want) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not settled after %d calls:\n%s", f.calls.Load(), out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if n := f.calls.Load(); n != 4 {
		t.Fatalf("%d settle calls; want 4 (3 failed, then one that landed)", n)
	}
}
