package controllers

import (
	"context"
	"errors"
	"fmt"

	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/quotaops/quota-operator/api/v1alpha1"
	"github.com/quotaops/quota-operator/internal/config"
	"github.com/quotaops/quota-operator/internal/store"
)

// A namespace's config is written whole when the store has none of it:
// after a flush, a restart without its data or a failover to an empty
// replica, writing one object's document would make a revision that holds
// that policy alone, and sidecars would enforce only it until the other
// objects' reconciles came. So the first reconcile that finds no config
// (store.ErrNoConfig) writes every object of the namespace that would be
// published, in one revision; the others then change their own document.

// put writes one document into the namespace's config, or, where the
// store has none, the namespace's whole config.
func (p publisher) put(ctx context.Context, namespace, id string, doc []byte) (int64, error) {
	rev, err := p.Store.PutConfig(ctx, namespace, id, doc)
	creator, ok := p.Store.(ConfigCreator)
	if !errors.Is(err, store.ErrNoConfig) || !ok {
		return rev, err
	}
	docs, err := namespaceDocs(ctx, p.Client, namespace)
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
	return rev, err
}

// namespaceDocs compiles every object of namespace that its reconcile
// would publish: valid, not being deleted, and within the budget.
func namespaceDocs(ctx context.Context, c client.Reader, namespace string) (map[string][]byte, error) {
	items, err := namespaceItems(ctx, c, namespace)
	if err != nil {
		return nil, fmt.Errorf("list the namespace's policies and quotas: %w", err)
	}
	docs := map[string][]byte{}
	for _, it := range withinBudgetItems(items) {
		var compiled *config.Policy
		var err error
		switch o := it.obj.(type) {
		case *v1alpha1.RateLimitPolicy:
			compiled, err = config.CompileRateLimitPolicy(o)
		case *v1alpha1.UsageQuota:
			compiled, err = config.CompileUsageQuota(o)
		}
		if err != nil || compiled == nil {
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
