package store_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/quotaops/quota-operator/internal/limiter"
	"github.com/quotaops/quota-operator/internal/store"
	"github.com/quotaops/quota-operator/internal/testutil/redistest"
)

// Every Redis this package's tests start gets the functions library, as
// the manager would load it.
func init() { redistest.Library = limiter.Library }

// The library holds its bounds whoever calls it: no value above 64 KiB,
// no TTL above MaxTTL, and a key without a hash tag stays in its own
// Cluster slot.
func TestLibraryBounds(t *testing.T) {
	for _, be := range backends(t) {
		t.Run(be.label(), func(t *testing.T) { expectBounds(t, be) })
	}
}

func expectBounds(t *testing.T, be backend) {
	ctx := context.Background()
	s := be.store.(*store.Redis)
	big := "{bounds}:big-" + be.label()
	err := s.Set(ctx, big, make([]byte, 64<<10+1), time.Minute)
	if !errors.Is(err, store.ErrTooLarge) {
		t.Fatalf("Set of 64 KiB + 1: %v; want ErrTooLarge", err)
	}
	if ok, err := s.Has(ctx, big); ok || err != nil {
		t.Fatalf("refused value written: %v, %v", ok, err)
	}
	if err := s.Set(ctx, big, make([]byte, 64<<10), time.Minute); err != nil {
		t.Fatalf("Set of 64 KiB: %v", err)
	}
	long := "{bounds}:long-" + be.label()
	if err := s.Set(ctx, long, []byte("v"), 1000*24*time.Hour); err != nil {
		t.Fatal(err)
	}
	if ttl, _, _ := s.TTL(ctx, long); ttl > store.MaxTTL || ttl < store.MaxTTL-time.Minute {
		t.Fatalf("TTL after asking for 1000 days: %v; want MaxTTL %v", ttl, store.MaxTTL)
	}
	bad := "no-tag}-" + be.label()
	if err := s.Set(ctx, bad, []byte("v"), time.Minute); err == nil || !strings.Contains(err.Error(), "closing brace") {
		t.Fatalf("Set of an untagged key with a brace: %v; want refused", err)
	}
}

// No key the library writes is without a TTL; one left without by another
// program is repaired by IncrementWithTTL.
func TestLibraryRepairsAKeyWithoutTTL(t *testing.T) {
	ctx := context.Background()
	s := backends(t)[0].store.(*store.Redis)
	k := "{bounds}:persistent"
	raw := single.Client()
	defer func() { _ = raw.Close() }()
	if err := raw.Set(ctx, store.SealedKey(single.Seal(), k), "5", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if n, err := s.IncrementWithTTL(ctx, k, 1, time.Minute); n != 6 || err != nil {
		t.Fatalf("IncrementWithTTL = %d, %v; want 6", n, err)
	}
	if ttl, _, _ := s.TTL(ctx, k); ttl <= 59*time.Second || ttl > time.Minute {
		t.Fatalf("TTL %v; want a minute", ttl)
	}
}

// A Redis that has not loaded the library (the manager not there yet)
// answers ErrNoLibrary, which says what to do; a Redis older than 7.0 is
// refused by name.
func TestWithoutTheLibrary(t *testing.T) {
	ctx := context.Background()
	c := single.Client()
	defer func() { _ = c.Close() }()
	if err := c.FunctionDelete(ctx, store.LibraryName).Err(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := single.LoadLibrary(); err != nil {
			t.Fatal(err)
		}
	}()
	s := store.NewRedis(single.Client())
	defer func() { _ = s.Close() }()
	_, _, err := s.Get(ctx, "{x}:y")
	if !errors.Is(err, store.ErrNoLibrary) || !strings.Contains(err.Error(), "the manager loads them on every master") {
		t.Fatalf("Get without the library: %v; want ErrNoLibrary", err)
	}
	for _, tt := range []struct{ info, want string }{
		{"# Server\r\nredis_version:6.2.14\r\n", "redis 6.2.14 is too old: quota-operator needs Redis 7.0 or later (Redis Functions)"},
		{"# Server\r\nredis_version:7.0.15\r\n", ""},
		{"# Server\r\nredis_version:8.2.1\r\n", ""},
	} {
		err := store.CheckVersion(tt.info)
		if got := ""; err != nil {
			got = err.Error()
			if got != tt.want {
				t.Errorf("CheckVersion(%q) = %q; want %q", tt.info, got, tt.want)
			}
		} else if tt.want != "" {
			t.Errorf("CheckVersion(%q) = nil; want %q", tt.info, tt.want)
		}
	}
}
