// Package store holds the counters, TTLs and small values that quota-operator
// needs, behind one interface with two backends: Redis (single server,
// Sentinel or Cluster through redis.UniversalClient) and an in-process memory
// store. Both pass the same conformance suite (package storetest).
//
// Every compound operation is atomic in the backend itself: one Lua script or
// one native command on Redis, one critical section in memory. Callers never
// compose a read with a later write, which is the race the seed patterns have.
package store

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Persistent is what TTL reports for a key that exists and never expires.
const Persistent time.Duration = -1

// Store is the full set of operations both backends implement. Consumers
// should declare the smaller interface they use rather than depend on this one.
type Store interface {
	// Increment adds by to the integer at key and returns the new value. A
	// missing key counts as 0. A value that is not a base-10 int64, or a sum
	// that overflows, fails with ErrNotInteger or ErrOverflow and leaves the
	// value as it was. The key's TTL is unchanged; a key it creates has none
	// (on Redis: MaxTTL).
	Increment(ctx context.Context, key string, by int64) (int64, error)
	// Expire sets or replaces the TTL of an existing key and reports whether
	// the key existed.
	Expire(ctx context.Context, key string, ttl time.Duration) (bool, error)
	// Get returns the value at key and whether it exists.
	Get(ctx context.Context, key string) ([]byte, bool, error)
	// Set stores value at key. A ttl of 0 keeps the key until deleted (on
	// Redis: MaxTTL, the longest any key lives there); any previous TTL is
	// discarded.
	Set(ctx context.Context, key string, value []byte, ttl time.Duration) error
	// Has reports whether key exists.
	Has(ctx context.Context, key string) (bool, error)
	// Delete removes key and reports whether it existed.
	Delete(ctx context.Context, key string) (bool, error)
	// TTL returns the time left before key expires, Persistent for a key
	// without expiry, and false when the key does not exist.
	TTL(ctx context.Context, key string) (time.Duration, bool, error)

	// IncrementWithTTL is Increment and, in the same atomic step, sets ttl on
	// a key that has no expiry yet (a new key, or one left without a TTL). A
	// TTL already present is kept, so a window never slides.
	IncrementWithTTL(ctx context.Context, key string, by int64, ttl time.Duration) (int64, error)
	// SetIfAbsent stores value with ttl only when key does not exist and
	// reports whether it did.
	SetIfAbsent(ctx context.Context, key string, value []byte, ttl time.Duration) (bool, error)
	// CompareAndDelete deletes key only while it holds expected.
	CompareAndDelete(ctx context.Context, key string, expected []byte) (bool, error)
	// CompareAndExpire replaces key's TTL only while it holds expected.
	CompareAndExpire(ctx context.Context, key string, expected []byte, ttl time.Duration) (bool, error)

	// Close releases the backend's resources.
	Close() error
}

var (
	// ErrNotInteger: the value at the key is not a base-10 64-bit integer.
	ErrNotInteger = errors.New("value is not an integer")
	// ErrOverflow: the increment would overflow a 64-bit integer.
	ErrOverflow = errors.New("increment would overflow int64")
	// ErrInvalidTTL: the TTL is negative, or zero where an expiry is
	// required. TTLs are kept to the millisecond, rounded up.
	ErrInvalidTTL = errors.New("invalid TTL")
	// ErrWrongType: the key holds a value this API does not manage (for
	// example a Redis hash written by another program).
	ErrWrongType = errors.New("key holds a value of the wrong type")
	// ErrClosed: the store was closed.
	ErrClosed = errors.New("store is closed")
	// ErrFull: the memory store holds its maximum number of entries (keys
	// and hash fields) and makes no new one until some expire or are
	// deleted (memory://?max_entries=N). Entries it holds still change. Like
	// Redis under noeviction, it refuses rather than drop counters.
	ErrFull = errors.New("memory store is full: no new entry until some expire (memory://?max_entries)")
	// ErrTooLarge: Redis refused a value above the library's bound of
	// 64 KiB (MaxValue), which holds whoever calls it.
	ErrTooLarge = errors.New("value is larger than the store's bound of 64 KiB")
)

// checkTTL refuses TTLs no backend can honour. optional allows 0, meaning
// "no expiry".
func checkTTL(ttl time.Duration, optional bool) error {
	switch {
	case ttl == 0 && optional:
		return nil
	case ttl < 0:
		return fmt.Errorf("%w: %v is negative", ErrInvalidTTL, ttl)
	case ttl == 0:
		return fmt.Errorf("%w: must be positive", ErrInvalidTTL)
	}
	return nil
}

// millis converts a TTL to the stores' millisecond resolution, rounding up so
// that a key never expires before the TTL it was given.
func millis(ttl time.Duration) int64 {
	return int64((ttl + time.Millisecond - 1) / time.Millisecond)
}
