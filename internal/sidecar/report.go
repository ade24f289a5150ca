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

// reportRetry is how soon a report that failed is tried again.
const reportRetry = 5 * time.Second

// RunReports reports the revision the sidecar enforces as pod, at once
// when it changes and every reportEvery otherwise, until ctx ends. It
// sleeps between reports: an idle sidecar's process wakes for nothing
// else.
func (s *Source) RunReports(ctx context.Context, r EnforcingReporter, pod string) {
	installed := s.signal()
	last := int64(-1)
	wait := time.NewTimer(0)
	defer wait.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-installed:
			if ps := s.Current(); ps == nil || ps.Revision == last {
				continue // the timer still runs for the unchanged revision
			}
		case <-wait.C:
		}
		next := reportEvery
		if ps := s.Current(); ps == nil {
			next = reportRetry // nothing enforced yet; installed will say
		} else if err := s.report(ctx, r, pod, ps.Revision); err != nil {
			s.Log.V(1).Info("Cannot report the enforced revision", "error", err.Error())
			next = reportRetry
		} else {
			last = ps.Revision
		}
		wait.Reset(next)
	}
}

func (s *Source) report(ctx context.Context, r EnforcingReporter, pod string, rev int64) error {
	rctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	return r.ReportEnforcing(rctx, s.Namespace, pod, rev, reportTTL)
}
