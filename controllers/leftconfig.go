package controllers

import (
	"context"
	"strings"
	"sync"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"

	"github.com/quotaops/quota-operator/api/v1alpha1"
	"github.com/quotaops/quota-operator/internal/config"
)

// A policy deleted while the store is unreachable cannot wait for it: its
// finalizer gives up after Options.FinalizeTimeout, so namespaces and
// GitOps syncs are not stalled by a Redis outage. Its config document is
// then left in the store, where its sidecars would go on enforcing it.
// LeftConfig remembers each such document, and StoreWatch removes it as
// soon as the store answers again. (Its counters need nothing: each has a
// TTL.) The record is in the leader's memory: a manager that restarts
// before the store is back forgets it, and docs/controllers.md says so.
type LeftConfig struct {
	mu sync.Mutex
	// ids are the documents left, by namespace.
	ids map[string]map[string]bool
}

// ConfigDeleter removes one document of a namespace's config.
type ConfigDeleter interface {
	DeleteConfig(ctx context.Context, namespace, id string) (int64, error)
}

func (l *LeftConfig) add(namespace, id string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.ids == nil {
		l.ids = map[string]map[string]bool{}
	}
	if l.ids[namespace] == nil {
		l.ids[namespace] = map[string]bool{}
	}
	l.ids[namespace][id] = true
}

func (l *LeftConfig) forget(namespace, id string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.ids[namespace], id)
	if len(l.ids[namespace]) == 0 {
		delete(l.ids, namespace)
	}
}

// pending is a copy of what is left, so the sweep holds no lock while it
// calls the store.
func (l *LeftConfig) pending() map[string][]string {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make(map[string][]string, len(l.ids))
	for ns, ids := range l.ids {
		for id := range ids {
			out[ns] = append(out[ns], id)
		}
	}
	return out
}

// sweep removes every document left. An object of the same kind and
// name that exists again (created anew meanwhile) is reconciled after
// the removal, which writes its own document back.
func (l *LeftConfig) sweep(ctx context.Context, s ConfigDeleter, c client.Reader, resync map[string]chan<- event.GenericEvent) error {
	for ns, ids := range l.pending() {
		for _, id := range ids {
			sctx, cancel := context.WithTimeout(ctx, storeTimeout)
			_, err := s.DeleteConfig(sctx, ns, id)
			cancel()
			if err != nil {
				return err
			}
			l.forget(ns, id)
			if obj := objectOf(id); obj != nil && resync[obj.kind] != nil {
				err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: obj.name}, obj.object)
				if err == nil {
					send(ctx, resync[obj.kind], obj.object)
				} else if !apierrors.IsNotFound(err) {
					return err
				}
			}
		}
	}
	return nil
}

type kindAndName struct {
	kind, name string
	object     client.Object
}

// objectOf is an empty object of the kind a document id ("Kind/name")
// names, or nil for a kind the operator does not publish.
func objectOf(id string) *kindAndName {
	kind, name, _ := strings.Cut(id, "/")
	switch kind {
	case config.KindRateLimitPolicy:
		return &kindAndName{kind, name, &v1alpha1.RateLimitPolicy{}}
	case config.KindUsageQuota:
		return &kindAndName{kind, name, &v1alpha1.UsageQuota{}}
	}
	return nil
}
