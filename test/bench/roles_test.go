package bench

import (
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"runtime/debug"
	"testing"
	"time"

	"github.com/quotaops/quota-operator/internal/rlsserver"
	"github.com/quotaops/quota-operator/internal/testutil/benchutil"
	"github.com/quotaops/quota-operator/internal/testutil/localtest"
)

// The references run as processes of this test binary, so each has its own
// CPU account in /proc, as the sidecar has: QO_BENCH_ROLE picks one.
const (
	roleEnv   = "QO_BENCH_ROLE"
	listenEnv = "QO_BENCH_LISTEN"
	targetEnv = "QO_BENCH_UPSTREAM"
)

// serveRole serves the reference named by QO_BENCH_ROLE, if any, and
// reports whether it did.
func serveRole() bool {
	role := os.Getenv(roleEnv)
	if role == "" {
		return false
	}
	// The GC setting the sidecar runs with: the references differ from it
	// by the code they run, not by the heap they may keep.
	debug.SetGCPercent(400)
	l, err := net.Listen("tcp", os.Getenv(listenEnv))
	if err != nil {
		panic(err)
	}
	switch role {
	case "floor":
		_ = rlsserver.New(benchutil.OK, nil).Serve(l)
	case "proxy":
		up, err := url.Parse(os.Getenv(targetEnv))
		if err != nil {
			panic(err)
		}
		_ = http.Serve(l, httputil.NewSingleHostReverseProxy(up))
	}
	return true
}

// startRole runs this test binary as the reference role on a free address
// and returns that address and the process id.
func startRole(tb testing.TB, role, upstream string) (string, int) {
	tb.Helper()
	addr := localtest.FreeAddr(tb)
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), roleEnv+"="+role, listenEnv+"="+addr, targetEnv+"="+upstream)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	waitListening(tb, addr)
	return addr, cmd.Process.Pid
}

func waitListening(tb testing.TB, addr string) {
	tb.Helper()
	localtest.WaitFor(tb, 20*time.Second, "a listener on "+addr, func() error {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			_ = c.Close()
		}
		return err
	})
}
