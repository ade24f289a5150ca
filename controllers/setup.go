package controllers

import (
	"time"

	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/event"
)

// Store is what the controllers need of the store.
type Store interface {
	ConfigWriter
	ConfigCreator
	MarkerStore
}

// Options wire the controllers into a manager.
type Options struct {
	Store Store
	// Config, when set, takes the compiled config instead of Store: the
	// ConfigMapWriter without Redis.
	Config ConfigWriter
	// Usage reads quota usage; nil when it cannot be known (each sidecar
	// counts alone), which UsageQuotas then report.
	Usage UsageReader
	// Enforcement reads the sidecars' reports for Enforced; nil without
	// Redis, where they cannot report.
	Enforcement EnforcementReader
	// Users, with Redis, keeps the namespaces' store users; StoreWatch has
	// them written again to nodes that restarted.
	Users TenantUsers
	// Adjust and Announce apply QuotaAdjustments; nil without Redis, where
	// each sidecar counts alone and adjustments report so.
	Adjust   Adjuster
	Announce RevisionAnnouncer
	// Query answers QuotaQueries; nil without Redis, where each sidecar
	// counts alone and queries report so.
	Query QueryAnswerer
	// QueryTTL is how long an answered QuotaQuery stays (0:
	// DefaultQueryTTL).
	QueryTTL time.Duration
	// UsageInterval is how often UsageQuota usage is refreshed.
	UsageInterval time.Duration
	// StoreCheckInterval is how often StoreWatch looks for lost config.
	StoreCheckInterval time.Duration
	// Problems is where the StoreSecretReconciler says which namespaces'
	// sidecars have no store user; ProgrammedNote ends Programmed.
	Problems       *TenantProblems
	ProgrammedNote string
	// FinalizeTimeout bounds how long a deleted policy or quota waits for
	// an unreachable store to remove its config (0: as long as it takes).
	FinalizeTimeout time.Duration
}

// Setup adds the reconcilers and the StoreWatch that feeds them to mgr.
func Setup(mgr ctrl.Manager, o Options) error {
	events := mgr.GetEventRecorder("quota-operator")
	rlpResync, uqResync := make(chan event.GenericEvent), make(chan event.GenericEvent)
	headroom := &Headroom{}
	var writer ConfigWriter = o.Store
	if o.Config != nil {
		writer = o.Config
	}
	rlp := NewRateLimitPolicyReconciler(mgr.GetClient(), writer, events)
	rlp.Resync, rlp.Headroom, rlp.Enforcement = rlpResync, headroom, o.Enforcement
	uq := NewUsageQuotaReconciler(mgr.GetClient(), writer, o.Usage, events, o.UsageInterval)
	uq.Resync, uq.Headroom, uq.Enforcement = uqResync, headroom, o.Enforcement
	left, health := &LeftConfig{}, &StoreHealth{}
	for _, p := range []*publisher{&rlp.publisher, &uq.publisher} {
		p.FinalizeTimeout, p.Left, p.Health = o.FinalizeTimeout, left, health
		p.Problems, p.ProgrammedNote = o.Problems, o.ProgrammedNote
	}
	watch := &StoreWatch{Client: mgr.GetClient(), Store: o.Store, Interval: o.StoreCheckInterval, Headroom: headroom, Users: o.Users,
		RateLimitPolicies: rlpResync, UsageQuotas: uqResync, Left: left, Configs: writer, Health: health, Log: ctrl.Log.WithName("storewatch")}
	if err := rlp.SetupWithManager(mgr); err != nil {
		return err
	}
	if err := uq.SetupWithManager(mgr); err != nil {
		return err
	}
	qadj := &QuotaAdjustmentReconciler{Client: mgr.GetClient(), Adjuster: o.Adjust, Announce: o.Announce, Events: events}
	if err := qadj.SetupWithManager(mgr); err != nil {
		return err
	}
	if err := (&QuotaQueryReconciler{Client: mgr.GetClient(), Answerer: o.Query, TTL: o.QueryTTL}).SetupWithManager(mgr); err != nil {
		return err
	}
	return mgr.Add(watch)
}
