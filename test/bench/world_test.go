package bench

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/quotaops/quota-operator/internal/store"
	"github.com/quotaops/quota-operator/internal/testutil/bintest"
	"github.com/quotaops/quota-operator/internal/testutil/localtest"
)

// proc is one server under load: its gRPC address or proxy URL, its
// process for CPU, and where its metrics are.
type proc struct {
	name    string
	grpc    string
	proxy   string
	pid     int
	metrics string
	// domain, when set, is how the policy is asked for; else its name.
	domain string
}

// world is everything one run measures, started once.
type world struct {
	store    *store.Redis
	upstream string
	sidecar  proc
	// baseline is BASELINE_BIN's sidecar, when set: another build of
	// quota-operator measured beside this one (abReport).
	baseline *proc
	gateway  proc
	floor    proc
	bare     proc
	anchor   *proc
}

func newWorld(b *testing.B) *world {
	s, err := store.Open(redisS.URL)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = s.Close() })
	w := &world{store: s.(*store.Redis), upstream: startUpstream(b)}
	publish(b, w.store, benchPolicy())
	bin, err := bintest.Build()
	if err != nil {
		b.Fatalf("build: %v", err)
	}
	w.sidecar = startSidecar(b, "sidecar", bin, w.upstream)
	if base := os.Getenv("BASELINE_BIN"); base != "" {
		p := startSidecar(b, "baseline", base, w.upstream)
		w.baseline = &p
	}
	w.gateway = startGateway(b)
	addr, pid := startRole(b, "floor", "")
	w.floor = proc{name: "floor", grpc: addr, pid: pid}
	addr, pid = startRole(b, "proxy", w.upstream)
	w.bare = proc{name: "bare proxy", proxy: "http://" + addr, pid: pid}
	if bin := os.Getenv("RATELIMIT_BIN"); bin != "" {
		a := startAnchor(b, bin)
		w.anchor = &a
	}
	return w
}

// startUpstream serves the proxies' upstream in this process: a short
// answer, as an API's health or item lookup.
func startUpstream(b *testing.B) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"id":1,"name":"item"}`))
	}), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(l) }()
	b.Cleanup(func() { _ = srv.Close() })
	return "http://" + l.Addr().String()
}

// startSidecar runs bin's `quota-operator sidecar` as a pod runs it, with
// its defaults, and waits until it enforces the published policy.
func startSidecar(b *testing.B, name, bin, upstream string) proc {
	listen, admin, health, grpcAddr := localtest.FreeAddr(b), localtest.FreeAddr(b), localtest.FreeAddr(b), localtest.FreeAddr(b)
	cmd := exec.Command(bin, "sidecar", "--listen", listen, "--admin-listen", admin, "--health-listen", health,
		"--grpc-listen", grpcAddr, "--upstream", upstream, "--store", redisS.URL, "--namespace", benchNS)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = cmd.Process.Signal(os.Interrupt); _ = cmd.Wait() })
	p := proc{name: name, grpc: grpcAddr, proxy: "http://" + listen, pid: cmd.Process.Pid, metrics: "http://" + admin + "/metrics"}
	want := fmt.Sprintf("quota_config_revision{namespace=%q} 1", benchNS)
	localtest.WaitFor(b, 20*time.Second, "the sidecar enforcing the policy", func() error {
		body, err := scrape(p.metrics)
		if err == nil && !strings.Contains(body, want) {
			err = fmt.Errorf("no %q in its metrics", want)
		}
		return err
	})
	return p
}

// startGateway runs `quota-operator ratelimit` as its Deployment does,
// serving the benchmark's namespace, and waits until it is ready.
func startGateway(b *testing.B) proc {
	bin, err := bintest.Build()
	if err != nil {
		b.Fatalf("build: %v", err)
	}
	health, grpcAddr := localtest.FreeAddr(b), localtest.FreeAddr(b)
	cmd := exec.Command(bin, "ratelimit", "--grpc-listen", grpcAddr, "--health-listen", health, "--store", redisS.URL, "--namespaces", benchNS)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = cmd.Process.Signal(os.Interrupt); _ = cmd.Wait() })
	localtest.WaitOK(b, 20*time.Second, "http://"+health+"/readyz")
	return proc{name: "gateway", grpc: grpcAddr, pid: cmd.Process.Pid, metrics: "http://" + health + "/metrics", domain: benchNS + "/" + policyName}
}

// startAnchor runs envoyproxy/ratelimit on the same Redis, with its local
// over-limit cache on, as its docs advise for hot keys.
func startAnchor(b *testing.B, bin string) proc {
	root := b.TempDir()
	dir := filepath.Join(root, "ratelimit", "config")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "api.yaml"), []byte(anchorConfig), 0o644); err != nil {
		b.Fatal(err)
	}
	grpcAddr, httpAddr, debugAddr := localtest.FreeAddr(b), localtest.FreeAddr(b), localtest.FreeAddr(b)
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(), "USE_STATSD=false", "LOG_LEVEL=warn", "RUNTIME_ROOT="+root, "RUNTIME_SUBDIRECTORY=ratelimit",
		"RUNTIME_WATCH_ROOT=false", "REDIS_SOCKET_TYPE=tcp", "REDIS_URL="+redisS.Addr, "LOCAL_CACHE_SIZE_IN_BYTES=1048576",
		"GRPC_HOST=127.0.0.1", "GRPC_PORT="+port(grpcAddr), "HOST=127.0.0.1", "PORT="+port(httpAddr),
		"DEBUG_HOST=127.0.0.1", "DEBUG_PORT="+port(debugAddr))
	// Its stats go to a debug log without statsd: keep it out of the report.
	logFile, err := os.Create(filepath.Join(root, "ratelimit.log"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = logFile.Close() })
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	waitListening(b, grpcAddr)
	return proc{name: "envoyproxy/ratelimit", grpc: grpcAddr, pid: cmd.Process.Pid}
}

func port(addr string) string {
	_, p, _ := net.SplitHostPort(addr)
	return p
}

func scrape(url string) (string, error) {
	resp, err := http.Get(url)
	if err != nil {
		return "", err
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(resp.Body)
	return string(body), err
}

// failedOpen sums the sidecar's quota_decisions_total{result="failed_open"}.
func failedOpen(b *testing.B, p proc) int64 {
	if p.metrics == "" {
		return 0
	}
	body, err := scrape(p.metrics)
	if err != nil {
		b.Fatal(err)
	}
	var n int64
	sc := bufio.NewScanner(strings.NewReader(body))
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "quota_decisions_total{") || !strings.Contains(line, `result="failed_open"`) {
			continue
		}
		v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
		if err != nil {
			b.Fatalf("metrics line %q", line)
		}
		n += int64(v)
	}
	return n
}
