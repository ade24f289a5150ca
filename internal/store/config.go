package store

import (
	"bytes"
	"context"
	"errors"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// The enforcement config the operator publishes for a namespace: a hash of
// documents by id (Kind/name), a revision that every change increments,
// and a pub/sub channel that announces each new revision. These are the
// only keys without a TTL: they hold desired state, owned by the operator,
// which deletes them with their objects and writes them back after a flush.
func configKeys(namespace string) (docs, rev, channel string) {
	tag := configTag(namespace)
	return tag + ":docs", tag + ":rev", tag + ":changed"
}

func configTag(namespace string) string { return "qo:v1:config:{" + namespace + "}" }

// ConfigKeyPattern matches every config key of namespace (a DNS label, so
// it holds no glob character): what its sidecars may read.
func ConfigKeyPattern(namespace string) string { return configTag(namespace) + ":*" }

// ConfigChannel is where namespace's new revisions are announced.
func ConfigChannel(namespace string) string {
	_, _, channel := configKeys(namespace)
	return channel
}

// ErrNoConfig: the namespace's config is not in the store, because it was
// never written or the store lost it (a flush, a restart without its data,
// a failover to an empty replica). One document alone would then be a
// revision that holds part of the namespace's policies, and sidecars would
// enforce only that part: the writer must write the namespace whole
// (CreateConfigs).
var ErrNoConfig = errors.New("the namespace's config is not in the store; it is written whole, not one document at a time")

// putConfig answers -1 when the namespace has no revision (ErrNoConfig).
var putConfig = redis.NewScript(`
if redis.call('EXISTS', KEYS[2]) == 0 then return -1 end
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then
  return tonumber(redis.call('GET', KEYS[2]))
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
local rev = redis.call('INCR', KEYS[2])
redis.call('PUBLISH', ARGV[3], rev)
return rev
`)

// createConfig writes a namespace's first revision, holding every
// document (ARGV[2..], id and document pairs), or answers -1 when the
// namespace has a revision already. No documents write nothing: an empty
// revision would tell sidecars every policy was deleted.
var createConfig = redis.NewScript(`
if redis.call('EXISTS', KEYS[2]) == 1 then return -1 end
if #ARGV == 1 then return 0 end
redis.call('DEL', KEYS[1])
for i = 2, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
local rev = redis.call('INCR', KEYS[2])
redis.call('PUBLISH', ARGV[1], rev)
return rev
`)

var deleteConfig = redis.NewScript(`
if redis.call('HDEL', KEYS[1], ARGV[1]) == 0 then
  return tonumber(redis.call('GET', KEYS[2]) or '0')
end
local rev = redis.call('INCR', KEYS[2])
redis.call('PUBLISH', ARGV[2], rev)
return rev
`)

// bumpConfig announces a new revision with the same documents. A namespace
// that has no revision keeps none: revision 1 with no documents would tell
// its sidecars that every policy was deleted.
var bumpConfig = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local rev = redis.call('INCR', KEYS[1])
redis.call('PUBLISH', ARGV[1], rev)
return rev
`)

// BumpConfig gives namespace's config a new revision, documents unchanged,
// so its sidecars read it again and drop what they derived from counters
// (such as which are over their limit). It returns the revision, 0 when
// the namespace has no config.
func (r *Redis) BumpConfig(ctx context.Context, namespace string) (int64, error) {
	_, rev, channel := configKeys(namespace)
	n, err := bumpConfig.Run(ctx, r.c, []string{rev}, channel).Int64()
	return n, redisError(err)
}

// PutConfig stores doc as id in namespace's config and returns the
// revision. An unchanged document changes nothing and announces nothing.
// A namespace without config is ErrNoConfig: write it whole with CreateConfigs.
func (r *Redis) PutConfig(ctx context.Context, namespace, id string, doc []byte) (int64, error) {
	docs, rev, channel := configKeys(namespace)
	n, err := putConfig.Run(ctx, r.c, []string{docs, rev}, id, doc, channel).Int64()
	if err == nil && n < 0 {
		return 0, ErrNoConfig
	}
	return n, redisError(err)
}

// A namespace whose config the store lost lost its counters with it:
// they live in the same Redis, and config keys have no TTL, so they vanish
// only with a flush, a restart without data or a failover to an empty
// replica. The manager records when (RecordLoss) beside the config, for as
// long as a quota period that began before it can last, and reports the
// usage of those periods as incomplete (LostAt).
func lossKey(namespace string) string { return configTag(namespace) + ":lost" }

// RecordLoss notes that namespace's counters were lost at at, for keep.
func (r *Redis) RecordLoss(ctx context.Context, namespace string, at time.Time, keep time.Duration) error {
	return redisError(r.c.Set(ctx, lossKey(namespace), strconv.FormatInt(at.UnixMilli(), 10), keep).Err())
}

// LostAt is when namespace's counters were last lost; zero when no loss
// is on record.
func (r *Redis) LostAt(ctx context.Context, namespace string) (time.Time, error) {
	v, err := r.c.Get(ctx, lossKey(namespace)).Result()
	if errors.Is(err, redis.Nil) {
		return time.Time{}, nil
	}
	if err != nil {
		return time.Time{}, redisError(err)
	}
	ms, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return time.Time{}, ErrNotInteger
	}
	return time.UnixMilli(ms), nil
}

// ErrConfigExists: CreateConfigs found the namespace's config already
// written; change it one document at a time (PutConfig).
var ErrConfigExists = errors.New("the namespace's config is in the store already")

// CreateConfigs writes docs (by id) as namespace's whole config, in its
// first revision, which it returns. Where the namespace has config it
// writes nothing and answers ErrConfigExists, so that two writers that
// both found none cannot replace each other's newer documents. No
// documents write nothing and return 0.
func (r *Redis) CreateConfigs(ctx context.Context, namespace string, docs map[string][]byte) (int64, error) {
	docsKey, rev, channel := configKeys(namespace)
	args := make([]any, 0, 1+2*len(docs))
	args = append(args, channel)
	for id, doc := range docs {
		args = append(args, id, doc)
	}
	n, err := createConfig.Run(ctx, r.c, []string{docsKey, rev}, args...).Int64()
	if err == nil && n < 0 {
		return 0, ErrConfigExists
	}
	return n, redisError(err)
}

// DeleteConfig removes id from namespace's config and returns the revision.
func (r *Redis) DeleteConfig(ctx context.Context, namespace, id string) (int64, error) {
	docs, rev, channel := configKeys(namespace)
	n, err := deleteConfig.Run(ctx, r.c, []string{docs, rev}, id, channel).Int64()
	return n, redisError(err)
}

// Configs returns namespace's revision and documents, read together.
func (r *Redis) Configs(ctx context.Context, namespace string) (int64, map[string][]byte, error) {
	docsKey, revKey, _ := configKeys(namespace)
	var all *redis.MapStringStringCmd
	var rev *redis.StringCmd
	_, err := r.c.TxPipelined(ctx, func(p redis.Pipeliner) error {
		all, rev = p.HGetAll(ctx, docsKey), p.Get(ctx, revKey)
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		if cause := all.Err(); cause != nil { // such as NOPERM, not EXECABORT
			err = cause
		}
		return 0, nil, redisError(err)
	}
	n, err := parseRevision(rev.Val())
	if err != nil {
		return 0, nil, err
	}
	docs := make(map[string][]byte, len(all.Val()))
	for id, doc := range all.Val() {
		docs[id] = []byte(doc)
	}
	return n, docs, nil
}

// ConfigRevision is namespace's config revision alone (0 when none was
// written): one GET, which a reader's timer asks before it reads the
// whole config, so an idle sidecar costs Redis little.
func (r *Redis) ConfigRevision(ctx context.Context, namespace string) (int64, error) {
	_, revKey, _ := configKeys(namespace)
	v, err := r.c.Get(ctx, revKey).Result()
	if err != nil && !errors.Is(err, redis.Nil) {
		return 0, redisError(err)
	}
	return parseRevision(v)
}

// parseRevision reads a revision key's value: "" (none written) is 0.
func parseRevision(v string) (int64, error) {
	if v == "" {
		return 0, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return 0, ErrNotInteger
	}
	return n, nil
}

// watchHealthCheck is how long the subscription may stay silent before
// go-redis PINGs it (its default is 3 s). Each command wakes Redis, which
// costs it about 250 µs on a small VM whatever the command
// (BenchmarkFanOut): a PING every 3 s from each idle sidecar was most of
// what 10,000 of them cost Redis. A dead peer is found by TCP keepalive
// meanwhile, and what its announcements missed by the readers' revision
// check and the re-read on resubscription.
const watchHealthCheck = 5 * time.Minute

// WatchConfigs announces namespace's new revisions until ctx ends. It
// keeps only the newest unread revision, so a slow reader never blocks the
// store. Announcements sent while the connection was down are lost: when
// go-redis subscribes again it announces 0, which means anything may have
// changed, and readers also check the revision on a timer.
func (r *Redis) WatchConfigs(ctx context.Context, namespace string) (<-chan int64, error) {
	_, _, channel := configKeys(namespace)
	ps := r.c.Subscribe(ctx, channel)
	if _, err := ps.Receive(ctx); err != nil { // the subscription confirmation
		_ = ps.Close()
		return nil, redisError(err)
	}
	out := make(chan int64, 1)
	go func() {
		defer close(out)
		defer func() { _ = ps.Close() }()
		msgs := ps.ChannelWithSubscriptions(redis.WithChannelHealthCheckInterval(watchHealthCheck))
		for {
			select {
			case <-ctx.Done():
				return
			case m, ok := <-msgs:
				if !ok {
					return
				}
				announce(out, m)
			}
		}
	}()
	return out, nil
}

// announce offers what a subscription message says: a new revision, or,
// for a subscription go-redis renewed on a new connection, 0.
func announce(out chan int64, m any) {
	switch m := m.(type) {
	case *redis.Message:
		if rev, err := strconv.ParseInt(m.Payload, 10, 64); err == nil {
			offerNewest(out, rev)
		}
	case *redis.Subscription:
		offerNewest(out, 0)
	}
}

// offerNewest puts rev in ch, replacing an unread older revision.
func offerNewest(ch chan int64, rev int64) {
	for {
		select {
		case ch <- rev:
			return
		default:
		}
		select {
		case <-ch:
		default:
		}
	}
}

// memoryConfigs is the memory store's config: one process, so one lock.
type memoryConfigs struct {
	mu       sync.Mutex
	docs     map[string]map[string][]byte
	rev      map[string]int64
	watchers map[string]map[chan int64]struct{}
}

func (c *memoryConfigs) change(namespace string, apply func(docs map[string][]byte) bool) int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.docs == nil {
		c.docs, c.rev, c.watchers = map[string]map[string][]byte{}, map[string]int64{}, map[string]map[chan int64]struct{}{}
	}
	if c.docs[namespace] == nil {
		c.docs[namespace] = map[string][]byte{}
	}
	if !apply(c.docs[namespace]) {
		return c.rev[namespace]
	}
	c.rev[namespace]++
	for w := range c.watchers[namespace] {
		offerNewest(w, c.rev[namespace])
	}
	return c.rev[namespace]
}

func (m *Memory) PutConfig(ctx context.Context, namespace, id string, doc []byte) (int64, error) {
	if err := m.usable(ctx); err != nil {
		return 0, err
	}
	absent := false
	rev := m.configs.change(namespace, func(docs map[string][]byte) bool {
		if absent = m.configs.rev[namespace] == 0; absent {
			return false
		}
		if old, ok := docs[id]; ok && string(old) == string(doc) {
			return false
		}
		docs[id] = append([]byte{}, doc...)
		return true
	})
	if absent {
		return 0, ErrNoConfig
	}
	return rev, nil
}

// CreateConfigs writes docs as namespace's first revision, as Redis does.
func (m *Memory) CreateConfigs(ctx context.Context, namespace string, docs map[string][]byte) (int64, error) {
	if err := m.usable(ctx); err != nil {
		return 0, err
	}
	exists := false
	rev := m.configs.change(namespace, func(cur map[string][]byte) bool {
		if exists = m.configs.rev[namespace] > 0; exists || len(docs) == 0 {
			return false
		}
		clear(cur)
		for id, doc := range docs {
			cur[id] = bytes.Clone(doc)
		}
		return true
	})
	if exists {
		return 0, ErrConfigExists
	}
	return rev, nil
}

func (m *Memory) DeleteConfig(ctx context.Context, namespace, id string) (int64, error) {
	if err := m.usable(ctx); err != nil {
		return 0, err
	}
	return m.configs.change(namespace, func(docs map[string][]byte) bool {
		_, ok := docs[id]
		delete(docs, id)
		return ok
	}), nil
}

func (m *Memory) Configs(ctx context.Context, namespace string) (int64, map[string][]byte, error) {
	if err := m.usable(ctx); err != nil {
		return 0, nil, err
	}
	c := &m.configs
	c.mu.Lock()
	defer c.mu.Unlock()
	docs := make(map[string][]byte, len(c.docs[namespace]))
	for id, doc := range c.docs[namespace] {
		docs[id] = append([]byte{}, doc...)
	}
	return c.rev[namespace], docs, nil
}

// ConfigRevision is namespace's config revision (0 when none was written).
func (m *Memory) ConfigRevision(ctx context.Context, namespace string) (int64, error) {
	if err := m.usable(ctx); err != nil {
		return 0, err
	}
	m.configs.mu.Lock()
	defer m.configs.mu.Unlock()
	return m.configs.rev[namespace], nil
}

func (m *Memory) WatchConfigs(ctx context.Context, namespace string) (<-chan int64, error) {
	if err := m.usable(ctx); err != nil {
		return nil, err
	}
	c := &m.configs
	w := make(chan int64, 1)
	c.change(namespace, func(map[string][]byte) bool { return false }) // initialise the maps
	c.mu.Lock()
	if c.watchers[namespace] == nil {
		c.watchers[namespace] = map[chan int64]struct{}{}
	}
	c.watchers[namespace][w] = struct{}{}
	c.mu.Unlock()
	out := make(chan int64, 1)
	go func() {
		defer close(out)
		defer func() {
			c.mu.Lock()
			delete(c.watchers[namespace], w)
			c.mu.Unlock()
		}()
		for {
			select {
			case <-ctx.Done():
				return
			case <-m.stop:
				return
			case rev := <-w:
				offerNewest(out, rev)
			}
		}
	}()
	return out, nil
}

func (m *Memory) usable(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if m.closed.Load() {
		return ErrClosed
	}
	return nil
}
