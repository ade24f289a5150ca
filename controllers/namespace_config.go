package controllers

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/quotaops/quota-operator/api/v1alpha1"
	"github.com/quotaops/quota-operator/internal/store"
)

// A namespace's config is written whole when the store has none of it:
// after a flush, a restart without its data or a failover to an empty
// replica, writing one object's document would make a revision that holds
// that policy alone, and sidecars would enforce only it until the other
// objects' reconciles came. So the first reconcile that finds no config
// (store.ErrNoConfig) writes every object of the namespace that would be
// published, in one revision; the others then change their own document.
//
// That reconcile also knows whether the store held the namespace before:
// an object of it says Programmed. Then the counters, which live in the
// same store, are gone too, and it says so loudly (reportLoss).

// LossRecorder keeps, in the store, when a namespace's counters were lost,
// for the UsageQuotas whose period it cuts.
type LossRecorder interface {
	RecordLoss(ctx context.Context, namespace string, at time.Time, keep time.Duration) error
	LostAt(ctx context.Context, namespace string) (time.Time, error)
}

// lossKeep is how long a loss is on record: the longest quota period (a
// month) and its grace, with room.
const lossKeep = 33 * 24 * time.Hour

// put writes one document into the namespace's config, or, where the
// store has none, the namespace's whole config.
func (p publisher) put(ctx context.Context, namespace, id string, doc []byte) (int64, error) {
	if _, ok := p.Store.(LossRecorder); ok {
		// A namespace's loss counter exists from 0 on, so that increase()
		// sees its first loss.
		storeDataLost.WithLabelValues(namespace)
	}
	rev, err := p.Store.PutConfig(ctx, namespace, id, doc)
	creator, ok := p.Store.(ConfigCreator)
	if !errors.Is(err, store.ErrNoConfig) || !ok {
		return rev, err
	}
	items, err := namespaceItems(ctx, p.Client, namespace)
	if err != nil {
		return 0, fmt.Errorf("list the namespace's policies and quotas: %w", err)
	}
	docs, err := publishable(items)
	if err != nil {
		return 0, err
	}
	// This object is in the list the cache gave, but the reconcile's copy
	// is what it decided on.
	docs[id] = doc
	rev, err = creator.CreateConfigs(ctx, namespace, docs)
	if errors.Is(err, store.ErrConfigExists) {
		// Another reconcile wrote the namespace first, perhaps from an
		// older copy of this object: write this one's own document.
		return p.Store.PutConfig(ctx, namespace, id, doc)
	}
	if err == nil && rev > 0 && heldBefore(items) {
		p.reportLoss(ctx, namespace, items)
	}
	return rev, err
}

// publishable compiles every object of items that its reconcile would
// publish: valid, and within the budget (items leaves out those being
// deleted).
func publishable(items []budgetItem) (map[string][]byte, error) {
	docs := map[string][]byte{}
	for _, it := range withinBudgetItems(items) {
		compiled, err := it.compile()
		if err != nil {
			continue // invalid: its reconcile reports it and publishes nothing
		}
		raw, err := compiled.Encode()
		if err != nil {
			return nil, err
		}
		docs[compiled.ID()] = raw
	}
	return docs, nil
}

// heldBefore reports whether the store held any of items' config: one
// says it was programmed there.
func heldBefore(items []budgetItem) bool {
	return slices.ContainsFunc(items, func(it budgetItem) bool { return it.programmed })
}

// reportLoss says that the store lost namespace's counters: a metric, an
// error in the log, a warning event on each of its objects, and a record
// in the store that the UsageQuotas read (UsageReported False,
// CountersLost) until their period ends.
func (p publisher) reportLoss(ctx context.Context, namespace string, items []budgetItem) {
	now := time.Now()
	storeDataLost.WithLabelValues(namespace).Inc()
	log := ctrl.LoggerFrom(ctx).WithValues("namespace", namespace)
	log.Error(nil, "The store lost this namespace's config and counters; its config is written back, its counters start again from 0")
	if r, ok := p.Store.(LossRecorder); ok {
		if err := r.RecordLoss(ctx, namespace, now, lossKeep); err != nil {
			log.Error(err, "Recording the loss for the namespace's UsageQuotas")
		}
	}
	for _, it := range items {
		p.Events.Eventf(it.obj, nil, corev1.EventTypeWarning, v1alpha1.ReasonCountersLost, "Detect",
			"The store lost namespace %s's counters (a flush, a restart without its data, or a failover to an empty replica), found at %s: limits and quotas count again from 0, so what was used before is admitted again",
			namespace, now.UTC().Format(time.RFC3339))
	}
}
