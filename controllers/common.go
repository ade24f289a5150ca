// Package controllers holds one reconciler per kind. Each compiles its
// object with internal/config, publishes the result to the store for the
// object's namespace, and reports Accepted and Programmed conditions.
package controllers

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/util/workqueue"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/quotaops/quota-operator/api/v1alpha1"
	"github.com/quotaops/quota-operator/internal/config"
)

// Finalizer keeps an object until its config is out of the store.
const Finalizer = "policy.quotaops.dev/config"

// storeTimeout bounds each store call a reconcile makes.
const storeTimeout = 5 * time.Second

// ConfigWriter is where compiled config goes: the store, for the object's
// namespace.
type ConfigWriter interface {
	PutConfig(ctx context.Context, namespace, id string, doc []byte) (int64, error)
	DeleteConfig(ctx context.Context, namespace, id string) (int64, error)
}

// ConfigCreator is a ConfigWriter that answers store.ErrNoConfig where a
// namespace has no config, and then takes the namespace's config whole.
type ConfigCreator interface {
	CreateConfigs(ctx context.Context, namespace string, docs map[string][]byte) (int64, error)
}

// programmedDescriber is a ConfigWriter that words, for Programmed, what
// it wrote where.
type programmedDescriber interface {
	Programmed(namespace string, rev int64) string
}

// EventRecorder is the events.k8s.io recorder controller-runtime hands out.
type EventRecorder interface {
	Eventf(regarding, related runtime.Object, eventtype, reason, action, note string, args ...any)
}

// options are the controller settings both kinds share: failures retry
// from 100ms, doubling to at most 10s, so a store that comes back is
// noticed within seconds. Several workers, so objects that wait for an
// unreachable store do not hold up those that can finish without it (a
// deletion past FinalizeTimeout); each object is still reconciled by one
// worker at a time.
func options() controller.Options {
	return controller.Options{MaxConcurrentReconciles: reconcileWorkers,
		RateLimiter: workqueue.NewTypedItemExponentialFailureRateLimiter[reconcile.Request](100*time.Millisecond, 10*time.Second)}
}

// reconcileWorkers is how many objects of a kind are reconciled at once.
const reconcileWorkers = 4

// publisher runs the steps both reconcilers share.
type publisher struct {
	client.Client
	Store  ConfigWriter
	Events EventRecorder
	// Headroom, when set, is reported as StoreHeadroom.
	Headroom *Headroom
	// Enforcement reads the sidecars' reports for Enforced; nil when they
	// cannot report (no Redis).
	Enforcement EnforcementReader
	// FinalizeTimeout bounds how long a deleted object waits for its
	// config to leave an unreachable store (0: forever); then its
	// document is left to Left, which StoreWatch empties.
	FinalizeTimeout time.Duration
	Left            *LeftConfig
	// Health shortens store calls while the store is known to be away.
	Health *StoreHealth
	// Problems says which namespaces' sidecars have no store user, for
	// Enforced; ProgrammedNote ends every Programmed message (what the
	// store tenancy gives up).
	Problems       *TenantProblems
	ProgrammedNote string
}

// begin finalizes an object being deleted, or makes sure it has the
// finalizer. When done is set, the reconcile ends there with err.
func (p publisher) begin(ctx context.Context, obj client.Object, kind string) (done bool, err error) {
	if !obj.GetDeletionTimestamp().IsZero() {
		return true, p.finalize(ctx, obj, kind)
	}
	return false, p.ensureFinalizer(ctx, obj)
}

// ensureFinalizer adds the finalizer if it is missing.
func (p publisher) ensureFinalizer(ctx context.Context, obj client.Object) error {
	return PatchFinalizer(ctx, p.Client, obj, true)
}

// PatchFinalizer adds (or removes) Finalizer on obj, as read, unless it
// already has (or lacks) it. A merge patch replaces the whole list, so it
// carries obj's resourceVersion: when another writer changed the object
// since it was read (another controller's finalizer, say), the API server
// answers Conflict and the reconcile runs again on the new object, rather
// than the patch dropping what the other wrote.
func PatchFinalizer(ctx context.Context, c client.Client, obj client.Object, add bool) error {
	if controllerutil.ContainsFinalizer(obj, Finalizer) == add {
		return nil
	}
	orig := obj.DeepCopyObject().(client.Object)
	if add {
		controllerutil.AddFinalizer(obj, Finalizer)
	} else {
		controllerutil.RemoveFinalizer(obj, Finalizer)
	}
	return c.Patch(ctx, obj, client.MergeFromWithOptions(orig, client.MergeFromWithOptimisticLock{}))
}

// finalize removes the object's config and then the finalizer. Both steps
// are idempotent: a config already gone is not an error.
func (p publisher) finalize(ctx context.Context, obj client.Object, kind string) error {
	if !controllerutil.ContainsFinalizer(obj, Finalizer) {
		return nil
	}
	sctx, cancel := context.WithTimeout(ctx, p.Health.callTimeout())
	defer cancel()
	id := kind + "/" + obj.GetName()
	if _, err := p.Store.DeleteConfig(sctx, obj.GetNamespace(), id); err != nil {
		waited := time.Since(obj.GetDeletionTimestamp().Time)
		if p.FinalizeTimeout <= 0 || p.Left == nil || waited < p.FinalizeTimeout {
			return fmt.Errorf("remove config: %w", err)
		}
		// Stalling the deletion (a namespace's, a GitOps sync's) for as
		// long as the store is away is worse than a document the store
		// gets rid of when it is back.
		p.Left.add(obj.GetNamespace(), id)
		p.Events.Eventf(obj, nil, corev1.EventTypeWarning, ReasonConfigLeftInStore, "Delete",
			"Deleted without removing its config: the store was unreachable for %v (%v); the manager removes the config when the store answers again, and its counters expire on their own",
			waited.Round(time.Second), err)
	}
	return PatchFinalizer(ctx, p.Client, obj, false)
}

// ReasonConfigLeftInStore is the event of an object deleted while the
// store was unreachable for longer than the finalizer waits.
const ReasonConfigLeftInStore = "ConfigLeftInStore"

// publish writes the compiled policy to the store and reports the outcome
// (or why there is nothing to write) in st, obj's status. It returns the
// namespace's config revision that holds it (0 when nothing was written);
// the returned error asks for a retry.
func (p publisher) publish(ctx context.Context, obj client.Object, st *v1alpha1.PolicyStatus, compiled *config.Policy, compileErr error) (int64, error) {
	gen := obj.GetGeneration()
	var over *budgetError
	if errors.As(compileErr, &over) {
		return p.refuseForBudget(ctx, obj, st, compiled.ID(), over)
	}
	if compileErr != nil {
		setCondition(st, gen, v1alpha1.ConditionAccepted, metav1.ConditionFalse, v1alpha1.ReasonInvalid, compileErr.Error())
		setCondition(st, gen, v1alpha1.ConditionProgrammed, metav1.ConditionFalse, v1alpha1.ReasonInvalid,
			"Not programmed: the spec is invalid; the last valid configuration, if any, stays in force")
		return 0, nil
	}
	setCondition(st, gen, v1alpha1.ConditionAccepted, metav1.ConditionTrue, v1alpha1.ReasonAccepted, "The spec is valid")
	doc, err := compiled.Encode()
	if err != nil {
		return 0, err
	}
	sctx, cancel := context.WithTimeout(ctx, p.Health.callTimeout())
	defer cancel()
	rev, err := p.put(sctx, obj.GetNamespace(), compiled.ID(), doc)
	if err != nil {
		setCondition(st, gen, v1alpha1.ConditionProgrammed, metav1.ConditionFalse, v1alpha1.ReasonStoreUnavailable,
			"The store cannot be written; retrying: "+err.Error())
		return 0, fmt.Errorf("publish config: %w", err)
	}
	msg := fmt.Sprintf("Configuration revision %d of namespace %s is in the store", rev, obj.GetNamespace())
	if d, ok := p.Store.(programmedDescriber); ok {
		msg = d.Programmed(obj.GetNamespace(), rev)
	}
	setCondition(st, gen, v1alpha1.ConditionProgrammed, metav1.ConditionTrue, v1alpha1.ReasonProgrammed, msg+p.ProgrammedNote)
	p.Headroom.apply(st, gen)
	return rev, nil
}

// refuseForBudget takes obj's config out of the store (it may have fit
// before an older object grew) and says why in its status.
func (p publisher) refuseForBudget(ctx context.Context, obj client.Object, st *v1alpha1.PolicyStatus, id string, over *budgetError) (int64, error) {
	gen := obj.GetGeneration()
	setCondition(st, gen, v1alpha1.ConditionAccepted, metav1.ConditionFalse, v1alpha1.ReasonTooManyLimits, over.Error())
	setCondition(st, gen, v1alpha1.ConditionProgrammed, metav1.ConditionFalse, v1alpha1.ReasonTooManyLimits,
		"Not programmed: the namespace's other policies and quotas take the rates one request may be decided against")
	sctx, cancel := context.WithTimeout(ctx, p.Health.callTimeout())
	defer cancel()
	if _, err := p.Store.DeleteConfig(sctx, obj.GetNamespace(), id); err != nil {
		return 0, fmt.Errorf("remove config: %w", err)
	}
	return 0, nil
}

func setCondition(st *v1alpha1.PolicyStatus, gen int64, kind string, status metav1.ConditionStatus, reason, message string) {
	setConditionIn(&st.Conditions, &st.ObservedGeneration, gen, kind, status, reason, message)
}

// setConditionIn sets one condition of a status at generation gen, which
// the status then describes.
func setConditionIn(conds *[]metav1.Condition, observed *int64, gen int64, kind string, status metav1.ConditionStatus, reason, message string) {
	*observed = gen
	apimeta.SetStatusCondition(conds, metav1.Condition{
		Type: kind, Status: status, Reason: reason, Message: message, ObservedGeneration: gen,
	})
}

// patchStatus writes obj's status if it differs from before's, and records
// an event when the Programmed condition moved.
func (p publisher) patchStatus(ctx context.Context, before, obj client.Object, oldStatus, newStatus any, oldConds, newConds []metav1.Condition) error {
	if equality.Semantic.DeepEqual(oldStatus, newStatus) {
		return nil
	}
	recordTransition(p.Events, obj, oldConds, newConds, v1alpha1.ConditionProgrammed, "Publish")
	if c := apimeta.FindStatusCondition(newConds, v1alpha1.ConditionEnforced); c != nil &&
		(c.Reason == v1alpha1.ReasonStoreUserRefused || c.Reason == v1alpha1.ReasonStoreUserMissing) {
		// Only these: Enforced moves with every rollout, and an event each
		// time would drown the ones that ask for an administrator.
		recordTransition(p.Events, obj, oldConds, newConds, v1alpha1.ConditionEnforced, "Enforce")
	}
	return p.Status().Patch(ctx, obj, client.MergeFrom(before))
}

// recordTransition records an event when condition kind changed status or
// reason: Normal when it is True, else Warning, with its message.
func recordTransition(events EventRecorder, obj client.Object, oldConds, newConds []metav1.Condition, kind, action string) {
	old := apimeta.FindStatusCondition(oldConds, kind)
	cur := apimeta.FindStatusCondition(newConds, kind)
	if cur == nil || old != nil && old.Status == cur.Status && old.Reason == cur.Reason {
		return
	}
	eventType := corev1.EventTypeNormal
	if cur.Status != metav1.ConditionTrue {
		eventType = corev1.EventTypeWarning
	}
	events.Eventf(obj, nil, eventType, cur.Reason, action, "%s", cur.Message)
}

// downTimeout bounds a reconcile's store call while StoreWatch's last
// look at the store failed.
const downTimeout = 500 * time.Millisecond

// StoreHealth is what StoreWatch last saw of the store. While the store
// is known to be away, each reconcile's store call gets downTimeout
// instead of storeTimeout: one worker that waits 5 s for every object in
// its queue would hold up those that can finish without the store, such
// as a deletion past FinalizeTimeout. Its next look that reaches the
// store gives calls their full time again.
type StoreHealth struct{ down atomic.Bool }

// callTimeout is the time a reconcile gives one store call now.
func (h *StoreHealth) callTimeout() time.Duration {
	if h != nil && h.down.Load() {
		return downTimeout
	}
	return storeTimeout
}

func (h *StoreHealth) set(reachable bool) {
	if h != nil {
		h.down.Store(!reachable)
	}
}
