package sidecar

import (
	"context"
	"time"

	"github.com/quotaops/quota-operator/internal/limiter"
)

// Every store call of the sidecar, a decision's or the local API's
// key-value and lock calls, is bounded by the store timeout and by the
// circuit breaker, so a hung store costs 50 ms and then nothing, not the
// client's seconds per call.

// guard runs call within the store timeout unless the breaker is open, and
// tells the breaker how the store did.
func guard[T any](ctx context.Context, e *Enforcer, call func(context.Context) (T, error)) (T, error) {
	var zero T
	if !e.Breaker.Allow() {
		return zero, errBreakerOpen
	}
	sctx, cancel := context.WithTimeout(ctx, e.timeout())
	defer cancel()
	v, err := call(sctx)
	e.record(ctx, err)
	return v, err
}

// guardedStore is the local API's store, guarded.
type guardedStore struct {
	s LocalStore
	e *Enforcer
}

func (g guardedStore) IncrementWithTTL(ctx context.Context, key string, by int64, ttl time.Duration) (int64, error) {
	return guard(ctx, g.e, func(ctx context.Context) (int64, error) { return g.s.IncrementWithTTL(ctx, key, by, ttl) })
}

func (g guardedStore) Expire(ctx context.Context, key string, ttl time.Duration) (bool, error) {
	return guard(ctx, g.e, func(ctx context.Context) (bool, error) { return g.s.Expire(ctx, key, ttl) })
}

func (g guardedStore) Get(ctx context.Context, key string) ([]byte, bool, error) {
	type got struct {
		value []byte
		found bool
	}
	r, err := guard(ctx, g.e, func(ctx context.Context) (got, error) {
		v, found, err := g.s.Get(ctx, key)
		return got{v, found}, err
	})
	return r.value, r.found, err
}

func (g guardedStore) Set(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	_, err := guard(ctx, g.e, func(ctx context.Context) (struct{}, error) { return struct{}{}, g.s.Set(ctx, key, value, ttl) })
	return err
}

func (g guardedStore) Has(ctx context.Context, key string) (bool, error) {
	return guard(ctx, g.e, func(ctx context.Context) (bool, error) { return g.s.Has(ctx, key) })
}

func (g guardedStore) Delete(ctx context.Context, key string) (bool, error) {
	return guard(ctx, g.e, func(ctx context.Context) (bool, error) { return g.s.Delete(ctx, key) })
}

// guardedLocks is the local API's locks, guarded.
type guardedLocks struct {
	l Locker
	e *Enforcer
}

func (g guardedLocks) Acquire(ctx context.Context, namespace, name string, ttl time.Duration) (limiter.Lock, bool, time.Duration, error) {
	type acquired struct {
		lock limiter.Lock
		got  bool
		wait time.Duration
	}
	r, err := guard(ctx, g.e, func(ctx context.Context) (acquired, error) {
		lock, got, wait, err := g.l.Acquire(ctx, namespace, name, ttl)
		return acquired{lock, got, wait}, err
	})
	return r.lock, r.got, r.wait, err
}

func (g guardedLocks) Extend(ctx context.Context, namespace, name, token string, ttl time.Duration) (bool, error) {
	return guard(ctx, g.e, func(ctx context.Context) (bool, error) { return g.l.Extend(ctx, namespace, name, token, ttl) })
}

func (g guardedLocks) Release(ctx context.Context, namespace, name, token string) (bool, error) {
	return guard(ctx, g.e, func(ctx context.Context) (bool, error) { return g.l.Release(ctx, namespace, name, token) })
}
