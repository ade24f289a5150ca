package sidecar_test

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"

	"github.com/quotaops/quota-operator/internal/sidecar"
	"github.com/quotaops/quota-operator/internal/store"
	"github.com/quotaops/quota-operator/internal/testutil/localtest"
	"github.com/quotaops/quota-operator/internal/testutil/redistest"
)

// The health port says Ready only once a config is loaded. Until then the
// store is unreachable, and the proxy lets requests through unless the pod
// fails closed, when it answers 503. Once Redis can be reached, the sidecar
// loads its config within a second or two and turns Ready.
func TestHealthPortReadyOnlyWithConfig(t *testing.T) {
	redistest.SkipIfMissing(t, startError)
	tests := []struct {
		failurePolicy string
		before        int // the proxy's answer before config
	}{
		{"", http.StatusOK},
		{sidecar.FailOpen, http.StatusOK},
		{sidecar.FailClosed, http.StatusServiceUnavailable},
	}
	for _, tt := range tests {
		t.Run("failure policy "+tt.failurePolicy, func(t *testing.T) {
			storeAddr := localtest.FreeAddr(t) // nothing listens there yet
			proxy, health := startWithHealth(t, "redis://"+storeAddr+"/0", sidecar.Options{Namespace: namespace(t), FailurePolicy: tt.failurePolicy})
			expectStatus(t, health+"/healthz", http.StatusOK, "")
			expectStatus(t, health+"/readyz", http.StatusServiceUnavailable, "config not loaded yet")
			expectStatus(t, health+"/metrics", http.StatusOK, "quota_config_revision")
			if got := get(t, proxy, "192.0.2.1"); got.StatusCode != tt.before {
				t.Fatalf("proxy before config: %s, want %d", got.Status, tt.before)
			} else if tt.before == http.StatusServiceUnavailable && got.Header.Get("Retry-After") != "1" {
				t.Fatalf("503 without Retry-After: %v", got.Header)
			}
			forward(t, storeAddr, redisS.Addr)
			localtest.WaitOK(t, 5*time.Second, health+"/readyz")
			if got := get(t, proxy, "192.0.2.1"); got.StatusCode != http.StatusOK {
				t.Fatalf("proxy once ready: %s", got.Status)
			}
		})
	}
}

// startWithHealth runs a sidecar with o on storeURL with a health listener
// and returns the proxy's and the health port's base URLs.
func startWithHealth(t *testing.T, storeURL string, o sidecar.Options) (string, string) {
	t.Helper()
	proxy, _, health := startListening(t, storeURL, o)
	return proxy, health
}

// startListening is startWithHealth that also returns the admin URL.
func startListening(t *testing.T, storeURL string, o sidecar.Options) (string, string, string) {
	t.Helper()
	o.Upstream, o.Timeout, o.Resync, o.Log = upstream(t), 50*time.Millisecond, 10*time.Second, logr.Discard()
	s, err := store.Open(storeURL)
	if err != nil {
		t.Fatal(err)
	}
	lns := make([]net.Listener, 3)
	for i := range lns {
		if lns[i], err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- sidecar.Serve(ctx, o, s, sidecar.Listeners{Proxy: lns[0], Admin: lns[1], Health: lns[2]})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("sidecar: %v", err)
		}
		_ = s.Close()
	})
	return "http://" + lns[0].Addr().String(), "http://" + lns[1].Addr().String(), "http://" + lns[2].Addr().String()
}

// forward starts passing connections to from on to to, as if the store
// had just come up at from.
func forward(t *testing.T, from, to string) {
	t.Helper()
	ln, err := net.Listen("tcp", from)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			in, err := ln.Accept()
			if err != nil {
				return
			}
			out, err := net.Dial("tcp", to)
			if err != nil {
				_ = in.Close()
				continue
			}
			go func() { _, _ = io.Copy(out, in); _ = out.Close() }()
			go func() { _, _ = io.Copy(in, out); _ = in.Close() }()
		}
	}()
}

func expectStatus(t *testing.T, url string, status int, body string) {
	t.Helper()
	if got, b := localtest.Get(t, url); got != status || !strings.Contains(b, body) {
		t.Fatalf("%s: %d %q, want %d and %q", url, got, b, status, body)
	}
}

const perIPFile = `apiVersion: policy.quotaops.dev/v1alpha1
kind: RateLimitPolicy
metadata: {name: local}
spec:
  selector: {matchLabels: {app: shop}}
  limits:
  - name: per-ip
    key: [{source: ClientIP}]
    rates: [{limit: 10, window: 1h}]
`

// A full memory store refuses new counters; those requests get the pod's
// failure policy, counted clients go on being counted exactly, the breaker
// stays closed, and the health port's metrics show it.
func TestFullMemoryStore(t *testing.T) {
	for _, fp := range []string{sidecar.FailOpen, sidecar.FailClosed} {
		t.Run(fp, func(t *testing.T) {
			dir := t.TempDir()
			policy, labels := filepath.Join(dir, "policy.yaml"), filepath.Join(dir, "labels")
			for path, text := range map[string]string{policy: perIPFile, labels: "app=\"shop\"\n"} {
				if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			proxy, health := startWithHealth(t, "memory://?max_entries=2", sidecar.Options{Namespace: "local", PolicyFile: policy,
				LabelsFile: labels, FailurePolicy: fp, Trusted: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}})
			localtest.WaitOK(t, 5*time.Second, health+"/readyz")
			for _, ip := range []string{"192.0.2.1", "192.0.2.2"} {
				if got := get(t, proxy, ip); got.StatusCode != http.StatusOK || got.Header.Get("X-RateLimit-Remaining") != "9" {
					t.Fatalf("%s: %s %v", ip, got.Status, got.Header)
				}
			}
			want := map[string]int{sidecar.FailOpen: http.StatusOK, sidecar.FailClosed: http.StatusServiceUnavailable}[fp]
			for i := range 20 {
				if got := get(t, proxy, "192.0.2."+strconv.Itoa(10+i)); got.StatusCode != want || got.Header.Get("X-RateLimit-Limit") != "" {
					t.Fatalf("a new client of a full store: %s %v, want %d and no limit headers", got.Status, got.Header, want)
				}
			}
			if got := get(t, proxy, "192.0.2.1"); got.StatusCode != http.StatusOK || got.Header.Get("X-RateLimit-Remaining") != "8" {
				t.Fatalf("a counted client: %s %v", got.Status, got.Header)
			}
			for _, line := range []string{`quota_store_memory_entries{namespace="local"} 2`, `quota_store_memory_max_entries{namespace="local"} 2`,
				`quota_store_memory_refused_total{namespace="local"} 20`, `quota_store_breaker_open{namespace="local"} 0`} {
				line += "\n"
				expectStatus(t, health+"/metrics", http.StatusOK, line)
			}
		})
	}
}

// A keep-alive connection left idle is closed by the sidecar, on the proxy
// and on the health port, so idle clients cannot pile up file descriptors.
// Before, only the request headers had a deadline and such a connection
// stayed open for good.
func TestIdleConnectionsAreClosed(t *testing.T) {
	redistest.SkipIfMissing(t, startError)
	proxy, health := startWithHealth(t, redisS.URL, sidecar.Options{Namespace: namespace(t), IdleTimeout: 200 * time.Millisecond})
	localtest.WaitOK(t, 5*time.Second, health+"/readyz")
	for _, base := range []string{proxy, health} {
		conn, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.WriteString(conn, "GET /healthz HTTP/1.1\r\nHost: sidecar\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		_ = conn.SetReadDeadline(time.Now().Add(3 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		// The answer came; now the connection idles until the sidecar
		// closes it: the read ends with EOF, not with the deadline.
		if _, err := conn.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
			t.Fatalf("%s: an idle connection was not closed: %v", base, err)
		}
		_ = conn.Close()
	}
}

// A request body that stops coming is cut after BodyIdleTimeout: the
// client gets an answer (502) instead of holding the connection and the
// upstream request open. Before, it stayed open as long as the client
// wished. A body that keeps coming, however slowly, is let through whole.
func TestStalledRequestBodyIsCut(t *testing.T) {
	redistest.SkipIfMissing(t, startError)
	proxy, health := startWithHealth(t, redisS.URL, sidecar.Options{Namespace: namespace(t), BodyIdleTimeout: 300 * time.Millisecond})
	localtest.WaitOK(t, 5*time.Second, health+"/readyz")
	send := func(body []string, pause time.Duration) (*http.Response, error) {
		conn, err := net.Dial("tcp", strings.TrimPrefix(proxy, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = conn.Close() })
		if _, err := io.WriteString(conn, "POST /upload HTTP/1.1\r\nHost: sidecar\r\nContent-Length: 10\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		for _, part := range body {
			time.Sleep(pause)
			if _, err := io.WriteString(conn, part); err != nil {
				t.Fatal(err)
			}
		}
		_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		return http.ReadResponse(bufio.NewReader(conn), nil)
	}
	slow, err := send([]string{"01", "23", "45", "67", "89"}, 200*time.Millisecond)
	if err != nil || slow.StatusCode != http.StatusOK || slow.Header.Get("Seen-Body-Bytes") != "10" {
		t.Fatalf("a slow but steady body: %v, %v", slow, err)
	}
	_ = slow.Body.Close()
	start := time.Now()
	stalled, err := send([]string{"012"}, 0)
	if err != nil || stalled.StatusCode != http.StatusBadGateway {
		t.Fatalf("a stalled body: %v, %v after %v; want 502", stalled, err, time.Since(start))
	}
	_ = stalled.Body.Close()
	t.Logf("a stalled body was cut after %v", time.Since(start).Round(10*time.Millisecond))
}
