package controllers

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/source"

	"github.com/quotaops/quota-operator/api/v1alpha1"
	"github.com/quotaops/quota-operator/internal/config"
	"github.com/quotaops/quota-operator/internal/limiter"
	"github.com/quotaops/quota-operator/internal/targets"
)

// topConsumers is how many consumers status lists.
const topConsumers = 10

// UsageReader reads a quota period's usage index, which the sidecars'
// decisions keep.
type UsageReader interface {
	Usage(ctx context.Context, key limiter.CounterKey, start time.Time, top int) (limiter.Usage, error)
}

// UsageQuotaReconciler publishes UsageQuotas and refreshes their usage.
type UsageQuotaReconciler struct {
	publisher
	Usage UsageReader
	// Interval is how often status.usage is refreshed.
	Interval time.Duration
	Now      func() time.Time
	Resync   <-chan event.GenericEvent
}

// NewUsageQuotaReconciler returns a reconciler writing to s and reading
// usage from u every interval.
func NewUsageQuotaReconciler(c client.Client, s ConfigWriter, u UsageReader, events EventRecorder, interval time.Duration) *UsageQuotaReconciler {
	return &UsageQuotaReconciler{publisher: publisher{Client: c, Store: s, Events: events}, Usage: u, Interval: interval, Now: time.Now}
}

// +kubebuilder:rbac:groups=policy.quotaops.dev,resources=usagequotas,verbs=get;list;watch;update;patch
// +kubebuilder:rbac:groups=policy.quotaops.dev,resources=usagequotas/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=policy.quotaops.dev,resources=usagequotas/finalizers,verbs=update

// Reconcile compiles one UsageQuota, publishes it and refreshes its usage.
func (r *UsageQuotaReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	var q v1alpha1.UsageQuota
	if err := r.Get(ctx, req.NamespacedName, &q); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if done, err := r.begin(ctx, &q, config.KindUsageQuota); done || err != nil {
		if !q.DeletionTimestamp.IsZero() {
			forgetUsage(q.Namespace, q.Name)
		}
		return ctrl.Result{}, err
	}
	before := q.DeepCopy()
	compiled, compileErr := config.CompileUsageQuota(&q)
	compileErr, err := r.withinBudget(ctx, &q, compileErr)
	if err != nil {
		return ctrl.Result{}, err
	}
	rev, err := r.publish(ctx, &q, &q.Status.PolicyStatus, compiled, compileErr)
	var result ctrl.Result
	if compileErr == nil && err == nil {
		result.RequeueAfter, err = r.refresh(ctx, &q, compiled.Quota, rev)
	}
	if perr := r.patchStatus(ctx, before, &q, before.Status, q.Status, before.Status.Conditions, q.Status.Conditions); perr != nil && !apierrors.IsNotFound(perr) {
		return ctrl.Result{}, perr
	}
	if err != nil {
		return ctrl.Result{}, err
	}
	return result, nil
}

// refresh updates Enforced and the usage, and returns the sooner of
// their next looks.
func (r *UsageQuotaReconciler) refresh(ctx context.Context, q *v1alpha1.UsageQuota, quota *config.Quota, rev int64) (time.Duration, error) {
	enforcedAfter, err := r.setEnforced(ctx, q, &q.Status.PolicyStatus, &q.Spec.Selector, rev)
	if err != nil {
		return 0, err
	}
	usageAfter, err := r.refreshUsage(ctx, q, quota)
	return min(enforcedAfter, usageAfter), err
}

// refreshUsage fills status.period and status.usage for the current
// period, and returns when to look again: after the interval, or just
// after the period ends if that is sooner.
func (r *UsageQuotaReconciler) refreshUsage(ctx context.Context, q *v1alpha1.UsageQuota, quota *config.Quota) (time.Duration, error) {
	period, err := limiter.ParsePeriod(quota.Period)
	if err != nil {
		return 0, err
	}
	loc, err := time.LoadLocation(quota.TimeZone)
	if err != nil {
		return 0, err
	}
	now := r.Now()
	start, end, err := period.Bounds(now, loc)
	if err != nil {
		return 0, err
	}
	q.Status.Period = &v1alpha1.QuotaPeriod{Start: metav1.NewTime(start), End: metav1.NewTime(end)}
	if r.Usage == nil {
		q.Status.Usage = nil
		setCondition(&q.Status.PolicyStatus, q.Generation, v1alpha1.ConditionUsageReported, metav1.ConditionFalse, v1alpha1.ReasonPerPodCounters,
			"Usage is unknown: without Redis each sidecar counts alone, so no one sees the quota's usage across pods")
		return min(r.Interval, end.Sub(now)+time.Second), nil
	}
	sctx, cancel := context.WithTimeout(ctx, r.Health.callTimeout())
	defer cancel()
	u, err := r.Usage.Usage(sctx, limiter.QuotaKey(q.Namespace, q.Name, quota.Feature), start, topConsumers)
	if err != nil {
		setCondition(&q.Status.PolicyStatus, q.Generation, v1alpha1.ConditionProgrammed, "False", v1alpha1.ReasonStoreUnavailable,
			"Usage cannot be read from the store; retrying: "+err.Error())
		return 0, fmt.Errorf("read usage: %w", err)
	}
	q.Status.Usage = targets.UsageStatus(q.Spec, u)
	if err := r.reportUsageSource(sctx, q, start); err != nil {
		return 0, err
	}
	setSubjectBound(q, u.Subjects, quota.Bound(), end)
	recordUsage(q.Namespace, q.Name, u.Subjects, quota.Bound(), u.Total, topUsedRatio(q.Status.Usage))
	return min(r.Interval, end.Sub(now)+time.Second), nil
}

// reportUsageSource sets UsageReported: True, or False with CountersLost
// while the current period began before the store lost the namespace's
// counters (its usage then counts only from the loss on).
func (r *UsageQuotaReconciler) reportUsageSource(ctx context.Context, q *v1alpha1.UsageQuota, start time.Time) error {
	var lost time.Time
	if lr, ok := r.Store.(LossRecorder); ok {
		var err error
		if lost, err = lr.LostAt(ctx, q.Namespace); err != nil {
			return fmt.Errorf("read when counters were lost: %w", err)
		}
	}
	if lost.IsZero() || lost.Before(start) {
		setCondition(&q.Status.PolicyStatus, q.Generation, v1alpha1.ConditionUsageReported, metav1.ConditionTrue, v1alpha1.ReasonFromStore,
			"status.usage is read from the store every refresh")
		return nil
	}
	setCondition(&q.Status.PolicyStatus, q.Generation, v1alpha1.ConditionUsageReported, metav1.ConditionFalse, v1alpha1.ReasonCountersLost,
		fmt.Sprintf("The store lost this namespace's counters in this period (found at %s: a flush, a restart without its data, or a failover to an empty replica): status.usage counts the period from then on only, and what was used before is admitted again until the period ends at %s",
			lost.UTC().Format(time.RFC3339), q.Status.Period.End.UTC().Format(time.RFC3339)))
	return nil
}

// setSubjectBound warns from 90% of spec.maxSubjects, before new subjects
// are denied.
func setSubjectBound(q *v1alpha1.UsageQuota, subjects, bound int64, end time.Time) {
	status, reason := metav1.ConditionTrue, v1alpha1.ReasonWithinBound
	msg := fmt.Sprintf("%d of %d subjects tracked this period", subjects, bound)
	switch {
	case subjects >= bound:
		status, reason = metav1.ConditionFalse, v1alpha1.ReasonBoundReached
		msg += fmt.Sprintf("; new subjects are denied until the period ends at %s: raise spec.maxSubjects if they are real", end.UTC().Format(time.RFC3339))
	case subjects*10 >= bound*9:
		status, reason = metav1.ConditionFalse, v1alpha1.ReasonNearBound
		msg += fmt.Sprintf("; new subjects will be denied from %d on: raise spec.maxSubjects if they are real", bound)
	}
	setCondition(&q.Status.PolicyStatus, q.Generation, v1alpha1.ConditionSubjectsWithinBound, status, reason, msg)
}

// topUsedRatio is the largest used/(used+remaining) of the top consumers:
// how near the heaviest subject is to its own limit.
func topUsedRatio(u *v1alpha1.Usage) float64 {
	top := 0.0
	for _, c := range u.Top {
		if limit := c.Used + c.Remaining; limit > 0 {
			top = max(top, min(1, float64(c.Used)/float64(limit)))
		}
	}
	return top
}

// SetupWithManager registers the reconciler.
func (r *UsageQuotaReconciler) SetupWithManager(mgr ctrl.Manager) error {
	b := ctrl.NewControllerManagedBy(mgr).For(&v1alpha1.UsageQuota{}).WithOptions(options()).Named("usagequota").
		Watches(&corev1.Pod{}, handler.EnqueueRequestsFromMapFunc(podsToPolicies(r.Client, func() client.ObjectList { return &v1alpha1.UsageQuotaList{} })),
			builder.WithPredicates(podChanges)).
		Watches(&v1alpha1.RateLimitPolicy{}, handler.EnqueueRequestsFromMapFunc(refusedForBudget(r.Client, config.KindUsageQuota))).
		Watches(&v1alpha1.UsageQuota{}, handler.EnqueueRequestsFromMapFunc(refusedForBudget(r.Client, config.KindUsageQuota)))
	if r.Resync != nil {
		b = b.WatchesRawSource(source.Channel(r.Resync, &handler.EnqueueRequestForObject{}))
	}
	return b.Complete(r)
}
