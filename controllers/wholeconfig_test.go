package controllers_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/quotaops/quota-operator/api/v1alpha1"
	"github.com/quotaops/quota-operator/internal/sidecar"
	"github.com/quotaops/quota-operator/internal/store"
	"github.com/quotaops/quota-operator/internal/testutil/sidecartest"
)

// denyingPolicy denies every request to /p<i>/ that lacks X-Key, with no
// store call: whether it is enforced shows whether a sidecar loaded it,
// whatever the counters.
func denyingPolicy(ns string, i int) *v1alpha1.RateLimitPolicy {
	return &v1alpha1.RateLimitPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("p%d", i)},
		Spec: v1alpha1.RateLimitPolicySpec{Limits: []v1alpha1.Limit{{
			Name: "keyed", Match: &v1alpha1.Match{PathPrefix: fmt.Sprintf("/p%d/", i)},
			Key:            []v1alpha1.KeySource{{Source: v1alpha1.SourceHeader, Name: "X-Key"}},
			WhenKeyMissing: v1alpha1.KeyMissingDeny,
			Rates:          []v1alpha1.Rate{{Limit: 1000, Window: "1m"}},
		}}},
	}
}

// After FLUSHALL the manager writes a namespace's config back as one
// revision holding all of it: a sidecar never installs part of it, so no
// request that any of 50 policies denies passes, before, during or after.
// (Written back one object at a time, revision 1 held one policy, and
// requests the other 49 deny passed until the last was back.)
func TestConfigComesBackWhole(t *testing.T) {
	const n = 50
	ns := namespace(t)
	for i := range n {
		if err := k8s.Create(ctx, denyingPolicy(ns, i)); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, 20*time.Second, "all in the store", func() error { return storedCount(ns, n) })

	proxy := startDenyingSidecar(t, ns)
	eventually(t, 10*time.Second, "the sidecar denying all 50", func() error {
		for i := range n {
			if code := get(proxy, i); code != http.StatusTooManyRequests {
				return fmt.Errorf("/p%d/ answered %d", i, code)
			}
		}
		return nil
	})

	partial := watchRevisions(t, ns, n)
	passed := sendUntil(t, proxy, n)
	if err := redisS.Client().FlushAll(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	took := eventually(t, 10*time.Second, "config back after FLUSHALL", func() error { return storedCount(ns, n) })
	t.Logf("config back %v after FLUSHALL", took.Round(10*time.Millisecond))
	time.Sleep(time.Second) // requests go on after it is back
	if got := passed(); len(got) > 0 {
		t.Errorf("%d requests that a policy denies passed, the first: %s", len(got), got[0])
	}
	if got := partial(); len(got) > 0 {
		t.Errorf("announced revisions held part of the namespace's config: %v", got)
	}
}

// startDenyingSidecar runs a sidecar of ns on the suite's Redis, in front
// of an app that answers 200.
func startDenyingSidecar(t *testing.T, ns string) string {
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok") }))
	t.Cleanup(app.Close)
	upstream, _ := url.Parse(app.URL)
	s, err := store.Open(redisS.URL)
	if err != nil {
		t.Fatal(err)
	}
	proxy, _, _ := sidecartest.Run(t, sidecar.Options{Namespace: ns, Upstream: upstream, Timeout: 50 * time.Millisecond,
		Resync: time.Second, Log: logr.Discard()}, s)
	return proxy
}

func get(proxy string, i int) int {
	resp, err := http.Get(fmt.Sprintf("%s/p%d/x", proxy, i))
	if err != nil {
		return 0
	}
	_ = resp.Body.Close()
	return resp.StatusCode
}

// sendUntil asks for every policy's path, round after round, until the
// test ends or the returned function is called, which reports the
// requests that were not denied.
func sendUntil(t *testing.T, proxy string, n int) func() []string {
	var stop atomic.Bool
	var mu sync.Mutex
	var passed []string
	done := make(chan struct{})
	go func() {
		defer close(done)
		for !stop.Load() {
			for i := range n {
				if code := get(proxy, i); code != http.StatusTooManyRequests {
					mu.Lock()
					passed = append(passed, fmt.Sprintf("/p%d/ answered %d", i, code))
					mu.Unlock()
				}
			}
		}
	}()
	finish := func() []string {
		stop.Store(true)
		<-done
		mu.Lock()
		defer mu.Unlock()
		return passed
	}
	t.Cleanup(func() { finish() })
	return finish
}

// watchRevisions reads ns's config at every announced revision and
// reports those that held other than want documents.
func watchRevisions(t *testing.T, ns string, want int) func() []string {
	wctx, cancel := context.WithCancel(ctx)
	changes, err := st.WatchConfigs(wctx, ns)
	if err != nil {
		t.Fatal(err)
	}
	var bad []string
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range changes {
			rev, docs, err := st.Configs(wctx, ns)
			if err == nil && rev > 0 && len(docs) != want {
				bad = append(bad, fmt.Sprintf("revision %d: %d documents", rev, len(docs)))
			}
		}
	}()
	finish := func() []string {
		cancel()
		<-done
		return bad
	}
	t.Cleanup(func() { finish() })
	return finish
}

// With Redis the manager keeps a copy of each namespace's config in its
// ConfigMap, which sidecars enforce when they start while Redis cannot be
// read: the same documents, under Kind.name.json, following every change.
func TestConfigMapCopiesTheStore(t *testing.T) {
	ns := namespace(t)
	for i := range 2 {
		if err := k8s.Create(ctx, rateLimitPolicy(ns, fmt.Sprintf("p%d", i), 10)); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, 10*time.Second, "the ConfigMap equal to the store", func() error { return copyMatches(ns, 2) })
	if err := k8s.Delete(ctx, rateLimitPolicy(ns, "p0", 10)); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "the deleted policy gone from the ConfigMap", func() error { return copyMatches(ns, 1) })
}

// copyMatches: ns's ConfigMap holds exactly the store's n documents.
func copyMatches(ns string, n int) error {
	_, docs, err := st.Configs(ctx, ns)
	if err != nil {
		return err
	}
	var cm corev1.ConfigMap
	if err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: policyConfigMap}, &cm); err != nil {
		return err
	}
	if len(docs) != n || len(cm.Data) != n {
		return fmt.Errorf("%d documents in the store, %d in the ConfigMap; want %d", len(docs), len(cm.Data), n)
	}
	for id, doc := range docs {
		if key := strings.Replace(id, "/", ".", 1) + ".json"; cm.Data[key] != string(doc) {
			return fmt.Errorf("%s: %q in the ConfigMap, %q in the store", key, cm.Data[key], doc)
		}
	}
	return nil
}
