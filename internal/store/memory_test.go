package store_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/quotaops/quota-operator/internal/store"
	"github.com/quotaops/quota-operator/internal/store/storetest"
	"github.com/quotaops/quota-operator/internal/testutil/fakeclock"
)

func TestMemoryConformance(t *testing.T) {
	s := store.NewMemory()
	defer func() { _ = s.Close() }()
	storetest.Run(t, s)
}

func BenchmarkMemory(b *testing.B) {
	s := store.NewMemory()
	defer func() { _ = s.Close() }()
	storetest.Bench(b, s)
}

func TestMemoryTTLToTheMillisecond(t *testing.T) {
	clock := fakeclock.New(time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC))
	s := store.NewMemory(store.WithClock(clock.Now), store.WithSweepInterval(time.Hour))
	defer func() { _ = s.Close() }()
	ctx := context.Background()
	tests := []struct {
		name    string
		ttl     time.Duration
		expires time.Duration // the moment the key must vanish
	}{
		{"whole milliseconds", 250 * time.Millisecond, 250 * time.Millisecond},
		{"fraction rounds up", 250*time.Millisecond + time.Microsecond, 251 * time.Millisecond},
		{"one nanosecond lasts a millisecond", time.Nanosecond, time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := s.Set(ctx, tt.name, []byte("v"), tt.ttl); err != nil {
				t.Fatal(err)
			}
			clock.Advance(tt.expires - time.Nanosecond)
			if ok, _ := s.Has(ctx, tt.name); !ok {
				t.Fatalf("expired before %v", tt.expires)
			}
			clock.Advance(time.Nanosecond)
			if ok, _ := s.Has(ctx, tt.name); ok {
				t.Fatalf("still present at %v", tt.expires)
			}
		})
	}
}

func TestMemoryReclaimsExpiredKeys(t *testing.T) {
	clock := fakeclock.New(time.Now())
	s := store.NewMemory(store.WithClock(clock.Now), store.WithSweepInterval(5*time.Millisecond))
	defer func() { _ = s.Close() }()
	ctx := context.Background()
	for i := range 10000 {
		key := fmt.Sprintf("tmp:%d", i)
		if err := s.Set(ctx, key, []byte("v"), time.Second); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Set(ctx, "kept", []byte("v"), 0); err != nil {
		t.Fatal(err)
	}
	if n := s.Len(); n != 10001 {
		t.Fatalf("Len = %d before expiry; want 10001", n)
	}
	clock.Advance(time.Second)
	// No key is read again: only the sweeper can free them.
	deadline := time.Now().Add(5 * time.Second)
	for s.Len() != 1 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if n := s.Len(); n != 1 {
		t.Fatalf("Len = %d after expiry; want 1 (only the persistent key)", n)
	}
}

func TestMemoryClosed(t *testing.T) {
	s := store.NewMemory()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Increment(context.Background(), "k", 1); !errors.Is(err, store.ErrClosed) {
		t.Fatalf("Increment after Close: %v; want ErrClosed", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

func TestMemoryConfigs(t *testing.T) {
	s := store.NewMemory()
	defer func() { _ = s.Close() }()
	storetest.RunConfigs(t, s)
}
