package controllers

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"

	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/quotaops/quota-operator/api/v1alpha1"
	"github.com/quotaops/quota-operator/internal/config"
	"github.com/quotaops/quota-operator/internal/limiter"
)

// A sidecar decides every limit of every policy that matches a request in
// one store call, so a namespace's config bounds the work one request
// costs Redis, which every namespace shares. The operator keeps each
// namespace within limiter.MaxDecisionEntries rates, counting every
// RateLimitPolicy's rates and one per UsageQuota, whatever their
// selectors and matches (any of them may match one request). Objects are
// counted oldest first; one that would pass the budget is refused with
// Accepted False, reason TooManyLimits, and its config taken out of the
// store, so an older policy is never pushed out by a newer one.

// budgetError is an object over its namespace's budget.
type budgetError struct {
	namespace      string
	older, entries int
}

func (e *budgetError) Error() string {
	return fmt.Sprintf("namespace %s already holds %d rates in older RateLimitPolicies and UsageQuotas, and this one's %d would pass the %d that one request may be decided against: every limit of every policy may match one request, and Redis decides them all at once; remove or merge policies, or give this one fewer rates",
		e.namespace, e.older, e.entries, limiter.MaxDecisionEntries)
}

// budgetItem is one object of a namespace, in the order the budget takes.
type budgetItem struct {
	obj     client.Object
	kind    string
	entries int
	// accepted is the object's Accepted condition, if any.
	accepted *metav1.Condition
	// programmed: its status says its config is in the store.
	programmed bool
	// compile compiles the object as its reconcile does.
	compile func() (*config.Policy, error)
}

// withinBudget is compileErr, or, for a valid spec, the *budgetError of
// an object over its namespace's budget; retry is an error listing the
// namespace.
func (p publisher) withinBudget(ctx context.Context, obj client.Object, compileErr error) (refused, retry error) {
	if compileErr != nil {
		return compileErr, nil
	}
	err := p.checkBudget(ctx, obj)
	var over *budgetError
	if err != nil && !errors.As(err, &over) {
		return nil, err
	}
	return err, nil
}

// checkBudget is a *budgetError when obj does not fit its namespace's
// budget, after the older objects that fit.
func (p publisher) checkBudget(ctx context.Context, obj client.Object) error {
	items, err := namespaceItems(ctx, p.Client, obj.GetNamespace())
	if err != nil {
		return err
	}
	var over error
	walkBudget(items, func(it budgetItem, older int, fits bool) bool {
		if it.obj.GetUID() != obj.GetUID() {
			return true
		}
		if !fits {
			over = &budgetError{namespace: obj.GetNamespace(), older: older, entries: it.entries}
		}
		return false
	})
	return over // nil too when not listed yet (a cache behind the write): counted at its next reconcile
}

// walkBudget calls each with the items, oldest first, the rates the older
// items that fit hold, and whether the item fits after them, until each
// returns false.
func walkBudget(items []budgetItem, each func(it budgetItem, older int, fits bool) bool) {
	used := 0
	for _, it := range items {
		fits := used+it.entries <= limiter.MaxDecisionEntries
		if !each(it, used, fits) {
			return
		}
		if fits {
			used += it.entries
		}
	}
}

// withinBudgetItems are the items that fit the budget.
func withinBudgetItems(items []budgetItem) []budgetItem {
	var out []budgetItem
	walkBudget(items, func(it budgetItem, _ int, fits bool) bool {
		if fits {
			out = append(out, it)
		}
		return true
	})
	return out
}

// namespaceItems lists namespace's policies and quotas, oldest first.
func namespaceItems(ctx context.Context, c client.Reader, namespace string) ([]budgetItem, error) {
	var policies v1alpha1.RateLimitPolicyList
	if err := c.List(ctx, &policies, client.InNamespace(namespace)); err != nil {
		return nil, err
	}
	var quotas v1alpha1.UsageQuotaList
	if err := c.List(ctx, &quotas, client.InNamespace(namespace)); err != nil {
		return nil, err
	}
	var items []budgetItem
	for i := range policies.Items {
		p := &policies.Items[i]
		n := 0
		for _, l := range p.Spec.Limits {
			n += len(l.Rates)
		}
		items = append(items, budgetItem{obj: p, kind: config.KindRateLimitPolicy, entries: n,
			accepted:   apimeta.FindStatusCondition(p.Status.Conditions, v1alpha1.ConditionAccepted),
			programmed: apimeta.IsStatusConditionTrue(p.Status.Conditions, v1alpha1.ConditionProgrammed),
			compile:    func() (*config.Policy, error) { return config.CompileRateLimitPolicy(p) }})
	}
	for i := range quotas.Items {
		q := &quotas.Items[i]
		items = append(items, budgetItem{obj: q, kind: config.KindUsageQuota, entries: 1,
			accepted:   apimeta.FindStatusCondition(q.Status.Conditions, v1alpha1.ConditionAccepted),
			programmed: apimeta.IsStatusConditionTrue(q.Status.Conditions, v1alpha1.ConditionProgrammed),
			compile:    func() (*config.Policy, error) { return config.CompileUsageQuota(q) }})
	}
	// Objects being deleted do not count: their config is on its way out.
	items = slices.DeleteFunc(items, func(it budgetItem) bool { return !it.obj.GetDeletionTimestamp().IsZero() })
	sort.SliceStable(items, func(i, j int) bool {
		a, b := items[i], items[j]
		if ta, tb := a.obj.GetCreationTimestamp(), b.obj.GetCreationTimestamp(); !ta.Equal(&tb) {
			return ta.Before(&tb)
		}
		if a.kind != b.kind {
			return a.kind < b.kind
		}
		return a.obj.GetName() < b.obj.GetName()
	})
	return items, nil
}

// refusedForBudget maps a change of a namespace's policies or quotas to
// the objects of kind there that the budget refused: a deleted or smaller
// object may make room for them.
func refusedForBudget(c client.Client, kind string) handler.MapFunc {
	return func(ctx context.Context, changed client.Object) []reconcile.Request {
		items, err := namespaceItems(ctx, c, changed.GetNamespace())
		if err != nil {
			return nil
		}
		var out []reconcile.Request
		for _, it := range items {
			if it.kind != kind || it.obj.GetUID() == changed.GetUID() {
				continue
			}
			if it.accepted != nil && it.accepted.Reason == v1alpha1.ReasonTooManyLimits {
				out = append(out, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(it.obj)})
			}
		}
		return out
	}
}
