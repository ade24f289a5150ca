package store

import (
	"context"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Sidecars report, with a short TTL, which config revision they enforce:
// one sorted set per namespace, members "pod/revision" scored by the
// store's time of the report. Stale members go at each report, and the
// whole set when no sidecar reports any more. The key is under the
// namespace's own hash-tag prefix, so its store user may write it.
func enforcingKey(namespace string) string { return "qo:v1:{" + namespace + "/_enforcing}" }

var reportEnforcing = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[2]))
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
`)

var readEnforcing = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
return redis.call('ZRANGEBYSCORE', KEYS[1], now - tonumber(ARGV[1]), '+inf')
`)

// ReportEnforcing records that pod enforces namespace's revision rev, for
// ttl.
func (r *Redis) ReportEnforcing(ctx context.Context, namespace, pod string, rev int64, ttl time.Duration) error {
	member := pod + "/" + strconv.FormatInt(rev, 10)
	return redisError(reportEnforcing.Run(ctx, r.c, []string{enforcingKey(namespace)}, member, ttl.Milliseconds()).Err())
}

// Enforcing returns the newest revision each pod of namespace reported
// within ttl.
func (r *Redis) Enforcing(ctx context.Context, namespace string, ttl time.Duration) (map[string]int64, error) {
	members, err := readEnforcing.Run(ctx, r.c, []string{enforcingKey(namespace)}, ttl.Milliseconds()).StringSlice()
	if err != nil {
		return nil, redisError(err)
	}
	out := make(map[string]int64, len(members))
	for _, m := range members {
		i := strings.LastIndexByte(m, '/')
		rev, err := strconv.ParseInt(m[i+1:], 10, 64)
		if i < 0 || err != nil {
			continue
		}
		if pod := m[:i]; rev > out[pod] {
			out[pod] = rev
		}
	}
	return out, nil
}
