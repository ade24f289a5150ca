package limiter_test

import (
	"context"
	"testing"
	"time"

	"github.com/quotaops/quota-operator/internal/limiter"
	"github.com/quotaops/quota-operator/internal/testutil/fakeclock"
)

// A quota tracks at most MaxSubjects subjects per period: a new subject
// beyond them is denied and not recorded, while known subjects go on as
// before; a dry run lets it through but does not record it either; the
// next period starts empty.
func TestQuotaSubjectBound(t *testing.T) {
	for _, be := range backends(t) {
		t.Run(be.name, func(t *testing.T) {
			clock := fakeclock.New(epoch)
			l, _ := simulated(t, be, clock)
			quota := func(subject string, dry bool) limiter.Limit {
				return limiter.Limit{Key: key(t, "monthly", subject), Algorithm: limiter.Quota, Rates: rate(10, 0),
					Period: limiter.Month, Location: time.UTC, Cost: 1, DryRun: dry, MaxSubjects: 3}
			}
			for _, s := range []string{"sk_a", "sk_b", "sk_c", "sk_a"} {
				if d := decide(t, l, quota(s, false)); !d.Allowed || d.By().SubjectBound {
					t.Fatalf("%s: %+v", s, d)
				}
			}
			periodLeft := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC).Sub(epoch)
			d := decide(t, l, quota("sk_d", false))
			if r := d.By(); d.Allowed || !r.SubjectBound || r.Remaining != 0 || r.RetryAfter != periodLeft || r.ResetAfter != periodLeft {
				t.Fatalf("a fourth subject: %+v; want denied by the bound, retry in %v", d, periodLeft)
			}
			if d := decide(t, l, quota("sk_e", true)); !d.Allowed || !d.By().SubjectBound {
				t.Fatalf("a dry-run fifth subject: %+v; want allowed, flagged", d)
			}
			if d := decide(t, l, quota("sk_b", false)); !d.Allowed || d.By().Remaining != 8 {
				t.Fatalf("a known subject: %+v; want allowed, 8 left", d)
			}
			expectSubjects(t, l, key(t, "monthly"), time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC), 3, 5)
			clock.Advance(periodLeft)
			if d := decide(t, l, quota("sk_d", false)); !d.Allowed {
				t.Fatalf("sk_d in the next period: %+v", d)
			}
		})
	}
}

func expectSubjects(t *testing.T, l *limiter.Limiter, k limiter.CounterKey, start time.Time, subjects, total int64) {
	t.Helper()
	u, err := l.Usage(context.Background(), k, start, 10)
	if err != nil || u.Subjects != subjects || u.Total != total {
		t.Fatalf("usage %+v, %v; want %d subjects, %d units", u, err, subjects, total)
	}
}
