package limiter_test

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quotaops/quota-operator/internal/limiter"
	"github.com/quotaops/quota-operator/internal/store"
	"github.com/redis/go-redis/v9"
)

var benchCallers = []int{1, 16, 64}

// BenchmarkDecide reports, per backend, algorithm and number of concurrent
// callers: decisions/s, p50 and p99 latency, and on Redis the commands per
// decision twice: cmds/op as the client sent them (a go-redis hook) and
// scripts/op as the server ran them (EVALSHA and EVAL in INFO commandstats;
// calls/op adds the commands the scripts ran inside). The target is 1. All
// decisions are allowed, over 1,000 subjects. baseline-INCR is a plain
// INCR from the same number of callers on the same server: read the
// decisions/s of each algorithm against it.
func BenchmarkDecide(b *testing.B) {
	for _, be := range backends(b)[:2] {
		b.Run(be.name, func(b *testing.B) {
			if be.raw != nil {
				for _, callers := range benchCallers {
					b.Run(fmt.Sprintf("baseline-INCR/callers-%d", callers), func(b *testing.B) {
						c := be.raw()
						sent := &commandCounter{}
						c.AddHook(sent)
						measure(b, c, sent, callers, func(i int) error {
							return c.Incr(context.Background(), "bench:incr:"+strconv.Itoa(i%1000)).Err()
						})
					})
				}
			}
			for _, alg := range []limiter.Limit{
				{Algorithm: limiter.FixedWindow, Rates: rate(limiter.MaxValue, time.Minute)},
				{Algorithm: limiter.SlidingWindow, Rates: rate(limiter.MaxValue, time.Minute)},
				{Algorithm: limiter.TokenBucket, Rates: rate(1_000_000, time.Minute)},
				{Algorithm: limiter.Quota, Rates: rate(limiter.MaxValue, 0), Period: limiter.Month, Location: newYork},
			} {
				for _, callers := range benchCallers {
					b.Run(fmt.Sprintf("%s/callers-%d", alg.Algorithm, callers), func(b *testing.B) {
						s := be.open(b, nil)
						l, err := limiter.New(s)
						if err != nil {
							b.Fatal(err)
						}
						var raw redis.UniversalClient
						sent := &commandCounter{}
						if be.raw != nil {
							raw = be.raw()
							s.(*store.Redis).Client().AddHook(sent)
						}
						limits := benchLimits(alg)
						measure(b, raw, sent, callers, func(i int) error {
							d, err := l.Decide(context.Background(), limiter.Request{Limits: limits[i%len(limits) : i%len(limits)+1]})
							if err == nil && !d.Allowed {
								err = fmt.Errorf("denied: %+v", d)
							}
							return err
						})
					})
				}
			}
		})
	}
}

func benchLimits(alg limiter.Limit) []limiter.Limit {
	limits := make([]limiter.Limit, 1000)
	for i := range limits {
		limits[i] = alg
		limits[i].Cost = 1
		limits[i].Key = limiter.CounterKey{Namespace: "bench", Policy: "p", Limit: alg.Algorithm.String(), Subject: []string{strconv.Itoa(i)}}
	}
	return limits
}

// measure runs op b.N times from callers goroutines and reports
// decisions/s, p50-µs, p99-µs and, when raw is a Redis server, the
// commands per op.
func measure(b *testing.B, raw redis.UniversalClient, sent *commandCounter, callers int, op func(i int) error) {
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
	sent.n.Store(0)
	lat := make([]time.Duration, b.N)
	b.ResetTimer()
	start := time.Now()
	if err := runCallers(callers, b.N, lat, op); err != nil {
		b.Fatal(err)
	}
	elapsed := time.Since(start)
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "decisions/s")
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
	if raw != nil {
		scripts, calls := commandCalls(b, raw)
		b.ReportMetric(float64(sent.n.Load())/float64(b.N), "cmds/op")
		b.ReportMetric(float64(scripts)/float64(b.N), "scripts/op")
		b.ReportMetric(float64(calls)/float64(b.N), "calls/op")
		b.ReportMetric(serverMicros(b, raw)/float64(b.N), "server-µs/op")
	}
}

// commandCounter counts the commands a client sends.
type commandCounter struct{ n atomic.Int64 }

func (c *commandCounter) DialHook(next redis.DialHook) redis.DialHook { return next }

func (c *commandCounter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		c.n.Add(1)
		return next(ctx, cmd)
	}
}

func (c *commandCounter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
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
