package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/quotaops/quota-operator/internal/store"
	"github.com/quotaops/quota-operator/internal/testutil/benchutil"
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
	quiet := idleRedis(b, rs, footprintIdle) // Redis's own idle cost, which no sidecar adds
	sidecars := startIdleSidecars(b, srv.URL, n)
	waitRevision(b, sidecars, 1, time.Minute)
	time.Sleep(5 * time.Second)            // past start-up: connections settle
	clients := connectedClients(b, rs) - 1 // this one
	// Long enough for each sidecar's timers: a revision check and a
	// report a minute.
	busy := idleRedis(b, rs, envDuration("FANOUT_IDLE", 2*time.Minute))
	redisCPU := benchutil.RedisCPU(rs.Client())
	redis0, sidecars0 := read(b, redisCPU), sidecarsCPU(b, sidecars)
	start := time.Now()
	p := benchPolicy()
	p.Spec.Limits[0].Rates[0].Limit = huge - 1
	publish(b, rs, p)
	last := waitRevision(b, sidecars, 2, time.Minute)
	// What the change cost, to tell whose CPU the fan-out waited for:
	// Redis's, or the sidecars' (here all on this machine's cores).
	redisSpent, sidecarsSpent := read(b, redisCPU)-redis0, sidecarsCPU(b, sidecars)-sidecars0
	fmt.Printf("\nFan-out: %d idle sidecars of one namespace on one Redis\n", n)
	fmt.Printf("  Redis connections: %d (%.2f per sidecar)\n", clients, float64(clients)/float64(n))
	perSidecar := (busy.micros - quiet.micros) / float64(n)
	fmt.Printf("  Redis CPU at idle: %.2f%% of a core, %.2f%% without them: %.1f µs per sidecar per second, %.3f commands\n",
		busy.micros/1e4, quiet.micros/1e4, perSidecar, (busy.commands-quiet.commands)/float64(n))
	fmt.Printf("  sidecar memory (RSS): %s\n", rssSummary(b, sidecars))
	fmt.Printf("  a config change reached all of them in %v (the last one), costing Redis %v of CPU and the sidecars %v (%v each)\n",
		last.Sub(start).Round(time.Millisecond), redisSpent.Round(time.Millisecond), sidecarsSpent.Round(time.Millisecond),
		(sidecarsSpent / time.Duration(n)).Round(10*time.Microsecond))
	// Where the sidecars share this machine's cores, their CPU divided by
	// the cores is the least time the change can take here, whatever Redis
	// does; on a cluster it is spread over the nodes.
	floor := (sidecarsSpent + redisSpent) / time.Duration(runtime.NumCPU())
	fmt.Printf("  all that CPU on this machine's %d cores takes at least %v\n", runtime.NumCPU(), floor.Round(time.Millisecond))
	b.ReportMetric(float64(clients)/float64(n), "conns/sidecar")
	b.ReportMetric(float64(last.Sub(start).Milliseconds()), "fanout-ms")
	b.ReportMetric(perSidecar, "redis-idle-µs/s/sidecar")
}

// sidecarsCPU is the CPU time the sidecars have used, all together.
func sidecarsCPU(b *testing.B, sidecars []idleSidecar) time.Duration {
	var total time.Duration
	for i, sc := range sidecars {
		total += read(b, benchutil.ProcessCPU(fmt.Sprint("sidecar-", i), sc.pid))
	}
	return total
}

// idleSidecar is one process of the fan-out.
type idleSidecar struct {
	log string
	pid int
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
	for i := range n {
		// Log times to the nanosecond: the fan-out is read from the logs.
		// A pod name, as the webhook gives each: the sidecar then reports
		// the revision it enforces, a new one at once.
		cmd := exec.Command(bin, "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--health-listen", "127.0.0.1:0",
			"--upstream", "http://127.0.0.1:9", "--store", url, "--namespace", benchNS, "--pod-name", fmt.Sprintf("fanout-%d", i),
			"--zap-time-encoding=rfc3339nano")
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
		out = append(out, idleSidecar{log: logFile.Name(), pid: cmd.Process.Pid})
	}
	return out
}

// waitRevision waits until each sidecar logged that it loaded rev, and
// returns the latest time one did. It reads their log files, so watching
// costs the sidecars nothing: asking 1,000 of them over HTTP on this
// machine's 2 cores took more of their CPU than loading the config did.
func waitRevision(b *testing.B, sidecars []idleSidecar, rev int, within time.Duration) time.Time {
	want := fmt.Sprintf(`"revision":%d,`, rev)
	var last time.Time
	pending := sidecars
	for deadline := time.Now().Add(within); len(pending) > 0 && time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		var still []idleSidecar
		for _, sc := range pending {
			at, ok := loadedAt(b, sc.log, want)
			if !ok {
				still = append(still, sc)
				continue
			}
			if at.After(last) {
				last = at
			}
		}
		pending = still
	}
	if len(pending) > 0 {
		log, _ := os.ReadFile(pending[0].log)
		b.Fatalf("%d sidecars did not load revision %d within %v; one's log:\n%s", len(pending), rev, within, log)
	}
	return last
}

// loadedAt is when the sidecar's log says it loaded the config whose
// revision field is want.
func loadedAt(b *testing.B, path, want string) (time.Time, bool) {
	raw, err := os.ReadFile(path)
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if !strings.Contains(line, `"msg":"Config loaded"`) || !strings.Contains(line, want) {
			continue
		}
		var entry struct {
			TS string `json:"ts"`
		}
		if err := json.Unmarshal([]byte(line), &entry); err != nil {
			b.Fatalf("%s: %q: %v", path, line, err)
		}
		at, err := time.Parse(time.RFC3339Nano, entry.TS)
		if err != nil {
			b.Fatalf("%s: %q: %v", path, line, err)
		}
		return at, true
	}
	return time.Time{}, false
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
