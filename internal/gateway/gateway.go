// Package gateway is the rate-limit service for gateways (Envoy Gateway,
// an Istio ingress): one horizontally scaled Deployment that decides, with
// Envoy's rate-limit protocol, for the policies of the namespaces it is
// given. Its domains are "namespace/policy"; descriptors map to limits as
// in a sidecar (DESIGN §5), with the same counters, so a gateway and the
// namespace's sidecars share one count.
package gateway

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/go-logr/logr"

	"github.com/quotaops/quota-operator/internal/limiter"
	"github.com/quotaops/quota-operator/internal/rls"
	"github.com/quotaops/quota-operator/internal/rlsserver"
	"github.com/quotaops/quota-operator/internal/sidecar"
	"github.com/quotaops/quota-operator/internal/store"
)

// Options configure the gateway's rate-limit service.
type Options struct {
	// Namespaces are the namespaces whose policies it serves.
	Namespaces []string
	// Timeout bounds each store call.
	Timeout time.Duration
	// Resync is how often config is re-read besides change announcements.
	Resync time.Duration
	// DrainTimeout bounds the graceful shutdown.
	DrainTimeout time.Duration
	// FailurePolicy, when set, overrides every policy's failurePolicy.
	FailurePolicy string
	// TLS, when set, serves gRPC over TLS (mTLS when it asks for client
	// certificates).
	TLS *tls.Config
	Log logr.Logger
}

// Listeners are where it serves: gRPC, and /healthz, /readyz and /metrics.
type Listeners struct {
	GRPC, Health net.Listener
}

// Store is what the gateway needs of the store: counters and config.
type Store interface {
	store.Store
	sidecar.ConfigReader
}

// served is one namespace: its config and its enforcer (and metrics).
type served struct {
	source   *sidecar.Source
	enforcer *sidecar.Enforcer
}

// Serve runs the service on s until ctx ends, then drains calls in flight
// for at most DrainTimeout.
func Serve(ctx context.Context, o Options, s Store, ln Listeners) error {
	if len(o.Namespaces) == 0 {
		return errors.New("no namespace to serve")
	}
	lim, err := limiter.New(s)
	if err != nil {
		return err
	}
	breaker := sidecar.NewBreaker()
	// One registry; each namespace's quota_* series carry its name.
	metrics := sidecar.NewMetrics(o.Namespaces[0], breaker.Open)
	namespaces := make(map[string]served, len(o.Namespaces))
	for i, ns := range o.Namespaces {
		m := metrics
		if i > 0 {
			m = metrics.ForNamespace(ns, breaker.Open)
		}
		// A reset or a grant anywhere comes with a new revision; the known
		// denials are forgotten for every namespace, which costs at most
		// one store call each.
		src := &sidecar.Source{Namespace: ns, EveryPolicy: true, Metrics: m, OnRevision: lim.ForgetKnown,
			Log: o.Log.WithName("config").WithValues("namespace", ns)}
		namespaces[ns] = served{source: src, enforcer: &sidecar.Enforcer{Limiter: lim, Timeout: o.Timeout, Breaker: breaker,
			Metrics: m, FailurePolicy: o.FailurePolicy}}
		go src.RunStore(ctx, s, o.Resync)
	}
	return run(ctx, o, ln, namespaces, metrics)
}

func run(ctx context.Context, o Options, ln Listeners, namespaces map[string]served, metrics *sidecar.Metrics) error {
	srv := rlsserver.New(sidecar.NewRateLimitService(resolver(namespaces)), o.TLS)
	health := sidecar.SmallServer(sidecar.HealthMux(notReady(namespaces), metrics), 0)
	errs := make(chan error, 2)
	go func() { errs <- srv.Serve(ln.GRPC) }()
	if ln.Health != nil {
		go func() { errs <- health.Serve(ln.Health) }()
	}
	o.Log.Info("Serving rate limits", "namespaces", o.Namespaces, "grpc", ln.GRPC.Addr().String(), "tls", o.TLS != nil)
	var err error
	select {
	case <-ctx.Done():
	case err = <-errs:
	}
	drain, cancel := context.WithTimeout(context.WithoutCancel(ctx), max(o.DrainTimeout, time.Second))
	defer cancel()
	o.Log.Info("Shutting down; draining calls in flight")
	srv.Stop(drain)
	_ = health.Shutdown(drain)
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

// resolver reads a domain as "namespace/policy".
func resolver(namespaces map[string]served) sidecar.Resolver {
	return func(domain string) (sidecar.Domain, error) {
		ns, policy, ok := strings.Cut(domain, "/")
		if !ok || ns == "" || policy == "" {
			return sidecar.Domain{}, rls.Errorf(rls.CodeInvalidArgument, "domain %q is not namespace/policy", domain)
		}
		n, ok := namespaces[ns]
		if !ok {
			return sidecar.Domain{}, rls.Errorf(rls.CodePermissionDenied, "namespace %q is not served here", ns)
		}
		return sidecar.Domain{Policies: n.source.Current(), Policy: policy, Enforcer: n.enforcer}, nil
	}
}

// notReady names a namespace whose config is not loaded yet: the service
// is ready once every one is.
func notReady(namespaces map[string]served) func() string {
	return func() string {
		for ns, n := range namespaces {
			if !n.source.Ready() {
				return "config of namespace " + ns + " not loaded yet"
			}
		}
		return ""
	}
}
