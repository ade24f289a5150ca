package controllers

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/quotaops/quota-operator/api/v1alpha1"
	"github.com/quotaops/quota-operator/internal/limiter"
	"github.com/quotaops/quota-operator/internal/targets"
)

// Adjuster changes a subject's counters, at most once per adjustment ID.
type Adjuster interface {
	Adjust(ctx context.Context, lim limiter.Limit, adj limiter.Adjustment) (limiter.Adjusted, error)
}

// RevisionAnnouncer gives a namespace's config a new revision, so its
// sidecars drop what they knew of counters that just changed.
type RevisionAnnouncer interface {
	BumpConfig(ctx context.Context, namespace string) (int64, error)
}

// QuotaAdjustmentReconciler applies each QuotaAdjustment once.
//
// The store keeps a record of the adjustment under its UID beside the
// counters, written in the same script that changes them; status is
// written after. A manager that stops in between, or a new leader, runs
// the script again and gets the record back instead of a second change.
//
// There is no finalizer: deleting an adjustment changes no counter back,
// and its record in the store expires on its own.
type QuotaAdjustmentReconciler struct {
	client.Client
	// Adjuster is nil when counters are per pod (no Redis): nothing the
	// operator can reach holds them.
	Adjuster Adjuster
	Announce RevisionAnnouncer
	Events   EventRecorder
}

// +kubebuilder:rbac:groups=policy.quotaops.dev,resources=quotaadjustments,verbs=get;list;watch
// +kubebuilder:rbac:groups=policy.quotaops.dev,resources=quotaadjustments/status,verbs=get;update;patch

// Reconcile applies one QuotaAdjustment, unless it was applied already.
func (r *QuotaAdjustmentReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	var qa v1alpha1.QuotaAdjustment
	if err := r.Get(ctx, req.NamespacedName, &qa); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if qa.Status.AppliedAt != nil || !qa.DeletionTimestamp.IsZero() {
		return ctrl.Result{}, nil
	}
	before := qa.DeepCopy()
	result, err := r.apply(ctx, &qa)
	if perr := r.patchStatus(ctx, before, &qa); perr != nil && !apierrors.IsNotFound(perr) {
		return ctrl.Result{}, perr
	}
	return result, err
}

// apply changes the counters and fills status with the outcome, or with
// why there is none.
func (r *QuotaAdjustmentReconciler) apply(ctx context.Context, qa *v1alpha1.QuotaAdjustment) (ctrl.Result, error) {
	if r.Adjuster == nil {
		setApplied(qa, metav1.ConditionFalse, v1alpha1.ReasonPerPodCounters,
			"Not applied: without Redis each sidecar counts alone, and the operator cannot reach their counters")
		return ctrl.Result{}, nil
	}
	t, err := r.target(ctx, qa)
	var missing *targets.MissingError
	switch {
	case errors.As(err, &missing):
		// GitOps may create it just before its target: the target's
		// creation brings it back (SetupWithManager).
		setApplied(qa, metav1.ConditionFalse, v1alpha1.ReasonTargetNotFound, err.Error()+"; it is applied once it exists")
		return ctrl.Result{}, nil
	case err != nil:
		setApplied(qa, metav1.ConditionFalse, v1alpha1.ReasonInvalid, "Not applied: "+err.Error())
		return ctrl.Result{}, nil
	}
	sctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	got, err := r.Adjuster.Adjust(sctx, t.Limit, limiter.Adjustment{ID: string(qa.UID), Grant: qa.Spec.Units})
	if err == nil {
		_, err = r.Announce.BumpConfig(sctx, qa.Namespace)
	}
	if err != nil {
		setApplied(qa, metav1.ConditionFalse, v1alpha1.ReasonStoreUnavailable, "Not applied yet: the store cannot be reached; retrying: "+err.Error())
		return ctrl.Result{}, fmt.Errorf("adjust: %w", err)
	}
	recordApplied(qa, t, got)
	return ctrl.Result{}, nil
}

// target compiles the targeted object and binds the limit to the subject.
func (r *QuotaAdjustmentReconciler) target(ctx context.Context, qa *v1alpha1.QuotaAdjustment) (targets.Target, error) {
	t, err := targets.Resolve(ctx, r.Client, qa.Namespace, qa.Spec.Target)
	if err != nil {
		return t, err
	}
	return t.Bind(qa.Spec.Subject, "spec.subject")
}

// recordApplied writes what the store did into status.
func recordApplied(qa *v1alpha1.QuotaAdjustment, t targets.Target, got limiter.Adjusted) {
	at := metav1.NewTime(got.At.UTC().Truncate(time.Microsecond))
	qa.Status.AppliedAt, qa.Status.SubjectHash, qa.Status.Rates = &at, t.Limit.Key.SubjectHash(), nil
	var parts []string
	for i, rate := range got.Rates {
		window := "" // a quota has a period, shown apart
		if t.Quota == nil {
			window = t.Limit.Rates[i].Window.String()
		}
		ar := v1alpha1.AdjustedRate{Limit: rate.Max, Window: window, UsedBefore: rate.UsedBefore, UsedAfter: rate.UsedAfter,
			RemainingBefore: max(0, rate.Max-rate.UsedBefore), RemainingAfter: max(0, rate.Max-rate.UsedAfter)}
		qa.Status.Rates = append(qa.Status.Rates, ar)
		parts = append(parts, fmt.Sprintf("remaining %d -> %d of %d", ar.RemainingBefore, ar.RemainingAfter, ar.Limit))
	}
	if t.Quota != nil {
		if start, end, err := t.Limit.Period.Bounds(got.At, t.Limit.Location); err == nil {
			qa.Status.Period = &v1alpha1.QuotaPeriod{Start: metav1.NewTime(start), End: metav1.NewTime(end)}
		}
	}
	setApplied(qa, metav1.ConditionTrue, v1alpha1.ReasonApplied, fmt.Sprintf("%s of subject %s applied: %s",
		describe(qa.Spec), qa.Status.SubjectHash, strings.Join(parts, ", ")))
}

func describe(s v1alpha1.QuotaAdjustmentSpec) string {
	target := fmt.Sprintf("%s %s", s.Target.Kind, s.Target.Name)
	if s.Target.Limit != "" {
		target += " limit " + s.Target.Limit
	}
	if s.Action == v1alpha1.ActionGrant {
		return fmt.Sprintf("Grant of %d units on %s", s.Units, target)
	}
	return "Reset of " + target
}

func setApplied(qa *v1alpha1.QuotaAdjustment, status metav1.ConditionStatus, reason, message string) {
	setConditionIn(&qa.Status.Conditions, &qa.Status.ObservedGeneration, qa.Generation, v1alpha1.ConditionApplied, status, reason, message)
}

// patchStatus writes the status if it changed, with an event when Applied
// moved: the object and its events are the audit trail.
func (r *QuotaAdjustmentReconciler) patchStatus(ctx context.Context, before, qa *v1alpha1.QuotaAdjustment) error {
	if equality.Semantic.DeepEqual(before.Status, qa.Status) {
		return nil
	}
	recordTransition(r.Events, qa, before.Status.Conditions, qa.Status.Conditions, v1alpha1.ConditionApplied, string(qa.Spec.Action))
	return r.Status().Patch(ctx, qa, client.MergeFrom(before))
}

// SetupWithManager registers the reconciler. A target that appears or
// changes brings back the adjustments of its namespace not yet applied.
func (r *QuotaAdjustmentReconciler) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).For(&v1alpha1.QuotaAdjustment{}).WithOptions(options()).Named("quotaadjustment").
		Watches(&v1alpha1.UsageQuota{}, handler.EnqueueRequestsFromMapFunc(r.waitingFor(v1alpha1.TargetUsageQuota))).
		Watches(&v1alpha1.RateLimitPolicy{}, handler.EnqueueRequestsFromMapFunc(r.waitingFor(v1alpha1.TargetRateLimitPolicy))).
		Complete(r)
}

// waitingFor maps a target to the adjustments that wait for it.
func (r *QuotaAdjustmentReconciler) waitingFor(kind v1alpha1.TargetKind) handler.MapFunc {
	return func(ctx context.Context, obj client.Object) []reconcile.Request {
		var list v1alpha1.QuotaAdjustmentList
		if err := r.List(ctx, &list, client.InNamespace(obj.GetNamespace())); err != nil {
			return nil
		}
		var out []reconcile.Request
		for _, qa := range list.Items {
			if qa.Status.AppliedAt == nil && qa.Spec.Target.Kind == kind && qa.Spec.Target.Name == obj.GetName() {
				out = append(out, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&qa)})
			}
		}
		return out
	}
}
