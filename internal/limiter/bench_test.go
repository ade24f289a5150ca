package limiter_test

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/quotaops/quota-operator/internal/limiter"
	"github.com/quotaops/quota-operator/internal/store"
	"github.com/quotaops/quota-operator/internal/testutil/benchutil"
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
						sent := &benchutil.CommandCounter{}
						c.AddHook(sent)
						benchutil.Measure(b, c, sent, callers, func(i int) error {
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
						sent := &benchutil.CommandCounter{}
						if be.raw != nil {
							raw = be.raw()
							s.(*store.Redis).Client().AddHook(sent)
						}
						limits := benchLimits(alg)
						benchutil.Measure(b, raw, sent, callers, func(i int) error {
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
