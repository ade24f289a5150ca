package limiter

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"time"
)

// fenceTTL keeps a lock's last fencing number this long after its last
// acquisition. Fencing numbers are also at least the store's clock in µs, so
// one issued after the key expired is still above every earlier one.
const fenceTTL = 30 * 24 * time.Hour

// Lock is a held lock: Token proves ownership; Fence increases with every
// acquisition, so a resource can refuse writes from an older holder.
type Lock struct {
	Token string
	Fence int64
}

// lockStore is what extend and release need: both are single compare-and-
// act steps the store already has.
type lockStore interface {
	CompareAndExpire(ctx context.Context, key string, expected []byte, ttl time.Duration) (bool, error)
	CompareAndDelete(ctx context.Context, key string, expected []byte) (bool, error)
}

func lockKeys(namespace, name string) (lock, fence string) {
	tag := braceTag(namespace, name)
	return TaggedKey(tag, "lock"), TaggedKey(tag, "fence")
}

// Acquire takes the lock name in namespace for ttl. When another holder has
// it, ok is false and wait is what is left of that holder's TTL. A holder
// that crashes loses the lock when its TTL runs out.
func (l *Limiter) Acquire(ctx context.Context, namespace, name string, ttl time.Duration) (lock Lock, ok bool, wait time.Duration, err error) {
	if ttl < time.Millisecond {
		return Lock{}, false, 0, fmt.Errorf("%w: lock TTL %v is under 1ms", ErrInvalid, ttl)
	}
	var raw [16]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return Lock{}, false, 0, err
	}
	token := hex.EncodeToString(raw[:])
	key, fence := lockKeys(namespace, name)
	r, err := l.engine.acquire(ctx, key, fence, []byte(token), ttl)
	if err != nil || !r.ok {
		return Lock{}, false, r.wait, err
	}
	return Lock{Token: token, Fence: r.fence}, true, 0, nil
}

// Extend sets the lock's TTL to ttl if token still holds it.
func (l *Limiter) Extend(ctx context.Context, namespace, name, token string, ttl time.Duration) (bool, error) {
	key, _ := lockKeys(namespace, name)
	return l.locks.CompareAndExpire(ctx, key, []byte(token), ttl)
}

// Release frees the lock if token still holds it.
func (l *Limiter) Release(ctx context.Context, namespace, name, token string) (bool, error) {
	key, _ := lockKeys(namespace, name)
	return l.locks.CompareAndDelete(ctx, key, []byte(token))
}
