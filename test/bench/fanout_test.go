package bench

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/quotaops/quota-operator/internal/store"
	"github.com/quotaops/quota-operator/internal/testutil/bintest"
	"github.com/quotaops/quota-operator/internal/testutil/redistest"
)

// BenchmarkFanOut runs FANOUT_SIDECARS sidecar processes (default 100) of
// one namespace on one Redis, idle, as the pods of a large deployment, and
// measures what the per-pod design costs the Redis that holds their
// config: connections per sidecar, Redis CPU at idle, each sidecar's
// memory, and how long a config change takes to reach them all.
func BenchmarkFanOut(b *testing.B) {
	srv := redistest.StartOrSkip(b)
	n := envInt("FANOUT_SIDECARS", 100)
	s, err := store.Open(srv.URL)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = s.Close() })
	rs := s.(*store.Redis)
	publish(b, rs, benchPolicy())
	quiet := idleRedis(b, rs) // Redis's own idle cost, which no sidecar adds
	sidecars := startIdleSidecars(b, srv.URL, n)
	waitRevision(b, sidecars, 1, time.Minute)
	time.Sleep(5 * time.Second)            // past start-up: connections settle
	clients := connectedClients(b, rs) - 1 // this one
	busy := idleRedis(b, rs)
	start := time.Now()
	p := benchPolicy()
	p.Spec.Limits[0].Rates[0].Limit = huge - 1
	publish(b, rs, p)
	last := waitRevision(b, sidecars, 2, time.Minute)
	fmt.Printf("\nFan-out: %d idle sidecars of one namespace on one Redis\n", n)
	fmt.Printf("  Redis connections: %d (%.2f per sidecar)\n", clients, float64(clients)/float64(n))
	perSidecar := (busy.micros - quiet.micros) / float64(n)
	fmt.Printf("  Redis CPU at idle: %.2f%% of a core, %.2f%% without them: %.1f µs per sidecar per second, %.3f commands\n",
		busy.micros/1e4, quiet.micros/1e4, perSidecar, (busy.commands-quiet.commands)/float64(n))
	fmt.Printf("  sidecar memory (RSS): %s\n", rssSummary(b, sidecars))
	fmt.Printf("  a config change reached all of them in %v (the last one)\n", last.Sub(start).Round(time.Millisecond))
	b.ReportMetric(float64(clients)/float64(n), "conns/sidecar")
	b.ReportMetric(float64(last.Sub(start).Milliseconds()), "fanout-ms")
	b.ReportMetric(perSidecar, "redis-idle-µs/s/sidecar")
}

// idleSidecar is one process of the fan-out.
type idleSidecar struct {
	metrics, log string
	pid          int
}

// startIdleSidecars starts n processes of the injected program,
// quota-sidecar, with their own ports.
func startIdleSidecars(b *testing.B, url string, n int) []idleSidecar {
	bin, err := bintest.BuildSidecar()
	if err != nil {
		b.Fatalf("build: %v", err)
	}
	logs := b.TempDir()
	var out []idleSidecar
	next := 20000
	for i := range n {
		var admin string
		admin, next = portBelowEphemeral(b, next)
		// Only the admin port must be known: the others take any free port.
		cmd := exec.Command(bin, "--listen", "127.0.0.1:0", "--admin-listen", admin, "--health-listen", "127.0.0.1:0",
			"--upstream", "http://127.0.0.1:9", "--store", url, "--namespace", benchNS)
		logFile, err := os.Create(filepath.Join(logs, fmt.Sprintf("sidecar-%d.log", i)))
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = logFile.Close() })
		cmd.Stderr = logFile
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		out = append(out, idleSidecar{metrics: "http://" + admin + "/metrics", log: logFile.Name(), pid: cmd.Process.Pid})
	}
	return out
}

// waitRevision polls every sidecar until each enforces rev, and returns
// when the last one was first seen doing so.
func waitRevision(b *testing.B, sidecars []idleSidecar, rev int, within time.Duration) time.Time {
	want := fmt.Sprintf("quota_config_revision{namespace=%q} %d\n", benchNS, rev)
	var mu sync.Mutex
	var last time.Time
	var wg sync.WaitGroup
	failed := make(chan idleSidecar, len(sidecars))
	for _, sc := range sidecars {
		wg.Go(func() {
			for deadline := time.Now().Add(within); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
				if body, err := scrape(sc.metrics); err == nil && strings.Contains(body, want) {
					seen := time.Now()
					mu.Lock()
					if seen.After(last) {
						last = seen
					}
					mu.Unlock()
					return
				}
			}
			failed <- sc
		})
	}
	wg.Wait()
	close(failed)
	for sc := range failed {
		log, _ := os.ReadFile(sc.log)
		b.Fatalf("the sidecar at %s did not enforce revision %d within %v; its log:\n%s", sc.metrics, rev, within, log)
	}
	return last
}

func connectedClients(b *testing.B, s *store.Redis) int {
	info, err := s.Client().Info(context.Background(), "clients").Result()
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "connected_clients:"); ok {
			n, _ := strconv.Atoi(v)
			return n
		}
	}
	b.Fatal("INFO clients has no connected_clients")
	return 0
}

// rssSummary is the sidecars' resident memory: median and largest.
func rssSummary(b *testing.B, sidecars []idleSidecar) string {
	var kbs []int
	for _, sc := range sidecars {
		raw, err := os.ReadFile("/proc/" + strconv.Itoa(sc.pid) + "/status")
		if err != nil {
			b.Fatal(err)
		}
		for _, line := range strings.Split(string(raw), "\n") {
			if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
				kb, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
				kbs = append(kbs, kb)
			}
		}
	}
	slices.Sort(kbs)
	return fmt.Sprintf("median %.1f MiB, largest %.1f MiB", float64(kbs[len(kbs)/2])/1024, float64(kbs[len(kbs)-1])/1024)
}

// portBelowEphemeral finds a free port from next up, below Linux's
// ephemeral range (32768 and up by default), so that no other sidecar's
// outgoing connection or any-port listener takes it before its own
// sidecar binds it. It returns the address and where to look next.
func portBelowEphemeral(b *testing.B, next int) (string, int) {
	for p := next; p < 32768; p++ {
		addr := "127.0.0.1:" + strconv.Itoa(p)
		if l, err := net.Listen("tcp", addr); err == nil {
			_ = l.Close()
			return addr, p + 1
		}
	}
	b.Fatal("no free port below 32768")
	return "", 0
}
