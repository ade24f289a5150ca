package store_test

import (
	"fmt"
	"os"
	"testing"

	"github.com/quotaops/quota-operator/internal/store"
	"github.com/quotaops/quota-operator/internal/store/storetest"
	"github.com/quotaops/quota-operator/internal/testutil/redistest"
)

// One redis-server and one 3-master Cluster serve the whole package.
var (
	single     *redistest.Server
	cluster    *redistest.Cluster
	startError error
)

func TestMain(m *testing.M) {
	single, startError = redistest.Start()
	if startError == nil {
		cluster, startError = redistest.StartCluster(3)
	}
	if startError != nil {
		fmt.Fprintf(os.Stderr, "\n*** REDIS TESTS CANNOT RUN: %v ***\n\n", startError)
	}
	code := m.Run()
	if single != nil {
		_ = single.Close()
	}
	if cluster != nil {
		_ = cluster.Close()
	}
	os.Exit(code)
}

type backend struct {
	name  string
	store *store.Redis
}

func backends(tb testing.TB) []backend {
	tb.Helper()
	redistest.SkipIfMissing(tb, startError)
	if startError != nil {
		tb.Fatalf("redis test servers: %v", startError)
	}
	all := []backend{
		{"single", store.NewRedis(single.Client())},
		{"cluster", store.NewRedis(cluster.Client())},
	}
	tb.Cleanup(func() {
		for _, b := range all {
			_ = b.store.Close()
		}
	})
	return all
}

func TestRedisConformance(t *testing.T) {
	for _, be := range backends(t) {
		t.Run(be.name, func(t *testing.T) { storetest.Run(t, be.store) })
	}
}

func BenchmarkRedis(b *testing.B) {
	for _, be := range backends(b) {
		b.Run(be.name, func(b *testing.B) { storetest.Bench(b, be.store) })
	}
}
