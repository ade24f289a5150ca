package limiter_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/quotaops/quota-operator/internal/limiter"
	"github.com/quotaops/quota-operator/internal/testutil/fakeclock"
)

// Subjects finds exactly the subjects with counters of one rate limit, of
// each algorithm, on one server and across a Cluster's masters, and not those
// of a limit whose name starts the same; a bound on the keys examined
// says the answer is partial. The memory store has no one else's counters.
func TestSubjects(t *testing.T) {
	for _, be := range redisBackends(t) {
		for _, a := range everyAlgorithm(5, time.Minute)[:3] { // a quota keeps its own index (Usage)
			t.Run(be.name+"/"+a.name, func(t *testing.T) {
				l, _ := simulated(t, be, fakeclock.New(epoch))
				lim := a.lim
				lim.Key, lim.Cost = key(t, "per-user"), 1
				other := lim
				other.Key = key(t, "per-user-2")
				var want []string
				for _, s := range []string{"alice", "bob", "carol"} {
					lim.Key.Subject = []string{s}
					decide(t, l, lim)
					want = append(want, lim.Key.SubjectHash())
				}
				other.Key.Subject = []string{"dave"}
				decide(t, l, other)
				slices.Sort(want)
				got, complete, err := l.Subjects(context.Background(), lim.Key, 1000)
				if err != nil || !complete || !slices.Equal(got, want) {
					t.Fatalf("Subjects: %v, complete %v, %v; want %v", got, complete, err, want)
				}
				if got, complete, err := l.Subjects(context.Background(), lim.Key, 1); err != nil || complete || len(got) != 1 {
					t.Fatalf("Subjects of at most 1 key: %v, complete %v, %v; want 1 subject, partial", got, complete, err)
				}
			})
		}
	}
	l, _ := simulated(t, backends(t)[0], fakeclock.New(epoch))
	if _, _, err := l.Subjects(context.Background(), key(t, "x"), 10); !errors.Is(err, limiter.ErrNotShared) {
		t.Fatalf("memory: %v; want ErrNotShared", err)
	}
}
