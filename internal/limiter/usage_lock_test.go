package limiter_test

import (
	"context"
	"reflect"
	"testing"
	"time"

	"github.com/quotaops/quota-operator/internal/limiter"
)

// The usage index is kept by the decisions themselves: one read gives the
// subjects seen, the total and the heaviest consumers, by subject hash.
func TestUsage(t *testing.T) {
	for _, be := range backends(t) {
		t.Run(be.name, func(t *testing.T) {
			clock := newClock(epoch)
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
			clock.Add(5 * 24 * time.Hour)
			decide(t, l, quota("sk_c", 1))
			next, err := l.Usage(context.Background(), key(t, "monthly"), time.Date(2026, 12, 1, 0, 0, 0, 0, newYork), 10)
			if err != nil || next.Subjects != 1 || next.Total != 1 {
				t.Fatalf("December usage %+v, %v; want one subject, total 1", next, err)
			}
		})
	}
}

func TestLocks(t *testing.T) {
	ctx := context.Background()
	for _, be := range backends(t) {
		t.Run(be.name, func(t *testing.T) {
			clock := newClock(time.Now())
			l, err := limiter.New(be.open(t, clock), limiter.WithClock(clock.Now))
			if err != nil {
				t.Fatal(err)
			}
			ns := key(t, "").Namespace
			first, ok, _, err := l.Acquire(ctx, ns, "nightly-report", 300*time.Millisecond)
			if err != nil || !ok || len(first.Token) != 32 || first.Fence <= 0 {
				t.Fatalf("first acquire: %+v ok=%v err=%v", first, ok, err)
			}
			if _, ok, wait, err := l.Acquire(ctx, ns, "nightly-report", time.Minute); err != nil || ok || wait <= 0 || wait > 300*time.Millisecond {
				t.Fatalf("second acquire while held: ok=%v wait=%v err=%v; want refused with 0 < wait <= 300ms", ok, wait, err)
			}
			for _, tc := range []struct {
				what string
				op   func(token string) (bool, error)
			}{
				{"extend", func(tok string) (bool, error) { return l.Extend(ctx, ns, "nightly-report", tok, 400*time.Millisecond) }},
				{"release", func(tok string) (bool, error) { return l.Release(ctx, ns, "nightly-report", tok) }},
			} {
				if ok, err := tc.op("not-the-token"); err != nil || ok {
					t.Fatalf("%s with a wrong token: %v, %v; want refused", tc.what, ok, err)
				}
				if ok, err := tc.op(first.Token); err != nil || !ok {
					t.Fatalf("%s with the token: %v, %v; want done", tc.what, ok, err)
				}
			}
			second, ok, _, err := l.Acquire(ctx, ns, "nightly-report", 200*time.Millisecond)
			if err != nil || !ok || second.Fence <= first.Fence || second.Token == first.Token {
				t.Fatalf("acquire after release: %+v ok=%v err=%v; want a new token and a fence above %d", second, ok, err, first.Fence)
			}
			// The holder "crashes": it never releases; the lock frees at its TTL.
			clock.Add(250 * time.Millisecond)
			if be.raw != nil {
				time.Sleep(250 * time.Millisecond)
			}
			third, ok, _, err := l.Acquire(ctx, ns, "nightly-report", time.Minute)
			if err != nil || !ok || third.Fence <= second.Fence {
				t.Fatalf("acquire after the holder's TTL: %+v ok=%v err=%v; want taken with a fence above %d", third, ok, err, second.Fence)
			}
			if ok, _ := l.Release(ctx, ns, "nightly-report", second.Token); ok {
				t.Fatal("the crashed holder's token released the new holder's lock")
			}
		})
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
				if err := be.raw().Del(ctx, "qo:v1:{"+ns+"/job}:fence").Err(); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}
