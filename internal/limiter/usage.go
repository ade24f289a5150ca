package limiter

import (
	"cmp"
	"context"
	"slices"
	"time"
)

// Usage is a quota period's consumption, as the UsageQuota status shows it.
type Usage struct {
	// Subjects is how many subjects consumed in the period.
	Subjects int64
	// Total is the units consumed by all subjects.
	Total int64
	// Top is the heaviest consumers, most first (ties by subject hash).
	Top []Consumer
}

// Consumer is one subject's consumption; Subject is its SubjectHash.
type Consumer struct {
	Subject string
	Used    int64
}

// MaxTop bounds how many consumers Usage returns.
const MaxTop = 100

// Usage reads the period starting at start of the quota named by key (its
// Subject is ignored): one read of the index the decisions keep, never a
// scan of the keyspace.
func (l *Limiter) Usage(ctx context.Context, key CounterKey, start time.Time, top int) (Usage, error) {
	top = min(max(top, 0), MaxTop)
	return l.engine.usage(ctx, quotaKeys(key.QuotaTag(), start), top)
}

func topConsumers(all []Consumer, n int) []Consumer {
	slices.SortFunc(all, func(a, b Consumer) int {
		if c := cmp.Compare(b.Used, a.Used); c != 0 {
			return c
		}
		return cmp.Compare(a.Subject, b.Subject)
	})
	if len(all) > n {
		all = all[:n]
	}
	if len(all) == 0 {
		return nil
	}
	return all
}
