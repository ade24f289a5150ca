package bench

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/quotaops/quota-operator/internal/limiter"
	"github.com/quotaops/quota-operator/internal/store"
	"github.com/quotaops/quota-operator/internal/testutil/benchutil"
	"github.com/quotaops/quota-operator/internal/testutil/redistest"
)

// BenchmarkRedisPerDecision measures what one decision costs Redis, the
// part every sidecar shares, as the sizing model in docs/performance.md
// uses it: 50 callers on one limiter, whose concurrent decisions share
// script calls (a busy sidecar), and 50 limiters with one caller each,
// every decision a script call of its own (many quiet pods).
func BenchmarkRedisPerDecision(b *testing.B) {
	srv := redistest.StartOrSkip(b)
	s, err := store.Open(srv.URL + "?pool_size=64")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = s.Close() })
	rs := s.(*store.Redis)
	n := envInt("BENCH_DECISIONS", 40000)
	fmt.Printf("\nRedis CPU per decision (one fixed window, %d subjects, all allowed)\n", subjects)
	for _, shared := range []bool{true, false} {
		limiters := make([]*limiter.Limiter, callers)
		for i := range limiters {
			if i == 0 || !shared {
				if limiters[i], err = limiter.New(s); err != nil {
					b.Fatal(err)
				}
			} else {
				limiters[i] = limiters[0]
			}
		}
		op := func(i int) error {
			lim := limiter.Limit{Key: limiter.CounterKey{Namespace: benchNS, Policy: policyName, Limit: "per-user", Subject: []string{strconv.Itoa(i % subjects)}},
				Algorithm: limiter.FixedWindow, Rates: []limiter.Rate{{Limit: huge, Window: time.Hour}}, Cost: 1}
			d, err := limiters[i%callers].Decide(context.Background(), limiter.Request{Limits: []limiter.Limit{lim}})
			if err == nil && !d.Allowed {
				err = fmt.Errorf("denied: %+v", d.By())
			}
			return err
		}
		if _, err := benchutil.ClosedLoop(callers, 2*subjects, op); err != nil {
			b.Fatal(err)
		}
		probe := benchutil.RedisCPU(rs.Client())
		cpu0, c0 := read(b, probe), redisCountsOf(b, rs)
		if _, err := benchutil.ClosedLoop(callers, n, op); err != nil {
			b.Fatal(err)
		}
		cpu1, c1 := read(b, probe), redisCountsOf(b, rs)
		what := "50 callers on one limiter (batched)"
		if !shared {
			what = "50 limiters, one caller each (unbatched)"
		}
		fmt.Printf("  %-42s %6.1f µs, %.3f scripts per decision\n", what,
			float64((cpu1-cpu0).Microseconds())/float64(n), float64(c1.scripts-c0.scripts)/float64(n))
	}
}
