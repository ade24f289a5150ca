package store

import (
	"context"
	"errors"
	"maps"
	"slices"
	"strconv"
	"time"
)

// ErrUndeclaredKey: a transaction touched a key it did not declare, which
// would bypass the locks that make it atomic.
var ErrUndeclaredKey = errors.New("key not declared by the transaction")

// MemoryTx is the view of a set of keys that Memory.Update hands to its
// function: every declared key is locked for the whole call, and time stands
// still at Now. It is the memory store's equivalent of a Lua script.
type MemoryTx struct {
	m       *Memory
	now     time.Time
	shardOf map[string]*memoryShard
	// undo puts back, in reverse order, what each write changed, when fn
	// fails. Each holds only what its write changed (a hash field, not the
	// hash), so a large hash costs nothing to write.
	undo []undoStep
}

// undoStep is one write's undo: key's entry as it was (whole), or, for a
// hash field, the field and the hash's expiry.
type undoStep struct {
	key string
	// whole: entry is the key's entry before the write (nil: none).
	whole bool
	entry *memoryEntry
	// a field write: whether the hash existed and had the field, its
	// value and the hash's expiry then.
	field             string
	existed, hadField bool
	fieldValue        int64
	expireAt          time.Time
}

// Update runs fn atomically over keys: the shards that own them are locked in
// a fixed order (so concurrent transactions cannot deadlock) until fn returns.
// fn must not keep tx. It is all or nothing: when fn returns an error (the
// store full for a new entry half-way through, say), every write it made is
// undone.
func (m *Memory) Update(ctx context.Context, keys []string, fn func(tx *MemoryTx) error) error {
	if err := m.usable(ctx); err != nil {
		return err
	}
	tx := &MemoryTx{m: m, shardOf: make(map[string]*memoryShard, len(keys))}
	order := make([]int, 0, len(keys))
	for _, k := range keys {
		i := int(fnv32a(k) % memoryShards)
		tx.shardOf[k] = &m.shards[i]
		order = append(order, i)
	}
	slices.Sort(order)
	order = slices.Compact(order)
	for _, i := range order {
		m.shards[i].mu.Lock()
	}
	defer func() {
		for _, i := range order {
			m.shards[i].mu.Unlock()
		}
	}()
	tx.now = m.now()
	if err := fn(tx); err != nil {
		tx.rollback()
		return err
	}
	return nil
}

// saveWhole keeps a copy of key's entry before a write that replaces or
// deletes it (detached: a deleted entry is no longer the store's, so it is
// kept as is).
func (tx *MemoryTx) saveWhole(key string, e *memoryEntry, detached bool) {
	was := e
	if e != nil && !detached {
		was = &memoryEntry{value: slices.Clone(e.value), fields: maps.Clone(e.fields), expireAt: e.expireAt}
	}
	tx.undo = append(tx.undo, undoStep{key: key, whole: true, entry: was})
}

// rollback undoes every write, the last first. It takes no room from the
// store's bound: what it restores held that room before.
func (tx *MemoryTx) rollback() {
	for i := len(tx.undo) - 1; i >= 0; i-- {
		u := tx.undo[i]
		sh := tx.shardOf[u.key]
		cur := sh.entries[u.key]
		if u.whole || !u.existed {
			if cur != nil {
				sh.remove(u.key, cur)
			}
			if u.whole && u.entry != nil {
				sh.restore(u.key, u.entry)
			}
			continue
		}
		if cur == nil { // the write emptied the hash, which went
			cur = &memoryEntry{fields: map[string]int64{}}
			sh.restore(u.key, cur)
		}
		_, has := cur.fields[u.field]
		switch {
		case u.hadField && !has:
			sh.count.n.Add(1)
		case !u.hadField && has:
			sh.count.n.Add(-1)
		}
		if u.hadField {
			cur.fields[u.field] = u.fieldValue
		} else {
			delete(cur.fields, u.field)
		}
		sh.setExpiry(cur, u.expireAt)
	}
}

// restore puts e back at key with the room it takes.
func (sh *memoryShard) restore(key string, e *memoryEntry) {
	sh.entries[key] = e
	sh.count.n.Add(1 + int64(len(e.fields)))
	if !e.expireAt.IsZero() {
		sh.expiring++
	}
}

// Now is the store's time for this transaction.
func (tx *MemoryTx) Now() time.Time { return tx.now }

func (tx *MemoryTx) entry(key string) (*memoryShard, *memoryEntry, error) {
	sh, ok := tx.shardOf[key]
	if !ok {
		return nil, nil, ErrUndeclaredKey
	}
	return sh, sh.live(key, tx.now), nil
}

// create returns key's live entry, making an empty one if there is none; a
// new entry is a hash when hash is set.
func (tx *MemoryTx) create(key string, hash bool) (*memoryShard, *memoryEntry, error) {
	sh, e, err := tx.entry(key)
	if err != nil || e != nil {
		return sh, e, err
	}
	e = &memoryEntry{}
	if hash {
		e.fields = make(map[string]int64)
	}
	return sh, e, sh.add(key, e)
}

// Get returns key's string value and whether it exists.
func (tx *MemoryTx) Get(key string) ([]byte, bool, error) {
	_, e, err := tx.entry(key)
	if err != nil || e == nil {
		return nil, false, err
	}
	v, err := e.str()
	return v, err == nil, err
}

// Int returns key's integer value, 0 when it does not exist.
func (tx *MemoryTx) Int(key string) (int64, error) {
	v, ok, err := tx.Get(key)
	if err != nil || !ok {
		return 0, err
	}
	return parseInteger(v)
}

// Set stores value at key with ttl (required: transactions keep nothing
// forever).
func (tx *MemoryTx) Set(key string, value []byte, ttl time.Duration) error {
	if err := checkTTL(ttl, false); err != nil {
		return err
	}
	if _, was, err := tx.entry(key); err == nil {
		tx.saveWhole(key, was, false)
	}
	sh, e, err := tx.create(key, false)
	if err != nil {
		return err
	}
	sh.dropFields(e)
	e.value = append(e.value[:0], value...)
	sh.setExpiry(e, deadline(tx.now, ttl))
	return nil
}

// IncrementBy adds by to the integer at key and sets ttl.
func (tx *MemoryTx) IncrementBy(key string, by int64, ttl time.Duration) (int64, error) {
	cur, err := tx.Int(key)
	if err != nil {
		return 0, err
	}
	next, err := addInt64(cur, by)
	if err != nil {
		return 0, err
	}
	return next, tx.Set(key, strconv.AppendInt(nil, next, 10), ttl)
}

// Fields returns the hash at key (nil when it does not exist). The map is
// the store's own: read it, do not keep or change it.
func (tx *MemoryTx) Fields(key string) (map[string]int64, error) {
	_, e, err := tx.entry(key)
	if err != nil || e == nil {
		return nil, err
	}
	if e.fields == nil {
		return nil, ErrWrongType
	}
	return e.fields, nil
}

// AddField adds by to field of the hash at key, creating both as needed, and
// sets ttl on the hash. A field that reaches 0 is removed, and so is a hash
// left with no fields.
func (tx *MemoryTx) AddField(key, field string, by int64, ttl time.Duration) (int64, error) {
	if err := checkTTL(ttl, false); err != nil {
		return 0, err
	}
	fields, err := tx.Fields(key)
	if err != nil {
		return 0, err
	}
	next, err := addInt64(fields[field], by)
	if err != nil {
		return 0, err
	}
	_, was, _ := tx.entry(key)
	prev, had := fields[field]
	u := undoStep{key: key, field: field, existed: was != nil, hadField: had, fieldValue: prev}
	if was != nil {
		u.expireAt = was.expireAt
	}
	sh, e, err := tx.create(key, true)
	if err != nil {
		return 0, err
	}
	tx.undo = append(tx.undo, u)
	if err := sh.setField(e, field, next); err != nil {
		if len(e.fields) == 0 {
			sh.remove(key, e)
		}
		return 0, err
	}
	if len(e.fields) == 0 {
		sh.remove(key, e)
		return 0, nil
	}
	sh.setExpiry(e, deadline(tx.now, ttl))
	return next, nil
}

// Delete removes key.
func (tx *MemoryTx) Delete(key string) error {
	sh, e, err := tx.entry(key)
	if err == nil && e != nil {
		sh.remove(key, e)
		tx.saveWhole(key, e, true)
	}
	return err
}

// TTL returns the time left before key expires: 0 when the key is missing,
// Persistent when it has no expiry.
func (tx *MemoryTx) TTL(key string) time.Duration {
	_, e, err := tx.entry(key)
	switch {
	case err != nil || e == nil:
		return 0
	case e.expireAt.IsZero():
		return Persistent
	}
	return e.expireAt.Sub(tx.now)
}

// setField sets a hash field, deleting it at 0; a new field is an entry
// the store's bound must have room for.
func (sh *memoryShard) setField(e *memoryEntry, field string, v int64) error {
	_, had := e.fields[field]
	switch {
	case v == 0 && had:
		delete(e.fields, field)
		sh.count.n.Add(-1)
	case v != 0 && !had:
		if err := sh.count.take(); err != nil {
			return err
		}
		e.fields[field] = v
	case v != 0:
		e.fields[field] = v
	}
	return nil
}
