package limiter

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/quotaops/quota-operator/internal/store"
	"github.com/redis/go-redis/v9"
)

// Subjects finds the subjects that have counters of the limit named by key
// (its Subject is ignored), by their hashes, sorted. A rate limit keeps no
// index of its subjects (a decision would pay for one), so this scans the
// keyspace: on demand, for an operator, and bounded by maxKeys keys
// examined; complete is false when the bound cut the scan short. A quota
// has its index: see Usage.
func (l *Limiter) Subjects(ctx context.Context, key CounterKey, maxKeys int64) (hashes []string, complete bool, err error) {
	r, ok := l.engine.(redisEngine)
	if !ok {
		return nil, false, ErrNotShared
	}
	prefix := keyPrefix + key.tag("") // {ns/policy/limit}
	match := strings.TrimSuffix(prefix, "}") + "/*"
	seen := map[string]bool{}
	examined, complete := int64(0), true
	scan := func(ctx context.Context, c *redis.Client) error {
		cursor := "0"
		for {
			page, err := c.FCallRo(ctx, "qo1_scan", nil, cursor, match, 1000).Slice()
			if err != nil {
				return store.LibraryError(err)
			}
			if len(page) != 2 {
				return fmt.Errorf("scan: reply of %d values", len(page))
			}
			cursor, _ = page[0].(string)
			names, _ := page[1].([]any)
			for _, n := range names {
				if examined++; examined > maxKeys {
					complete = false
					return nil
				}
				if h, ok := subjectOf(fmt.Sprint(n), len(prefix)-1); ok {
					seen[h] = true
				}
			}
			if cursor == "0" || cursor == "" {
				return nil
			}
		}
	}
	if err := r.eachNode(ctx, scan); err != nil {
		return nil, false, fmt.Errorf("limiter: subjects: %w", err)
	}
	for h := range seen {
		hashes = append(hashes, h)
	}
	slices.Sort(hashes)
	return hashes, complete, nil
}

// subjectOf reads the subject hash of a counter key whose tag's subject
// part starts at from: "/<hash>}".
func subjectOf(k string, from int) (string, bool) {
	rest := k[from:]
	if !strings.HasPrefix(rest, "/") {
		return "", false
	}
	h, _, ok := strings.Cut(rest[1:], "}")
	return h, ok && h != "" && !strings.Contains(h, "/")
}

// eachNode runs fn on every node that holds keys: each master of a
// Cluster, or the one server. Cluster masters are scanned one at a time,
// so fn needs no lock.
func (r redisEngine) eachNode(ctx context.Context, fn func(context.Context, *redis.Client) error) error {
	switch c := r.c.(type) {
	case *redis.ClusterClient:
		var mu sync.Mutex
		var masters []*redis.Client
		err := c.ForEachMaster(ctx, func(_ context.Context, m *redis.Client) error {
			mu.Lock()
			defer mu.Unlock()
			masters = append(masters, m)
			return nil
		})
		for _, m := range masters {
			if err == nil {
				err = fn(ctx, m)
			}
		}
		return err
	case *redis.Client:
		return fn(ctx, c)
	}
	return fmt.Errorf("cannot scan a %T", r.c)
}
