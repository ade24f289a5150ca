package store

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Redis is a Store on a Redis server, Sentinel group or Cluster. Every
// operation touches one key, so it runs on whichever node owns that key's
// slot; compound operations are Lua scripts sent with EVALSHA (falling back to
// EVAL once after a restart flushed the script cache).
type Redis struct {
	c redis.UniversalClient
}

// NewRedis wraps c. Close closes c.
func NewRedis(c redis.UniversalClient) *Redis {
	return &Redis{c: c}
}

// Client returns the underlying client, for callers that run their own
// scripts on the same connections.
func (r *Redis) Client() redis.UniversalClient { return r.c }

// incrementWithTTL repairs a key left without expiry (PTTL -1) as well as
// setting one on a new key, so a counter can never outlive its window.
var incrementWithTTL = redis.NewScript(`
local n = redis.call('INCRBY', KEYS[1], ARGV[1])
if redis.call('PTTL', KEYS[1]) == -1 then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return n
`)

var compareAndDelete = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
`)

var compareAndExpire = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
`)

func (r *Redis) Increment(ctx context.Context, key string, by int64) (int64, error) {
	n, err := r.c.IncrBy(ctx, key, by).Result()
	return n, redisError(err)
}

func (r *Redis) IncrementWithTTL(ctx context.Context, key string, by int64, ttl time.Duration) (int64, error) {
	if err := checkTTL(ttl, false); err != nil {
		return 0, err
	}
	n, err := incrementWithTTL.Run(ctx, r.c, []string{key}, by, millis(ttl)).Int64()
	return n, redisError(err)
}

func (r *Redis) Expire(ctx context.Context, key string, ttl time.Duration) (bool, error) {
	if err := checkTTL(ttl, false); err != nil {
		return false, err
	}
	ok, err := r.c.PExpire(ctx, key, time.Duration(millis(ttl))*time.Millisecond).Result()
	return ok, redisError(err)
}

func (r *Redis) Get(ctx context.Context, key string) ([]byte, bool, error) {
	v, err := r.c.Get(ctx, key).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, redisError(err)
	}
	return v, true, nil
}

func (r *Redis) Set(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	if err := checkTTL(ttl, true); err != nil {
		return err
	}
	return redisError(r.c.Set(ctx, key, value, time.Duration(millis(ttl))*time.Millisecond).Err())
}

// SetIfAbsent is SET NX PX: one native atomic command, so no script.
func (r *Redis) SetIfAbsent(ctx context.Context, key string, value []byte, ttl time.Duration) (bool, error) {
	if err := checkTTL(ttl, false); err != nil {
		return false, err
	}
	res, err := r.c.SetArgs(ctx, key, value, redis.SetArgs{Mode: "NX", TTL: time.Duration(millis(ttl)) * time.Millisecond}).Result()
	if errors.Is(err, redis.Nil) {
		return false, nil
	}
	return res == "OK", redisError(err)
}

func (r *Redis) Has(ctx context.Context, key string) (bool, error) {
	n, err := r.c.Exists(ctx, key).Result()
	return n == 1, redisError(err)
}

func (r *Redis) Delete(ctx context.Context, key string) (bool, error) {
	n, err := r.c.Del(ctx, key).Result()
	return n == 1, redisError(err)
}

func (r *Redis) CompareAndDelete(ctx context.Context, key string, expected []byte) (bool, error) {
	n, err := compareAndDelete.Run(ctx, r.c, []string{key}, expected).Int64()
	return n == 1, redisError(err)
}

func (r *Redis) CompareAndExpire(ctx context.Context, key string, expected []byte, ttl time.Duration) (bool, error) {
	if err := checkTTL(ttl, false); err != nil {
		return false, err
	}
	n, err := compareAndExpire.Run(ctx, r.c, []string{key}, expected, millis(ttl)).Int64()
	return n == 1, redisError(err)
}

func (r *Redis) TTL(ctx context.Context, key string) (time.Duration, bool, error) {
	// PTTL answers in milliseconds; go-redis scales it to a Duration and
	// keeps -1 (no expiry) and -2 (missing) as raw nanosecond values.
	d, err := r.c.PTTL(ctx, key).Result()
	switch {
	case err != nil:
		return 0, false, redisError(err)
	case d == -2:
		return 0, false, nil
	case d == -1:
		return Persistent, true, nil
	}
	return d, true, nil
}

func (r *Redis) Close() error { return r.c.Close() }

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
	}
	return err
}
