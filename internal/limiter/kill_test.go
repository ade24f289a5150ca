package limiter_test

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/quotaops/quota-operator/internal/limiter"
	"github.com/quotaops/quota-operator/internal/store"
	"github.com/quotaops/quota-operator/internal/testutil/fakeclock"
	"github.com/redis/go-redis/v9"
)

// hammerEnv makes the test binary a load generator instead of a test run:
// QO_LIMITER_HAMMER=<namespace> <store URL>.
const hammerEnv = "QO_LIMITER_HAMMER"

// hammer decides requests of every algorithm, takes locks and usage until
// the process is killed. It prints "ready" once decisions are landing.
func hammer(arg string) int {
	ns, url, _ := strings.Cut(arg, " ")
	s, err := store.Open(url)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	l, err := limiter.New(s)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	ready := make(chan struct{}, 8)
	for w := range 8 {
		go func() {
			rng := rand.New(rand.NewPCG(uint64(w), 7))
			for {
				hammerOnce(l, ns, rng)
				ready <- struct{}{}
			}
		}()
	}
	<-ready
	fmt.Println("ready")
	for range ready {
	}
	return 0
}

func hammerOnce(l *limiter.Limiter, ns string, rng *rand.Rand) {
	ctx := context.Background()
	subject := fmt.Sprint(rng.IntN(500))
	k := func(name string) limiter.CounterKey {
		return limiter.CounterKey{Namespace: ns, Policy: "p", Limit: name, Subject: []string{subject}}
	}
	_, _ = l.Decide(ctx, limiter.Request{Limits: []limiter.Limit{
		{Key: k("fixed"), Algorithm: limiter.FixedWindow, Rates: []limiter.Rate{{Limit: 50, Window: time.Second}, {Limit: 500, Window: time.Hour}}, Cost: 1},
		{Key: k("sliding"), Algorithm: limiter.SlidingWindow, Rates: rate(40, time.Minute), Cost: 1},
		{Key: k("bucket"), Algorithm: limiter.TokenBucket, Rates: rate(30, time.Minute), Cost: 1},
		{Key: k("quota"), Algorithm: limiter.Quota, Rates: rate(100, 0), Period: limiter.Month, Location: newYork, Cost: 1, DryRun: rng.IntN(2) == 0},
	}})
	if lock, ok, _, err := l.Acquire(ctx, ns, "job-"+subject, time.Minute); err == nil && ok && rng.IntN(2) == 0 {
		_, _ = l.Release(ctx, ns, "job-"+subject, lock.Token)
	}
}

// A process killed mid-load leaves no limiter key without a TTL: every key
// gets its expiry in the same script that creates it.
func TestKillMidLoadLeavesNoKeyWithoutTTL(t *testing.T) {
	for _, be := range backends(t) {
		if be.raw == nil {
			continue // a killed process takes its memory store with it
		}
		t.Run(be.name, func(t *testing.T) {
			ns := "kill-" + be.name
			url := single.URL
			if be.name == "cluster" {
				url = "redis+cluster://" + strings.Join(cluster.Addrs(), ",")
			}
			child := exec.Command(os.Args[0], "-test.run=^$")
			child.Env = append(os.Environ(), hammerEnv+"="+ns+" "+url)
			child.Stderr = os.Stderr
			out, err := child.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := child.Start(); err != nil {
				t.Fatal(err)
			}
			if line, err := bufio.NewReader(out).ReadString('\n'); err != nil || line != "ready\n" {
				_ = child.Process.Kill()
				t.Fatalf("hammer did not start: %q, %v", line, err)
			}
			time.Sleep(1500 * time.Millisecond)
			if err := child.Process.Kill(); err != nil { // SIGKILL: no cleanup runs
				t.Fatal(err)
			}
			_ = child.Wait()
			keys, persistent := scanTTLs(t, be.raw(), be.sealed("qo:v1:{"+ns+"/*"))
			if keys < 100 {
				t.Fatalf("only %d keys after the load; the hammer did not run", keys)
			}
			if len(persistent) > 0 {
				t.Fatalf("%d of %d keys have no TTL, e.g. %q", len(persistent), keys, persistent[0])
			}
			t.Logf("%d keys, all with a TTL", keys)
		})
	}
}

// scanTTLs walks every master with SCAN and returns how many keys match and
// which have no TTL (PTTL -1).
func scanTTLs(t *testing.T, c redis.UniversalClient, match string) (int, []string) {
	t.Helper()
	ctx := context.Background()
	var (
		mu         sync.Mutex // ForEachMaster scans the masters concurrently
		keys       int
		persistent []string
	)
	scan := func(ctx context.Context, node *redis.Client) error {
		it := node.Scan(ctx, 0, match, 1000).Iterator()
		for it.Next(ctx) {
			ttl := node.PTTL(ctx, it.Val()).Val()
			mu.Lock()
			keys++
			if ttl == -1*time.Nanosecond || ttl == -1*time.Millisecond {
				persistent = append(persistent, it.Val())
			}
			mu.Unlock()
		}
		return it.Err()
	}
	var err error
	switch c := c.(type) {
	case *redis.ClusterClient:
		err = c.ForEachMaster(ctx, func(ctx context.Context, node *redis.Client) error { return scan(ctx, node) })
	case *redis.Client:
		err = scan(ctx, c)
	}
	if err != nil {
		t.Fatal(err)
	}
	return keys, persistent
}

// A quota's usage set and total expire together. When one is lost alone
// (evicted under an allkeys policy, or deleted), the next decision gives
// the one it creates again its TTL. Before, the TTL was set only with a
// new total: a usage set evicted while the total stayed came back with
// none (PTTL -1), and lived past its period.
func TestQuotaKeyLostAloneGetsItsTTLBack(t *testing.T) {
	for _, be := range redisBackends(t) {
		t.Run(be.name, func(t *testing.T) {
			l, _ := simulated(t, be, fakeclock.New(epoch))
			lim := limiter.Limit{Algorithm: limiter.Quota, Rates: rate(10, 0), Period: limiter.Day, Location: time.UTC, Cost: 1,
				Key: limiter.QuotaKey(ns(t), "calls", "", "alice")}
			ctx := context.Background()
			start := strconv.FormatInt(epoch.Truncate(24*time.Hour).Unix(), 10)
			for _, lost := range []string{"use", "sum"} {
				consume(t, l, lim, 1, 1)
				name := be.sealed(limiter.TaggedKey(lim.Key.QuotaTag(), "q", start, lost))
				if err := be.raw().Del(ctx, name).Err(); err != nil {
					t.Fatal(err)
				}
				consume(t, l, lim, 1, 1)
				for _, k := range []string{"use", "sum"} {
					key := be.sealed(limiter.TaggedKey(lim.Key.QuotaTag(), "q", start, k))
					if ttl := be.raw().PTTL(ctx, key).Val(); ttl <= 0 {
						t.Fatalf("%s lost alone, then a decision: %s has PTTL %v; want its period's", lost, k, ttl)
					}
				}
			}
		})
	}
}
