package sidecar_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr"

	"github.com/quotaops/quota-operator/internal/sidecar"
	"github.com/quotaops/quota-operator/internal/store"
	"github.com/quotaops/quota-operator/internal/testutil/localtest"
	"github.com/quotaops/quota-operator/internal/testutil/sidecartest"
)

// putPerIP publishes a per-IP limit of limit a minute in ns on mem.
func putPerIP(t *testing.T, mem *store.Memory, ns string, limit int64) {
	t.Helper()
	sidecartest.Publish(t, mem, perIP(ns, limit, "1m"))
}

// countingReader counts the whole-config reads and the revision checks
// a source makes, and, when silent, loses every announcement.
type countingReader struct {
	*store.Memory
	silent            bool
	configs, revision atomic.Int64
}

func (c *countingReader) Configs(ctx context.Context, ns string) (int64, map[string][]byte, error) {
	c.configs.Add(1)
	return c.Memory.Configs(ctx, ns)
}

func (c *countingReader) ConfigRevision(ctx context.Context, ns string) (int64, error) {
	c.revision.Add(1)
	return c.Memory.ConfigRevision(ctx, ns)
}

func (c *countingReader) WatchConfigs(ctx context.Context, ns string) (<-chan int64, error) {
	if c.silent {
		return make(chan int64), nil
	}
	return c.Memory.WatchConfigs(ctx, ns)
}

// An idle source checks the revision on its timer and reads the whole
// config only when it changed; a change whose announcement was lost is
// found by that check. Before, every resync read the whole config.
func TestSourceReadsTheWholeConfigOnlyWhenItsRevisionChanged(t *testing.T) {
	mem := store.NewMemory()
	t.Cleanup(func() { _ = mem.Close() })
	r := &countingReader{Memory: mem, silent: true}
	put := func(limit int64) { putPerIP(t, mem, "idle", limit) }
	put(3)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	src := &sidecar.Source{Namespace: "idle", EveryPolicy: true, Log: logr.Discard()}
	go src.RunStore(ctx, r, 10*time.Millisecond)
	revision := func(want int64) func() error {
		return func() error {
			if ps := src.Current(); ps == nil || ps.Revision != want {
				return fmt.Errorf("revision %v, want %d", ps, want)
			}
			return nil
		}
	}
	localtest.WaitFor(t, 5*time.Second, "revision 1 loaded", revision(1))
	localtest.WaitFor(t, 5*time.Second, "20 revision checks", func() error {
		if n := r.revision.Load(); n < 20 {
			return fmt.Errorf("%d checks", n)
		}
		return nil
	})
	if n := r.configs.Load(); n != 1 {
		t.Fatalf("the whole config was read %d times while it did not change; want once", n)
	}
	put(4) // announced to no one
	localtest.WaitFor(t, 5*time.Second, "revision 2 found by the revision check", revision(2))
	if n := r.configs.Load(); n != 2 {
		t.Fatalf("the whole config was read %d times; want twice, once per revision", n)
	}
}

// reportLog records the revisions reported, failing the first fail calls.
type reportLog struct {
	mu   sync.Mutex
	fail int
	revs []int64
}

func (l *reportLog) ReportEnforcing(_ context.Context, _, _ string, rev int64, _ time.Duration) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.fail > 0 {
		l.fail--
		return errors.New("store down")
	}
	l.revs = append(l.revs, rev)
	return nil
}

func (l *reportLog) reported() []int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.revs)
}

// A source reports each new revision once, as soon as it is installed,
// and retries a report that failed; it does not report an unchanged
// revision again before a minute. (Reports had a goroutine of their own
// that looked every second, and whose first report, beside the config's
// first reads, opened a second command connection in 36 of 1,000 idle
// sidecars.)
func TestSourceReportsEachNewRevisionAtOnce(t *testing.T) {
	mem := store.NewMemory()
	t.Cleanup(func() { _ = mem.Close() })
	put := func(limit int64) { putPerIP(t, mem, "reports", limit) }
	put(3)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	log := &reportLog{fail: 1} // the first report fails and is retried
	src := &sidecar.Source{Namespace: "reports", EveryPolicy: true, Log: logr.Discard(), Reporter: log, Pod: "pod-a"}
	go src.RunStore(ctx, mem, time.Hour)
	reported := func(want ...int64) func() error {
		return func() error {
			if got := log.reported(); !slices.Equal(got, want) {
				return fmt.Errorf("reported %v, want %v", got, want)
			}
			return nil
		}
	}
	localtest.WaitFor(t, 10*time.Second, "revision 1 reported after one failure", reported(1))
	put(4)
	// Well before the minute an unchanged revision waits.
	localtest.WaitFor(t, 5*time.Second, "revision 2 reported at once", reported(1, 2))
	time.Sleep(1500 * time.Millisecond)
	if err := reported(1, 2)(); err != nil {
		t.Fatalf("an unchanged revision was reported again within a minute: %v", err)
	}
}
