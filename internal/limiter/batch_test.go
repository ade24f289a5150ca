package limiter

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/quotaops/quota-operator/internal/testutil/redistest"
)

// A burst of concurrent decisions is answered in full and counted exactly;
// the extra workers it started leave as soon as the queue is empty, and the
// last one after workerIdle.
func TestBatcherBurst(t *testing.T) {
	srv := redistest.StartOrSkip(t)
	c := srv.Client()
	t.Cleanup(func() { _ = c.Close() })
	b := newBatcher(c)
	const callers, each = 256, 4
	nowMs := time.Now().UnixMilli()
	e := entry{alg: FixedWindow, max: callers * each, cost: 1, window: 3_600_000, start: nowMs - nowMs%3_600_000}
	keys, args := []string{"{batch}:burst"}, scriptArgs([]entry{e}, nowMs*1000, 0)
	var wg sync.WaitGroup
	peak := make(chan int32)
	stop := make(chan struct{})
	go func() { peak <- peakWorkers(b, stop) }()
	errs := make(chan error, callers*each)
	for range callers {
		wg.Go(func() {
			for range each {
				reply, err := b.run(context.Background(), keys, args)
				if err == nil && (len(reply) != 6 || reply[2] != 1) {
					t.Errorf("reply %v, want an allowed decision", reply)
				}
				if err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(stop)
	t.Logf("At most %d workers during the burst", <-peak)
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if got, err := c.Get(context.Background(), keys[0]).Int(); err != nil || got != callers*each {
		t.Fatalf("counter = %d, %v; want %d", got, err, callers*each)
	}
	// The worker that sent the last batch may still be on its way out.
	waitWorkers(t, b, 1, 100*time.Millisecond)
	waitWorkers(t, b, 0, workerIdle+time.Second)
}

func waitWorkers(t *testing.T, b *batcher, want int32, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for b.workers.Load() > want {
		if time.Now().After(deadline) {
			t.Fatalf("%d workers after %v, want at most %d", b.workers.Load(), within, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func peakWorkers(b *batcher, stop chan struct{}) int32 {
	var peak int32
	for {
		select {
		case <-stop:
			return peak
		default:
			peak = max(peak, b.workers.Load())
			time.Sleep(100 * time.Microsecond)
		}
	}
}
