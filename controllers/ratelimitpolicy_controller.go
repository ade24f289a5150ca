package controllers

import (
	"context"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/source"

	"github.com/quotaops/quota-operator/api/v1alpha1"
	"github.com/quotaops/quota-operator/internal/config"
)

// RateLimitPolicyReconciler publishes RateLimitPolicies to the store.
type RateLimitPolicyReconciler struct {
	publisher
	// Resync, when set, re-reconciles objects the store lost (see
	// StoreWatch).
	Resync <-chan event.GenericEvent
}

// NewRateLimitPolicyReconciler returns a reconciler writing to s.
func NewRateLimitPolicyReconciler(c client.Client, s ConfigWriter, events EventRecorder) *RateLimitPolicyReconciler {
	return &RateLimitPolicyReconciler{publisher: publisher{Client: c, Store: s, Events: events}}
}

// +kubebuilder:rbac:groups=policy.quotaops.dev,resources=ratelimitpolicies,verbs=get;list;watch;update;patch
// +kubebuilder:rbac:groups=policy.quotaops.dev,resources=ratelimitpolicies/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=policy.quotaops.dev,resources=ratelimitpolicies/finalizers,verbs=update
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// Reconcile compiles one RateLimitPolicy and publishes it.
func (r *RateLimitPolicyReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	var p v1alpha1.RateLimitPolicy
	if err := r.Get(ctx, req.NamespacedName, &p); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if done, err := r.begin(ctx, &p, config.KindRateLimitPolicy); done || err != nil {
		return ctrl.Result{}, err
	}
	before := p.DeepCopy()
	compiled, compileErr := config.CompileRateLimitPolicy(&p)
	compileErr, err := r.withinBudget(ctx, &p, compileErr)
	if err != nil {
		return ctrl.Result{}, err
	}
	rev, err := r.publish(ctx, &p, &p.Status.PolicyStatus, compiled, compileErr)
	var result ctrl.Result
	if compileErr == nil && err == nil {
		result.RequeueAfter, err = r.setEnforced(ctx, &p, &p.Status.PolicyStatus, &p.Spec.Selector, rev)
	}
	if perr := r.patchStatus(ctx, before, &p, before.Status, p.Status, before.Status.Conditions, p.Status.Conditions); perr != nil && !apierrors.IsNotFound(perr) {
		return ctrl.Result{}, perr
	}
	if err != nil {
		return ctrl.Result{}, err
	}
	return result, nil
}

// SetupWithManager registers the reconciler.
func (r *RateLimitPolicyReconciler) SetupWithManager(mgr ctrl.Manager) error {
	b := ctrl.NewControllerManagedBy(mgr).For(&v1alpha1.RateLimitPolicy{}).WithOptions(options()).Named("ratelimitpolicy").
		Watches(&corev1.Pod{}, handler.EnqueueRequestsFromMapFunc(podsToPolicies(r.Client, func() client.ObjectList { return &v1alpha1.RateLimitPolicyList{} })),
			builder.WithPredicates(podChanges)).
		Watches(&v1alpha1.RateLimitPolicy{}, handler.EnqueueRequestsFromMapFunc(refusedForBudget(r.Client, config.KindRateLimitPolicy))).
		Watches(&v1alpha1.UsageQuota{}, handler.EnqueueRequestsFromMapFunc(refusedForBudget(r.Client, config.KindRateLimitPolicy)))
	if r.Resync != nil {
		b = b.WatchesRawSource(source.Channel(r.Resync, &handler.EnqueueRequestForObject{}))
	}
	return b.Complete(r)
}
