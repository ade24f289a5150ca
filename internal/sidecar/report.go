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

// How often a sidecar reports an unchanged revision (Source.report), and
// how long a report stands: a sidecar that stops reporting drops out within reportTTL. A new
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

// report is what was last reported, and when.
type report struct {
	rev    int64
	at     time.Time
	failed bool
}

// report tells the Reporter the revision enforced when it is new, when the
// last report is reportEvery old, or when the last one failed
// reportRetry ago.
func (s *Source) report(ctx context.Context) {
	ps := s.Current()
	if s.Reporter == nil || ps == nil {
		return
	}
	last := s.reported
	due := last.at.IsZero() || ps.Revision != last.rev || time.Since(last.at) >= reportEvery ||
		last.failed && time.Since(last.at) >= reportRetry
	if !due {
		return
	}
	rctx, cancel := context.WithTimeout(ctx, time.Second)
	err := s.Reporter.ReportEnforcing(rctx, s.Namespace, s.Pod, ps.Revision, reportTTL)
	cancel()
	s.reported = report{rev: ps.Revision, at: time.Now(), failed: err != nil}
	if err != nil {
		s.Log.V(1).Info("Cannot report the enforced revision", "error", err.Error())
	}
}

// nextReport is how long until a report is due again.
func (s *Source) nextReport() time.Duration {
	switch {
	case s.Reporter == nil || s.reported.at.IsZero():
		return reportEvery
	case s.reported.failed:
		return max(reportRetry-time.Since(s.reported.at), 0)
	}
	return max(reportEvery-time.Since(s.reported.at), 0)
}
