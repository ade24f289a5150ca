package store_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/quotaops/quota-operator/internal/store"
	"github.com/quotaops/quota-operator/internal/testutil/fakeclock"
)

// Transactions over overlapping keys, declared in opposite orders, never
// deadlock and never lose an update: 64 goroutines move units between
// eight keys, and the sum stays exact.
func TestMemoryUpdateIsAtomic(t *testing.T) {
	s := store.NewMemory()
	defer func() { _ = s.Close() }()
	ctx := context.Background()
	keys := make([]string, 8)
	for i := range keys {
		keys[i] = fmt.Sprintf("acct:%d", i)
	}
	var wg sync.WaitGroup
	for g := range 64 {
		wg.Go(func() {
			for n := range 200 {
				from, to := keys[(g+n)%8], keys[(g*3+n+1)%8]
				if from == to {
					continue
				}
				err := s.Update(ctx, []string{to, from}, func(tx *store.MemoryTx) error {
					_, err := tx.AddField("moves", "n", 1, time.Hour)
					return err
				})
				if !errors.Is(err, store.ErrUndeclaredKey) {
					t.Errorf("undeclared key: got %v", err)
					return
				}
				if err := s.Update(ctx, []string{to, from}, func(tx *store.MemoryTx) error {
					if _, err := tx.IncrementBy(from, -1, time.Hour); err != nil {
						return err
					}
					_, err := tx.IncrementBy(to, 1, time.Hour)
					return err
				}); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	var sum int64
	if err := s.Update(ctx, keys, func(tx *store.MemoryTx) error {
		for _, k := range keys {
			n, err := tx.Int(k)
			if err != nil {
				return err
			}
			sum += n
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if sum != 0 {
		t.Fatalf("units after the transfers sum to %d; want 0", sum)
	}
}

// A hash (the limiter's buckets and quota usage) is refused by the string
// operations with ErrWrongType, as Redis answers WRONGTYPE; its fields
// expire with it; a field that reaches zero goes, and so does an empty hash.
func TestMemoryHashes(t *testing.T) {
	clock := fakeclock.New(time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC))
	s := store.NewMemory(store.WithClock(clock.Now))
	defer func() { _ = s.Close() }()
	ctx := context.Background()
	hash := func(fn func(tx *store.MemoryTx) error) error { return s.Update(ctx, []string{"h", "s"}, fn) }
	if err := hash(func(tx *store.MemoryTx) error {
		if _, err := tx.AddField("h", "a", 5, time.Minute); err != nil {
			return err
		}
		_, err := tx.AddField("h", "b", 2, time.Minute)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	_ = s.Set(ctx, "s", []byte("text"), 0)
	for name, err := range map[string]error{
		"Get":              third(s.Get(ctx, "h")),
		"Increment":        second(s.Increment(ctx, "h", 1)),
		"CompareAndDelete": second(s.CompareAndDelete(ctx, "h", []byte("x"))),
		"AddField on a string": hash(func(tx *store.MemoryTx) error {
			_, err := tx.AddField("s", "a", 1, time.Minute)
			return err
		}),
	} {
		if !errors.Is(err, store.ErrWrongType) {
			t.Errorf("%s: %v; want ErrWrongType", name, err)
		}
	}
	if ttl, ok, _ := s.TTL(ctx, "h"); !ok || ttl != time.Minute {
		t.Fatalf("hash TTL %v, %v; want 1m", ttl, ok)
	}
	if err := hash(func(tx *store.MemoryTx) error {
		if _, err := tx.AddField("h", "a", -5, time.Minute); err != nil {
			return err
		}
		f, err := tx.Fields("h")
		if len(f) != 1 || f["b"] != 2 {
			return fmt.Errorf("fields %v after a reached 0; want only b=2", f)
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	clock.Advance(time.Minute)
	if ok, _ := s.Has(ctx, "h"); ok {
		t.Fatal("hash outlived its TTL")
	}
}

func second[T any](_ T, err error) error { return err }

func third[T, U any](_ T, _ U, err error) error { return err }

// A transaction is all or nothing: one that the store's bound stops half
// way (ErrFull on its second new entry), or that fails on its own error,
// leaves every key as it found it: values, fields, TTLs, and the count of
// entries. Before, the writes before the failure stayed: a decision of two
// limits refused as full had still consumed from the first.
func TestMemoryUpdateUndoesAFailedTransaction(t *testing.T) {
	clock := fakeclock.New(time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC))
	s := store.NewMemory(store.WithClock(clock.Now), store.WithMaxEntries(4))
	defer func() { _ = s.Close() }()
	ctx := context.Background()
	if err := s.Update(ctx, []string{"held", "h"}, func(tx *store.MemoryTx) error {
		if err := tx.Set("held", []byte("5"), time.Hour); err != nil {
			return err
		}
		_, err := tx.AddField("h", "a", 2, time.Hour)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	before := s.Entries() // held, h and its field: 3
	mine := errors.New("the caller's own failure")
	for _, tt := range []struct {
		name string
		last func(tx *store.MemoryTx) error
		want error
	}{
		{"full", func(tx *store.MemoryTx) error { return tx.Set("new-2", []byte("1"), time.Hour) }, store.ErrFull},
		{"its own error", func(tx *store.MemoryTx) error {
			if _, err := tx.AddField("h", "a", -2, time.Hour); err != nil { // the field, then the hash, go
				return err
			}
			if err := tx.Delete("held"); err != nil {
				return err
			}
			return mine
		}, mine},
		{"a field changed, a field added", func(tx *store.MemoryTx) error {
			if _, err := tx.AddField("h", "a", 3, time.Minute); err != nil {
				return err
			}
			if err := tx.Delete("new-1"); err != nil { // room for the new field
				return err
			}
			if _, err := tx.AddField("h", "b", 1, time.Minute); err != nil {
				return err
			}
			return mine
		}, mine},
	} {
		err := s.Update(ctx, []string{"held", "h", "new-1", "new-2"}, func(tx *store.MemoryTx) error {
			if _, err := tx.IncrementBy("held", 10, time.Minute); err != nil {
				return err
			}
			if err := tx.Set("new-1", []byte("1"), time.Hour); err != nil { // the 4th entry, the last there is room for
				return err
			}
			return tt.last(tx)
		})
		if !errors.Is(err, tt.want) {
			t.Fatalf("%s: %v; want %v", tt.name, err, tt.want)
		}
		expectUntouched(t, s, tt.name)
		if s.Entries() != before {
			t.Fatalf("%s: %d entries; want %d", tt.name, s.Entries(), before)
		}
	}
}

// expectUntouched: held is 5 for an hour, new-1 absent, and h holds a: 2
// alone, for an hour, as before the failed transaction.
func expectUntouched(t *testing.T, s *store.Memory, name string) {
	t.Helper()
	ctx := context.Background()
	if v, _, _ := s.Get(ctx, "held"); string(v) != "5" {
		t.Fatalf("%s: held = %q; want 5, as before", name, v)
	}
	if ttl, _, _ := s.TTL(ctx, "held"); ttl != time.Hour {
		t.Fatalf("%s: held's TTL %v; want the hour it had", name, ttl)
	}
	if ok, _ := s.Has(ctx, "new-1"); ok {
		t.Fatalf("%s: new-1 was kept", name)
	}
	if err := s.Update(ctx, []string{"h"}, func(tx *store.MemoryTx) error {
		f, err := tx.Fields("h")
		if err == nil && (f["a"] != 2 || len(f) != 1 || tx.TTL("h") != time.Hour) {
			err = fmt.Errorf("h = %v, TTL %v; want a: 2 alone, for an hour", f, tx.TTL("h"))
		}
		return err
	}); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
}
