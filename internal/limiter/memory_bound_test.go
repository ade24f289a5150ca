package limiter_test

import (
	"context"
	"errors"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/quotaops/quota-operator/internal/limiter"
	"github.com/quotaops/quota-operator/internal/store"
)

// sidecarMemoryLimit is the Go heap an injected sidecar may use: GOMEMLIMIT
// is 80% of its default 64 MiB memory limit.
const sidecarMemoryLimit = 64 << 20 * 8 / 10

// A Redis-less sidecar holds its counters in its own memory. A million
// distinct subjects fill the store to its default bound and no further:
// against a monthly quota (one field each in the period's index, kept a
// month) and against a sliding window (a counter key each). The rest are
// refused with ErrFull, which each policy's failurePolicy then decides,
// and the heap stays under the sidecar's memory limit.
func TestMemoryStoreStaysBounded(t *testing.T) {
	tests := []struct {
		name string
		lim  limiter.Limit
	}{
		{"monthly quota", limiter.Limit{Algorithm: limiter.Quota, Rates: []limiter.Rate{{Limit: 10}}, Period: limiter.Month, Location: time.UTC}},
		{"sliding window per hour", limiter.Limit{Algorithm: limiter.SlidingWindow, Rates: []limiter.Rate{{Limit: 10, Window: time.Hour}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := store.Open("memory://") // what the sidecar opens by default
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = s.Close() }()
			mem := s.(*store.Memory)
			before := heapInUse()
			allowed, refused := decideForSubjects(t, s, tt.lim, 1_000_000)
			held := heapInUse() - before
			if mem.Entries() > store.DefaultMemoryMaxEntries || int64(refused) != mem.Refused() || allowed < 1000 {
				t.Fatalf("%d entries (bound %d), %d allowed, %d refused (store: %d)", mem.Entries(), store.DefaultMemoryMaxEntries, allowed, refused, mem.Refused())
			}
			if held > sidecarMemoryLimit {
				t.Fatalf("the store holds %d MiB of heap, over the sidecar's %d MiB", held>>20, sidecarMemoryLimit>>20)
			}
			t.Logf("%d counted, %d refused; %d entries hold %.1f MiB of heap, %d bytes each",
				allowed, refused, mem.Entries(), float64(held)/(1<<20), held/mem.Entries())
		})
	}
}

// decideForSubjects asks n distinct subjects once each.
func decideForSubjects(t *testing.T, s store.Store, l limiter.Limit, n int) (allowed, refused int) {
	t.Helper()
	lim, err := limiter.New(s)
	if err != nil {
		t.Fatal(err)
	}
	l.Cost = 1
	l.Key = limiter.CounterKey{Namespace: "shop", Policy: "p", Limit: "per-key"}
	for i := range n {
		l.Key.Subject = []string{"key-" + strconv.Itoa(i)}
		d, err := lim.Decide(context.Background(), limiter.Request{Limits: []limiter.Limit{l}})
		switch {
		case errors.Is(err, store.ErrFull):
			refused++
		case err != nil:
			t.Fatalf("subject %d: %v", i, err)
		case d.Allowed:
			allowed++
		}
	}
	if allowed+refused != n {
		t.Fatalf("%d allowed and %d refused of %d", allowed, refused, n)
	}
	return allowed, refused
}

func heapInUse() int64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapAlloc)
}
