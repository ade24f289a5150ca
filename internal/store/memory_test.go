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

// The bound counts keys and hash fields together. At the bound a write
// that would make a new one fails with ErrFull and changes nothing, while
// what is held still changes; room comes back when entries are deleted,
// drop to zero or expire. The hook hears of it once a minute at most.
func TestMemoryMaxEntries(t *testing.T) {
	clock := fakeclock.New(time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC))
	full := 0
	s := store.NewMemory(store.WithClock(clock.Now), store.WithSweepInterval(time.Hour),
		store.WithMaxEntries(4), store.WithFullHook(func() { full++ }))
	defer func() { _ = s.Close() }()
	ctx := context.Background()
	field := func(name string, by int64) error {
		return s.Update(ctx, []string{"h"}, func(tx *store.MemoryTx) error {
			_, err := tx.AddField("h", name, by, time.Hour)
			return err
		})
	}
	steps := []struct {
		name    string
		do      func() error
		want    error
		entries int64
	}{
		{"a key", func() error { return s.Set(ctx, "a", []byte("1"), 0) }, nil, 1},
		{"a key with a TTL", func() error { return s.Set(ctx, "b", []byte("1"), time.Minute) }, nil, 2},
		{"a hash and its field", func() error { return field("x", 1) }, nil, 4},
		{"one key too many", func() error { return s.Set(ctx, "c", []byte("1"), 0) }, store.ErrFull, 4},
		{"one counter too many", func() error { _, err := s.Increment(ctx, "c", 1); return err }, store.ErrFull, 4},
		{"one field too many", func() error { return field("y", 1) }, store.ErrFull, 4},
		{"a held key still counts", func() error { _, err := s.Increment(ctx, "a", 1); return err }, nil, 4},
		{"a held field still counts", func() error { return field("x", 5) }, nil, 4},
		{"a field back to zero goes, and its empty hash", func() error { return field("x", -6) }, nil, 2},
		{"so there is room", func() error { return s.Set(ctx, "c", []byte("1"), 0) }, nil, 3},
		{"a deleted key makes room", func() error { _, err := s.Delete(ctx, "c"); return err }, nil, 2},
		{"an expired key makes room", func() error { clock.Advance(time.Minute); s.Sweep(); return nil }, nil, 1},
	}
	for _, st := range steps {
		if err := st.do(); !errors.Is(err, st.want) || s.Entries() != st.entries {
			t.Fatalf("%s: %v, %d entries; want %v, %d", st.name, err, s.Entries(), st.want, st.entries)
		}
	}
	if s.Refused() != 3 || full != 1 {
		t.Fatalf("refused %d, hook called %d times; want 3 and 1", s.Refused(), full)
	}
	if v, ok, _ := s.Get(ctx, "a"); !ok || string(v) != "2" {
		t.Fatalf("a = %q, %v", v, ok)
	}
}
