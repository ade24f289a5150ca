package redisha

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/quotaops/quota-operator/internal/testutil/localtest"
	"github.com/quotaops/quota-operator/internal/testutil/redistest"
)

const password = "group-password"

func TestDecideWithoutSentinels(t *testing.T) {
	group := Group{Sentinels: []string{localtest.FreeAddr(t)}, MasterName: "quota", Password: password}
	for _, c := range []struct {
		name, self, want string
	}{
		{"the first node starts as the primary", "redis-0:6379", ""},
		{"another node replicates the first", "redis-1:6379", "redis-0:6379"},
	} {
		t.Run(c.name, func(t *testing.T) {
			n := Node{Group: group, Self: c.self, First: "redis-0:6379", Wait: 300 * time.Millisecond, Poll: 100 * time.Millisecond}
			start, err := n.Decide(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if start.ReplicaOf != c.want || !strings.Contains(start.Why, "no Sentinel answered") {
				t.Fatalf("Decide: %+v, want ReplicaOf %q because no Sentinel answered", start, c.want)
			}
		})
	}
}

// A real primary, replica and Sentinel (with its own password): a node
// starts where the Sentinel says, and a restarting primary waits for its
// replica's promotion instead of coming back as a second primary.
func TestDecideWithSentinel(t *testing.T) {
	sn, err := redistest.StartSentinel("quota", "requirepass "+password)
	redistest.SkipIfMissing(t, err)
	t.Cleanup(func() { _ = sn.Close() })
	group := Group{Sentinels: []string{localtest.FreeAddr(t), sn.Sentinel.Addr}, MasterName: "quota", Password: password}
	decide := func(t *testing.T, self string, wait time.Duration) Start {
		t.Helper()
		n := Node{Group: group, Self: self, First: "unused:6379", Wait: wait, Poll: 100 * time.Millisecond}
		start, err := n.Decide(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		return start
	}
	t.Run("a replica replicates the primary the Sentinel names", func(t *testing.T) {
		if got := decide(t, sn.Replica.Addr, time.Second); got.ReplicaOf != sn.Master.Addr {
			t.Fatalf("Decide: %+v, want ReplicaOf %s", got, sn.Master.Addr)
		}
	})
	t.Run("a primary the Sentinels never fail over starts as the primary after Wait", func(t *testing.T) {
		if got := decide(t, sn.Master.Addr, time.Second); got.ReplicaOf != "" || !strings.Contains(got.Why, "still name this node the primary") {
			t.Fatalf("Decide: %+v, want the primary after waiting", got)
		}
	})
	// The primary is paused, not stopped: the Sentinels still see it up
	// (not even disconnected) when the restarting node asks, as they do in
	// the first second after a pod is deleted. It must wait all the same.
	t.Run("a restarting primary the Sentinels still see up replicates the replica promoted meanwhile", func(t *testing.T) {
		s := redis.NewSentinelClient(&redis.Options{Addr: sn.Sentinel.Addr, Password: password})
		defer func() { _ = s.Close() }()
		if err := s.Set(context.Background(), "quota", "down-after-milliseconds", "1000").Err(); err != nil {
			t.Fatal(err)
		}
		if err := sn.Master.Pause(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = sn.Master.Stop() })
		if flags := s.Master(context.Background(), "quota").Val()["flags"]; flags != "master" {
			t.Fatalf("the Sentinel's flags for the paused primary are %q, want it still seen up", flags)
		}
		begin := time.Now()
		got := decide(t, sn.Master.Addr, 30*time.Second)
		if got.ReplicaOf != sn.Replica.Addr {
			t.Fatalf("Decide after %v: %+v, want ReplicaOf the promoted %s", time.Since(begin), got, sn.Replica.Addr)
		}
		t.Logf("the replica was promoted %v after the primary stopped", time.Since(begin).Round(100*time.Millisecond))
	})
}

// A Sentinel started from SentinelConf monitors the primary with the
// password, and a config it rewrote keeps what it learned (its id, the
// replica) when written again with a new password, which replaces the old.
func TestSentinelConfOnARealSentinel(t *testing.T) {
	sn, err := redistest.StartSentinel("other")
	redistest.SkipIfMissing(t, err)
	t.Cleanup(func() { _ = sn.Close() })
	if err := redistest.RequirePassword(password, sn.Master.Addr, sn.Replica.Addr); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	conf := filepath.Join(dir, "sentinel.conf")
	settings := SentinelSettings{SelfHost: "127.0.0.1", Dir: dir, Port: 26379, MasterName: "quota", Primary: sn.Master.Addr,
		Quorum: 1, DownAfterMillis: 5000, FailoverMillis: 30000, Password: password}
	if err := os.WriteFile(conf, []byte(SentinelConf("", settings)), 0o600); err != nil {
		t.Fatal(err)
	}
	sentinel, err := redistest.StartSentinelConf(conf)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sentinel.Stop() })
	ctx := context.Background()
	id := expectMonitoring(t, sentinel.Addr, password, sn.Master.Addr)
	expectRefused(t, sentinel.Addr, "")

	// Rotate: the data nodes and the Sentinel's config get a new password.
	const next = "rotated-password"
	if err := sentinel.Stop(); err != nil {
		t.Fatal(err)
	}
	for _, addr := range []string{sn.Master.Addr, sn.Replica.Addr} {
		c := redis.NewClient(&redis.Options{Addr: addr, Password: password})
		for _, name := range []string{"masterauth", "requirepass"} {
			if err := c.ConfigSet(ctx, name, next).Err(); err != nil {
				t.Fatal(err)
			}
		}
		_ = c.Close()
	}
	rewritten, err := os.ReadFile(conf)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(rewritten), "known-replica quota") {
		t.Fatalf("the Sentinel did not write the replica it learned:\n%s", rewritten)
	}
	settings.Password, settings.Primary = next, "elsewhere:6379"
	again := SentinelConf(string(rewritten), settings)
	if strings.Contains(again, password) || strings.Count(again, "sentinel monitor ") != 1 {
		t.Fatalf("the config written again holds the old password or two monitors:\n%s", again)
	}
	if err := os.WriteFile(conf, []byte(again), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := sentinel.Start(); err != nil {
		t.Fatal(err)
	}
	if got := expectMonitoring(t, sentinel.Addr, next, sn.Master.Addr); got != id {
		t.Fatalf("the Sentinel's id changed from %s to %s: it forgot what it wrote", id, got)
	}
	expectRefused(t, sentinel.Addr, password)
}

// expectMonitoring waits until the Sentinel at addr, logged in with
// password, monitors primary as "quota", knows its replica and reaches it
// (the auth-pass is right), and returns the Sentinel's id.
func expectMonitoring(t *testing.T, addr, password, primary string) string {
	t.Helper()
	c := redis.NewSentinelClient(&redis.Options{Addr: addr, Password: password})
	defer func() { _ = c.Close() }()
	var last map[string]string
	var lastErr error
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		last, lastErr = c.Master(context.Background(), "quota").Result()
		if lastErr == nil && net.JoinHostPort(last["ip"], last["port"]) == primary && last["num-slaves"] == "1" &&
			last["flags"] == "master" {
			id, err := redis.NewClient(&redis.Options{Addr: addr, Password: password}).Do(context.Background(), "sentinel", "myid").Text()
			if err != nil {
				t.Fatal(err)
			}
			return id
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("Sentinel %s: SENTINEL MASTER quota = %v, %v; want %s up with one replica", addr, last, lastErr, primary)
	return ""
}

// expectRefused checks that the Sentinel refuses a client with password.
func expectRefused(t *testing.T, addr, password string) {
	t.Helper()
	c := redis.NewSentinelClient(&redis.Options{Addr: addr, Password: password, MaxRetries: -1})
	defer func() { _ = c.Close() }()
	_, err := c.Master(context.Background(), "quota").Result()
	if err == nil || !strings.Contains(err.Error(), "NOAUTH") && !strings.Contains(err.Error(), "WRONGPASS") {
		t.Fatalf("Sentinel %s with password %q: %v, want NOAUTH or WRONGPASS", addr, password, err)
	}
}
