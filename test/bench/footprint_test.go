package bench

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/quotaops/quota-operator/internal/store"
	"github.com/quotaops/quota-operator/internal/testutil/benchutil"
	"github.com/quotaops/quota-operator/internal/testutil/bintest"
	"github.com/quotaops/quota-operator/internal/testutil/localtest"
	"github.com/quotaops/quota-operator/internal/testutil/redistest"
)

// The footprint's namespace, its published policies, and the load after
// which memory is read again.
const (
	footprintNS       = "footprint"
	footprintPolicies = 20
	footprintRequests = 3000
	footprintSubjects = 500
	footprintIdle     = 30 * time.Second
	// sidecarIdle holds a sidecar's minute timers (a revision check, a
	// report) at least once.
	sidecarIdle = 65 * time.Second
)

// BenchmarkFootprint measures what one sidecar costs a pod and Redis, for
// each program that can be injected: `quota-operator sidecar` and
// `quota-sidecar`. Each enforces a namespace's 20 published policies on
// Redis, alone on it. Read from /proc/PID/smaps_rollup: resident memory
// (the binary's text pages included) and private anonymous memory, idle
// and after 3,000 proxied requests of 500 subjects; from Redis: the
// connections it holds and the commands it sends at idle. (Redis's CPU for
// one idle sidecar drowns in Redis's own idle cost, printed first:
// BenchmarkFanOut measures it per sidecar over many.)
func BenchmarkFootprint(b *testing.B) {
	srv := redistest.StartOrSkip(b)
	s, err := store.Open(srv.URL)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = s.Close() })
	rs := s.(*store.Redis)
	var rev int64
	for i := range footprintPolicies {
		p := benchPolicy()
		p.Namespace, p.Name = footprintNS, fmt.Sprintf("api-%02d", i)
		rev = publish(b, rs, p)
	}
	full, err := bintest.Build()
	if err != nil {
		b.Fatal(err)
	}
	slim, err := bintest.BuildSidecar()
	if err != nil {
		b.Fatal(err)
	}
	upstream := startUpstream(b)
	quiet := idleRedis(b, rs, footprintIdle) // Redis's own idle cost, which no sidecar adds
	fmt.Printf("\nFootprint of one sidecar enforcing %d published policies on Redis (Redis alone at idle: %.1f µs/s, %.2f commands/s)\n",
		footprintPolicies, quiet.micros, quiet.commands)
	fmt.Printf("  %-24s %10s %10s %12s %12s %6s %16s\n", "program", "idle RSS", "idle anon", "loaded RSS", "loaded anon", "conns", "idle commands/s")
	for _, prog := range []struct {
		name string
		argv []string
	}{
		{"quota-operator sidecar", []string{full, "sidecar"}},
		{"quota-sidecar", []string{slim}},
	} {
		f := measureFootprint(b, rs, srv.URL, upstream, rev, prog.argv)
		fmt.Printf("  %-24s %9.1fM %9.1fM %11.1fM %11.1fM %6d %16.2f\n", prog.name, mib(f.idle.rss), mib(f.idle.anon),
			mib(f.loaded.rss), mib(f.loaded.anon), f.conns, f.redis.commands-quiet.commands)
		unit := strings.ReplaceAll(prog.name, " ", "-")
		b.ReportMetric(mib(f.idle.rss), unit+"-idle-rss-MiB")
		b.ReportMetric(mib(f.loaded.rss), unit+"-loaded-rss-MiB")
	}
}

// footprint is one sidecar's cost.
type footprint struct {
	idle, loaded memory
	conns        int
	// redis is what Redis spent while the sidecar was idle.
	redis redisIdle
}

// redisIdle is Redis's CPU time (µs) and commands per second of idle.
type redisIdle struct{ micros, commands float64 }

// idleRedis measures Redis for idle.
func idleRedis(b *testing.B, rs *store.Redis, idle time.Duration) redisIdle {
	probe := benchutil.RedisCPU(rs.Client())
	cpu0 := read(b, probe)
	_, calls0, err := benchutil.CommandCalls(rs.Client())
	if err != nil {
		b.Fatal(err)
	}
	time.Sleep(idle)
	cpu1 := read(b, probe)
	_, calls1, err := benchutil.CommandCalls(rs.Client())
	if err != nil {
		b.Fatal(err)
	}
	return redisIdle{micros: float64((cpu1 - cpu0).Microseconds()) / idle.Seconds(),
		commands: float64(calls1-calls0) / idle.Seconds()}
}

// memory is a process's, in kB.
type memory struct{ rss, anon int }

func mib(kb int) float64 { return float64(kb) / 1024 }

// measureFootprint starts argv as a sidecar of footprintNS, waits until it
// enforces revision rev, and measures it idle and after the load.
func measureFootprint(b *testing.B, rs *store.Redis, url, upstream string, rev int64, argv []string) footprint {
	before := connectedClients(b, rs)
	listen, admin := localtest.FreeAddr(b), localtest.FreeAddr(b)
	cmd := exec.Command(argv[0], append(argv[1:], "--listen", listen, "--admin-listen", admin, "--health-listen", "",
		"--upstream", upstream, "--store", url, "--namespace", footprintNS)...)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() { _ = cmd.Process.Signal(os.Interrupt); _ = cmd.Wait() }()
	want := fmt.Sprintf("quota_config_revision{namespace=%q} %d\n", footprintNS, rev)
	localtest.WaitFor(b, 20*time.Second, "the sidecar enforcing the policies", func() error {
		body, err := scrape("http://" + admin + "/metrics")
		if err == nil && !strings.Contains(body, want) {
			err = fmt.Errorf("no %q in its metrics", want)
		}
		return err
	})
	time.Sleep(5 * time.Second) // past start-up: connections settle
	var f footprint
	f.idle, f.conns = readMemory(b, cmd.Process.Pid), connectedClients(b, rs)-before
	f.redis = idleRedis(b, rs, sidecarIdle)
	client := &http.Client{Timeout: 5 * time.Second}
	for i := range footprintRequests {
		req, _ := http.NewRequest(http.MethodGet, "http://"+listen+"/items", nil)
		req.Header.Set("X-User", "user-"+strconv.Itoa(i%footprintSubjects))
		resp, err := client.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			b.Fatalf("request %d: %s", i, resp.Status)
		}
	}
	f.loaded = readMemory(b, cmd.Process.Pid)
	return f
}

// readMemory reads a process's resident and anonymous memory from
// /proc/PID/smaps_rollup.
func readMemory(b *testing.B, pid int) memory {
	raw, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/smaps_rollup")
	if err != nil {
		b.Fatal(err)
	}
	var m memory
	for _, line := range strings.Split(string(raw), "\n") {
		fields := strings.Fields(line)
		if len(fields) < 2 {
			continue
		}
		kb, _ := strconv.Atoi(fields[1])
		switch fields[0] {
		case "Rss:":
			m.rss = kb
		case "Anonymous:":
			m.anon = kb
		}
	}
	return m
}
