// Package benchutil measures throughput and latency from concurrent
// callers, and reads what Redis did, for the benchmarks of the limiter and
// the sidecar.
package benchutil

import (
	"bytes"
	"context"
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
)

// Measure runs op b.N times from callers goroutines and reports
// decisions/s, p50-µs and p99-µs and, when raw is a Redis server, the
// commands per op: cmds/op as sent (counted by sent, a hook on the client
// under test), scripts/op and calls/op as the server ran them (INFO
// commandstats), and server-µs/op. sent may be nil when the client under
// test is in another process. It returns the decisions/s.
func Measure(b *testing.B, raw redis.UniversalClient, sent *CommandCounter, callers int, op func(i int) error) float64 {
	// Warm every connection first, so connection set-up (HELLO, CLIENT
	// SETINFO) and script loading stay out of the count.
	if err := runCallers(callers, callers*4, nil, op); err != nil {
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
	lat := make([]time.Duration, b.N)
	b.ResetTimer()
	start := time.Now()
	if err := runCallers(callers, b.N, lat, op); err != nil {
		b.Fatal(err)
	}
	elapsed := time.Since(start)
	b.StopTimer()
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

// CommandCounter is a go-redis hook counting the commands a client sends.
type CommandCounter struct{ n atomic.Int64 }

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

func runCallers(callers, n int, lat []time.Duration, op func(i int) error) error {
	var next atomic.Int64
	var wg sync.WaitGroup
	var mu sync.Mutex
	var first error
	for range callers {
		wg.Go(func() {
			for i := int(next.Add(1)) - 1; i < n; i = int(next.Add(1)) - 1 {
				t := time.Now()
				err := op(i)
				if lat != nil {
					lat[i] = time.Since(t)
				}
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
	return first
}

// commandCalls reads INFO commandstats: the EVALSHA and EVAL calls, and all
// calls but the INFO that reads them.
func commandCalls(b *testing.B, c redis.UniversalClient) (scripts, total int64) {
	info, err := c.Info(context.Background(), "commandstats").Result()
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(info, "\n") {
		name, rest, ok := strings.Cut(strings.TrimSpace(line), ":calls=")
		if !ok || name == "cmdstat_info" {
			continue
		}
		calls, _, _ := strings.Cut(rest, ",")
		n, err := strconv.ParseInt(calls, 10, 64)
		if err != nil {
			b.Fatalf("commandstats line %q", line)
		}
		total += n
		if name == "cmdstat_evalsha" || name == "cmdstat_eval" {
			scripts += n
		}
	}
	return scripts, total
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
