package controllers

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"time"

	"github.com/go-logr/logr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"

	"github.com/quotaops/quota-operator/api/v1alpha1"
	"github.com/quotaops/quota-operator/internal/config"
)

// markerKey is a key the operator keeps in the store (with a TTL) to
// notice when the store lost its data.
const markerKey = "qo:v1:operator:marker"

// MarkerStore is what StoreWatch needs of the store.
type MarkerStore interface {
	SetIfAbsent(ctx context.Context, key string, value []byte, ttl time.Duration) (bool, error)
	Expire(ctx context.Context, key string, ttl time.Duration) (bool, error)
	Delete(ctx context.Context, key string) (bool, error)
}

// StoreWatch notices a store that lost the operator's config (FLUSHALL, a
// restart without persistence, a failover to an empty replica) and has
// every object reconciled again, which writes its config back. It looks
// every Interval: the config is back within about Interval plus one
// reconcile.
type StoreWatch struct {
	Client   client.Reader
	Store    MarkerStore
	Interval time.Duration
	// RateLimitPolicies and UsageQuotas feed the reconcilers' Resync.
	RateLimitPolicies, UsageQuotas chan<- event.GenericEvent
	// Users, when set, is resynced at every look: Redis keeps ACL users in
	// no data file and no replica, so a node that restarted lost them.
	Users interface {
		Resync(ctx context.Context) error
	}
	// Headroom, when the store reports its memory, is updated at every
	// look; a change has every object reconciled, to report it.
	Headroom *Headroom
	// Left holds the config documents of objects deleted while the store
	// was unreachable; each look that reaches the store removes them
	// (through Configs).
	Left    *LeftConfig
	Configs ConfigDeleter
	// Health is told whether each look reached the store.
	Health *StoreHealth
	Log    logr.Logger
}

// NeedLeaderElection: only the leader writes config.
func (w *StoreWatch) NeedLeaderElection() bool { return true }

// Start runs until ctx ends.
func (w *StoreWatch) Start(ctx context.Context) error {
	var id [8]byte
	_, _ = rand.Read(id[:])
	marker := []byte(hex.EncodeToString(id[:]))
	ttl := max(10*w.Interval, 10*time.Second)
	go w.probe(ctx)
	t := time.NewTicker(w.Interval)
	defer t.Stop()
	for {
		// The library first: the marker is written through it.
		w.resyncUsers(ctx)
		w.check(ctx, marker, ttl)
		w.checkMemory(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// markerTimeout bounds each look at the marker: a pooled connection to a
// Redis that went away (its pod replaced) can hang until the client's read
// timeout, and a short bound lets the next check, a new connection, find
// the new Redis soon (measured on a node: config back 0.2 to 4.7 s after
// the new Redis pod was Ready with the 5 s bound).
const markerTimeout = time.Second

func (w *StoreWatch) check(ctx context.Context, marker []byte, ttl time.Duration) {
	sctx, cancel := context.WithTimeout(ctx, markerTimeout)
	defer cancel()
	lost, err := w.Store.SetIfAbsent(sctx, markerKey, marker, ttl)
	if err != nil {
		// The reconcilers report an unreachable store in status.
		w.Log.V(1).Info("Store unreachable", "error", err.Error())
		return
	}
	if !lost {
		_, _ = w.Store.Expire(sctx, markerKey, ttl)
		w.sweepLeft(ctx)
		return
	}
	if err := w.resync(ctx); err != nil {
		w.Log.Error(err, "Listing objects to write their config back")
		_, _ = w.Store.Delete(sctx, markerKey) // look again next time
		return
	}
	w.Log.Info("Store holds no operator marker; wrote every object's config back")
}

// Pinger answers whether the store is reachable now.
type Pinger interface {
	Ping(ctx context.Context) error
}

// probe tells Health, every Interval, whether the store answers: on its
// own, since a look of the loop above can wait seconds on a store that
// went away (its users' writes, say), and reconciles should know at once.
func (w *StoreWatch) probe(ctx context.Context) {
	p, ok := w.Store.(Pinger)
	if !ok || w.Health == nil {
		return
	}
	t := time.NewTicker(w.Interval)
	defer t.Stop()
	for {
		pctx, cancel := context.WithTimeout(ctx, markerTimeout)
		w.Health.set(p.Ping(pctx) == nil)
		cancel()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// sweepLeft removes the config of objects deleted while the store was
// away. (After a loss there is nothing to remove.)
func (w *StoreWatch) sweepLeft(ctx context.Context) {
	if w.Left == nil || w.Configs == nil {
		return
	}
	resync := map[string]chan<- event.GenericEvent{config.KindRateLimitPolicy: w.RateLimitPolicies, config.KindUsageQuota: w.UsageQuotas}
	if err := w.Left.sweep(ctx, w.Configs, w.Client, resync); err != nil {
		w.Log.Error(err, "Removing the config of objects deleted while the store was unreachable")
	}
}

func (w *StoreWatch) checkMemory(ctx context.Context) {
	m, ok := w.Store.(MemoryReader)
	if !ok || w.Headroom == nil {
		return
	}
	sctx, cancel := context.WithTimeout(ctx, markerTimeout)
	defer cancel()
	u, err := m.MemoryUse(sctx)
	if err != nil {
		w.Log.V(1).Info("Store memory unknown", "error", err.Error())
		return
	}
	storeUsedMemory.Set(float64(u.Used))
	storeMaxMemory.Set(float64(u.Max))
	if !w.Headroom.update(u) {
		return
	}
	w.Log.Info("Store memory headroom changed", "node", u.Node, "usedBytes", u.Used, "maxmemoryBytes", u.Max)
	if err := w.resync(ctx); err != nil {
		w.Log.Error(err, "Listing objects to report the store's memory")
	}
}

func (w *StoreWatch) resyncUsers(ctx context.Context) {
	if w.Users == nil {
		return
	}
	sctx, cancel := context.WithTimeout(ctx, markerTimeout)
	defer cancel()
	if err := w.Users.Resync(sctx); err != nil {
		w.Log.Error(err, "Writing namespace users to the store's nodes")
	}
}

func (w *StoreWatch) resync(ctx context.Context) error {
	var policies v1alpha1.RateLimitPolicyList
	if err := w.Client.List(ctx, &policies); err != nil {
		return err
	}
	var quotas v1alpha1.UsageQuotaList
	if err := w.Client.List(ctx, &quotas); err != nil {
		return err
	}
	for i := range policies.Items {
		if !send(ctx, w.RateLimitPolicies, &policies.Items[i]) {
			return ctx.Err()
		}
	}
	for i := range quotas.Items {
		if !send(ctx, w.UsageQuotas, &quotas.Items[i]) {
			return ctx.Err()
		}
	}
	return nil
}

func send(ctx context.Context, ch chan<- event.GenericEvent, obj client.Object) bool {
	select {
	case ch <- event.GenericEvent{Object: obj}:
		return true
	case <-ctx.Done():
		return false
	}
}
