package query

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/quotaops/quota-operator/api/v1alpha1"
	"github.com/quotaops/quota-operator/internal/limiter"
	"github.com/quotaops/quota-operator/internal/subject"
	"github.com/quotaops/quota-operator/internal/targets"
)

// peekers bounds the concurrent peeks of one limit's usage; the limiter
// batches them into a few script calls.
const peekers = 16

func (a *Answerer) limitUsage(ctx context.Context, ns string, q v1alpha1.UsageQuestion) (*v1alpha1.LimitUsageAnswer, error) {
	t, err := targets.Resolve(ctx, a.Reader, ns, q.Target)
	if err != nil {
		return nil, targetError(err)
	}
	hashes, complete, err := a.Counters.Subjects(ctx, t.Limit.Key, cmp.Or(a.MaxScan, defaultMaxScan))
	if err != nil {
		return nil, storeError(err)
	}
	subjects, err := a.peekAll(ctx, t.Limit, hashes)
	if err != nil {
		return nil, storeError(err)
	}
	out := &v1alpha1.LimitUsageAnswer{Complete: complete, Subjects: int64(len(subjects))}
	for _, rate := range t.Limit.Rates {
		out.Rates = append(out.Rates, v1alpha1.RateUsage{Limit: rate.Limit, Window: rate.Window.String()})
	}
	slices.SortFunc(subjects, func(a, b v1alpha1.SubjectUsage) int {
		return cmp.Or(cmp.Compare(a.Rate.Remaining, b.Rate.Remaining), cmp.Compare(b.Rate.Used, a.Rate.Used), cmp.Compare(a.Subject, b.Subject))
	})
	out.Top = subjects[:min(top(q), len(subjects))]
	return out, nil
}

// peekAll reads each subject's tightest rate; subjects whose windows hold
// nothing any more (their keys outlive a window by a little) are left out.
func (a *Answerer) peekAll(ctx context.Context, lim limiter.Limit, hashes []string) ([]v1alpha1.SubjectUsage, error) {
	var mu sync.Mutex
	var out []v1alpha1.SubjectUsage
	var firstErr error
	work := make(chan string)
	var wg sync.WaitGroup
	for range min(peekers, len(hashes)) {
		wg.Go(func() {
			for h := range work {
				u, err := a.peekOne(ctx, lim, h)
				mu.Lock()
				if err != nil && firstErr == nil {
					firstErr = err
				}
				if err == nil && u.Rate.Used > 0 {
					out = append(out, u)
				}
				mu.Unlock()
			}
		})
	}
	for _, h := range hashes {
		work <- h
	}
	close(work)
	wg.Wait()
	return out, firstErr
}

func (a *Answerer) peekOne(ctx context.Context, lim limiter.Limit, hash string) (v1alpha1.SubjectUsage, error) {
	lim.Key.Subject, lim.Key.Hashed, lim.Cost = nil, hash, 1
	d, err := a.Counters.Decide(ctx, limiter.Request{Limits: []limiter.Limit{lim}, Peek: true})
	if err != nil {
		return v1alpha1.SubjectUsage{}, err
	}
	u := v1alpha1.SubjectUsage{Subject: hash}
	for i, r := range d.Results {
		ru := rateUsage(lim, r)
		if i == 0 || ru.Remaining < u.Rate.Remaining {
			u.Rate = ru
		}
	}
	return u, nil
}

// rateUsage reads a peek's result as the window's state before the
// request: a peek that would pass reports what would remain after it.
func rateUsage(lim limiter.Limit, r limiter.Result) v1alpha1.RateUsage {
	remaining := r.Remaining
	if r.Allowed {
		remaining += lim.Cost
	}
	u := v1alpha1.RateUsage{Limit: r.Max, Used: max(0, r.Max-remaining), Remaining: max(0, remaining)}
	if lim.Algorithm != limiter.Quota {
		u.Window = lim.Rates[r.Rate].Window.String()
	}
	return u
}

func (a *Answerer) check(ctx context.Context, ns string, q v1alpha1.CheckQuestion) (*v1alpha1.CheckAnswer, error) {
	lims, err := a.checkLimits(ctx, ns, q)
	if err != nil {
		return nil, err
	}
	a.Counters.ForgetKnown()
	d, err := a.Counters.Decide(ctx, limiter.Request{Limits: lims, Peek: true})
	if err != nil {
		return nil, storeError(err)
	}
	out := &v1alpha1.CheckAnswer{Allowed: d.Allowed}
	for _, res := range d.Results {
		out.Results = append(out.Results, checkResult(lims[res.Limit], res, a.now()))
	}
	return out, nil
}

// checkLimits binds each named limit to its subject.
func (a *Answerer) checkLimits(ctx context.Context, ns string, q v1alpha1.CheckQuestion) ([]limiter.Limit, error) {
	var out []limiter.Limit
	for i, l := range q.Limits {
		field := fmt.Sprintf("spec.check.limits[%d]", i)
		if !subject.IsHash(l.SubjectHash) {
			return nil, &Error{Reason: v1alpha1.ReasonInvalid, Err: errors.New(field + ".subjectHash: 32 lowercase hex digits (the hash of the subject's values)")}
		}
		t, err := targets.Resolve(ctx, a.Reader, ns, l.Target)
		if err != nil {
			return nil, targetError(err)
		}
		if t, err = t.Bind(v1alpha1.AdjustmentSubject{Hash: l.SubjectHash}, field+".subjectHash"); err != nil {
			return nil, &Error{Reason: v1alpha1.ReasonInvalid, Err: err}
		}
		t.Limit.Cost = min(max(l.Cost, 1), limiter.MaxValue)
		out = append(out, t.Limit)
	}
	return out, nil
}

func checkResult(lim limiter.Limit, r limiter.Result, now time.Time) v1alpha1.CheckResult {
	out := v1alpha1.CheckResult{Limit: int32(r.Limit), Allowed: r.Allowed, DryRun: r.DryRun, Rate: rateUsage(lim, r),
		ResetAt: metav1.NewTime(now.Add(r.ResetAfter).Round(time.Second))}
	if !r.Allowed && r.RetryAfter != limiter.Never {
		out.RetryAfter = r.RetryAfter.String()
	}
	return out
}
