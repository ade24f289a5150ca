package limiter_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/quotaops/quota-operator/internal/limiter"
	"github.com/quotaops/quota-operator/internal/store"
	"github.com/quotaops/quota-operator/internal/testutil/localtest"
	"github.com/quotaops/quota-operator/internal/testutil/redistest"
)

// The backup and restore of docs/store.md, with Redis's own tools: a
// snapshot taken from a running Redis with `redis-cli --rdb`, loaded into
// a new Redis started without the append-only file, which then writes
// one (CONFIG SET appendonly yes) before it runs as the StatefulSet runs
// it. The quota's usage is back exactly, and counting goes on from it.
func TestSnapshotRestoresUsage(t *testing.T) {
	redistest.SkipIfMissing(t, startError)
	if _, err := exec.LookPath("redis-cli"); err != nil {
		t.Skip("redis-cli is not installed")
	}
	src, err := redistest.StartWith("--appendonly", "yes")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = src.Close() })
	lim := limiter.Limit{Key: limiter.QuotaKey("backup", "calls", "", "sk_live"), Algorithm: limiter.Quota,
		Rates: []limiter.Rate{{Limit: 100}}, Period: limiter.Month, Location: time.UTC, Cost: 1}
	for range 7 {
		decideOn(t, src.URL, lim)
	}

	// Backup.
	backup := filepath.Join(t.TempDir(), "quota-redis.rdb")
	host, port, _ := strings.Cut(src.Addr, ":")
	if out, err := exec.Command("redis-cli", "-h", host, "-p", port, "--rdb", backup).CombinedOutput(); err != nil {
		t.Fatalf("redis-cli --rdb: %v\n%s", err, out)
	}
	_ = src.Stop()

	// Restore into a new, empty volume.
	dir, err := os.MkdirTemp("", "restore-")
	if err != nil {
		t.Fatal(err)
	}
	copyFile(t, backup, filepath.Join(dir, "dump.rdb"))
	loader, err := redistest.StartInDir(dir, "--appendonly", "no")
	if err != nil {
		t.Fatal(err)
	}
	writeAppendOnlyFile(t, loader)
	_ = loader.Stop() // keeps dir
	restored, err := redistest.StartInDir(dir, "--appendonly", "yes")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = restored.Close() })

	if d := decideOn(t, restored.URL, lim); d.Results[0].Remaining != 100-8 {
		t.Fatalf("the first decision after the restore: %+v; want %d remaining, after the 7 of the backup", d.Results[0], 100-8)
	}
}

func decideOn(t *testing.T, url string, lim limiter.Limit) limiter.Decision {
	t.Helper()
	return decide(t, limiterAt(t, url), lim)
}

// limiterAt is a limiter on the store url names, opened through its URL
// as a sidecar does, and closed when the test ends.
func limiterAt(t *testing.T, url string) *limiter.Limiter {
	t.Helper()
	s, err := store.Open(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	l, err := limiter.New(s)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// writeAppendOnlyFile turns the append-only file on in a Redis that
// loaded a snapshot, and waits until it holds the whole dataset.
func writeAppendOnlyFile(t *testing.T, s *redistest.Server) {
	t.Helper()
	c := s.Client()
	defer func() { _ = c.Close() }()
	ctx := context.Background()
	if err := c.ConfigSet(ctx, "appendonly", "yes").Err(); err != nil {
		t.Fatal(err)
	}
	localtest.WaitFor(t, 10*time.Second, "the append-only file written", func() error {
		info, err := c.Info(ctx, "persistence").Result()
		if err != nil {
			return err
		}
		// One rewrite done, none running: the file holds the dataset.
		for _, want := range []string{"aof_enabled:1", "aof_rewrite_in_progress:0", "aof_rewrite_scheduled:0", "aof_rewrites:1", "aof_last_bgrewrite_status:ok"} {
			if !strings.Contains(info, want+"\r\n") {
				return errors.New("no " + want + " yet")
			}
		}
		return nil
	})
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	raw, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, raw, 0o600); err != nil {
		t.Fatal(err)
	}
}
