package store_test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/quotaops/quota-operator/internal/store"
	"github.com/quotaops/quota-operator/internal/store/storetest"
	"github.com/quotaops/quota-operator/internal/testutil/redistest"
)

// One redis-server, one 3-master Cluster and one Sentinel group serve the
// whole package.
var (
	single     *redistest.Server
	cluster    *redistest.Cluster
	sentinel   *redistest.Sentinel
	startError error
)

func TestMain(m *testing.M) {
	code := func() int {
		defer stopServers()
		if startError = startServers(); startError != nil {
			fmt.Fprintf(os.Stderr, "\n*** REDIS TESTS CANNOT RUN: %v ***\n\n", startError)
		}
		return m.Run()
	}()
	os.Exit(code)
}

func startServers() error {
	var err error
	if single, err = redistest.Start(); err != nil {
		return err
	}
	if cluster, err = redistest.StartCluster(3); err != nil {
		return err
	}
	sentinel, err = redistest.StartSentinel("quota-master")
	return err
}

func stopServers() {
	if single != nil {
		_ = single.Close()
	}
	if cluster != nil {
		_ = cluster.Close()
	}
	if sentinel != nil {
		_ = sentinel.Close()
	}
}

type backend struct {
	name  string
	store store.Store
}

// backends opens each deployment through its store URL, the same path the
// manager and sidecar take from --store.
func backends(tb testing.TB) []backend {
	tb.Helper()
	redistest.SkipIfMissing(tb, startError)
	if startError != nil {
		tb.Fatalf("redis test servers: %v", startError)
	}
	urls := []backend{
		{name: single.URL},
		{name: "redis+cluster://" + strings.Join(cluster.Addrs(), ",")},
		{name: "redis+sentinel://" + sentinel.Sentinel.Addr + "/" + sentinel.MasterName},
	}
	for i := range urls {
		s, err := store.Open(urls[i].name)
		if err != nil {
			tb.Fatal(err)
		}
		urls[i].store = s
		tb.Cleanup(func() { _ = s.Close() })
	}
	return urls
}

func TestRedisConformance(t *testing.T) {
	for _, be := range backends(t) {
		t.Run(strings.SplitN(be.name, ":", 2)[0], func(t *testing.T) { storetest.Run(t, be.store) })
	}
}

// BenchmarkRedis also measures a bare PING on the same client: the round-trip
// baseline that each operation's ns/op is to be read against.
func BenchmarkRedis(b *testing.B) {
	for _, be := range backends(b) {
		b.Run(strings.SplitN(be.name, ":", 2)[0], func(b *testing.B) {
			b.Run("baseline-PING", func(b *testing.B) {
				c := be.store.(*store.Redis).Client()
				for b.Loop() {
					if err := c.Ping(context.Background()).Err(); err != nil {
						b.Fatal(err)
					}
				}
			})
			storetest.Bench(b, be.store)
		})
	}
}
