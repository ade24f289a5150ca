package sidecar

import (
	"context"
	"time"
)

// EnforcingReporter records, with a TTL, the config revision a pod's
// sidecar enforces: what the operator's Enforced condition is made of.
type EnforcingReporter interface {
	ReportEnforcing(ctx context.Context, namespace, pod string, rev int64, ttl time.Duration) error
}

// How often a sidecar reports an unchanged revision, and how long a report
// stands: a sidecar that stops reporting drops out within reportTTL. A new
// revision is reported at once, so these only bound how long a wedged
// sidecar still counts as enforcing; the manager counts running pods
// only, so a deleted pod's report counts for nothing. Every 5 s, each
// idle sidecar's report was a fifth of what it cost Redis.
const (
	reportEvery = time.Minute
	reportTTL   = 3 * time.Minute
)

// RunReports reports the revision the sidecar enforces as pod, at once
// when it changes and every reportEvery otherwise, until ctx ends.
func (s *Source) RunReports(ctx context.Context, r EnforcingReporter, pod string) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	last, at := int64(-1), time.Time{}
	for {
		if ps := s.Current(); ps != nil && (ps.Revision != last || time.Since(at) >= reportEvery) {
			rctx, cancel := context.WithTimeout(ctx, time.Second)
			err := r.ReportEnforcing(rctx, s.Namespace, pod, ps.Revision, reportTTL)
			cancel()
			if err != nil {
				s.Log.V(1).Info("Cannot report the enforced revision", "error", err.Error())
			} else {
				last, at = ps.Revision, time.Now()
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}
