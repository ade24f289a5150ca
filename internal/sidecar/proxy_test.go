package sidecar_test

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"

	"github.com/quotaops/quota-operator/internal/sidecar"
	"github.com/quotaops/quota-operator/internal/store"
	"github.com/quotaops/quota-operator/internal/testutil/sidecartest"
)

// fileSidecar runs a sidecar with --policy-file on the memory store: no
// operator, no Redis. labels is the pod's downward API labels file.
func fileSidecar(t *testing.T, policyFile, labels string, up *url.URL) (proxy string, stop func()) {
	t.Helper()
	proxy, _, stop = sidecartest.Run(t, sidecar.Options{Upstream: up, Namespace: "local", PolicyFile: policyFile, LabelsFile: labels,
		Timeout: 50 * time.Millisecond, Resync: time.Second, DrainTimeout: 5 * time.Second, Log: logr.Discard()}, store.NewMemory())
	return proxy, stop
}

const filePolicy = `apiVersion: policy.quotaops.dev/v1alpha1
kind: RateLimitPolicy
metadata: {name: local}
spec:
  selector: {matchLabels: {app: LABEL}}
  limits:
  - name: all
    rates: [{limit: LIMIT, window: 1h}]
`

func writePolicy(t *testing.T, path, label, limit string) {
	t.Helper()
	text := strings.NewReplacer("LABEL", label, "LIMIT", limit).Replace(filePolicy)
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil { // atomic, as a ConfigMap update is
		t.Fatal(err)
	}
}

// With --policy-file, the sidecar enforces the file's objects whose
// selector matches the pod's labels, and follows edits to the file.
func TestPolicyFileAndSelector(t *testing.T) {
	dir := t.TempDir()
	policy, labels := filepath.Join(dir, "policy.yaml"), filepath.Join(dir, "labels")
	if err := os.WriteFile(labels, []byte("app=\"shop\"\ntier=\"web\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	writePolicy(t, policy, "other-app", "2")
	proxy, _ := fileSidecar(t, policy, labels, upstream(t))
	waitFor(t, "the file's config", func() bool { return get(t, proxy, "").StatusCode == http.StatusOK })
	for range 5 { // the selector does not match this pod: no limit
		if resp := get(t, proxy, ""); resp.StatusCode != http.StatusOK || resp.Header.Get("X-RateLimit-Limit") != "" {
			t.Fatalf("a policy for other pods applied: %s %v", resp.Status, resp.Header)
		}
	}
	writePolicy(t, policy, "shop", "3")
	waitFor(t, "the edited file", func() bool { return get(t, proxy, "").Header.Get("X-RateLimit-Limit") == "3" })
	for get(t, proxy, "").StatusCode == http.StatusOK {
	}
	if resp := get(t, proxy, ""); resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("after the limit: %s", resp.Status)
	}
	// A broken edit is refused; the last valid config stays.
	if err := os.WriteFile(policy, []byte("kind: RateLimitPolicy\nspec: [not, a, spec]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1500 * time.Millisecond)
	if resp := get(t, proxy, ""); resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("X-RateLimit-Limit") != "3" {
		t.Fatalf("after a broken edit: %s, limit %q", resp.Status, resp.Header.Get("X-RateLimit-Limit"))
	}
}

// A policy file mounted from a ConfigMap is a symbolic link into a folder
// the kubelet swaps whole on an update (..data); the link itself never
// changes, yet the update is enforced.
func TestPolicyFileFromAConfigMapVolume(t *testing.T) {
	dir := t.TempDir()
	version := func(name, limit string) {
		if err := os.Mkdir(filepath.Join(dir, name), 0o755); err != nil {
			t.Fatal(err)
		}
		writePolicy(t, filepath.Join(dir, name, "policy.yaml"), "shop", limit)
		if err := os.Symlink(name, filepath.Join(dir, "..data_tmp")); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")); err != nil {
			t.Fatal(err)
		}
	}
	version("..2026_11_30_1", "2")
	policy := filepath.Join(dir, "policy.yaml")
	if err := os.Symlink(filepath.Join("..data", "policy.yaml"), policy); err != nil {
		t.Fatal(err)
	}
	proxy, _ := fileSidecar(t, policy, labelsFile(t, "shop"), upstream(t))
	waitFor(t, "the mounted config", func() bool { return get(t, proxy, "").Header.Get("X-RateLimit-Limit") == "2" })
	version("..2026_11_30_2", "5")
	waitFor(t, "the updated ConfigMap", func() bool { return get(t, proxy, "").Header.Get("X-RateLimit-Limit") == "5" })
}

// labelsFile writes a downward API labels file with app=<app>.
func labelsFile(t *testing.T, app string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "labels")
	if err := os.WriteFile(path, []byte("app=\""+app+"\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	for start := time.Now(); time.Since(start) < 5*time.Second; time.Sleep(20 * time.Millisecond) {
		if ok() {
			return
		}
	}
	t.Fatalf("%s: not within 5s", what)
}

// Shutdown lets a request in flight finish.
func TestGracefulDrain(t *testing.T) {
	slow := serveUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		time.Sleep(500 * time.Millisecond)
		_, _ = io.WriteString(w, "finished")
	}))
	policy := filepath.Join(t.TempDir(), "policy.yaml")
	writePolicy(t, policy, "any", "10")
	proxy, stop := fileSidecar(t, policy, labelsFile(t, "any"), slow)
	result := make(chan string, 1)
	go func() {
		resp, err := http.Get(proxy + "/slow")
		if err != nil {
			result <- err.Error()
			return
		}
		defer func() { _ = resp.Body.Close() }()
		body, _ := io.ReadAll(resp.Body)
		result <- resp.Status + " " + string(body)
	}()
	time.Sleep(150 * time.Millisecond) // the request is at the upstream
	stop()
	if got := <-result; got != "200 OK finished" {
		t.Fatalf("request in flight during shutdown: %s", got)
	}
}

func serveUpstream(t *testing.T, h http.Handler) *url.URL {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	protocols.SetUnencryptedHTTP2(true)
	srv.Protocols = &protocols
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	u, _ := url.Parse("http://" + ln.Addr().String())
	return u
}

// WebSocket-style upgrades pass through to the app, and clients may speak
// cleartext HTTP/2.
func TestUpgradeAndH2C(t *testing.T) {
	up := serveUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") != "echo" {
			_, _ = io.WriteString(w, r.Proto)
			return
		}
		w.Header().Set("Connection", "Upgrade")
		w.Header().Set("Upgrade", "echo")
		w.WriteHeader(http.StatusSwitchingProtocols)
		conn, rw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer func() { _ = conn.Close() }()
		line, _ := rw.ReadString('\n')
		_, _ = rw.WriteString("echo: " + line)
		_ = rw.Flush()
	}))
	policy := filepath.Join(t.TempDir(), "policy.yaml")
	writePolicy(t, policy, "any", "10")
	proxy, _ := fileSidecar(t, policy, labelsFile(t, "any"), up)
	waitFor(t, "ready", func() bool { return get(t, proxy, "").Header.Get("X-RateLimit-Limit") == "10" })

	conn, err := net.Dial("tcp", strings.TrimPrefix(proxy, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close() }()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	_, _ = io.WriteString(conn, "GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
	r := bufio.NewReader(conn)
	resp, err := http.ReadResponse(r, nil)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close() // a 101 has no body; the connection stays open
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: %s", resp.Status)
	}
	_, _ = io.WriteString(conn, "hello\n")
	if line, _ := r.ReadString('\n'); line != "echo: hello\n" {
		t.Fatalf("through the upgraded connection: %q", line)
	}

	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	h2c := &http.Client{Transport: &http.Transport{Protocols: &p, TLSClientConfig: &tls.Config{}}}
	hresp, err := h2c.Get(proxy + "/h2")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = hresp.Body.Close() }()
	if hresp.ProtoMajor != 2 || hresp.Header.Get("X-RateLimit-Limit") != "10" {
		t.Fatalf("h2c: %s, limit %q", hresp.Proto, hresp.Header.Get("X-RateLimit-Limit"))
	}
}

// An app that sends rate-limit headers of its own: where the sidecar
// limits the request, the client sees the sidecar's, once each; where it
// does not, the app's pass. Before, the reverse proxy added the app's to
// the sidecar's, and the client saw two of each.
func TestUpstreamRateLimitHeadersAreReplaced(t *testing.T) {
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header()["RateLimit"] = []string{`"app";r=7;t=9`}
		w.Header()["RateLimit-Policy"] = []string{`"app";q=10;w=60`}
		w.Header().Set("X-RateLimit-Limit", "10")
		w.Header().Set("X-RateLimit-Remaining", "7")
		w.Header().Set("X-RateLimit-Reset", "9")
		_, _ = io.WriteString(w, "ok")
	}))
	t.Cleanup(app.Close)
	up, _ := url.Parse(app.URL)
	dir := t.TempDir()
	policy, labels := filepath.Join(dir, "policy.yaml"), filepath.Join(dir, "labels")
	if err := os.WriteFile(labels, []byte("app=\"shop\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	writePolicy(t, policy, "other", "3")
	proxy, _ := fileSidecar(t, policy, labels, up)
	waitFor(t, "the file's config", func() bool { return get(t, proxy, "").StatusCode == http.StatusOK })
	// No limit of the sidecar's applies: the app's headers pass.
	if h := get(t, proxy, "").Header; fmt.Sprint(h.Values("X-RateLimit-Limit"), h.Values("RateLimit")) != `[10] ["app";r=7;t=9]` {
		t.Fatalf("without a sidecar limit: %v", h)
	}
	writePolicy(t, policy, "shop", "3")
	waitFor(t, "the edited file", func() bool { return get(t, proxy, "").Header.Get("X-RateLimit-Limit") != "10" })
	h := get(t, proxy, "").Header // the client's: names canonical
	for name, app := range map[string]string{"Ratelimit": `"app";r=7;t=9`, "Ratelimit-Policy": `"app";q=10;w=60`,
		"X-Ratelimit-Limit": "10", "X-Ratelimit-Remaining": "7", "X-Ratelimit-Reset": "9"} {
		if v := h.Values(name); len(v) != 1 || v[0] == app {
			t.Errorf("with a sidecar limit, %s: %q; want the sidecar's value, once", name, v)
		}
	}
	if v := h.Get("Ratelimit-Policy"); v != `"all";q=3;w=3600` {
		t.Errorf("RateLimit-Policy %q; want the sidecar's", v)
	}
}
