package limiter_test

import (
	"context"
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/quotaops/quota-operator/internal/limiter"
	"github.com/quotaops/quota-operator/internal/testutil/fakeclock"
)

// consume takes n decisions and fails unless exactly allowed of them pass.
func consume(t *testing.T, l *limiter.Limiter, lim limiter.Limit, n, allowed int) {
	t.Helper()
	got := 0
	for range n {
		if decide(t, l, lim).Allowed {
			got++
		}
	}
	if got != allowed {
		t.Fatalf("%d of %d decisions allowed; want %d", got, n, allowed)
	}
}

func adjust(t *testing.T, l *limiter.Limiter, lim limiter.Limit, adj limiter.Adjustment) limiter.Adjusted {
	t.Helper()
	got, err := l.Adjust(context.Background(), lim, adj)
	if err != nil {
		t.Fatalf("Adjust: %v", err)
	}
	return got
}

func wantRates(t *testing.T, got limiter.Adjusted, replayed bool, want ...limiter.AdjustedRate) {
	t.Helper()
	if got.Replayed != replayed || len(got.Rates) != len(want) {
		t.Fatalf("adjusted %+v; want replayed=%v and rates %+v", got, replayed, want)
	}
	for i := range want {
		if got.Rates[i] != want[i] {
			t.Fatalf("rate %d: %+v; want %+v", i, got.Rates[i], want[i])
		}
	}
}

// A reset brings every rate of a limit back to its full limit once: the
// same adjustment again answers what it did then and changes nothing.
func TestResetOnce(t *testing.T) {
	limits := everyAlgorithm(10, time.Minute)
	// Every rate of a limit is reset.
	limits[0].lim.Rates = append(limits[0].lim.Rates, limiter.Rate{Limit: 50, Window: time.Hour})
	for _, be := range redisBackends(t) {
		for _, c := range limits {
			t.Run(be.name+"/"+c.name, func(t *testing.T) {
				l, _ := simulated(t, be, fakeclock.New(epoch.Add(7*time.Second)))
				lim := c.lim
				lim.Key, lim.Cost = key(t, "per-user", "alice"), 1
				consume(t, l, lim, 12, 10)
				first := adjust(t, l, lim, limiter.Adjustment{ID: "uid-1"})
				want := []limiter.AdjustedRate{{Max: 10, UsedBefore: 10, UsedAfter: 0}}
				if len(lim.Rates) == 2 {
					want = append(want, limiter.AdjustedRate{Max: 50, UsedBefore: 10, UsedAfter: 0})
				}
				wantRates(t, first, false, want...)
				consume(t, l, lim, 4, 4)
				again := adjust(t, l, lim, limiter.Adjustment{ID: "uid-1"})
				wantRates(t, again, true, want...)
				if !again.At.Equal(first.At) {
					t.Fatalf("replayed At %v; want %v", again.At, first.At)
				}
				consume(t, l, lim, 8, 6)
			})
		}
	}
}

// A grant adds exactly N units to this period, and only to it.
func TestGrantThisPeriodOnly(t *testing.T) {
	for _, be := range redisBackends(t) {
		t.Run(be.name, func(t *testing.T) {
			clock := fakeclock.New(time.Date(2026, 11, 30, 22, 0, 0, 0, newYork))
			l, _ := simulated(t, be, clock)
			lim := limiter.Limit{Algorithm: limiter.Quota, Rates: rate(5, 0), Period: limiter.Day, Location: newYork, Cost: 1,
				Key: limiter.QuotaKey(ns(t), "exports", "", "bob")}
			consume(t, l, lim, 6, 5)
			got := adjust(t, l, lim, limiter.Adjustment{ID: "grant-1", Grant: 3})
			wantRates(t, got, false, limiter.AdjustedRate{Max: 5, UsedBefore: 5, UsedAfter: 2})
			wantRates(t, adjust(t, l, lim, limiter.Adjustment{ID: "grant-1", Grant: 3}), true, limiter.AdjustedRate{Max: 5, UsedBefore: 5, UsedAfter: 2})
			consume(t, l, lim, 5, 3)
			clock.Advance(3 * time.Hour) // 01:00 the next day in New York
			consume(t, l, lim, 7, 5)
		})
	}
}

// A grant to a subject that has not consumed this period creates its
// usage with the period's TTL, and credit beyond the limit is kept.
func TestGrantToANewSubject(t *testing.T) {
	be := redisBackends(t)[0]
	l, _ := simulated(t, be, fakeclock.New(epoch))
	lim := limiter.Limit{Algorithm: limiter.Quota, Rates: rate(5, 0), Period: limiter.Hour, Location: time.UTC, Cost: 1,
		Key: limiter.QuotaKey(ns(t), "exports", "", "carol")}
	wantRates(t, adjust(t, l, lim, limiter.Adjustment{ID: "g", Grant: 2}), false, limiter.AdjustedRate{Max: 5, UsedBefore: 0, UsedAfter: -2})
	c := be.raw()
	for _, k := range []string{"use", "sum"} {
		name := limiter.TaggedKey(lim.Key.QuotaTag(), "q", strconv.FormatInt(epoch.Unix(), 10), k)
		if ttl := c.PTTL(context.Background(), be.sealed(name)).Val(); ttl <= 0 {
			t.Fatalf("%s: PTTL %v; want a TTL", name, ttl)
		}
	}
	d, err := l.Decide(context.Background(), limiter.Request{Limits: []limiter.Limit{lim}, Peek: true})
	if err != nil || d.By().Remaining != 6 {
		t.Fatalf("peek: %+v, %v; want 6 remaining (5 + 2 - this request)", d.By(), err)
	}
	consume(t, l, lim, 8, 7)
}

// A subject named by its hash alone is the same subject.
func TestAdjustByHash(t *testing.T) {
	be := redisBackends(t)[0]
	l, _ := simulated(t, be, fakeclock.New(epoch))
	lim := limiter.Limit{Algorithm: limiter.FixedWindow, Rates: rate(3, time.Minute), Cost: 1, Key: key(t, "per-key", "sk_live_1")}
	consume(t, l, lim, 4, 3)
	hashed := lim
	hashed.Key.Subject, hashed.Key.Hashed = nil, limiter.SubjectHash([]string{"sk_live_1"})
	wantRates(t, adjust(t, l, hashed, limiter.Adjustment{ID: "h"}), false, limiter.AdjustedRate{Max: 3, UsedBefore: 3, UsedAfter: 0})
	consume(t, l, lim, 4, 3)
	marker := limiter.TaggedKey(lim.Key.Tag(), "adj", "h")
	if ttl := be.raw().PTTL(context.Background(), be.sealed(marker)).Val(); ttl < limiter.MarkerKeep {
		t.Fatalf("marker %s: PTTL %v; want at least %v", marker, ttl, limiter.MarkerKeep)
	}
}

func TestAdjustRefuses(t *testing.T) {
	be := redisBackends(t)[0]
	l, _ := simulated(t, be, fakeclock.New(epoch))
	fixed := limiter.Limit{Algorithm: limiter.FixedWindow, Rates: rate(3, time.Minute), Cost: 1, Key: key(t, "l", "a")}
	cases := []struct {
		name string
		adj  limiter.Adjustment
		want error
	}{
		{"grant on a window", limiter.Adjustment{ID: "x", Grant: 1}, limiter.ErrInvalid},
		{"no ID", limiter.Adjustment{}, limiter.ErrInvalid},
		{"negative grant", limiter.Adjustment{ID: "x", Grant: -1}, limiter.ErrInvalid},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if _, err := l.Adjust(context.Background(), fixed, c.adj); !errors.Is(err, c.want) {
				t.Fatalf("Adjust: %v; want %v", err, c.want)
			}
		})
	}
	t.Run("memory", func(t *testing.T) {
		mem, _ := simulated(t, backends(t)[0], fakeclock.New(epoch))
		if _, err := mem.Adjust(context.Background(), fixed, limiter.Adjustment{ID: "x"}); !errors.Is(err, limiter.ErrNotShared) {
			t.Fatalf("Adjust on memory: %v; want ErrNotShared", err)
		}
	})
	t.Run("not an integer", func(t *testing.T) {
		consume(t, l, fixed, 1, 1)
		c := be.raw()
		windowKey := limiter.TaggedKey(fixed.Key.Tag(), "fw", "60000", strconv.FormatInt(epoch.UnixMilli(), 10))
		if err := c.Set(context.Background(), be.sealed(windowKey), "x", time.Minute).Err(); err != nil {
			t.Fatal(err)
		}
		_, err := l.Adjust(context.Background(), fixed, limiter.Adjustment{ID: "y"})
		var rerr redis.Error
		if !errors.As(err, &rerr) || c.Exists(context.Background(), be.sealed(limiter.TaggedKey(fixed.Key.Tag(), "adj", "y"))).Val() != 0 {
			t.Fatalf("Adjust of a broken counter: %v; want a Redis error and no record", err)
		}
	})
}

func redisBackends(t *testing.T) []backend { return backends(t)[1:] }

func ns(tb testing.TB) string { return key(tb, "").Namespace }

// Another limiter that knows the counter over its limit keeps denying from
// memory until it is told to forget (the sidecar is, at the revision bump
// that follows every adjustment), and then asks the store.
func TestForgetKnownAfterAnAdjustmentElsewhere(t *testing.T) {
	be := redisBackends(t)[0]
	clock := fakeclock.New(epoch)
	operator, _ := simulated(t, be, clock)
	sidecar, _ := simulated(t, be, clock)
	lim := limiter.Limit{Algorithm: limiter.FixedWindow, Rates: rate(2, time.Minute), Cost: 1, Key: key(t, "l", "a")}
	consume(t, sidecar, lim, 3, 2)
	adjust(t, operator, lim, limiter.Adjustment{ID: "r"})
	if d := decide(t, sidecar, lim); d.Allowed || !d.Known {
		t.Fatalf("before ForgetKnown: %+v; want a known denial", d)
	}
	sidecar.ForgetKnown()
	consume(t, sidecar, lim, 3, 2)
}

// In a Cluster, a decision across slots that another slot denies gives
// back what its quota slot took, and keeps a grant's credit: the subject
// stays, its score back where it was. Before, the refund removed any
// subject whose score fell to 0 or below, so the credit was lost (7
// remaining became 5) and the emptied set took the period's total with it.
func TestClusterRefundKeepsACredit(t *testing.T) {
	be := redisBackends(t)[1]
	if be.name != "cluster" {
		t.Fatalf("backend %s; want the cluster", be.name)
	}
	l, _ := simulated(t, be, fakeclock.New(epoch))
	quota := limiter.Limit{Algorithm: limiter.Quota, Rates: rate(5, 0), Period: limiter.Hour, Location: time.UTC, Cost: 1,
		Key: limiter.QuotaKey(ns(t), "calls", "", "alice")}
	gate := limiter.Limit{Algorithm: limiter.FixedWindow, Rates: rate(1, time.Minute), Cost: 1, Key: key(t, "gate", "alice")}
	requireSlots(t, be.raw(), quota.Key.QuotaTag(), gate.Key.Tag())
	wantRates(t, adjust(t, l, quota, limiter.Adjustment{ID: "g", Grant: 2}), false, limiter.AdjustedRate{Max: 5, UsedBefore: 0, UsedAfter: -2})
	consume(t, l, gate, 2, 1) // the gate is now shut for the minute
	for range 3 {
		if d := decide(t, l, quota, gate); d.Allowed {
			t.Fatalf("allowed through a shut gate: %+v", d)
		}
	}
	d, err := l.Decide(context.Background(), limiter.Request{Limits: []limiter.Limit{quota}, Peek: true})
	if err != nil || d.By().Remaining != 6 {
		t.Fatalf("peek after the refunds: %+v, %v; want 6 remaining (5 + the credit of 2 - this request)", d.By(), err)
	}
	u, err := l.Usage(context.Background(), limiter.QuotaKey(quota.Key.Namespace, "calls", ""), epoch, 1)
	if err != nil || u.Subjects != 1 || u.Total != 0 {
		t.Fatalf("usage after the refunds: %+v, %v; want alice still there and a total of 0", u, err)
	}
}
