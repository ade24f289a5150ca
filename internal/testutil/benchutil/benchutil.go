// Package benchutil measures throughput and latency from concurrent
// callers, and reads what Redis did, for the benchmarks of the limiter and
// the sidecar.
package benchutil

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/quotaops/quota-operator/internal/rls"
)

// Measure runs op b.N times from callers goroutines and reports
// decisions/s, p50-µs and p99-µs and, when raw is a Redis server, the
// commands per op: cmds/op as sent (counted by sent, a hook on the client
// under test), scripts/op and calls/op as the server ran them (INFO
// commandstats), and server-µs/op. sent may be nil when the client under
// test is in another process. It returns the decisions/s.
//
// Each probe reports the CPU time its process spent during the measured
// run, per op, as <name>-cpu-µs/op: a cost that, unlike decisions/s,
// hardly depends on what else the machine is doing.
func Measure(b *testing.B, raw redis.UniversalClient, sent *CommandCounter, callers int, op func(i int) error, probes ...CPUProbe) float64 {
	// Warm every connection first, so connection set-up (HELLO, CLIENT
	// SETINFO) and script loading stay out of the count.
	if _, err := ClosedLoop(callers, callers*4, op); err != nil {
		b.Fatal(err)
	}
	if raw != nil {
		if err := raw.ConfigResetStat(context.Background()).Err(); err != nil {
			b.Fatal(err)
		}
	}
	if sent != nil {
		sent.n.Store(0)
	}
	cpu0 := readProbes(b, probes)
	b.ResetTimer()
	start := time.Now()
	lat, err := ClosedLoop(callers, b.N, op)
	if err != nil {
		b.Fatal(err)
	}
	elapsed := time.Since(start)
	b.StopTimer()
	for i, after := range readProbes(b, probes) {
		b.ReportMetric(float64((after-cpu0[i]).Microseconds())/float64(b.N), probes[i].Name+"-cpu-µs/op")
	}
	slices.Sort(lat)
	rate := float64(b.N) / elapsed.Seconds()
	b.ReportMetric(rate, "decisions/s")
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
	if raw != nil {
		scripts, calls := commandCalls(b, raw)
		if sent != nil {
			b.ReportMetric(float64(sent.n.Load())/float64(b.N), "cmds/op")
		}
		b.ReportMetric(float64(scripts)/float64(b.N), "scripts/op")
		b.ReportMetric(float64(calls)/float64(b.N), "calls/op")
		b.ReportMetric(serverMicros(b, raw)/float64(b.N), "server-µs/op")
	}
	return rate
}

// OK answers every Envoy rate-limit call OK without deciding anything:
// served by rls.NewServer, the floor a rate-limit service is measured
// against.
func OK(context.Context, *rls.Request) (*rls.Response, error) {
	return &rls.Response{OverallCode: rls.OK}, nil
}

// CPUProbe reads the CPU time a process has used so far.
type CPUProbe struct {
	Name string
	Read func() (time.Duration, error)
}

func readProbes(b *testing.B, probes []CPUProbe) []time.Duration {
	out := make([]time.Duration, len(probes))
	for i, p := range probes {
		var err error
		if out[i], err = p.Read(); err != nil {
			b.Fatalf("CPU of %s: %v", p.Name, err)
		}
	}
	return out
}

// ProcessCPU probes a process's user and system time (Linux /proc; clock
// ticks of 10 ms, the kernel's USER_HZ on every Linux Go supports here).
func ProcessCPU(name string, pid int) CPUProbe {
	return CPUProbe{Name: name, Read: func() (time.Duration, error) {
		raw, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if err != nil {
			return 0, err
		}
		// The command name, in parentheses, may hold spaces: count fields
		// after it. utime and stime are fields 14 and 15.
		_, rest, ok := strings.Cut(string(raw), ") ")
		f := strings.Fields(rest)
		if !ok || len(f) < 13 {
			return 0, fmt.Errorf("unexpected /proc/%d/stat", pid)
		}
		utime, err1 := strconv.ParseInt(f[11], 10, 64)
		stime, err2 := strconv.ParseInt(f[12], 10, 64)
		if err1 != nil || err2 != nil {
			return 0, fmt.Errorf("unexpected /proc/%d/stat", pid)
		}
		return time.Duration(utime+stime) * 10 * time.Millisecond, nil
	}}
}

// RedisCPU probes a Redis server's CPU time (INFO cpu).
func RedisCPU(c redis.UniversalClient) CPUProbe {
	return CPUProbe{Name: "redis", Read: func() (time.Duration, error) {
		info, err := c.Info(context.Background(), "cpu").Result()
		if err != nil {
			return 0, err
		}
		var total float64
		for _, line := range strings.Split(info, "\n") {
			k, v, _ := strings.Cut(strings.TrimSpace(line), ":")
			if k == "used_cpu_sys" || k == "used_cpu_user" {
				n, err := strconv.ParseFloat(v, 64)
				if err != nil {
					return 0, err
				}
				total += n
			}
		}
		return time.Duration(total * float64(time.Second)), nil
	}}
}

// CommandCounter is a go-redis hook counting the commands a client sends.
type CommandCounter struct{ n atomic.Int64 }

// Count is how many commands the client has sent.
func (c *CommandCounter) Count() int64 { return c.n.Load() }

func (c *CommandCounter) DialHook(next redis.DialHook) redis.DialHook { return next }

func (c *CommandCounter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		c.n.Add(1)
		return next(ctx, cmd)
	}
}

func (c *CommandCounter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		c.n.Add(int64(len(cmds)))
		return next(ctx, cmds)
	}
}

// ClosedLoop runs n calls of op from callers goroutines, each calling again
// as soon as its call returns, and returns each call's latency and the
// first error (after which that goroutine stops).
func ClosedLoop(callers, n int, op func(i int) error) ([]time.Duration, error) {
	lat := make([]time.Duration, n)
	var next atomic.Int64
	var wg sync.WaitGroup
	var mu sync.Mutex
	var first error
	for range callers {
		wg.Go(func() {
			for i := int(next.Add(1)) - 1; i < n; i = int(next.Add(1)) - 1 {
				t := time.Now()
				err := op(i)
				lat[i] = time.Since(t)
				if err != nil {
					mu.Lock()
					first = err
					mu.Unlock()
					return
				}
			}
		})
	}
	wg.Wait()
	return lat, first
}

// commandCalls reads INFO commandstats: the FCALL (and EVAL) calls, and all
// calls but the INFO that reads them.
func commandCalls(b *testing.B, c redis.UniversalClient) (scripts, total int64) {
	scripts, total, err := CommandCalls(c)
	if err != nil {
		b.Fatal(err)
	}
	return scripts, total
}

// CommandCalls reads INFO commandstats: the FCALL (and EVAL) calls Redis
// ran, and all the calls it ran (the commands scripts called included) but
// INFO's.
func CommandCalls(c redis.UniversalClient) (scripts, total int64, err error) {
	info, err := c.Info(context.Background(), "commandstats").Result()
	if err != nil {
		return 0, 0, err
	}
	for _, line := range strings.Split(info, "\n") {
		name, rest, ok := strings.Cut(strings.TrimSpace(line), ":calls=")
		if !ok || name == "cmdstat_info" {
			continue
		}
		calls, _, _ := strings.Cut(rest, ",")
		n, err := strconv.ParseInt(calls, 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("commandstats line %q", line)
		}
		total += n
		switch name {
		case "cmdstat_fcall", "cmdstat_fcall_ro", "cmdstat_evalsha", "cmdstat_eval":
			scripts += n
		}
	}
	return scripts, total, nil
}

// serverMicros is the CPU time Redis spent in commands (INFO commandstats
// usec of top-level calls: scripts include what they ran inside).
func serverMicros(b *testing.B, c redis.UniversalClient) float64 {
	info, err := c.Info(context.Background(), "commandstats").Result()
	if err != nil {
		b.Fatal(err)
	}
	var total float64
	for _, line := range strings.Split(info, "\n") {
		name, rest, ok := strings.Cut(strings.TrimSpace(line), ":calls=")
		if !ok || name == "cmdstat_info" {
			continue
		}
		_, usec, _ := strings.Cut(rest, ",usec=")
		usec, _, _ = strings.Cut(usec, ",")
		n, err := strconv.ParseFloat(usec, 64)
		if err != nil {
			b.Fatalf("commandstats line %q", line)
		}
		total += n
	}
	return total
}

var rpsLine = regexp.MustCompile(`([0-9.]+) requests per second`)

// RedisBenchmark runs redis-benchmark on the server at host:port with
// clients connections for n requests of the command args, and returns its
// requests per second: the baseline a benchmark compares itself with in
// the same run.
func RedisBenchmark(b *testing.B, host, port string, clients, n int, args ...string) float64 {
	cmd := exec.Command("redis-benchmark", append([]string{"-h", host, "-p", port, "-c", strconv.Itoa(clients), "-n", strconv.Itoa(n), "-q"}, args...)...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		b.Fatalf("redis-benchmark: %v\n%s", err, out.String())
	}
	m := rpsLine.FindAllStringSubmatch(out.String(), -1)
	if len(m) == 0 {
		b.Fatalf("redis-benchmark printed no rate:\n%s", out.String())
	}
	rps, err := strconv.ParseFloat(m[len(m)-1][1], 64)
	if err != nil {
		b.Fatal(err)
	}
	return rps
}
