package limiter_test

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quotaops/quota-operator/internal/limiter"
	"github.com/quotaops/quota-operator/internal/testutil/fakeclock"
)

// reserve decides limits as a request whose cost is settled later.
func reserve(tb testing.TB, l *limiter.Limiter, limits ...limiter.Limit) limiter.Decision {
	tb.Helper()
	d, err := l.Decide(context.Background(), limiter.Request{Limits: limits, Settleable: true})
	if err != nil {
		tb.Fatalf("Decide: %v", err)
	}
	return d
}

func settle(tb testing.TB, l *limiter.Limiter, d limiter.Decision, units int64) {
	tb.Helper()
	if err := l.Settle(context.Background(), d, []limiter.Charge{{Limit: 0, Units: units}}); err != nil {
		tb.Fatalf("Settle(%d): %v", units, err)
	}
}

// remaining is what a peek at lim says is left (its cost 1 not taken).
func remaining(tb testing.TB, l *limiter.Limiter, lim limiter.Limit) int64 {
	tb.Helper()
	lim.Cost = 1
	d, err := l.Decide(context.Background(), limiter.Request{Limits: []limiter.Limit{lim}, Peek: true})
	if err != nil {
		tb.Fatal(err)
	}
	return d.Results[0].Remaining + 1
}

// Settling charges what a request really cost, less the reserve its
// decision took, exactly, for every algorithm and store: more (the
// request that crosses the limit is served, the next denied), less (a
// refund), and 0.
func TestSettleChargesTheRealCost(t *testing.T) {
	for _, be := range backends(t) {
		for _, alg := range everyAlgorithm(100, time.Minute) {
			t.Run(be.name+"/"+alg.name, func(t *testing.T) {
				clock := fakeclock.New(epoch.Add(7 * time.Second))
				l, _ := simulated(t, be, clock)

				// Cost 30 each, reserve 1: 1+29, 31+29, 61+29, 91+29; then 121.
				over := alg.lim
				over.Key, over.Cost = key(t, "tokens", "alice"), 1
				var got []bool
				for range 5 {
					d := reserve(t, l, over)
					got = append(got, d.Allowed)
					if d.Allowed {
						settle(t, l, d, 30)
					} else if err := l.Settle(context.Background(), d, []limiter.Charge{{Units: 30}}); !errors.Is(err, limiter.ErrNothingToSettle) {
						t.Fatalf("settling a denial: %v; want ErrNothingToSettle", err)
					}
				}
				if want := []bool{true, true, true, true, false}; !equalBools(got, want) {
					t.Fatalf("allowed %v; want %v", got, want)
				}
				// A decision not made Settleable keeps nothing to settle.
				plain := alg.lim
				plain.Key, plain.Cost = key(t, "tokens", "plain"), 1
				if err := l.Settle(context.Background(), decide(t, l, plain), []limiter.Charge{{Units: 5}}); !errors.Is(err, limiter.ErrNothingToSettle) {
					t.Fatalf("settling a decision not made Settleable: %v; want ErrNothingToSettle", err)
				}

				// Reserve 10, cost 3, 3, 0: 6 used, so 94 left.
				refund := alg.lim
				refund.Key, refund.Cost = key(t, "tokens", "bob"), 10
				for _, units := range []int64{3, 3, 0} {
					d := reserve(t, l, refund)
					if !d.Allowed {
						t.Fatalf("a reserve of 10 denied: %+v", d)
					}
					settle(t, l, d, units)
				}
				if left := remaining(t, l, refund); left != 94 {
					t.Fatalf("after reserves of 10 settled at 3, 3 and 0: %d left; want 94", left)
				}

				// Exact above the reserve while under the limit: 1+29, twice.
				exact := alg.lim
				exact.Key, exact.Cost = key(t, "tokens", "carol"), 1
				for range 2 {
					settle(t, l, reserve(t, l, exact), 30)
				}
				if left := remaining(t, l, exact); left != 40 {
					t.Fatalf("after two requests settled at 30: %d left; want 40", left)
				}
			})
		}
	}
}

func equalBools(a, b []bool) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// A settle names the limits it charges: the request's others keep their
// cost, in one slot or, in a Cluster, across slots.
func TestSettleChargesOnlyTheNamedLimits(t *testing.T) {
	for _, be := range backends(t) {
		t.Run(be.name, func(t *testing.T) {
			clock := fakeclock.New(epoch.Add(7 * time.Second))
			l, _ := simulated(t, be, clock)
			perMinute := limiter.Limit{Key: key(t, "per-minute", "alice"), Algorithm: limiter.FixedWindow, Rates: rate(1000, time.Minute), Cost: 5}
			monthly := limiter.Limit{Key: key(t, "monthly", "alice"), Algorithm: limiter.Quota, Rates: rate(1000, 0), Period: limiter.Month, Location: newYork, Cost: 5}
			if be.name == "cluster" {
				requireSlots(t, be.raw(), perMinute.Key.Tag(), monthly.Key.QuotaTag())
			}
			d := reserve(t, l, perMinute, monthly)
			if err := l.Settle(context.Background(), d, []limiter.Charge{{Limit: 1, Units: 250}}); err != nil {
				t.Fatal(err)
			}
			if a, b := remaining(t, l, perMinute), remaining(t, l, monthly); a != 995 || b != 750 {
				t.Fatalf("left %d per minute and %d this month; want 995 (the reserve) and 750 (settled)", a, b)
			}
			for _, bad := range [][]limiter.Charge{{{Limit: 2, Units: 1}}, {{Limit: 0, Units: -1}}} {
				if err := l.Settle(context.Background(), d, bad); !errors.Is(err, limiter.ErrInvalid) {
					t.Errorf("Settle(%+v): %v; want ErrInvalid", bad, err)
				}
			}
			if a, b := remaining(t, l, perMinute), remaining(t, l, monthly); a != 995 || b != 750 {
				t.Fatalf("after refused settles: left %d and %d; want 995 and 750 still", a, b)
			}
		})
	}
}

// A settle after the window it was decided in has ended leaves the new
// window alone; a token bucket, which has no windows, is charged from now.
func TestSettleAfterTheWindow(t *testing.T) {
	for _, be := range backends(t) {
		t.Run(be.name, func(t *testing.T) {
			clock := fakeclock.New(epoch.Add(50 * time.Second))
			l, _ := simulated(t, be, clock)
			fixed := limiter.Limit{Key: key(t, "fixed", "alice"), Algorithm: limiter.FixedWindow, Rates: rate(100, time.Minute), Cost: 1}
			d := reserve(t, l, fixed)
			clock.Advance(time.Minute)
			settle(t, l, d, 40)
			if left := remaining(t, l, fixed); left != 100 {
				t.Fatalf("the next window has %d left; want 100", left)
			}
		})
	}
}

// 64 requests at once, each reserving 10 of a monthly 100, on the real
// clock: at most 10 are admitted before any settles, and the usage ends as
// the sum of what the admitted ones settled.
func TestSettleUnderConcurrency(t *testing.T) {
	for _, be := range backends(t) {
		t.Run(be.name, func(t *testing.T) {
			s := be.open(t, nil)
			l, err := limiter.New(s)
			if err != nil {
				t.Fatal(err)
			}
			lim := limiter.Limit{Key: key(t, "monthly", "alice"), Algorithm: limiter.Quota, Rates: rate(100, 0),
				Period: limiter.Month, Location: time.UTC, Cost: 10}
			var admitted []limiter.Decision
			var mu sync.Mutex
			var wg sync.WaitGroup
			start := make(chan struct{})
			for range 64 {
				wg.Go(func() {
					<-start
					d, err := l.Decide(context.Background(), limiter.Request{Limits: []limiter.Limit{lim}, Settleable: true})
					if err != nil {
						t.Error(err)
						return
					}
					if d.Allowed {
						mu.Lock()
						admitted = append(admitted, d)
						mu.Unlock()
					}
				})
			}
			close(start)
			wg.Wait()
			if len(admitted) != 10 {
				t.Fatalf("%d admitted before any settled; want 10", len(admitted))
			}
			var sum atomic.Int64
			for _, d := range admitted {
				wg.Go(func() {
					units := rand.Int64N(20)
					if err := l.Settle(context.Background(), d, []limiter.Charge{{Units: units}}); err != nil {
						t.Error(err)
						return
					}
					sum.Add(units)
				})
			}
			wg.Wait()
			monthStart := time.Date(time.Now().UTC().Year(), time.Now().UTC().Month(), 1, 0, 0, 0, 0, time.UTC)
			u, err := l.Usage(context.Background(), lim.Key, monthStart, 1)
			if err != nil {
				t.Fatal(err)
			}
			if u.Total != sum.Load() {
				t.Fatalf("usage %d; want the %d settled", u.Total, sum.Load())
			}
		})
	}
}
