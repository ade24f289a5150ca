package usageapi

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/quotaops/quota-operator/api/v1alpha1"
	"github.com/quotaops/quota-operator/internal/limiter"
	"github.com/quotaops/quota-operator/internal/subject"
	"github.com/quotaops/quota-operator/internal/targets"
)

// peekers bounds the concurrent peeks of one limit's usage; the limiter
// batches them into a few script calls.
const peekers = 16

func (s *Server) limitUsage(w http.ResponseWriter, r *http.Request) {
	ctx, cancel, ok := s.begin(w, r)
	if !ok {
		return
	}
	defer cancel()
	ns, name, limitName := r.PathValue("namespace"), r.PathValue("name"), r.URL.Query().Get("limit")
	top, err := topParam(r)
	if err == nil && limitName == "" {
		err = apierrors.NewBadRequest("limit: name one of the policy's limits (?limit=)")
	}
	if err != nil {
		writeStatus(w, err)
		return
	}
	t, err := targets.Resolve(ctx, s.Reader, ns, v1alpha1.AdjustmentTarget{Kind: v1alpha1.TargetRateLimitPolicy, Name: name, Limit: limitName})
	if err != nil {
		writeStatus(w, asStatus(err))
		return
	}
	maxScan := cmp.Or(s.MaxScan, defaultMaxScan)
	hashes, complete, err := s.Counters.Subjects(ctx, t.Limit.Key, maxScan)
	if err != nil {
		writeStatus(w, storeError(err))
		return
	}
	subjects, err := s.peekAll(ctx, t.Limit, hashes)
	if err != nil {
		writeStatus(w, storeError(err))
		return
	}
	out := &LimitUsage{TypeMeta: typeMeta("LimitUsage"), ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Limit: limitName, Complete: complete, Subjects: int64(len(subjects))}
	for _, rate := range t.Limit.Rates {
		out.Rates = append(out.Rates, RateUsage{Limit: rate.Limit, Window: rate.Window.String()})
	}
	slices.SortFunc(subjects, func(a, b SubjectUsage) int {
		return cmp.Or(cmp.Compare(a.Rate.Remaining, b.Rate.Remaining), cmp.Compare(b.Rate.Used, a.Rate.Used), cmp.Compare(a.Subject, b.Subject))
	})
	out.Top = subjects[:min(top, len(subjects))]
	writeJSON(w, http.StatusOK, out)
}

// peekAll reads each subject's tightest rate; subjects whose windows hold
// nothing any more (their keys outlive a window by a little) are left out.
func (s *Server) peekAll(ctx context.Context, lim limiter.Limit, hashes []string) ([]SubjectUsage, error) {
	var mu sync.Mutex
	var out []SubjectUsage
	var firstErr error
	work := make(chan string)
	var wg sync.WaitGroup
	for range min(peekers, len(hashes)) {
		wg.Go(func() {
			for h := range work {
				u, err := s.peekOne(ctx, lim, h)
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

func (s *Server) peekOne(ctx context.Context, lim limiter.Limit, hash string) (SubjectUsage, error) {
	lim.Key.Subject, lim.Key.Hashed, lim.Cost = nil, hash, 1
	d, err := s.Counters.Decide(ctx, limiter.Request{Limits: []limiter.Limit{lim}, Peek: true})
	if err != nil {
		return SubjectUsage{}, err
	}
	u := SubjectUsage{Subject: hash}
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
func rateUsage(lim limiter.Limit, r limiter.Result) RateUsage {
	remaining := r.Remaining
	if r.Allowed {
		remaining += lim.Cost
	}
	u := RateUsage{Limit: r.Max, Used: max(0, r.Max-remaining), Remaining: max(0, remaining)}
	if lim.Algorithm != limiter.Quota {
		u.Window = lim.Rates[r.Rate].Window.String()
	}
	return u
}

func (s *Server) check(w http.ResponseWriter, r *http.Request) {
	ctx, cancel, ok := s.begin(w, r)
	if !ok {
		return
	}
	defer cancel()
	var c Check
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		writeStatus(w, apierrors.NewBadRequest("the body is not a Check: "+err.Error()))
		return
	}
	lims, err := s.checkLimits(ctx, r.PathValue("namespace"), c.Spec)
	if err != nil {
		writeStatus(w, err)
		return
	}
	s.Counters.ForgetKnown()
	d, err := s.Counters.Decide(ctx, limiter.Request{Limits: lims, Peek: true})
	if err != nil {
		writeStatus(w, storeError(err))
		return
	}
	c.TypeMeta, c.Status = typeMeta("Check"), CheckStatus{Allowed: d.Allowed}
	for _, res := range d.Results {
		c.Status.Results = append(c.Status.Results, checkResult(lims[res.Limit], res, s.now()))
	}
	writeJSON(w, http.StatusCreated, &c)
}

// checkLimits binds each named limit to its subject.
func (s *Server) checkLimits(ctx context.Context, ns string, spec CheckSpec) ([]limiter.Limit, error) {
	if n := len(spec.Limits); n == 0 || n > MaxCheckLimits {
		return nil, apierrors.NewBadRequest(fmt.Sprintf("spec.limits: %d limits; give 1 to %d", n, MaxCheckLimits))
	}
	var out []limiter.Limit
	for i, l := range spec.Limits {
		field := fmt.Sprintf("spec.limits[%d]", i)
		if !subject.IsHash(l.SubjectHash) {
			return nil, apierrors.NewBadRequest(field + ".subjectHash: 32 lowercase hex digits (the hash of the subject's values)")
		}
		if k := l.Target.Kind; k != v1alpha1.TargetUsageQuota && k != v1alpha1.TargetRateLimitPolicy {
			return nil, apierrors.NewBadRequest(fmt.Sprintf("%s.target.kind: %q is neither UsageQuota nor RateLimitPolicy", field, k))
		}
		if l.Cost < 0 || l.Cost > limiter.MaxValue {
			return nil, apierrors.NewBadRequest(fmt.Sprintf("%s.cost: %d is not from 1 to %d", field, l.Cost, int64(limiter.MaxValue)))
		}
		t, err := targets.Resolve(ctx, s.Reader, ns, l.Target)
		if err == nil {
			t, err = t.Bind(v1alpha1.AdjustmentSubject{Hash: l.SubjectHash}, field+".subjectHash")
		}
		if err != nil {
			return nil, asStatus(err)
		}
		t.Limit.Cost = cmp.Or(l.Cost, 1)
		out = append(out, t.Limit)
	}
	return out, nil
}

func checkResult(lim limiter.Limit, r limiter.Result, now time.Time) CheckResult {
	out := CheckResult{Limit: r.Limit, Allowed: r.Allowed, DryRun: r.DryRun, Rate: rateUsage(lim, r),
		ResetAfter: metav1.Duration{Duration: r.ResetAfter}, ResetAt: metav1.NewTime(now.Add(r.ResetAfter).Round(time.Second))}
	if !r.Allowed && r.RetryAfter != limiter.Never {
		out.RetryAfter = &metav1.Duration{Duration: r.RetryAfter}
	}
	return out
}
