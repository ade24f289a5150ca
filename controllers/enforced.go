package controllers

import (
	"context"
	"fmt"
	"maps"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/quotaops/quota-operator/api/v1alpha1"
	"github.com/quotaops/quota-operator/internal/webhook"
)

// EnforcementReader reads the config revision each sidecar pod of a
// namespace reported enforcing within ttl.
type EnforcementReader interface {
	Enforcing(ctx context.Context, namespace string, ttl time.Duration) (map[string]int64, error)
}

// How long a sidecar's report stands (it reports a new revision at once,
// an unchanged one every minute), and how soon Enforced is looked at
// again: soon while pods catch up, rarely after.
const (
	enforcementTTL    = 3 * time.Minute
	recheckLagging    = 2 * time.Second
	recheckEnforced   = 30 * time.Second
	maxPodsNamed      = 5
	noReportsMessage  = "Sidecars cannot report what they enforce without Redis: each reads the ConfigMap on its own"
	noPodsMessage     = "No running pod matches spec.selector"
	unprotectedPrefix = "selected but without a sidecar, so not protected: "
)

// enforcement is what the selected pods do with a policy's revision.
type enforcement struct {
	selected, enforcing  int
	lagging, unprotected []string
}

// setEnforced sets Enforced for an object programmed at revision rev and
// returns when to look again.
func (p publisher) setEnforced(ctx context.Context, obj client.Object, st *v1alpha1.PolicyStatus, sel *metav1.LabelSelector, rev int64) (time.Duration, error) {
	gen := obj.GetGeneration()
	e, err := p.selectedPods(ctx, obj.GetNamespace(), sel)
	if err != nil {
		return 0, err
	}
	st.EnforcedPods = ""
	if problem, ok := p.Problems.get(obj.GetNamespace()); ok {
		conditionForProblem(st, gen, e, problem)
		return recheckLagging, nil
	}
	if p.Enforcement == nil {
		msg := noReportsMessage
		if len(e.unprotected) > 0 {
			msg += "; " + unprotectedPrefix + names(e.unprotected)
		}
		setCondition(st, gen, v1alpha1.ConditionEnforced, metav1.ConditionUnknown, v1alpha1.ReasonCannotReport, msg)
		return recheckEnforced, nil
	}
	sctx, cancel := context.WithTimeout(ctx, p.Health.callTimeout())
	defer cancel()
	reported, err := p.Enforcement.Enforcing(sctx, obj.GetNamespace(), enforcementTTL)
	if err != nil {
		setCondition(st, gen, v1alpha1.ConditionEnforced, metav1.ConditionUnknown, v1alpha1.ReasonStoreUnavailable,
			"The sidecars' reports cannot be read from the store: "+err.Error())
		return recheckLagging, nil
	}
	e.judge(reported, rev)
	st.EnforcedPods = fmt.Sprintf("%d/%d", e.enforcing, e.selected)
	status, reason, msg := e.condition(gen)
	setCondition(st, gen, v1alpha1.ConditionEnforced, status, reason, msg)
	if status == metav1.ConditionTrue {
		return recheckEnforced, nil
	}
	return recheckLagging, nil
}

// selectedPods lists the running pods sel matches; those without a
// sidecar are unprotected, the others are judged later.
func (p publisher) selectedPods(ctx context.Context, namespace string, sel *metav1.LabelSelector) (*enforcement, error) {
	selector, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil {
		return nil, err
	}
	var pods corev1.PodList
	if err := p.List(ctx, &pods, client.InNamespace(namespace), client.MatchingLabelsSelector{Selector: selector}); err != nil {
		return nil, err
	}
	e := &enforcement{}
	for i := range pods.Items {
		pod := &pods.Items[i]
		if pod.Status.Phase != corev1.PodRunning || pod.DeletionTimestamp != nil {
			continue
		}
		e.selected++
		if !webhook.HasSidecar(pod) {
			e.unprotected = append(e.unprotected, pod.Name)
			continue
		}
		e.lagging = append(e.lagging, pod.Name) // until judge finds its report
	}
	return e, nil
}

// judge moves each sidecar pod that reported rev or later to enforcing.
func (e *enforcement) judge(reported map[string]int64, rev int64) {
	var lagging []string
	for _, pod := range e.lagging {
		if reported[pod] >= rev {
			e.enforcing++
		} else {
			lagging = append(lagging, pod)
		}
	}
	e.lagging = lagging
}

func (e *enforcement) condition(gen int64) (metav1.ConditionStatus, string, string) {
	if e.selected == 0 {
		return metav1.ConditionFalse, v1alpha1.ReasonNoPods, noPodsMessage
	}
	msg := fmt.Sprintf("%d/%d selected pods enforce generation %d", e.enforcing, e.selected, gen)
	reason := v1alpha1.ReasonEnforced
	if len(e.lagging) > 0 {
		msg += "; not yet: " + names(e.lagging)
		reason = v1alpha1.ReasonLagging
	}
	if len(e.unprotected) > 0 {
		msg += "; " + unprotectedPrefix + names(e.unprotected)
		reason = v1alpha1.ReasonUnprotected
	}
	if reason != v1alpha1.ReasonEnforced {
		return metav1.ConditionFalse, reason, msg
	}
	return metav1.ConditionTrue, reason, msg
}

// names lists up to maxPodsNamed pods, sorted, and how many more.
func names(pods []string) string {
	sort.Strings(pods)
	if len(pods) <= maxPodsNamed {
		return strings.Join(pods, ", ")
	}
	return strings.Join(pods[:maxPodsNamed], ", ") + fmt.Sprintf(" and %d more", len(pods)-maxPodsNamed)
}

// podsToPolicies maps a pod event to every object of newList's kind in
// the pod's namespace, so that Enforced follows pods as they come, go and
// start running.
func podsToPolicies(c client.Client, newList func() client.ObjectList) handler.MapFunc {
	return func(ctx context.Context, pod client.Object) []reconcile.Request {
		list := newList()
		if err := c.List(ctx, list, client.InNamespace(pod.GetNamespace())); err != nil {
			return nil
		}
		items, err := apimeta.ExtractList(list)
		if err != nil {
			return nil
		}
		reqs := make([]reconcile.Request, 0, len(items))
		for _, item := range items {
			if o, ok := item.(client.Object); ok {
				reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(o)})
			}
		}
		return reqs
	}
}

// podChanges passes pod events that can change what Enforced says:
// creation, deletion, and changes of phase, labels or being deleted.
var podChanges = predicate.Funcs{
	UpdateFunc: func(e event.UpdateEvent) bool {
		old, okOld := e.ObjectOld.(*corev1.Pod)
		cur, okNew := e.ObjectNew.(*corev1.Pod)
		if !okOld || !okNew {
			return false
		}
		return old.Status.Phase != cur.Status.Phase || !maps.Equal(old.Labels, cur.Labels) ||
			(old.DeletionTimestamp == nil) != (cur.DeletionTimestamp == nil)
	},
}
