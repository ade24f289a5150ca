package limiter_test

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/quotaops/quota-operator/internal/limiter"
	"github.com/quotaops/quota-operator/internal/store"
	"github.com/quotaops/quota-operator/internal/testutil/fakeclock"
	"github.com/quotaops/quota-operator/internal/testutil/redistest"
	"github.com/redis/go-redis/v9"
)

// One redis-server and one 3-master Cluster serve the whole package.
var (
	single     *redistest.Server
	cluster    *redistest.Cluster
	startError error
)

func TestMain(m *testing.M) {
	if os.Getenv(hammerEnv) != "" {
		os.Exit(hammer(os.Getenv(hammerEnv)))
	}
	code := func() int {
		defer func() {
			if single != nil {
				_ = single.Close()
			}
			if cluster != nil {
				_ = cluster.Close()
			}
		}()
		if single, startError = redistest.Start(); startError == nil {
			cluster, startError = redistest.StartCluster(3, 0)
		}
		if startError != nil {
			redistest.Report(startError)
		}
		return m.Run()
	}()
	os.Exit(code)
}

// backend is one store a limiter runs on; raw is its Redis client (nil for
// memory), for looking at what the functions left behind under the names
// sealed gives them.
type backend struct {
	name string
	open func(tb testing.TB, clock *fakeclock.Clock) store.Store
	raw  func() redis.UniversalClient
	seal func() string
	// reload loads the library again, as the manager would.
	reload func() error
}

// sealed is the name under which the library keeps the limiter's key.
func (be backend) sealed(key string) string { return store.SealedKey(be.seal(), key) }

func backends(tb testing.TB) []backend {
	tb.Helper()
	redistest.SkipIfMissing(tb, startError)
	if startError != nil {
		tb.Fatalf("redis test servers: %v", startError)
	}
	openURL := func(url string) func(testing.TB, *fakeclock.Clock) store.Store {
		return func(tb testing.TB, _ *fakeclock.Clock) store.Store {
			s, err := store.Open(url)
			if err != nil {
				tb.Fatal(err)
			}
			tb.Cleanup(func() { _ = s.Close() })
			return s
		}
	}
	return []backend{
		{name: "memory", open: func(tb testing.TB, clock *fakeclock.Clock) store.Store {
			opts := []store.MemoryOption{}
			if clock != nil {
				opts = append(opts, store.WithClock(clock.Now))
			}
			s := store.NewMemory(opts...)
			tb.Cleanup(func() { _ = s.Close() })
			return s
		}},
		{name: "redis", open: openURL(single.URL), raw: func() redis.UniversalClient { return single.Client() },
			seal: single.Seal, reload: single.LoadLibrary},
		{name: "cluster", open: openURL("redis+cluster://" + strings.Join(cluster.Addrs(), ",")),
			raw: func() redis.UniversalClient { return cluster.Client() }, seal: cluster.Seal, reload: cluster.LoadLibrary},
	}
}

// simulated opens a limiter on be whose only clock is clock, so a test can
// replay a timeline on Redis as well as in memory.
func simulated(tb testing.TB, be backend, clock *fakeclock.Clock) (*limiter.Limiter, store.Store) {
	s := be.open(tb, clock)
	l, err := limiter.New(s, limiter.WithSimulatedClock(clock.Now))
	if err != nil {
		tb.Fatal(err)
	}
	return l, s
}

// key gives every test its own namespace, so tests never share counters.
func key(tb testing.TB, limit string, subject ...string) limiter.CounterKey {
	return limiter.CounterKey{Namespace: strings.ReplaceAll(tb.Name(), "/", "."), Policy: "p", Limit: limit, Subject: subject}
}

func decide(tb testing.TB, l *limiter.Limiter, limits ...limiter.Limit) limiter.Decision {
	tb.Helper()
	d, err := l.Decide(context.Background(), limiter.Request{Limits: limits})
	if err != nil {
		tb.Fatalf("Decide: %v", err)
	}
	return d
}

// epoch is a window-aligned instant the simulated timelines start from.
var epoch = time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
