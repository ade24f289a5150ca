package limiter

import (
	"context"
	"fmt"
	"time"

	"github.com/quotaops/quota-operator/internal/store"
	"github.com/redis/go-redis/v9"
)

// engine runs the limiter's atomic steps in one store.
type engine interface {
	// decide evaluates entries at a.atUs (Unix µs; 0 takes the store's
	// clock) and, unless a.peek, commits them all when no enforced entry
	// denies.
	decide(ctx context.Context, entries []entry, a attempt) (outcome, error)
	// settle moves committed counters of decision c by each entry's units
	// (settle.go), at nowUs (0 takes the store's clock).
	settle(ctx context.Context, moves []movedEntry, c *commitment, nowUs int64) error
	// usage reads a quota period's usage keys.
	usage(ctx context.Context, keys []string, top int) (Usage, error)
	// acquire takes the lock at key for ttl when it is free and issues a
	// fencing number above every earlier one.
	acquire(ctx context.Context, key, fence string, token []byte, ttl time.Duration) (lockReply, error)
}

// attempt is how to make one decision.
type attempt struct {
	atUs int64
	peek bool
	// deadline, when set, bounds the store calls with ctx.
	deadline time.Time
}

type outcome struct {
	stale    bool
	nowUs    int64
	verdicts []verdict
}

type lockReply struct {
	ok    bool
	fence int64
	// wait is the held lock's remaining TTL when not ok.
	wait time.Duration
}

// The stores the engines need; each is a subset of one backend.
type (
	redisStore interface {
		Client() redis.UniversalClient
	}
	memoryStore interface {
		Update(ctx context.Context, keys []string, fn func(tx *store.MemoryTx) error) error
	}
)

func newEngine(s store.Store) (engine, error) {
	switch s := s.(type) {
	case redisStore:
		e := newRedisEngine(s.Client())
		if sb, ok := s.(interface{ OneSlotPerCall() bool }); ok && sb.OneSlotPerCall() {
			e.cluster = true
		}
		return e, nil
	case memoryStore:
		return memoryEngine{s}, nil
	}
	return nil, fmt.Errorf("limiter: store %T is neither Redis nor memory", s)
}
