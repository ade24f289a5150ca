package store_test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

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
			redistest.Report(startError)
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
	if cluster, err = redistest.StartCluster(3, 0); err != nil {
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
	url   string
	store store.Store
}

// label names a backend by its URL scheme, which is all that differs.
func (b backend) label() string { return strings.SplitN(b.url, ":", 2)[0] }

// backends opens each deployment through its store URL, the same path the
// manager and sidecar take from --store.
func backends(tb testing.TB) []backend {
	tb.Helper()
	redistest.SkipIfMissing(tb, startError)
	if startError != nil {
		tb.Fatalf("redis test servers: %v", startError)
	}
	all := []backend{
		{url: single.URL},
		{url: "redis+cluster://" + strings.Join(cluster.Addrs(), ",")},
		{url: "redis+sentinel://" + sentinel.Sentinel.Addr + "/" + sentinel.MasterName},
	}
	for i := range all {
		s, err := store.Open(all[i].url)
		if err != nil {
			tb.Fatal(err)
		}
		all[i].store = s
		tb.Cleanup(func() { _ = s.Close() })
	}
	return all
}

func TestRedisConformance(t *testing.T) {
	for _, be := range backends(t) {
		t.Run(be.label(), func(t *testing.T) { storetest.Run(t, be.store) })
	}
}

func TestRedisConfigs(t *testing.T) {
	for _, be := range backends(t) {
		t.Run(be.label(), func(t *testing.T) { storetest.RunConfigs(t, be.store.(*store.Redis)) })
	}
}

// BenchmarkRedis also measures a bare PING on the same client: the round-trip
// baseline that each operation's ns/op is to be read against.
func BenchmarkRedis(b *testing.B) {
	for _, be := range backends(b) {
		b.Run(be.label(), func(b *testing.B) {
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

// MemoryUse reports the master nearest its maxmemory, in a Cluster the one
// node that has one.
func TestMemoryUse(t *testing.T) {
	ctx := context.Background()
	for _, tt := range []struct {
		name, url, node string
	}{
		{"single", single.URL, single.Addr},
		{"cluster", "redis+cluster://" + strings.Join(cluster.Addrs(), ","), cluster.Addrs()[1]},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := redis.NewClient(&redis.Options{Addr: tt.node})
			defer func() { _ = c.Close() }()
			if err := c.ConfigSet(ctx, "maxmemory", "1gb").Err(); err != nil {
				t.Fatal(err)
			}
			defer func() { _ = c.ConfigSet(ctx, "maxmemory", "0").Err() }()
			s, err := store.Open(tt.url)
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = s.Close() }()
			u, err := s.(*store.Redis).MemoryUse(ctx)
			if err != nil || u.Max != 1<<30 || u.Used <= 0 || tt.name == "cluster" && u.Node != tt.node {
				t.Fatalf("%+v, %v; want %s with a maxmemory of 1 GiB", u, err, tt.node)
			}
		})
	}
}

// A config read (MULTI/EXEC), a revision check and a plain command, one
// after another, take one connection: go-redis's separate pipeline pool
// kept a second one open in every idle sidecar.
func TestSequentialCallsShareOneConnection(t *testing.T) {
	srv := redistest.StartOrSkip(t)
	s, err := store.Open(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = s.Close() }()
	r, ctx := s.(*store.Redis), context.Background()
	if _, _, err := r.Configs(ctx, "one"); err != nil {
		t.Fatal(err)
	}
	if _, err := r.ConfigRevision(ctx, "one"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := r.Configs(ctx, "one"); err != nil {
		t.Fatal(err)
	}
	if err := r.Client().Ping(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	list, err := srv.Client().ClientList(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	// This store's connections, and the one that asks.
	if n := strings.Count(strings.TrimSpace(list), "\n") + 1; n != 2 {
		t.Fatalf("%d connections, want this store's one and the asker's:\n%s", n, list)
	}
}

// A subscription renewed on a new connection, whose announcements of the
// meantime are lost, announces 0: anything may have changed.
func TestWatchConfigsAnnouncesARenewedSubscription(t *testing.T) {
	s, err := store.Open(single.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = s.Close() }()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	changes, err := s.(*store.Redis).WatchConfigs(ctx, fmt.Sprintf("renew-%d", time.Now().UnixNano()))
	if err != nil {
		t.Fatal(err)
	}
	if err := single.Client().ClientKillByFilter(ctx, "TYPE", "pubsub").Err(); err != nil {
		t.Fatal(err)
	}
	select {
	case rev := <-changes:
		if rev != 0 {
			t.Fatalf("announced %d after the subscription's connection was killed; want 0", rev)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("nothing announced after the subscription's connection was killed")
	}
}

// BumpConfig announces a new revision with the same documents; a namespace
// without config gets none, as revision 1 with no documents would tell its
// sidecars that every policy is gone.
func TestBumpConfig(t *testing.T) {
	for _, be := range backends(t) {
		t.Run(be.label(), func(t *testing.T) {
			ctx := context.Background()
			s := be.store.(*store.Redis)
			ns := fmt.Sprintf("bump-%d", time.Now().UnixNano())
			if rev, err := s.BumpConfig(ctx, ns); rev != 0 || err != nil {
				t.Fatalf("no config: %d, %v; want 0", rev, err)
			}
			if rev, _, _ := s.Configs(ctx, ns); rev != 0 {
				t.Fatalf("revision %d after bumping no config; want 0", rev)
			}
			changes, err := s.WatchConfigs(ctx, ns)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := storetest.PutConfig(ctx, s, ns, "UsageQuota/q", []byte(`{}`)); err != nil {
				t.Fatal(err)
			}
			<-changes
			if rev, err := s.BumpConfig(ctx, ns); rev != 2 || err != nil {
				t.Fatalf("bump: %d, %v; want 2", rev, err)
			}
			select {
			case rev := <-changes:
				if rev != 2 {
					t.Fatalf("announced %d; want 2", rev)
				}
			case <-time.After(2 * time.Second):
				t.Fatal("revision 2 not announced")
			}
			if rev, docs, err := s.Configs(ctx, ns); rev != 2 || len(docs) != 1 || err != nil {
				t.Fatalf("Configs: %d %q %v; want revision 2 and the one document", rev, docs, err)
			}
		})
	}
}
