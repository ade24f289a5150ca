package sidecar_test

import (
	"net/http"
	"os"
	"os/exec"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quotaops/quota-operator/internal/testutil/bintest"
	"github.com/quotaops/quota-operator/internal/testutil/localtest"
)

// sidecarProcess runs `quota-operator sidecar` with args and env, and
// returns its proxy URL once it is ready.
func sidecarProcess(t testing.TB, args []string, env []string) string {
	t.Helper()
	return startSidecarProcess(t, args, env).proxy
}

// sidecarProc is a sidecar process: its proxy and admin URLs, and its ID.
type sidecarProc struct {
	proxy, admin string
	pid          int
}

// startSidecarProcess is sidecarProcess that also returns the admin URL
// and the process ID.
func startSidecarProcess(t testing.TB, args []string, env []string) sidecarProc {
	t.Helper()
	bin, err := bintest.Build()
	if err != nil {
		t.Fatalf("build: %v", err)
	}
	listen, admin, health := localtest.FreeAddr(t), localtest.FreeAddr(t), localtest.FreeAddr(t)
	cmd := exec.Command(bin, append([]string{"sidecar", "--listen", listen, "--admin-listen", admin, "--health-listen", health}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Signal(os.Interrupt); _ = cmd.Wait() })
	for start := time.Now(); time.Since(start) < 10*time.Second; time.Sleep(20 * time.Millisecond) {
		if resp, err := http.Get("http://" + health + "/readyz"); err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return sidecarProc{proxy: "http://" + listen, admin: "http://" + admin, pid: cmd.Process.Pid}
			}
		}
	}
	t.Fatal("sidecar process not ready within 10s")
	return sidecarProc{}
}

// Two sidecar processes on one Redis admit exactly the limit between them.
// The second takes its settings from QUOTA_* variables.
func TestTwoSidecarProcessesShareTheLimit(t *testing.T) {
	ns := namespace(t)
	sc := start(t, ns) // only to publish config through its store
	sc.publish(t, perIP(ns, 50, "1h"))
	up := upstream(t).String()
	a := sidecarProcess(t, []string{"--upstream", up, "--store", redisS.URL, "--namespace", ns, "--trusted-proxies", "127.0.0.1"}, nil)
	b := sidecarProcess(t, nil, []string{"QUOTA_UPSTREAM=" + up, "QUOTA_STORE=" + redisS.URL, "QUOTA_NAMESPACE=" + ns, "QUOTA_TRUSTED_PROXIES=127.0.0.1"})
	waitReady(t, a, "192.0.2.1", "50")
	waitReady(t, b, "192.0.2.1", "50")
	var allowed, denied atomic.Int64
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			base := a
			if w%2 == 1 {
				base = b
			}
			for range 20 {
				switch get(t, base, "10.9.9.9").StatusCode {
				case http.StatusOK:
					allowed.Add(1)
				case http.StatusTooManyRequests:
					denied.Add(1)
				}
			}
		})
	}
	wg.Wait()
	if allowed.Load() != 50 || denied.Load() != 110 {
		t.Fatalf("%d allowed, %d denied through two sidecars; want exactly 50 and 110", allowed.Load(), denied.Load())
	}
}
