package store

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"

	"github.com/redis/go-redis/v9"
)

// MemoryUse is one Redis node's memory against its maxmemory (0: none).
type MemoryUse struct {
	Node      string
	Used, Max int64
}

// Ratio is Used/Max, 0 without a maxmemory.
func (u MemoryUse) Ratio() float64 {
	if u.Max <= 0 {
		return 0
	}
	return float64(u.Used) / float64(u.Max)
}

// MemoryUse reports the master closest to its maxmemory: the first to
// refuse writes (under noeviction) when it fills.
func (r *Redis) MemoryUse(ctx context.Context) (MemoryUse, error) {
	c, ok := r.c.(*redis.ClusterClient)
	if !ok {
		return nodeMemory(ctx, r.c, "")
	}
	var mu sync.Mutex
	var fullest MemoryUse
	err := c.ForEachMaster(ctx, func(ctx context.Context, n *redis.Client) error {
		u, err := nodeMemory(ctx, n, n.Options().Addr)
		mu.Lock()
		defer mu.Unlock()
		if err == nil && (fullest.Node == "" || u.Ratio() > fullest.Ratio()) {
			fullest = u
		}
		return err
	})
	return fullest, redisError(err)
}

func nodeMemory(ctx context.Context, c redis.Cmdable, node string) (MemoryUse, error) {
	info, err := c.Info(ctx, "memory").Result()
	if err != nil {
		return MemoryUse{}, redisError(err)
	}
	u := MemoryUse{Node: node}
	for _, line := range strings.Split(info, "\n") {
		k, v, _ := strings.Cut(strings.TrimSpace(line), ":")
		switch k {
		case "used_memory":
			u.Used, err = strconv.ParseInt(v, 10, 64)
		case "maxmemory":
			u.Max, err = strconv.ParseInt(v, 10, 64)
		}
		if err != nil {
			return MemoryUse{}, fmt.Errorf("INFO memory %s: %w", k, err)
		}
	}
	return u, nil
}
