package controllers

import (
	"context"
	"errors"
	"fmt"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/quotaops/quota-operator/api/v1alpha1"
	"github.com/quotaops/quota-operator/internal/query"
)

// QueryAnswerer reads the store for a QuotaQuery; its error is a
// *query.Error that names the condition's reason.
type QueryAnswerer interface {
	Answer(ctx context.Context, ns string, spec v1alpha1.QuotaQuerySpec) (v1alpha1.QuotaQueryStatus, error)
}

// Bounds of the queries the operator keeps and answers.
const (
	// DefaultQueryTTL is how long an answered QuotaQuery stays: kubectl
	// quota deletes its own at once, this catches those it could not.
	DefaultQueryTTL = 10 * time.Minute
	// MaxQueriesPerNamespace bounds the queries of one namespace the
	// operator answers from the store at once, so one namespace cannot
	// keep the store and the workers busy for everyone.
	MaxQueriesPerNamespace = 32
)

// QuotaQueryReconciler answers each QuotaQuery once, from the store, and
// deletes it DefaultQueryTTL after. There is no finalizer: a query leaves
// nothing behind in the store.
//
// Queries are ordinary objects the API server serves, so a manager that is
// down only leaves them unanswered: unlike an aggregated API, nothing else
// in the cluster (namespace deletion, discovery) waits for it.
type QuotaQueryReconciler struct {
	client.Client
	// Answerer is nil when counters are per pod (no Redis).
	Answerer QueryAnswerer
	// TTL overrides DefaultQueryTTL.
	TTL time.Duration
	Now func() time.Time
}

// +kubebuilder:rbac:groups=policy.quotaops.dev,resources=quotaqueries,verbs=get;list;watch;delete
// +kubebuilder:rbac:groups=policy.quotaops.dev,resources=quotaqueries/status,verbs=get;update;patch

// Reconcile answers one QuotaQuery, or deletes it once its time is up.
func (r *QuotaQueryReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	var q v1alpha1.QuotaQuery
	if err := r.Get(ctx, req.NamespacedName, &q); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !q.DeletionTimestamp.IsZero() {
		return ctrl.Result{}, nil
	}
	if q.Status.AnsweredAt != nil {
		return r.expire(ctx, &q)
	}
	n, err := r.queriesIn(ctx, q.Namespace)
	if err != nil {
		return ctrl.Result{}, err
	}
	before := q.DeepCopy()
	r.answer(ctx, &q, n)
	if !equality.Semantic.DeepEqual(before.Status, q.Status) {
		if err := r.Status().Patch(ctx, &q, client.MergeFrom(before)); err != nil {
			return ctrl.Result{}, client.IgnoreNotFound(err)
		}
	}
	return ctrl.Result{RequeueAfter: r.ttl()}, nil
}

// answer fills status with the answer, or with why there is none. Every
// outcome is final: the asker reads it and asks again if it wants to.
// crowd is how many queries the namespace has.
func (r *QuotaQueryReconciler) answer(ctx context.Context, q *v1alpha1.QuotaQuery, crowd int) {
	now := metav1.NewTime(r.now().UTC().Truncate(time.Second))
	q.Status.AnsweredAt = &now
	if r.Answerer == nil {
		setAnswered(q, metav1.ConditionFalse, v1alpha1.ReasonPerPodCounters,
			"Not answered: without Redis each sidecar counts alone, and no one can read their counters across pods")
		return
	}
	if crowd > MaxQueriesPerNamespace {
		setAnswered(q, metav1.ConditionFalse, v1alpha1.ReasonTooManyQueries, fmt.Sprintf(
			"Not answered: namespace %s has %d QuotaQueries and at most %d are answered; delete answered ones (they go on their own %s after their answer)",
			q.Namespace, crowd, MaxQueriesPerNamespace, r.ttl()))
		return
	}
	sctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	got, err := r.Answerer.Answer(sctx, q.Namespace, q.Spec)
	var qerr *query.Error
	switch {
	case errors.As(err, &qerr):
		setAnswered(q, metav1.ConditionFalse, qerr.Reason, "Not answered: "+qerr.Error())
	case err != nil:
		setAnswered(q, metav1.ConditionFalse, v1alpha1.ReasonInvalid, "Not answered: "+err.Error())
	default:
		q.Status.Quota, q.Status.Limit, q.Status.Check = got.Quota, got.Limit, got.Check
		setAnswered(q, metav1.ConditionTrue, v1alpha1.ReasonAnswered, "Answered from the store")
	}
}

// queriesIn counts the namespace's queries, from the cache.
func (r *QuotaQueryReconciler) queriesIn(ctx context.Context, ns string) (int, error) {
	var list v1alpha1.QuotaQueryList
	if err := r.List(ctx, &list, client.InNamespace(ns)); err != nil {
		return 0, err
	}
	return len(list.Items), nil
}

// expire deletes an answered query whose time is up, or comes back then.
func (r *QuotaQueryReconciler) expire(ctx context.Context, q *v1alpha1.QuotaQuery) (ctrl.Result, error) {
	left := q.Status.AnsweredAt.Add(r.ttl()).Sub(r.now())
	if left > 0 {
		return ctrl.Result{RequeueAfter: left}, nil
	}
	return ctrl.Result{}, client.IgnoreNotFound(r.Delete(ctx, q, client.Preconditions{UID: &q.UID}))
}

func (r *QuotaQueryReconciler) ttl() time.Duration {
	if r.TTL > 0 {
		return r.TTL
	}
	return DefaultQueryTTL
}

func (r *QuotaQueryReconciler) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

func setAnswered(q *v1alpha1.QuotaQuery, status metav1.ConditionStatus, reason, message string) {
	setConditionIn(&q.Status.Conditions, &q.Status.ObservedGeneration, q.Generation, v1alpha1.ConditionAnswered, status, reason, message)
}

// SetupWithManager registers the reconciler.
func (r *QuotaQueryReconciler) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).For(&v1alpha1.QuotaQuery{}).WithOptions(options()).Named("quotaquery").Complete(r)
}
