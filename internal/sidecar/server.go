package sidecar

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"net/url"
	"sync"
	"time"

	"github.com/go-logr/logr"

	"github.com/quotaops/quota-operator/internal/limiter"
	"github.com/quotaops/quota-operator/internal/rls"
	"github.com/quotaops/quota-operator/internal/store"
)

// Options configure a sidecar.
type Options struct {
	Upstream  *url.URL
	Namespace string
	// PodName, when set, is reported with the revision the sidecar
	// enforces (Redis only).
	PodName    string
	LabelsFile string
	// PolicyFile, when set, is the config (no operator); the store then
	// holds counters only.
	PolicyFile string
	// FallbackPolicyFile, when set, is a folder of the manager's compiled
	// documents (its ConfigMap), enforced when the store cannot be read at
	// start (Source.Fallback).
	FallbackPolicyFile string
	Trusted            []netip.Prefix
	// Timeout bounds each store call.
	Timeout time.Duration
	// Resync is how often config is re-read besides change announcements.
	Resync time.Duration
	// DrainTimeout bounds the graceful shutdown.
	DrainTimeout time.Duration
	// FailurePolicy, when set, overrides every policy's failurePolicy.
	FailurePolicy string
	// IdleTimeout closes keep-alive connections idle that long (default
	// 2 minutes), so idle clients cannot hold file descriptors forever.
	IdleTimeout time.Duration
	// BodyIdleTimeout cuts a proxied request whose body sends nothing for
	// that long (default 1 minute), so a client trickling nothing cannot
	// hold a connection and an upstream request forever. A body that keeps
	// coming may take as long as it needs.
	BodyIdleTimeout time.Duration
	// RLS serves Envoy's rate-limit service on Listeners.GRPC
	// (internal/rlsserver). A program without gRPC (quota-sidecar) leaves
	// it nil and is given no gRPC listener.
	RLS func(rls.Handler) RLSServer
	Log logr.Logger
}

// RLSServer is a server of Envoy's rate-limit service.
type RLSServer interface {
	Serve(net.Listener) error
	Stop(context.Context)
}

// Bounds on the servers' connections. The proxy's request bodies and
// upgraded connections (WebSockets) may last as long as the app lets them,
// so only its headers and idle time are bounded; the admin and health
// servers answer small requests and bound the whole exchange.
const (
	headerTimeout          = 10 * time.Second
	defaultIdleTimeout     = 2 * time.Minute
	defaultBodyIdleTimeout = time.Minute
	smallTimeout           = 30 * time.Second
)

// servers are the proxy, the admin (local API) and the health server.
func servers(o Options, proxy, admin, health http.Handler) (*http.Server, *http.Server, *http.Server) {
	idle := idleTimeout(o.IdleTimeout)
	return &http.Server{Handler: proxy, ReadHeaderTimeout: headerTimeout, IdleTimeout: idle, Protocols: serverProtocols()},
		SmallServer(admin, idle), SmallServer(health, idle)
}

// SmallServer serves small requests (health, metrics, the local API): the
// whole exchange is bounded, and keep-alive connections idle longer than
// idle (default 2 minutes) are closed.
func SmallServer(h http.Handler, idle time.Duration) *http.Server {
	return &http.Server{Handler: h, ReadHeaderTimeout: headerTimeout, ReadTimeout: smallTimeout,
		WriteTimeout: smallTimeout, IdleTimeout: idleTimeout(idle)}
}

func idleTimeout(d time.Duration) time.Duration {
	if d <= 0 {
		return defaultIdleTimeout
	}
	return d
}

// Listeners are where the sidecar serves. Health (/healthz, /readyz and
// /metrics for the kubelet and Prometheus) and GRPC (Envoy's rate-limit
// service) are optional.
type Listeners struct {
	Proxy, Admin, Health, GRPC net.Listener
}

// sidecarStore is what the sidecar needs of the store.
type sidecarStore interface {
	store.Store
	ConfigReader
}

// Serve runs the sidecar on s until ctx ends, then drains in-flight
// requests for at most DrainTimeout.
func Serve(ctx context.Context, o Options, s store.Store, ln Listeners) error {
	if ln.GRPC != nil && o.RLS == nil {
		return errors.New("a gRPC listener without an Envoy rate-limit server")
	}
	lim, err := limiter.New(s)
	if err != nil {
		return err
	}
	breaker := NewBreaker()
	metrics := NewMetrics(o.Namespace, breaker.Open)
	if mem, ok := s.(*store.Memory); ok {
		metrics.WatchMemory(mem)
	}
	// Every new revision may come from an adjustment (a reset or a grant)
	// that lowered counters this limiter knows to be over.
	src := &Source{Namespace: o.Namespace, LabelsFile: o.LabelsFile, Log: o.Log.WithName("config"), Metrics: metrics, OnRevision: lim.ForgetKnown,
		Fallback: o.FallbackPolicyFile}
	sctx, stop := context.WithCancel(ctx)
	defer stop()
	if err := runSource(sctx, o, s, src); err != nil {
		return err
	}
	h := &Handler{Source: src, Enforcer: &Enforcer{Limiter: lim, Timeout: o.Timeout, Breaker: breaker, Metrics: metrics, FailurePolicy: o.FailurePolicy,
		Log: o.Log.WithName("cost")},
		Trusted: o.Trusted, Proxy: newProxy(o.Upstream, o.Log), BodyIdleTimeout: o.BodyIdleTimeout}
	if h.BodyIdleTimeout <= 0 {
		h.BodyIdleTimeout = defaultBodyIdleTimeout
	}
	notReady := func() string {
		if !src.Ready() {
			return "config not loaded yet"
		}
		return ""
	}
	mux := HealthMux(notReady, metrics)
	(&localAPI{namespace: o.Namespace, source: src, enforcer: h.Enforcer,
		store: guardedStore{s, h.Enforcer}, locks: guardedLocks{lim, h.Enforcer}}).register(mux)
	proxy, admin, health := servers(o, h, mux, HealthMux(notReady, metrics))
	errs := make(chan error, 4)
	go func() { errs <- proxy.Serve(ln.Proxy) }()
	go func() { errs <- admin.Serve(ln.Admin) }()
	if ln.Health != nil {
		go func() { errs <- health.Serve(ln.Health) }()
	}
	var rlsServer RLSServer
	if ln.GRPC != nil {
		rlsServer = o.RLS(NewRateLimitService(ownNamespace(src, h.Enforcer)))
		go func() { errs <- rlsServer.Serve(ln.GRPC) }()
	}
	select {
	case <-ctx.Done():
	case err = <-errs:
	}
	drain, cancel := context.WithTimeout(context.WithoutCancel(ctx), max(o.DrainTimeout, time.Second))
	defer cancel()
	o.Log.Info("Shutting down; draining requests in flight")
	if rlsServer != nil {
		rlsServer.Stop(drain)
	}
	_ = proxy.Shutdown(drain)
	_ = admin.Shutdown(drain)
	_ = health.Shutdown(drain)
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

// runSource keeps src current from the policy file or the store, and
// reports what it enforces, until ctx ends.
func runSource(ctx context.Context, o Options, s store.Store, src *Source) error {
	switch cs, ok := s.(sidecarStore); {
	case o.PolicyFile != "":
		go src.RunFile(ctx, o.PolicyFile, time.Second)
	case ok:
		if r, ok := s.(EnforcingReporter); ok && o.PodName != "" {
			src.Reporter, src.Pod = r, o.PodName
		}
		go src.RunStore(ctx, cs, o.Resync)
	default:
		return errors.New("the store cannot hold config: give --policy-file")
	}
	return nil
}

// serverProtocols accepts HTTP/1.1 and cleartext HTTP/2 (h2c).
func serverProtocols() *http.Protocols {
	var p http.Protocols
	p.SetHTTP1(true)
	p.SetUnencryptedHTTP2(true)
	return &p
}

func newProxy(upstream *url.URL, log logr.Logger) *httputil.ReverseProxy {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConns, t.MaxIdleConnsPerHost = 512, 512
	return &httputil.ReverseProxy{
		Transport: t,
		Rewrite: func(pr *httputil.ProxyRequest) {
			// Append to the client's chain rather than replace it.
			pr.Out.Header["X-Forwarded-For"] = pr.In.Header["X-Forwarded-For"]
			pr.SetURL(upstream)
			pr.SetXForwarded()
			pr.Out.Host = pr.In.Host
		},
		ModifyResponse: readResponse,
		BufferPool:     copyBuffers{},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			log.V(1).Info("Upstream failed", "error", err.Error())
			w.WriteHeader(http.StatusBadGateway)
		},
	}
}

// copyBuffers lends the proxy its body-copying buffers. Without it, each
// request allocated 32 KiB, 60% of all the sidecar allocated, and the heap
// the GC had to let grow.
type copyBuffers struct{}

const copyBufferSize = 32 << 10

var copyBufferPool = sync.Pool{New: func() any { return new([copyBufferSize]byte) }}

func (copyBuffers) Get() []byte { return copyBufferPool.Get().(*[copyBufferSize]byte)[:] }

func (copyBuffers) Put(b []byte) {
	if len(b) == copyBufferSize {
		copyBufferPool.Put((*[copyBufferSize]byte)(b))
	}
}

// Handler enforces the config on each request and passes allowed ones on.
type Handler struct {
	Source   *Source
	Enforcer *Enforcer
	Trusted  []netip.Prefix
	Proxy    http.Handler
	// BodyIdleTimeout: see Options.
	BodyIdleTimeout time.Duration
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	ps := h.Source.Current()
	if ps == nil && h.Enforcer.FailurePolicy == FailClosed {
		// Nothing is known yet of what to enforce; a pod that fails closed
		// lets nothing through unchecked.
		w.Header().Set("Retry-After", "1")
		http.Error(w, "quota config not loaded yet", http.StatusServiceUnavailable)
		return
	}
	if ps != nil {
		var ok bool
		if r, ok = h.enforce(w, r, ps); !ok {
			return
		}
	}
	if h.BodyIdleTimeout > 0 && r.Body != nil && r.Body != http.NoBody {
		r.Body = &idleBody{ReadCloser: r.Body, ctl: http.NewResponseController(w), idle: h.BodyIdleTimeout}
	}
	h.Proxy.ServeHTTP(w, r)
}

// enforce decides r against ps. It answers the client itself (a refused
// key, a denial, a store failure that fails closed) and returns false, or
// returns the request to pass on, marked when the sidecar set rate-limit
// headers on the response.
func (h *Handler) enforce(w http.ResponseWriter, r *http.Request, ps *Policies) (*http.Request, bool) {
	client := ClientIP(r.RemoteAddr, r.Header.Values("X-Forwarded-For"), h.Trusted)
	applied, err := ps.Match(r, client)
	var kerr *KeyError
	if errors.As(err, &kerr) {
		h.Enforcer.Metrics.keyRefused(kerr)
		http.Error(w, kerr.Error(), kerr.Status)
		return r, false
	}
	v := h.Enforcer.Check(r.Context(), applied)
	switch {
	case v.StoreFailed && v.Status != 0:
		w.Header().Set("Retry-After", "1")
	case !v.StoreFailed && v.Invalid == nil && len(applied) > 0:
		if set := setHeaders(w.Header(), applied, v.Decision); set && v.Status == 0 {
			// Ours replace the upstream's (dropUpstreamLimitHeaders).
			r = r.WithContext(context.WithValue(r.Context(), headersSet{}, true))
		}
	}
	if v.Status == 0 && v.Invalid == nil {
		if pc := newPendingCost(h.Enforcer, v, applied, w.Header(), r.Context().Value(headersSet{}) != nil); pc != nil {
			r = r.WithContext(context.WithValue(r.Context(), costKey{}, pc))
		}
	}
	if v.Status != 0 {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(v.Status)
		_, _ = w.Write([]byte(http.StatusText(v.Status) + "\n"))
		return r, false
	}
	return r, true
}

// idleBody moves the connection's read deadline on before each read of the
// request body, and clears it once the body has ended, so the response,
// however long, is not bounded by it. A body cut short keeps the passed
// deadline: the server's discarding of the rest fails at once instead of
// waiting for the client.
type idleBody struct {
	io.ReadCloser
	ctl   *http.ResponseController
	idle  time.Duration
	ended bool
}

func (b *idleBody) Read(p []byte) (int, error) {
	if !b.ended {
		_ = b.ctl.SetReadDeadline(time.Now().Add(b.idle))
	}
	n, err := b.ReadCloser.Read(p)
	if errors.Is(err, io.EOF) && !b.ended {
		b.ended = true
		_ = b.ctl.SetReadDeadline(time.Time{})
	}
	return n, err
}

// HealthMux serves /healthz (the process runs), /readyz (503 with what
// notReady says until it says nothing: the config is loaded, the pod or
// service enforces) and /metrics; the sidecar's admin listener adds the
// local API to it.
func HealthMux(notReady func() string, m *Metrics) *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if why := notReady(); why != "" {
			http.Error(w, why, http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		m.WritePrometheus(w)
	})
	return mux
}
