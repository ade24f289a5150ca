package store

import (
	"context"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

const memoryShards = 64

// Memory is a Store for a single process. Keys are spread over shards, each
// with its own lock, so unrelated keys do not contend. Expired keys are hidden
// at once and reclaimed by a sweeper, so memory follows the live key count.
type Memory struct {
	shards  [memoryShards]memoryShard
	configs memoryConfigs
	entries entryCount
	now     func() time.Time
	closed  atomic.Bool
	stop    chan struct{}
	done    chan struct{}
}

type memoryShard struct {
	mu      sync.Mutex
	entries map[string]*memoryEntry
	// expiring counts entries with a TTL, letting the sweeper skip shards
	// that have none.
	expiring int
	count    *entryCount
}

// entryCount bounds what all shards hold together: keys, and the fields of
// hashes (a quota's usage index has a field per subject). An entry is
// counted before it is made, so the bound holds under any concurrency.
type entryCount struct {
	n, max  atomic.Int64 // max 0: no bound
	refused atomic.Int64
	// onFull is told of a refusal, at most once a minute (lastFull, in
	// Unix nanoseconds).
	onFull   func()
	lastFull atomic.Int64
}

func (k *entryCount) take() error {
	if k.n.Add(1) <= k.max.Load() || k.max.Load() == 0 {
		return nil
	}
	k.n.Add(-1)
	k.refused.Add(1)
	if now, last := time.Now().UnixNano(), k.lastFull.Load(); k.onFull != nil && now-last >= int64(time.Minute) &&
		k.lastFull.CompareAndSwap(last, now) {
		k.onFull()
	}
	return ErrFull
}

type memoryEntry struct {
	value []byte
	// fields makes the entry a hash of integers (the limiter's sub-window
	// buckets and quota usage); the string operations refuse it with
	// ErrWrongType, as Redis answers WRONGTYPE.
	fields   map[string]int64
	expireAt time.Time // zero: no expiry
}

// MemoryOption configures NewMemory.
type MemoryOption func(*memoryConfig)

type memoryConfig struct {
	now        func() time.Time
	sweep      time.Duration
	maxEntries int64
	onFull     func()
}

// WithMaxEntries bounds the entries held, keys and hash fields together: at
// the bound, writes that would make a new one fail with ErrFull. 0 means no
// bound.
func WithMaxEntries(n int64) MemoryOption {
	return func(c *memoryConfig) { c.maxEntries = n }
}

// WithFullHook has onFull called when ErrFull refuses a write, at most once
// a minute.
func WithFullHook(onFull func()) MemoryOption {
	return func(c *memoryConfig) { c.onFull = onFull }
}

// WithClock makes the store read time from now instead of time.Now.
func WithClock(now func() time.Time) MemoryOption {
	return func(c *memoryConfig) { c.now = now }
}

// WithSweepInterval sets how often expired keys are reclaimed (default 1s).
func WithSweepInterval(d time.Duration) MemoryOption {
	return func(c *memoryConfig) { c.sweep = d }
}

// NewMemory returns an empty memory store. Close stops its sweeper.
func NewMemory(opts ...MemoryOption) *Memory {
	cfg := memoryConfig{now: time.Now, sweep: time.Second}
	for _, o := range opts {
		o(&cfg)
	}
	m := &Memory{now: cfg.now, stop: make(chan struct{}), done: make(chan struct{})}
	m.entries.max.Store(cfg.maxEntries)
	m.entries.onFull = cfg.onFull
	for i := range m.shards {
		m.shards[i].entries = make(map[string]*memoryEntry)
		m.shards[i].count = &m.entries
	}
	go m.sweepLoop(cfg.sweep)
	return m
}

func (m *Memory) sweepLoop(every time.Duration) {
	defer close(m.done)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-m.stop:
			return
		case <-t.C:
			m.Sweep()
		}
	}
}

// Sweep reclaims every expired key now and returns how many it removed.
func (m *Memory) Sweep() int {
	removed := 0
	for i := range m.shards {
		sh := &m.shards[i]
		sh.mu.Lock()
		if sh.expiring > 0 {
			now := m.now()
			for k, e := range sh.entries {
				if e.expired(now) {
					sh.remove(k, e)
					removed++
				}
			}
		}
		sh.mu.Unlock()
	}
	return removed
}

// Refused is how many writes ErrFull has refused.
func (m *Memory) Refused() int64 { return m.entries.refused.Load() }

// Entries is how many entries (keys and hash fields) the store holds,
// counting expired ones not yet swept.
func (m *Memory) Entries() int64 { return m.entries.n.Load() }

// MaxEntries is the bound on entries (0: none).
func (m *Memory) MaxEntries() int64 { return m.entries.max.Load() }

// Len returns the number of keys held, counting expired keys not yet swept.
func (m *Memory) Len() int {
	n := 0
	for i := range m.shards {
		sh := &m.shards[i]
		sh.mu.Lock()
		n += len(sh.entries)
		sh.mu.Unlock()
	}
	return n
}

// Close stops the sweeper. Later calls fail with ErrClosed.
func (m *Memory) Close() error {
	if m.closed.CompareAndSwap(false, true) {
		close(m.stop)
		<-m.done
	}
	return nil
}

func (e *memoryEntry) expired(now time.Time) bool {
	return !e.expireAt.IsZero() && !now.Before(e.expireAt)
}

func (sh *memoryShard) remove(key string, e *memoryEntry) {
	if !e.expireAt.IsZero() {
		sh.expiring--
	}
	delete(sh.entries, key)
	sh.count.n.Add(-1 - int64(len(e.fields)))
}

// add makes key's entry e, unless the store is full.
func (sh *memoryShard) add(key string, e *memoryEntry) error {
	if err := sh.count.take(); err != nil {
		return err
	}
	sh.entries[key] = e
	return nil
}

// dropFields turns a hash entry into an empty string entry.
func (sh *memoryShard) dropFields(e *memoryEntry) {
	sh.count.n.Add(-int64(len(e.fields)))
	e.fields = nil
}

// live returns the unexpired entry at key, reclaiming it if it has expired.
func (sh *memoryShard) live(key string, now time.Time) *memoryEntry {
	e, ok := sh.entries[key]
	if !ok {
		return nil
	}
	if e.expired(now) {
		sh.remove(key, e)
		return nil
	}
	return e
}

func (sh *memoryShard) setExpiry(e *memoryEntry, at time.Time) {
	switch {
	case e.expireAt.IsZero() && !at.IsZero():
		sh.expiring++
	case !e.expireAt.IsZero() && at.IsZero():
		sh.expiring--
	}
	e.expireAt = at
}

// locked returns the shard owning key, locked (the caller unlocks it), the
// time read under that lock so that expiry decisions are ordered with the
// writes, and the key's live entry or nil.
func (m *Memory) locked(ctx context.Context, key string) (*memoryShard, time.Time, *memoryEntry, error) {
	if err := m.usable(ctx); err != nil {
		return nil, time.Time{}, nil, err
	}
	sh := &m.shards[fnv32a(key)%memoryShards]
	sh.mu.Lock()
	now := m.now()
	return sh, now, sh.live(key, now), nil
}

// holds reports whether e exists and, when expected is not nil, holds it.
func (e *memoryEntry) holds(expected []byte) (bool, error) {
	if e == nil {
		return false, nil
	}
	if expected == nil {
		return true, nil
	}
	if e.fields != nil {
		return false, ErrWrongType
	}
	return string(e.value) == string(expected), nil
}

// str returns the entry's string value, refusing a hash.
func (e *memoryEntry) str() ([]byte, error) {
	if e.fields != nil {
		return nil, ErrWrongType
	}
	return e.value, nil
}

func fnv32a(s string) uint32 {
	h := uint32(2166136261)
	for i := 0; i < len(s); i++ {
		h ^= uint32(s[i])
		h *= 16777619
	}
	return h
}

func deadline(now time.Time, ttl time.Duration) time.Time {
	if ttl == 0 {
		return time.Time{}
	}
	return now.Add(time.Duration(millis(ttl)) * time.Millisecond)
}

func (m *Memory) Increment(ctx context.Context, key string, by int64) (int64, error) {
	return m.increment(ctx, key, by, 0)
}

func (m *Memory) IncrementWithTTL(ctx context.Context, key string, by int64, ttl time.Duration) (int64, error) {
	if err := checkTTL(ttl, false); err != nil {
		return 0, err
	}
	return m.increment(ctx, key, by, ttl)
}

// increment sets ttl (when non-zero) on a key that has no expiry.
func (m *Memory) increment(ctx context.Context, key string, by int64, ttl time.Duration) (int64, error) {
	sh, now, e, err := m.locked(ctx, key)
	if err != nil {
		return 0, err
	}
	defer sh.mu.Unlock()
	var cur int64
	if e != nil {
		v, err := e.str()
		if err != nil {
			return 0, err
		}
		if cur, err = parseInteger(v); err != nil {
			return 0, err
		}
	}
	next, err := addInt64(cur, by)
	if err != nil {
		return 0, err
	}
	if e == nil {
		e = &memoryEntry{}
		if err := sh.add(key, e); err != nil {
			return 0, err
		}
	}
	e.value = strconv.AppendInt(e.value[:0], next, 10)
	if ttl > 0 && e.expireAt.IsZero() {
		sh.setExpiry(e, deadline(now, ttl))
	}
	return next, nil
}

func (m *Memory) Expire(ctx context.Context, key string, ttl time.Duration) (bool, error) {
	return m.compareAndExpire(ctx, key, nil, ttl)
}

func (m *Memory) CompareAndExpire(ctx context.Context, key string, expected []byte, ttl time.Duration) (bool, error) {
	if expected == nil {
		expected = []byte{}
	}
	return m.compareAndExpire(ctx, key, expected, ttl)
}

// compareAndExpire replaces the TTL when the key exists and, if expected is
// not nil, holds expected.
func (m *Memory) compareAndExpire(ctx context.Context, key string, expected []byte, ttl time.Duration) (bool, error) {
	if err := checkTTL(ttl, false); err != nil {
		return false, err
	}
	sh, now, e, err := m.locked(ctx, key)
	if err != nil {
		return false, err
	}
	defer sh.mu.Unlock()
	if ok, err := e.holds(expected); !ok {
		return false, err
	}
	sh.setExpiry(e, deadline(now, ttl))
	return true, nil
}

func (m *Memory) Get(ctx context.Context, key string) ([]byte, bool, error) {
	sh, _, e, err := m.locked(ctx, key)
	if err != nil {
		return nil, false, err
	}
	defer sh.mu.Unlock()
	if e == nil {
		return nil, false, nil
	}
	v, err := e.str()
	if err != nil {
		return nil, false, err
	}
	return append([]byte{}, v...), true, nil
}

func (m *Memory) Set(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	_, err := m.set(ctx, key, value, ttl, false)
	return err
}

func (m *Memory) SetIfAbsent(ctx context.Context, key string, value []byte, ttl time.Duration) (bool, error) {
	return m.set(ctx, key, value, ttl, true)
}

func (m *Memory) set(ctx context.Context, key string, value []byte, ttl time.Duration, onlyIfAbsent bool) (bool, error) {
	if err := checkTTL(ttl, !onlyIfAbsent); err != nil {
		return false, err
	}
	sh, now, e, err := m.locked(ctx, key)
	if err != nil {
		return false, err
	}
	defer sh.mu.Unlock()
	if e != nil && onlyIfAbsent {
		return false, nil
	}
	if e == nil {
		e = &memoryEntry{}
		if err := sh.add(key, e); err != nil {
			return false, err
		}
	}
	sh.dropFields(e)
	e.value = append(e.value[:0], value...)
	sh.setExpiry(e, deadline(now, ttl))
	return true, nil
}

func (m *Memory) Has(ctx context.Context, key string) (bool, error) {
	sh, _, e, err := m.locked(ctx, key)
	if err != nil {
		return false, err
	}
	defer sh.mu.Unlock()
	return e != nil, nil
}

func (m *Memory) Delete(ctx context.Context, key string) (bool, error) {
	return m.compareAndDelete(ctx, key, nil)
}

func (m *Memory) CompareAndDelete(ctx context.Context, key string, expected []byte) (bool, error) {
	if expected == nil {
		expected = []byte{}
	}
	return m.compareAndDelete(ctx, key, expected)
}

func (m *Memory) compareAndDelete(ctx context.Context, key string, expected []byte) (bool, error) {
	sh, _, e, err := m.locked(ctx, key)
	if err != nil {
		return false, err
	}
	defer sh.mu.Unlock()
	if ok, err := e.holds(expected); !ok {
		return false, err
	}
	sh.remove(key, e)
	return true, nil
}

func (m *Memory) TTL(ctx context.Context, key string) (time.Duration, bool, error) {
	sh, now, e, err := m.locked(ctx, key)
	if err != nil {
		return 0, false, err
	}
	defer sh.mu.Unlock()
	switch {
	case e == nil:
		return 0, false, nil
	case e.expireAt.IsZero():
		return Persistent, true, nil
	}
	return e.expireAt.Sub(now).Truncate(time.Millisecond), true, nil
}
