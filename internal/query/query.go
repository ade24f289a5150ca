// Package query answers QuotaQueries: a quota's usage, a rate limit's
// subjects, or what a request would get, read from the store now. It
// holds no client of its own: the controller gives it a reader of the
// policies and the counters.
package query

import (
	"context"
	"errors"
	"fmt"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/quotaops/quota-operator/api/v1alpha1"
	"github.com/quotaops/quota-operator/internal/limiter"
	"github.com/quotaops/quota-operator/internal/targets"
)

// Counters is what answering reads of the store.
type Counters interface {
	Decide(ctx context.Context, req limiter.Request) (limiter.Decision, error)
	Usage(ctx context.Context, key limiter.CounterKey, start time.Time, top int) (limiter.Usage, error)
	Subjects(ctx context.Context, key limiter.CounterKey, maxKeys int64) ([]string, bool, error)
	// ForgetKnown drops the denials the limiter remembers, so a check
	// reads the store, never this process's memory.
	ForgetKnown()
}

// Answerer answers queries.
type Answerer struct {
	// Reader reads the policies the counters belong to.
	Reader   client.Reader
	Counters Counters
	// MaxScan bounds the keys one limit's usage examines (default 100,000).
	MaxScan int64
	Now     func() time.Time
}

// Why an answer could not be given; Error's Reason is a condition reason.
type Error struct {
	Reason string
	Err    error
}

func (e *Error) Error() string { return e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

// Defaults and bounds.
const (
	defaultTop     = 10
	defaultMaxScan = 100_000
)

// Answer reads the store for spec, asked in namespace ns. Its error is an
// *Error.
func (a *Answerer) Answer(ctx context.Context, ns string, spec v1alpha1.QuotaQuerySpec) (v1alpha1.QuotaQueryStatus, error) {
	var out v1alpha1.QuotaQueryStatus
	var err error
	switch {
	case spec.Usage != nil && spec.Usage.Target.Kind == v1alpha1.TargetUsageQuota:
		out.Quota, err = a.quotaUsage(ctx, ns, *spec.Usage)
	case spec.Usage != nil:
		out.Limit, err = a.limitUsage(ctx, ns, *spec.Usage)
	case spec.Check != nil:
		out.Check, err = a.check(ctx, ns, *spec.Check)
	default:
		err = &Error{Reason: v1alpha1.ReasonInvalid, Err: errors.New("spec: ask usage or check")}
	}
	return out, err
}

func (a *Answerer) quotaUsage(ctx context.Context, ns string, q v1alpha1.UsageQuestion) (*v1alpha1.QuotaUsageAnswer, error) {
	t, err := targets.Resolve(ctx, a.Reader, ns, q.Target)
	if err != nil {
		return nil, targetError(err)
	}
	start, end, err := t.Limit.Period.Bounds(a.now(), t.Limit.Location)
	if err != nil {
		return nil, &Error{Reason: v1alpha1.ReasonInvalid, Err: err}
	}
	u, err := a.Counters.Usage(ctx, t.Limit.Key, start, top(q))
	if err != nil {
		return nil, storeError(err)
	}
	shown := targets.UsageStatus(t.UsageQuota.Spec, u)
	return &v1alpha1.QuotaUsageAnswer{Limit: t.UsageQuota.Spec.Limit,
		Period:   v1alpha1.QuotaPeriod{Start: metav1.NewTime(start), End: metav1.NewTime(end)},
		Subjects: shown.Subjects, Consumed: shown.Consumed, Top: shown.Top}, nil
}

func (a *Answerer) now() time.Time {
	if a.Now != nil {
		return a.Now()
	}
	return time.Now()
}

func top(q v1alpha1.UsageQuestion) int {
	if q.Top == nil {
		return defaultTop
	}
	return min(max(int(*q.Top), 0), limiter.MaxTop)
}

// targetError says why a target cannot be read: it does not exist, or it
// has no such limit or is invalid.
func targetError(err error) error {
	var missing *targets.MissingError
	if errors.As(err, &missing) {
		return &Error{Reason: v1alpha1.ReasonNotFound, Err: err}
	}
	return &Error{Reason: v1alpha1.ReasonInvalid, Err: err}
}

func storeError(err error) error {
	return &Error{Reason: v1alpha1.ReasonStoreUnavailable, Err: fmt.Errorf("the store cannot be read: %w", err)}
}
