package limiter_test

import (
	"context"
	"reflect"
	"testing"
	"time"

	"github.com/quotaops/quota-operator/internal/limiter"
	"github.com/quotaops/quota-operator/internal/testutil/fakeclock"
)

// The usage index is kept by the decisions themselves: one read gives the
// subjects seen, the total and the heaviest consumers, by subject hash.
func TestUsage(t *testing.T) {
	for _, be := range backends(t) {
		t.Run(be.name, func(t *testing.T) {
			clock := fakeclock.New(epoch)
			l, _ := simulated(t, be, clock)
			quota := func(subject string, cost int64) limiter.Limit {
				return limiter.Limit{Key: key(t, "monthly", subject), Algorithm: limiter.Quota, Rates: rate(5, 0),
					Period: limiter.Month, Location: newYork, Cost: cost}
			}
			for _, c := range []struct {
				subject string
				cost    int64
			}{{"sk_a", 2}, {"sk_b", 1}, {"sk_a", 3}, {"sk_c", 1}, {"sk_b", 1}, {"sk_a", 1} /* denied: 6 > 5 */} {
				decide(t, l, quota(c.subject, c.cost))
			}
			h := func(s string) string { return limiter.SubjectHash([]string{s}) }
			start := time.Date(2026, 11, 1, 0, 0, 0, 0, newYork)
			u, err := l.Usage(context.Background(), key(t, "monthly"), start, 2)
			if err != nil {
				t.Fatal(err)
			}
			want := limiter.Usage{Subjects: 3, Total: 8, Top: []limiter.Consumer{{Subject: h("sk_a"), Used: 5}, {Subject: h("sk_b"), Used: 2}}}
			if !reflect.DeepEqual(u, want) {
				t.Fatalf("usage %+v; want %+v", u, want)
			}
			// The next period starts empty; the one before is still readable.
			clock.Advance(5 * 24 * time.Hour)
			decide(t, l, quota("sk_c", 1))
			next, err := l.Usage(context.Background(), key(t, "monthly"), time.Date(2026, 12, 1, 0, 0, 0, 0, newYork), 10)
			if err != nil || next.Subjects != 1 || next.Total != 1 {
				t.Fatalf("December usage %+v, %v; want one subject, total 1", next, err)
			}
		})
	}
}

func TestLocks(t *testing.T) {
	for _, be := range backends(t) {
		t.Run(be.name, func(t *testing.T) {
			clock := fakeclock.New(time.Now())
			l, err := limiter.New(be.open(t, clock), limiter.WithClock(clock.Now))
			if err != nil {
				t.Fatal(err)
			}
			lk := lockCase{t: t, l: l, ns: key(t, "").Namespace, name: "nightly-report"}
			first := lk.acquire(300 * time.Millisecond)
			if len(first.Token) != 32 || first.Fence <= 0 {
				t.Fatalf("first lock %+v: want a 32-hex token and a positive fence", first)
			}
			lk.refused(300 * time.Millisecond)
			lk.onlyWithToken(first.Token)
			second := lk.acquire(200 * time.Millisecond)
			if second.Fence <= first.Fence || second.Token == first.Token {
				t.Fatalf("after release: %+v; want a new token and a fence above %d", second, first.Fence)
			}
			// The holder "crashes": it never releases; the lock frees at its TTL.
			clock.Advance(250 * time.Millisecond)
			if be.raw != nil {
				time.Sleep(250 * time.Millisecond)
			}
			if third := lk.acquire(time.Minute); third.Fence <= second.Fence {
				t.Fatalf("after the holder's TTL: %+v; want a fence above %d", third, second.Fence)
			}
			if ok, _ := l.Release(context.Background(), lk.ns, lk.name, second.Token); ok {
				t.Fatal("the crashed holder's token released the new holder's lock")
			}
		})
	}
}

type lockCase struct {
	t        *testing.T
	l        *limiter.Limiter
	ns, name string
}

func (c lockCase) acquire(ttl time.Duration) limiter.Lock {
	c.t.Helper()
	lock, ok, _, err := c.l.Acquire(context.Background(), c.ns, c.name, ttl)
	if err != nil || !ok {
		c.t.Fatalf("acquire: ok=%v err=%v; want the lock", ok, err)
	}
	return lock
}

// refused checks that the held lock is refused with what is left of its
// TTL, at most heldFor.
func (c lockCase) refused(heldFor time.Duration) {
	c.t.Helper()
	_, ok, wait, err := c.l.Acquire(context.Background(), c.ns, c.name, time.Minute)
	if err != nil || ok || wait <= 0 || wait > heldFor {
		c.t.Fatalf("acquire while held: ok=%v wait=%v err=%v; want refused with 0 < wait <= %v", ok, wait, err, heldFor)
	}
}

// onlyWithToken checks that extend and release refuse a wrong token and
// work with the holder's; the lock ends released.
func (c lockCase) onlyWithToken(token string) {
	c.t.Helper()
	ctx := context.Background()
	for _, op := range []struct {
		what string
		do   func(token string) (bool, error)
	}{
		{"extend", func(tok string) (bool, error) { return c.l.Extend(ctx, c.ns, c.name, tok, 400*time.Millisecond) }},
		{"release", func(tok string) (bool, error) { return c.l.Release(ctx, c.ns, c.name, tok) }},
	} {
		if ok, err := op.do("not-the-token"); err != nil || ok {
			c.t.Fatalf("%s with a wrong token: %v, %v; want refused", op.what, ok, err)
		}
		if ok, err := op.do(token); err != nil || !ok {
			c.t.Fatalf("%s with the token: %v, %v; want done", op.what, ok, err)
		}
	}
}

// Fencing numbers keep increasing even when the fence key is gone: they are
// at least the store's clock in µs.
func TestFenceSurvivesLostFenceKey(t *testing.T) {
	ctx := context.Background()
	for _, be := range backends(t) {
		if be.raw == nil {
			continue
		}
		t.Run(be.name, func(t *testing.T) {
			l, err := limiter.New(be.open(t, nil))
			if err != nil {
				t.Fatal(err)
			}
			ns := key(t, "").Namespace
			var last int64
			for i := range 3 {
				lock, ok, _, err := l.Acquire(ctx, ns, "job", time.Minute)
				if err != nil || !ok || lock.Fence <= last {
					t.Fatalf("round %d: %+v ok=%v err=%v; want a fence above %d", i, lock, ok, err, last)
				}
				last = lock.Fence
				if _, err := l.Release(ctx, ns, "job", lock.Token); err != nil {
					t.Fatal(err)
				}
				if err := be.raw().Del(ctx, be.sealed("qo:v1:{"+ns+"/job}:fence")).Err(); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}
