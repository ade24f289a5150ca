// Package limits turns compiled config (internal/config) into the
// limiter's limits. The sidecar, the gateway and the operator's
// adjustments all take their limits from here, so they name the same
// counters.
package limits

import (
	"fmt"
	"time"

	"github.com/quotaops/quota-operator/internal/config"
	"github.com/quotaops/quota-operator/internal/limiter"
)

// ForLimit is limit l of policy d, in namespace, with no subject yet.
func ForLimit(namespace string, d *config.Policy, l config.Limit) (limiter.Limit, error) {
	alg, err := algorithm(l.Algorithm)
	if err != nil {
		return limiter.Limit{}, fmt.Errorf("%s: limit %s: %w", d.ID(), l.Name, err)
	}
	lim := limiter.Limit{Key: limiter.CounterKey{Namespace: namespace, Policy: d.Name, Limit: l.Name}, Algorithm: alg, Cost: l.Cost, DryRun: d.DryRun}
	for _, rate := range l.Rates {
		lim.Rates = append(lim.Rates, limiter.Rate{Limit: rate.Limit, Window: time.Duration(rate.WindowMs) * time.Millisecond})
	}
	// Objects from --policy-file never met the CRD's rules.
	if err := lim.Validate(); err != nil {
		return limiter.Limit{}, fmt.Errorf("%s: limit %s: %w", d.ID(), l.Name, err)
	}
	return lim, nil
}

// ForQuota is the quota of d, in namespace, with no subject yet.
func ForQuota(namespace string, d *config.Policy) (limiter.Limit, error) {
	q := d.Quota
	if q == nil {
		return limiter.Limit{}, fmt.Errorf("%s is not a quota", d.ID())
	}
	period, err := limiter.ParsePeriod(q.Period)
	if err != nil {
		return limiter.Limit{}, fmt.Errorf("%s: %w", d.ID(), err)
	}
	loc, err := time.LoadLocation(q.TimeZone)
	if err != nil {
		return limiter.Limit{}, fmt.Errorf("%s: time zone: %w", d.ID(), err)
	}
	lim := limiter.Limit{Key: limiter.QuotaKey(namespace, d.Name, q.Feature), Algorithm: limiter.Quota,
		Rates: []limiter.Rate{{Limit: q.Limit}}, Period: period, Location: loc, Cost: q.Cost(), DryRun: d.DryRun, MaxSubjects: q.Bound()}
	if err := lim.Validate(); err != nil {
		return limiter.Limit{}, fmt.Errorf("%s: %w", d.ID(), err)
	}
	return lim, nil
}

// Override is the quota's limit for the subject of this hash, if it has
// its own.
func Override(q *config.Quota, subjectHash string) (int64, bool) {
	for _, o := range q.Overrides {
		if o.SubjectHash == subjectHash {
			return o.Limit, true
		}
	}
	return 0, false
}

func algorithm(name string) (limiter.Algorithm, error) {
	switch name {
	case "FixedWindow", "":
		return limiter.FixedWindow, nil
	case "SlidingWindow":
		return limiter.SlidingWindow, nil
	case "TokenBucket":
		return limiter.TokenBucket, nil
	}
	return 0, fmt.Errorf("unknown algorithm %q", name)
}
