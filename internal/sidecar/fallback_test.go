package sidecar_test

import (
	"errors"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/quotaops/quota-operator/api/v1alpha1"
	"github.com/quotaops/quota-operator/internal/sidecar"
	"github.com/quotaops/quota-operator/internal/store"
	"github.com/quotaops/quota-operator/internal/testutil/localtest"
	"github.com/quotaops/quota-operator/internal/testutil/redistest"
	"github.com/quotaops/quota-operator/internal/testutil/sidecartest"
)

// A sidecar that cannot reach Redis at its start enforces the manager's
// copy of the config (the ConfigMap it mounts, --fallback-policy-file):
// it turns Ready within 15 s, an Open policy passes and a Closed one
// answers 503 with Retry-After. When Redis can be reached it reads the
// config there and counts exactly. (Before, it stayed unready until Redis
// came back, so no new pod took traffic during an outage.)
func TestFallbackConfigWhileStoreIsDown(t *testing.T) {
	redistest.SkipIfMissing(t, startError)
	t.Run("refused", func(t *testing.T) { expectFallback(t, localtest.FreeAddr(t), func() {}) })
	// A store that takes connections and never answers (a hung Redis, or
	// a network that drops packets): before, the first subscription waited
	// out every dial and read timeout before the config was read at all.
	t.Run("silent", func(t *testing.T) {
		addr, stop := silentListener(t)
		expectFallback(t, addr, stop)
	})
}

// silentListener accepts connections and says nothing until stop, which
// closes it and them: then its address is free to forward from.
func silentListener(t *testing.T) (addr string, stop func()) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			_ = ln.Close()
			<-done
			mu.Lock()
			defer mu.Unlock()
			for _, c := range conns {
				_ = c.Close()
			}
		})
	}
	t.Cleanup(stop)
	return ln.Addr().String(), stop
}

// expectFallback runs a sidecar whose store, at storeAddr, cannot be read
// at its start, then (after unblock frees the address) forwards storeAddr
// to Redis.
func expectFallback(t *testing.T, storeAddr string, unblock func()) {
	ns := namespace(t)
	policies := []*v1alpha1.RateLimitPolicy{pathPolicy(ns, "open", v1alpha1.FailOpen), pathPolicy(ns, "closed", v1alpha1.FailClosed)}
	dir := t.TempDir()
	for _, p := range policies {
		writeCompiled(t, dir, p)
		sidecartest.Publish(t, redisStore(t), p) // what the manager wrote to Redis
	}

	started := time.Now()
	proxy, health := startWithHealth(t, "redis://"+storeAddr+"/0", sidecar.Options{Namespace: ns, FallbackPolicyFile: dir})
	localtest.WaitOK(t, 15*time.Second, health+"/readyz")
	t.Logf("Ready %v after its start, Redis unreachable", time.Since(started).Round(time.Millisecond))
	if got := send(t, proxy+"/open/x", ""); got.StatusCode != http.StatusOK {
		t.Fatalf("an Open policy while Redis is unreachable: %s", got.Status)
	}
	if got := send(t, proxy+"/closed/x", ""); got.StatusCode != http.StatusServiceUnavailable || got.Header.Get("Retry-After") == "" {
		t.Fatalf("a Closed policy while Redis is unreachable: %s %v; want 503 with Retry-After", got.Status, got.Header)
	}

	unblock()
	forward(t, storeAddr, redisS.Addr)
	var first answer
	localtest.WaitFor(t, 30*time.Second, "a decision from Redis", func() error {
		if first = send(t, proxy+"/closed/x", ""); first.StatusCode == http.StatusServiceUnavailable {
			return errors.New("still failing closed")
		}
		return nil
	})
	second, third := send(t, proxy+"/closed/x", ""), send(t, proxy+"/closed/x", "")
	if first.Header.Get("X-RateLimit-Remaining") != "1" || second.Header.Get("X-RateLimit-Remaining") != "0" || third.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("once Redis is back: %s (remaining %q), %s (remaining %q), %s; want 1, 0, then 429",
			first.Status, first.Header.Get("X-RateLimit-Remaining"), second.Status, second.Header.Get("X-RateLimit-Remaining"), third.Status)
	}
}

// pathPolicy limits /<name>/ to 2 an hour, one counter, failing as fp.
func pathPolicy(ns, name string, fp v1alpha1.FailurePolicy) *v1alpha1.RateLimitPolicy {
	return &v1alpha1.RateLimitPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: v1alpha1.RateLimitPolicySpec{FailurePolicy: fp, Limits: []v1alpha1.Limit{{
			Name: "all", Match: &v1alpha1.Match{PathPrefix: "/" + name + "/"},
			Rates: []v1alpha1.Rate{{Limit: 2, Window: "1h"}},
		}}},
	}
}

// writeCompiled writes p compiled into dir as the manager's ConfigMap
// holds it: Kind.name.json.
func writeCompiled(t *testing.T, dir string, p *v1alpha1.RateLimitPolicy) {
	t.Helper()
	id, raw := sidecartest.Compiled(t, p)
	if err := os.WriteFile(filepath.Join(dir, strings.Replace(id, "/", ".", 1)+".json"), raw, 0o600); err != nil {
		t.Fatal(err)
	}
}

func redisStore(t *testing.T) *store.Redis {
	t.Helper()
	s, err := store.Open(redisS.URL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s.(*store.Redis)
}
