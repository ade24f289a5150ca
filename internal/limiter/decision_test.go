package limiter_test

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quotaops/quota-operator/internal/limiter"
	"github.com/quotaops/quota-operator/internal/store"
	"github.com/quotaops/quota-operator/internal/testutil/fakeclock"
	"github.com/redis/go-redis/v9"
)

// counters reads what a test's limits hold: fixed-window counts by key,
// token-bucket TATs, and quota usage.
type counters struct {
	t testing.TB
	s store.Store
	l *limiter.Limiter
}

func (c counters) get(key string) string {
	v, _, err := c.s.Get(context.Background(), key)
	if err != nil {
		c.t.Fatal(err)
	}
	return string(v)
}

func (c counters) used(k limiter.CounterKey, start time.Time) int64 {
	u, err := c.l.Usage(context.Background(), k, start, 10)
	if err != nil {
		c.t.Fatal(err)
	}
	return u.Total
}

// Every limit that matches a request is decided together: when one denies,
// no counter moves, on memory, Redis and a Cluster whose keys for this
// request sit in different slots.
func TestAllOrNothing(t *testing.T) {
	for _, be := range backends(t) {
		t.Run(be.name, func(t *testing.T) {
			clock := fakeclock.New(epoch.Add(10 * time.Second))
			l, s := simulated(t, be, clock)
			c := counters{t, s, l}
			fixed := limiter.Limit{Key: key(t, "per-ip", "10.0.0.1"), Algorithm: limiter.FixedWindow, Rates: rate(5, time.Minute), Cost: 1}
			bucket := limiter.Limit{Key: key(t, "per-user", "alice"), Algorithm: limiter.TokenBucket, Rates: rate(3, time.Hour), Cost: 1}
			quota := limiter.Limit{Key: key(t, "monthly", "sk_live_1"), Algorithm: limiter.Quota, Rates: rate(10, 0), Period: limiter.Month, Location: newYork, Cost: 1}
			dry := limiter.Limit{Key: key(t, "page-views", "home"), Algorithm: limiter.FixedWindow, Rates: rate(1, time.Minute), Cost: 1, DryRun: true}
			if be.name == "cluster" {
				requireSlots(t, be.raw(), fixed.Key.Tag(), bucket.Key.Tag(), quota.Key.QuotaTag(), dry.Key.Tag())
			}
			fixedKey, dryKey := fixedKey(fixed.Key, time.Minute, epoch), fixedKey(dry.Key, time.Minute, epoch)
			monthStart := time.Date(2026, 11, 1, 0, 0, 0, 0, newYork)
			for i := range 3 {
				d := decide(t, l, fixed, bucket, quota, dry)
				if !d.Allowed || d.Results[3].Allowed != (i == 0) {
					t.Fatalf("request %d: %+v", i, d)
				}
			}
			tat := c.get(bucket.Key.Key("tb", "3600000"))
			d := decide(t, l, fixed, bucket, quota, dry)
			if d.Allowed || d.By().Limit != 1 || d.By().RetryAfter != 20*time.Minute {
				t.Fatalf("4th request: want a denial by the token bucket with 20m to wait; got %+v", d)
			}
			// The fixed window would have allowed; nothing was consumed, so
			// it shows 2 left, not 1.
			if r := d.Results[0]; !r.Allowed || r.Remaining != 2 {
				t.Fatalf("fixed window after the denial: %+v; want allowed with 2 remaining", r)
			}
			for _, check := range []struct{ what, got, want string }{
				{"fixed window", c.get(fixedKey), "3"},
				{"token bucket TAT", c.get(bucket.Key.Key("tb", "3600000")), tat},
				{"dry-run counter", c.get(dryKey), "3"},
			} {
				if check.got != check.want {
					t.Errorf("%s after the denial: %q; want %q", check.what, check.got, check.want)
				}
			}
			if got := c.used(quota.Key, monthStart); got != 3 {
				t.Errorf("quota total after the denial: %d; want 3", got)
			}
		})
	}
}

// fixedKey is the key of k's fixed window of length w starting at start.
func fixedKey(k limiter.CounterKey, w time.Duration, start time.Time) string {
	return k.Key("fw", strconv.FormatInt(w.Milliseconds(), 10), strconv.FormatInt(start.UnixMilli(), 10))
}

// requireSlots fails unless the tags land in at least two Cluster slots, so
// the test really exercises a cross-slot decision.
func requireSlots(t *testing.T, c redis.UniversalClient, tags ...string) {
	t.Helper()
	slots := map[int64]bool{}
	for _, tag := range tags {
		slots[c.ClusterKeySlot(context.Background(), tag).Val()] = true
	}
	if len(slots) < 2 {
		t.Fatalf("tags %v share one slot; the test needs several", tags)
	}
}

// In a Cluster, a request whose limits sit in different slots is decided
// by one script per slot, and slots that committed are refunded when
// another denies. The guarantee: no limit ever admits more than its limit,
// and once every decision has returned each counter equals exactly what the
// allowed requests consumed. A concurrent request may see a reservation
// about to be refunded and be denied early (never admitted late).
func TestClusterCrossSlotGuarantee(t *testing.T) {
	be := backends(t)[2]
	clock := fakeclock.New(epoch.Add(10 * time.Second))
	l, s := simulated(t, be, clock)
	wide := limiter.Limit{Key: key(t, "per-tenant", "acme"), Algorithm: limiter.FixedWindow, Rates: rate(50, time.Minute), Cost: 1}
	narrow := limiter.Limit{Key: key(t, "per-user", "bob"), Algorithm: limiter.FixedWindow, Rates: rate(30, time.Minute), Cost: 1}
	requireSlots(t, be.raw(), wide.Key.Tag(), narrow.Key.Tag())
	var allowed atomic.Int64
	var wg sync.WaitGroup
	for range 64 {
		wg.Go(func() {
			for range 20 {
				if decide(t, l, wide, narrow).Allowed {
					allowed.Add(1)
				}
			}
		})
	}
	wg.Wait()
	// The storm may have denied early; alone, requests pass until the
	// narrow limit is really full.
	for decide(t, l, wide, narrow).Allowed {
		allowed.Add(1)
	}
	c := counters{t: t, s: s}
	if allowed.Load() != 30 {
		t.Fatalf("%d allowed; want exactly 30", allowed.Load())
	}
	for _, k := range []limiter.CounterKey{wide.Key, narrow.Key} {
		if got := c.get(fixedKey(k, time.Minute, epoch)); got != "30" {
			t.Errorf("%s counter %s; want 30 (what the allowed requests took)", k.Limit, got)
		}
	}
}

// Peek decides without consuming.
func TestPeek(t *testing.T) {
	for _, be := range backends(t) {
		t.Run(be.name, func(t *testing.T) {
			l, _ := simulated(t, be, fakeclock.New(epoch))
			lim := limiter.Limit{Key: key(t, "l"), Algorithm: limiter.SlidingWindow, Rates: rate(2, time.Minute), Cost: 1}
			for range 3 {
				d, err := l.Decide(context.Background(), limiter.Request{Limits: []limiter.Limit{lim}, Peek: true})
				if err != nil || !d.Allowed || d.By().Remaining != 1 {
					t.Fatalf("peek: %+v, %v; want allowed with 1 remaining", d, err)
				}
			}
			if r := decide(t, l, lim).By(); r.Remaining != 1 {
				t.Fatalf("after peeks: remaining %d; want 1", r.Remaining)
			}
		})
	}
}

// Sidecars whose clocks differ by seconds share windows and periods: the
// store's clock decides, and each limiter learns its offset. The two clocks
// here are 60s apart, so by their own reckoning they would never share a
// one-minute window.
func TestSkewedClocksShareWindows(t *testing.T) {
	for _, be := range backends(t) {
		if be.raw == nil {
			continue // one process, one clock
		}
		t.Run(be.name, func(t *testing.T) {
			for attempt := 0; ; attempt++ {
				if skewedRun(t, be) || attempt == 2 {
					return
				}
				t.Logf("a window boundary passed during the run; again")
			}
		})
	}
}

// skewedRun reports false when the store's minute changed during the run,
// which legitimately splits the window.
func skewedRun(t *testing.T, be backend) bool {
	ctx := context.Background()
	s := be.open(t, nil)
	behind, err := limiter.New(s, limiter.WithClock(func() time.Time { return time.Now().Add(-29 * time.Second) }))
	if err != nil {
		t.Fatal(err)
	}
	ahead, err := limiter.New(s, limiter.WithClock(func() time.Time { return time.Now().Add(31 * time.Second) }))
	if err != nil {
		t.Fatal(err)
	}
	before := storeTime(t, be.raw())
	ns := key(t, "x").Namespace + "." + before.Format("150405.000")
	fixed := limiter.Limit{Key: limiter.CounterKey{Namespace: ns, Policy: "p", Limit: "per-min"}, Algorithm: limiter.FixedWindow, Rates: rate(10, time.Minute), Cost: 1}
	quota := limiter.Limit{Key: limiter.CounterKey{Namespace: ns, Policy: "p", Limit: "daily", Subject: []string{"k"}}, Algorithm: limiter.Quota, Rates: rate(1000, 0), Period: limiter.Day, Location: time.UTC, Cost: 1}
	allowed := 0
	var resets []time.Duration
	for i := range 20 {
		l := behind
		if i%2 == 1 {
			l = ahead
		}
		d, err := l.Decide(ctx, limiter.Request{Limits: []limiter.Limit{fixed, quota}})
		if err != nil {
			t.Fatal(err)
		}
		if d.Allowed {
			allowed++
		}
		resets = append(resets, d.Results[0].ResetAfter)
	}
	after := storeTime(t, be.raw())
	if before.Truncate(time.Minute) != after.Truncate(time.Minute) {
		return false
	}
	if allowed != 10 {
		t.Fatalf("%d allowed between two limiters 60s apart; want exactly 10 (one shared window)", allowed)
	}
	if spread := slicesMax(resets) - slicesMin(resets); spread > time.Second {
		t.Fatalf("reset-after values spread over %v: %v", spread, resets)
	}
	keys, _ := scanTTLs(t, be.raw(), be.sealed("qo:v1:{"+ns+"/*"))
	if keys != 3 { // one fixed window, one usage set, one total
		t.Fatalf("%d keys; want 3: the limiters split a window or period", keys)
	}
	return true
}

func storeTime(t *testing.T, c redis.UniversalClient) time.Time {
	ts, err := c.Time(context.Background()).Result()
	if err != nil {
		t.Fatal(err)
	}
	return ts
}

func slicesMax(ds []time.Duration) time.Duration {
	m := ds[0]
	for _, d := range ds {
		m = max(m, d)
	}
	return m
}

func slicesMin(ds []time.Duration) time.Duration {
	m := ds[0]
	for _, d := range ds {
		m = min(m, d)
	}
	return m
}

func TestInvalidRequests(t *testing.T) {
	l, err := limiter.New(store.NewMemory())
	if err != nil {
		t.Fatal(err)
	}
	k := limiter.CounterKey{Namespace: "ns", Policy: "p", Limit: "l"}
	ok := limiter.Limit{Key: k, Algorithm: limiter.FixedWindow, Rates: rate(10, time.Second), Cost: 1}
	with := func(f func(*limiter.Limit)) limiter.Limit { lim := ok; f(&lim); return lim }
	tests := []struct {
		name   string
		limits []limiter.Limit
		want   string
	}{
		{"zero cost", []limiter.Limit{with(func(l *limiter.Limit) { l.Cost = 0 })}, "limits[0] (l): cost 0 is outside 1..9007199254740991"},
		{"cost above 2^53", []limiter.Limit{with(func(l *limiter.Limit) { l.Cost = 1 << 53 })}, "cost 9007199254740992 is outside"},
		{"no algorithm", []limiter.Limit{with(func(l *limiter.Limit) { l.Algorithm = 0 })}, "unknown algorithm 0"},
		{"no rates", []limiter.Limit{with(func(l *limiter.Limit) { l.Rates = nil })}, "0 rates: want 1 to 4"},
		{"five rates", []limiter.Limit{with(func(l *limiter.Limit) {
			l.Rates = []limiter.Rate{{1, time.Second}, {2, time.Minute}, {3, time.Hour}, {4, 2 * time.Hour}, {5, 3 * time.Hour}}
		})}, "5 rates: want 1 to 4"},
		{"zero limit", []limiter.Limit{with(func(l *limiter.Limit) { l.Rates = rate(0, time.Second) })}, "rates[0]: limit 0 is outside"},
		{"sub-millisecond window", []limiter.Limit{with(func(l *limiter.Limit) { l.Rates = rate(1, 1500*time.Microsecond) })}, "rates[0]: window 1.5ms is not a whole number of milliseconds"},
		{"window twice", []limiter.Limit{with(func(l *limiter.Limit) { l.Rates = []limiter.Rate{{1, time.Second}, {5, time.Second}} })}, "rates[1]: window 1s appears twice"},
		{"token bucket over 1 token/µs", []limiter.Limit{with(func(l *limiter.Limit) {
			l.Algorithm, l.Rates = limiter.TokenBucket, rate(1001, time.Millisecond)
		})}, "rates[0]: a token bucket refills at most one token per microsecond"},
		{"quota without zone", []limiter.Limit{{Key: k, Algorithm: limiter.Quota, Rates: rate(1, 0), Period: limiter.Day, Cost: 1}}, "a quota needs a time zone"},
		{"quota with two rates", []limiter.Limit{{Key: k, Algorithm: limiter.Quota, Rates: rate(1, 0), Period: limiter.Day, Location: time.UTC, Cost: 1}, {Key: k, Algorithm: limiter.Quota, Rates: []limiter.Rate{{1, 0}, {2, 0}}, Location: time.UTC, Cost: 1}}, "limits[1] (l): 2 rates"},
		{"one counter twice", []limiter.Limit{ok, ok}, "limits[1] repeats a counter of another limit"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := l.Decide(context.Background(), limiter.Request{Limits: tt.limits})
			if !errors.Is(err, limiter.ErrInvalid) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v; want ErrInvalid containing %q", err, tt.want)
			}
		})
	}
}

// A counter that another program overwrote with junk fails the decision
// with an error, and the request's other counters stay as they were.
func TestCorruptCounterChangesNothing(t *testing.T) {
	for _, be := range backends(t) {
		t.Run(be.name, func(t *testing.T) {
			l, s := simulated(t, be, fakeclock.New(epoch))
			good := limiter.Limit{Key: key(t, "good"), Algorithm: limiter.FixedWindow, Rates: rate(5, time.Minute), Cost: 1}
			bad := limiter.Limit{Key: key(t, "bad"), Algorithm: limiter.FixedWindow, Rates: rate(5, time.Minute), Cost: 1}
			decide(t, l, good)
			ctx := context.Background()
			badKey := fixedKey(bad.Key, time.Minute, epoch)
			if err := s.Set(ctx, badKey, []byte("twelve"), time.Minute); err != nil {
				t.Fatal(err)
			}
			if _, err := l.Decide(ctx, limiter.Request{Limits: []limiter.Limit{good, bad}}); err == nil {
				t.Fatal("a junk counter decided without an error")
			}
			if got := (counters{t: t, s: s}).get(fixedKey(good.Key, time.Minute, epoch)); got != "1" {
				t.Fatalf("good counter %q after the failed decision; want 1", got)
			}
		})
	}
}

// A limit lowered below what a subject already used, or a DryRun limit
// now enforced, shows 0 remaining, never a negative number (which Envoy's
// unsigned limit_remaining would wrap to about 4.29e9).
func TestRemainingNeverNegative(t *testing.T) {
	algorithms := []limiter.Limit{
		{Algorithm: limiter.FixedWindow, Rates: rate(10, time.Hour)},
		{Algorithm: limiter.SlidingWindow, Rates: rate(10, time.Hour)},
		{Algorithm: limiter.TokenBucket, Rates: rate(10, time.Hour)},
		{Algorithm: limiter.Quota, Rates: rate(10, 0), Period: limiter.Month, Location: newYork},
	}
	for _, be := range backends(t) {
		for _, lim := range algorithms {
			t.Run(be.name+"/"+lim.Algorithm.String(), func(t *testing.T) {
				l, _ := simulated(t, be, fakeclock.New(epoch.Add(10*time.Second)))
				lim.Key, lim.Cost = key(t, "lowered", "alice"), 1
				for i := range 6 {
					if d := decide(t, l, lim); !d.Allowed {
						t.Fatalf("request %d under the old limit: %+v", i, d)
					}
				}
				lowered := lim
				lowered.Rates = append([]limiter.Rate(nil), lim.Rates...)
				lowered.Rates[0].Limit = 2
				for _, dry := range []bool{true, false} {
					lowered.DryRun = dry
					d := decide(t, l, lowered)
					if r := d.Results[0]; r.Allowed || r.Remaining != 0 || d.Allowed == !dry {
						t.Fatalf("dry run %v, after 6 of a limit lowered to 2: %+v", dry, d)
					}
				}
			})
		}
	}
}

// One fixed window, the commonest decision, counts first and takes the
// count back when it is over the limit (one command, not a read and a
// write, for the decisions that pass). A denied decision still leaves the
// counter and its TTL as they were; a cost the limit can never admit
// creates no key; a new window gets its TTL; a dry run counts past the
// limit.
func TestFixedWindowDenialLeavesNothing(t *testing.T) {
	for _, be := range backends(t) {
		if be.raw == nil {
			continue // Redis only: the memory engine decides in Go
		}
		t.Run(be.name, func(t *testing.T) {
			clock := fakeclock.New(epoch.Add(10 * time.Second))
			l, _ := simulated(t, be, clock)
			lim := limiter.Limit{Key: key(t, "one", "alice"), Algorithm: limiter.FixedWindow, Rates: rate(3, time.Minute), Cost: 1}
			w := fixedWindowOn{t: t, be: be, l: l, name: be.sealed(fixedKey(lim.Key, time.Minute, epoch))}
			ttl := w.fill(lim)
			clock.Advance(5 * time.Second)
			w.denials(lim, ttl)
			huge := lim
			huge.Key, huge.Cost = key(t, "one", "bob"), 4
			if d := decide(t, l, huge); d.Allowed {
				t.Fatalf("a cost of 4 under a limit of 3: %+v", d)
			}
			if n := be.raw().Exists(context.Background(), be.sealed(fixedKey(huge.Key, time.Minute, epoch))).Val(); n != 0 {
				t.Fatal("a cost the limit can never admit created its key")
			}
			dry := lim
			dry.DryRun = true
			if d := decide(t, l, dry); !d.Allowed || d.Results[0].Allowed {
				t.Fatalf("dry run over the limit: %+v; want allowed overall, over in its result", d)
			}
			w.expectCount("after a dry run over the limit", "4")
		})
	}
}

// fixedWindowOn reads one fixed window's counter in Redis.
type fixedWindowOn struct {
	t    *testing.T
	be   backend
	l    *limiter.Limiter
	name string
}

// fill takes the limit of 3 and returns the window's TTL.
func (w fixedWindowOn) fill(lim limiter.Limit) time.Duration {
	for i := range 3 {
		if d := decide(w.t, w.l, lim); !d.Allowed || d.Results[0].Remaining != int64(2-i) {
			w.t.Fatalf("request %d: %+v", i, d)
		}
	}
	ttl := w.be.raw().PTTL(context.Background(), w.name).Val()
	if ttl <= 0 || ttl > 50*time.Second {
		w.t.Fatalf("the window's TTL is %v; want the 50 s to its end", ttl)
	}
	return ttl
}

// denials expects three denials that move neither the count nor the TTL.
func (w fixedWindowOn) denials(lim limiter.Limit, ttl time.Duration) {
	for range 3 {
		if d := decide(w.t, w.l, lim); d.Allowed || d.Results[0].Remaining != 0 {
			w.t.Fatalf("over the limit: %+v", d)
		}
	}
	w.expectCount("after three denials", "3")
	if after := w.be.raw().PTTL(context.Background(), w.name).Val(); after > ttl || after <= 0 {
		w.t.Fatalf("TTL %v after the denials, was %v: a denial moved it", after, ttl)
	}
}

func (w fixedWindowOn) expectCount(when, want string) {
	w.t.Helper()
	if v := w.be.raw().Get(context.Background(), w.name).Val(); v != want {
		w.t.Fatalf("counter %q %s; want %s", v, when, want)
	}
}
