package limiter_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/quotaops/quota-operator/internal/limiter"
	"github.com/quotaops/quota-operator/internal/testutil/redistest"
)

// startShardedEndpoint is a redis-server with cluster mode on that owns
// every slot, reached by a plain redis:// URL: like ElastiCache
// Serverless, Redis Enterprise or a cluster proxy, one endpoint that
// answers CROSSSLOT to a call whose keys span hash slots.
func startShardedEndpoint(t *testing.T) *redistest.Server {
	t.Helper()
	s, err := redistest.StartWith("--cluster-enabled", "yes", "--cluster-config-file", "nodes-"+strings.ReplaceAll(t.Name(), "/", "-")+".conf")
	redistest.SkipIfMissing(t, err)
	t.Cleanup(func() { _ = s.Close() })
	c := redis.NewClient(&redis.Options{Addr: s.Addr, Protocol: 2})
	t.Cleanup(func() { _ = c.Close() })
	ctx := context.Background()
	if err := c.Do(ctx, "cluster", "addslotsrange", 0, 16383).Err(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		info, err := c.ClusterInfo(ctx).Result()
		if err == nil && strings.Contains(info, "cluster_state:ok") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("cluster state: %v %s", err, info)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := redistest.LoadLibraryOn(c); err != nil {
		t.Fatal(err)
	}
	return s
}

// Behind one endpoint that refuses calls across slots, cross_slot=false
// keeps every call within a slot: 50 concurrent callers over 20 subjects,
// each request against its subject's limit and a shared one, get exact
// counts and no CROSSSLOT. Without the option, the same decision (two
// limits, two slots) is refused with CROSSSLOT, as batching unrelated
// decisions was under load before.
func TestOneSlotPerCallBehindOneEndpoint(t *testing.T) {
	srv := startShardedEndpoint(t)
	ns := strings.ReplaceAll(t.Name(), "/", ".")
	limits := func(subject string) []limiter.Limit {
		return []limiter.Limit{
			{Algorithm: limiter.FixedWindow, Rates: rate(30, time.Hour), Cost: 1, Key: limiter.CounterKey{Namespace: ns, Policy: "p", Limit: "per-subject", Subject: []string{subject}}},
			{Algorithm: limiter.FixedWindow, Rates: rate(100000, time.Hour), Cost: 1, Key: limiter.CounterKey{Namespace: ns, Policy: "p", Limit: "all"}},
		}
	}
	t.Run("without cross_slot=false, CROSSSLOT", func(t *testing.T) {
		if _, err := limiterAt(t, srv.URL).Decide(context.Background(), limiter.Request{Limits: limits("probe")}); err == nil || !strings.Contains(err.Error(), "CROSSSLOT") {
			t.Fatalf("a decision across two slots: %v; want CROSSSLOT", err)
		}
	})
	l := limiterAt(t, srv.URL+"?cross_slot=false")
	const callers, each, subjects = 50, 40, 20
	var mu sync.Mutex
	allowed := map[string]int{}
	var wg sync.WaitGroup
	for c := range callers {
		wg.Go(func() {
			for i := range each {
				subject := fmt.Sprintf("s%d", (c*each+i)%subjects)
				d, err := l.Decide(context.Background(), limiter.Request{Limits: limits(subject)})
				if err != nil {
					t.Errorf("decide: %v", err)
					return
				}
				if d.Allowed {
					mu.Lock()
					allowed[subject]++
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	// 2,000 requests, 100 per subject, 30 allowed each.
	for i := range subjects {
		if got := allowed[fmt.Sprintf("s%d", i)]; got != 30 {
			t.Errorf("subject s%d: %d allowed, want exactly 30", i, got)
		}
	}
}
