package store

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Redis is a Store on a Redis server, Sentinel group or Cluster. Every
// operation is one FCALL of quota-operator's Functions library
// (library.go), which the manager loads: a namespace's user may write
// nothing else. Every operation touches one key, so it runs on whichever
// node owns that key's slot.
type Redis struct {
	c redis.UniversalClient
	// oneSlotPerCall: the server refuses a call across hash slots
	// (a Cluster, or one endpoint in front of shards).
	oneSlotPerCall bool
}

// NewRedis wraps c. Close closes c.
func NewRedis(c redis.UniversalClient) *Redis {
	return &Redis{c: c}
}

// Client returns the underlying client, for callers that call the
// library's other functions on the same connections.
func (r *Redis) Client() redis.UniversalClient { return r.c }

// Ping asks the server (a Cluster's every master) for an answer: whether
// it is reachable now, whatever the functions library holds.
func (r *Redis) Ping(ctx context.Context) error {
	if cc, ok := r.c.(*redis.ClusterClient); ok {
		return cc.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error { return c.Ping(ctx).Err() })
	}
	return r.c.Ping(ctx).Err()
}

// OneSlotPerCall reports whether each call must name keys of one hash
// slot only: a Cluster client, or a URL with cross_slot=false.
func (r *Redis) OneSlotPerCall() bool {
	_, cluster := r.c.(*redis.ClusterClient)
	return cluster || r.oneSlotPerCall
}

func (r *Redis) call(ctx context.Context, fn, key string, args ...any) *redis.Cmd {
	return r.c.FCall(ctx, fn, []string{key}, args...)
}

func (r *Redis) ro(ctx context.Context, fn, key string, args ...any) *redis.Cmd {
	return r.c.FCallRo(ctx, fn, []string{key}, args...)
}

// Increment gives a key it creates MaxTTL: no key the library writes is
// without one.
func (r *Redis) Increment(ctx context.Context, key string, by int64) (int64, error) {
	n, err := r.call(ctx, "qo1_incr", key, by).Int64()
	return n, redisError(err)
}

// IncrementWithTTL repairs a key left without expiry as well as setting one
// on a new key, so a counter can never outlive its window.
func (r *Redis) IncrementWithTTL(ctx context.Context, key string, by int64, ttl time.Duration) (int64, error) {
	if err := checkTTL(ttl, false); err != nil {
		return 0, err
	}
	n, err := r.call(ctx, "qo1_incr", key, by, millis(ttl)).Int64()
	return n, redisError(err)
}

func (r *Redis) Expire(ctx context.Context, key string, ttl time.Duration) (bool, error) {
	if err := checkTTL(ttl, false); err != nil {
		return false, err
	}
	n, err := r.call(ctx, "qo1_expire", key, millis(ttl)).Int64()
	return n == 1, redisError(err)
}

func (r *Redis) Get(ctx context.Context, key string) ([]byte, bool, error) {
	v, err := r.ro(ctx, "qo1_get", key).Text()
	if errors.Is(err, redis.Nil) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, redisError(err)
	}
	return []byte(v), true, nil
}

// Set without a TTL keeps the key MaxTTL.
func (r *Redis) Set(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	if err := checkTTL(ttl, true); err != nil {
		return err
	}
	return redisError(r.call(ctx, "qo1_set", key, value, millis(ttl)).Err())
}

func (r *Redis) SetIfAbsent(ctx context.Context, key string, value []byte, ttl time.Duration) (bool, error) {
	if err := checkTTL(ttl, false); err != nil {
		return false, err
	}
	n, err := r.call(ctx, "qo1_set", key, value, millis(ttl), "NX").Int64()
	return n == 1, redisError(err)
}

func (r *Redis) Has(ctx context.Context, key string) (bool, error) {
	n, err := r.ro(ctx, "qo1_has", key).Int64()
	return n == 1, redisError(err)
}

func (r *Redis) Delete(ctx context.Context, key string) (bool, error) {
	n, err := r.call(ctx, "qo1_del", key).Int64()
	return n == 1, redisError(err)
}

func (r *Redis) CompareAndDelete(ctx context.Context, key string, expected []byte) (bool, error) {
	n, err := r.call(ctx, "qo1_cas", key, expected).Int64()
	return n == 1, redisError(err)
}

func (r *Redis) CompareAndExpire(ctx context.Context, key string, expected []byte, ttl time.Duration) (bool, error) {
	if err := checkTTL(ttl, false); err != nil {
		return false, err
	}
	n, err := r.call(ctx, "qo1_cas", key, expected, millis(ttl)).Int64()
	return n == 1, redisError(err)
}

func (r *Redis) TTL(ctx context.Context, key string) (time.Duration, bool, error) {
	ms, err := r.ro(ctx, "qo1_ttl", key).Int64()
	switch {
	case err != nil:
		return 0, false, redisError(err)
	case ms == -2:
		return 0, false, nil
	case ms == -1:
		return Persistent, true, nil
	}
	return time.Duration(ms) * time.Millisecond, true, nil
}

func (r *Redis) Close() error { return r.c.Close() }

// KeyTTLBound is the longest any key the library writes lives: MaxTTL.
func (r *Redis) KeyTTLBound() time.Duration { return MaxTTL }

// redisError maps the server's answers to this package's errors so callers
// can tell bad data from an unreachable store.
func redisError(err error) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	switch {
	case errors.Is(err, redis.ErrClosed):
		return ErrClosed
	case strings.Contains(msg, "not an integer"):
		return ErrNotInteger
	case strings.Contains(msg, "overflow"):
		return ErrOverflow
	case strings.HasPrefix(msg, "WRONGTYPE"):
		return ErrWrongType
	case strings.Contains(msg, "value is larger than"):
		return ErrTooLarge
	}
	return LibraryError(err)
}
