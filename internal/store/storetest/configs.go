package storetest

import (
	"context"
	"fmt"
	"maps"
	"testing"
	"time"
)

// ConfigStore is what both backends offer the operator and the sidecars
// for enforcement config.
type ConfigStore interface {
	PutConfig(ctx context.Context, namespace, id string, doc []byte) (int64, error)
	DeleteConfig(ctx context.Context, namespace, id string) (int64, error)
	Configs(ctx context.Context, namespace string) (int64, map[string][]byte, error)
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
	rev, err := s.PutConfig(ctx, ns, "RateLimitPolicy/a", []byte(`{"a":1}`))
	step("first put", rev, err, 1, true)
	rev, err = s.PutConfig(ctx, ns, "RateLimitPolicy/a", []byte(`{"a":1}`))
	step("same document again", rev, err, 1, false)
	rev, err = s.PutConfig(ctx, ns, "UsageQuota/b", []byte(`{"b":2}`))
	step("second document", rev, err, 2, true)
	rev, err = s.PutConfig(ctx, ns+"-other", "RateLimitPolicy/x", []byte(`{}`))
	step("another namespace", rev, err, 1, false)
	rev, err = s.DeleteConfig(ctx, ns, "RateLimitPolicy/a")
	step("delete", rev, err, 3, true)
	rev, err = s.DeleteConfig(ctx, ns, "RateLimitPolicy/a")
	step("delete again", rev, err, 3, false)

	rev, docs, err := s.Configs(ctx, ns)
	if err != nil || rev != 3 || !maps.EqualFunc(docs, map[string][]byte{"UsageQuota/b": []byte(`{"b":2}`)}, func(a, b []byte) bool { return string(a) == string(b) }) {
		t.Fatalf("Configs: %d %q %v; want revision 3 with only UsageQuota/b", rev, docs, err)
	}
	if rev, docs, err := s.Configs(ctx, ns+"-empty"); err != nil || rev != 0 || len(docs) != 0 {
		t.Fatalf("empty namespace: %d %q %v", rev, docs, err)
	}
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
