package store

import (
	"context"
	"strconv"
	"strings"
	"time"
)

// Sidecars report, with a short TTL, which config revision they enforce:
// one sorted set per namespace, members "pod/revision" scored by the
// store's time of the report. Stale members go at each report, and the
// whole set when no sidecar reports any more. The key is under the
// namespace's own hash-tag prefix, so its store user may write it.
func enforcingKey(namespace string) string { return "qo:v1:{" + namespace + "/_enforcing}" }

// ReportEnforcing records that pod enforces namespace's revision rev, for
// ttl.
func (r *Redis) ReportEnforcing(ctx context.Context, namespace, pod string, rev int64, ttl time.Duration) error {
	member := pod + "/" + strconv.FormatInt(rev, 10)
	return redisError(r.call(ctx, "qo1_report", enforcingKey(namespace), member, ttl.Milliseconds()).Err())
}

// Enforcing returns the newest revision each pod of namespace reported
// within ttl.
func (r *Redis) Enforcing(ctx context.Context, namespace string, ttl time.Duration) (map[string]int64, error) {
	members, err := r.ro(ctx, "qo1_reported", enforcingKey(namespace), ttl.Milliseconds()).StringSlice()
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
