package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"testing"
	"time"

	"github.com/quotaops/quota-operator/internal/store"
)

// ConfigStore is what both backends offer the operator and the sidecars
// for enforcement config.
type ConfigStore interface {
	PutConfig(ctx context.Context, namespace, id string, doc []byte) (int64, error)
	CreateConfigs(ctx context.Context, namespace string, docs map[string][]byte) (int64, error)
	DeleteConfig(ctx context.Context, namespace, id string) (int64, error)
	Configs(ctx context.Context, namespace string) (int64, map[string][]byte, error)
	ConfigRevision(ctx context.Context, namespace string) (int64, error)
	WatchConfigs(ctx context.Context, namespace string) (<-chan int64, error)
}

// RunConfigs checks config publication: revisions, idempotent writes,
// deletes, namespace isolation and change announcements.
func RunConfigs(t *testing.T, s ConfigStore) {
	ns := fmt.Sprintf("cfg-%d", time.Now().UnixNano())
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	changes, err := s.WatchConfigs(wctx, ns)
	if err != nil {
		t.Fatal(err)
	}
	step := func(what string, rev int64, err error, want int64, announced bool) {
		t.Helper()
		expectRevision(t, changes, what, rev, err, want, announced)
	}
	// A namespace without config is written whole: one document alone
	// would be a revision holding part of it.
	rev, err := s.PutConfig(ctx, ns, "RateLimitPolicy/a", []byte(`{"a":1}`))
	if !errors.Is(err, store.ErrNoConfig) || rev != 0 {
		t.Fatalf("first put: %d, %v; want ErrNoConfig", rev, err)
	}
	rev, err = s.DeleteConfig(ctx, ns, "RateLimitPolicy/a")
	step("delete where there is no config", rev, err, 0, false)
	rev, err = s.CreateConfigs(ctx, ns, nil)
	step("create with no documents", rev, err, 0, false)
	rev, err = s.CreateConfigs(ctx, ns, map[string][]byte{"RateLimitPolicy/a": []byte(`{"a":0}`), "UsageQuota/c": []byte(`{"c":3}`)})
	step("create", rev, err, 1, true)
	if rev, err = s.CreateConfigs(ctx, ns, map[string][]byte{"RateLimitPolicy/z": []byte(`{}`)}); !errors.Is(err, store.ErrConfigExists) || rev != 0 {
		t.Fatalf("create again: %d, %v; want ErrConfigExists", rev, err)
	}
	rev, err = s.PutConfig(ctx, ns, "RateLimitPolicy/a", []byte(`{"a":1}`))
	step("put", rev, err, 2, true)
	rev, err = s.PutConfig(ctx, ns, "RateLimitPolicy/a", []byte(`{"a":1}`))
	step("same document again", rev, err, 2, false)
	rev, err = s.PutConfig(ctx, ns, "UsageQuota/b", []byte(`{"b":2}`))
	step("second document", rev, err, 3, true)
	rev, err = s.CreateConfigs(ctx, ns+"-other", map[string][]byte{"RateLimitPolicy/x": []byte(`{}`)})
	step("another namespace", rev, err, 1, false)
	rev, err = s.DeleteConfig(ctx, ns, "RateLimitPolicy/a")
	step("delete", rev, err, 4, true)
	rev, err = s.DeleteConfig(ctx, ns, "RateLimitPolicy/a")
	step("delete again", rev, err, 4, false)

	rev, docs, err := s.Configs(ctx, ns)
	want := map[string][]byte{"UsageQuota/b": []byte(`{"b":2}`), "UsageQuota/c": []byte(`{"c":3}`)}
	if err != nil || rev != 4 || !maps.EqualFunc(docs, want, bytes.Equal) {
		t.Fatalf("Configs: %d %q %v; want revision 4 with UsageQuota/b and /c", rev, docs, err)
	}
	if rev, docs, err := s.Configs(ctx, ns+"-empty"); err != nil || rev != 0 || len(docs) != 0 {
		t.Fatalf("empty namespace: %d %q %v", rev, docs, err)
	}
	expectConfigRevisions(t, s, map[string]int64{ns: 4, ns + "-empty": 0})
	cancel()
	select {
	case _, open := <-changes:
		if open {
			t.Fatal("announcement after the watch ended")
		}
	case <-time.After(2 * time.Second):
		t.Fatal("watch not closed after its context ended")
	}
}

// expectConfigRevisions checks ConfigRevision of each namespace.
func expectConfigRevisions(t *testing.T, s ConfigStore, want map[string]int64) {
	t.Helper()
	for ns, w := range want {
		if rev, err := s.ConfigRevision(ctx, ns); rev != w || err != nil {
			t.Fatalf("ConfigRevision(%s): %d, %v; want %d", ns, rev, err, w)
		}
	}
}

// expectRevision checks a change's revision and whether it was announced.
func expectRevision(t *testing.T, changes <-chan int64, what string, rev int64, err error, want int64, announced bool) {
	t.Helper()
	if err != nil || rev != want {
		t.Fatalf("%s: revision %d, %v; want %d", what, rev, err, want)
	}
	select {
	case got := <-changes:
		if !announced || got != want {
			t.Fatalf("%s: announced %d; want %d announced: %v", what, got, want, announced)
		}
	case <-time.After(300 * time.Millisecond):
		if announced {
			t.Fatalf("%s: revision %d not announced", what, want)
		}
	}
}

// ConfigWriter is the store as the operator writes config to it.
type ConfigWriter interface {
	PutConfig(ctx context.Context, namespace, id string, doc []byte) (int64, error)
	CreateConfigs(ctx context.Context, namespace string, docs map[string][]byte) (int64, error)
}

// PutConfig writes one document as tests publish it: into the
// namespace's config, or as its whole first revision when it has none.
func PutConfig(ctx context.Context, s ConfigWriter, namespace, id string, doc []byte) (int64, error) {
	rev, err := s.PutConfig(ctx, namespace, id, doc)
	if errors.Is(err, store.ErrNoConfig) {
		if rev, err = s.CreateConfigs(ctx, namespace, map[string][]byte{id: doc}); errors.Is(err, store.ErrConfigExists) {
			return s.PutConfig(ctx, namespace, id, doc) // another writer came first
		}
	}
	return rev, err
}
