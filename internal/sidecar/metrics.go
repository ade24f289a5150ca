package sidecar

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/quotaops/quota-operator/internal/limiter"
	"github.com/quotaops/quota-operator/internal/store"
)

// Metrics are the sidecar's Prometheus metrics. Labels are names from the
// config (namespace, policy, limit), never subjects, so their number is
// bounded by the config whatever the traffic. A nil *Metrics records
// nothing.
type Metrics struct {
	Registry *prometheus.Registry
	// quota registers the quota_* series, with the namespace label.
	quota          prometheus.Registerer
	decisions      *prometheus.CounterVec
	storeSeconds   *prometheus.HistogramVec
	ConfigRevision prometheus.Gauge
	ConfigErrors   prometheus.Counter
}

// Decision results, the "result" label of quota_decisions_total.
const (
	ResultAllowed      = "allowed"
	ResultDenied       = "denied"
	ResultWouldDeny    = "dry_run_denied"
	ResultNotConsumed  = "not_consumed" // another limit denied the request
	ResultFailedOpen   = "failed_open"
	ResultFailedClosed = "failed_closed"
	// ResultSubjectBound: a quota's new subject beyond spec.maxSubjects.
	ResultSubjectBound = "subject_bound"
	// ResultCancelled: the caller went away before the store answered.
	ResultCancelled = "cancelled"
	// ResultKeyMissing: denied for lacking the key (whenKeyMissing: Deny);
	// ResultBadKey: refused (400) for a key given twice or unparsable.
	ResultKeyMissing = "key_missing"
	ResultBadKey     = "bad_key"
)

// NewMetrics registers the metrics; breakerOpen reports the breaker. Every
// quota_* series carries the sidecar's namespace, so dashboards and alerts
// can select and group by it whatever the scrape adds.
func NewMetrics(namespace string, breakerOpen func() bool) *Metrics {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return namespaceMetrics(reg, namespace, breakerOpen)
}

// ForNamespace registers another namespace's quota_* series beside m's,
// for a gateway that serves several.
func (m *Metrics) ForNamespace(namespace string, breakerOpen func() bool) *Metrics {
	return namespaceMetrics(m.Registry, namespace, breakerOpen)
}

func namespaceMetrics(reg *prometheus.Registry, namespace string, breakerOpen func() bool) *Metrics {
	m := &Metrics{
		Registry: reg,
		quota:    prometheus.WrapRegistererWith(prometheus.Labels{"namespace": namespace}, reg),
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "quota_decisions_total", Help: "Decisions per limit and result.",
		}, []string{"policy", "limit", "result"}),
		storeSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "quota_store_request_duration_seconds", Help: "Time of each decision's store call.",
			Buckets: []float64{.0005, .001, .002, .005, .01, .025, .05, .1, .25},
		}, []string{"outcome"}),
		ConfigRevision: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "quota_config_revision", Help: "Revision of the config being enforced (0: a policy file).",
		}),
		ConfigErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "quota_config_errors_total", Help: "Config documents or files refused; the last valid config stayed.",
		}),
	}
	breaker := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "quota_store_breaker_open", Help: "1 while the circuit breaker skips the store.",
	}, func() float64 {
		if breakerOpen() {
			return 1
		}
		return 0
	})
	m.quota.MustRegister(m.decisions, m.storeSeconds, m.ConfigRevision, m.ConfigErrors, breaker)
	return m
}

// WatchMemory exports a memory store's fill: its entries, bound and
// refusals.
func (m *Metrics) WatchMemory(mem *store.Memory) {
	m.quota.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "quota_store_memory_entries", Help: "Keys and hash fields the memory store holds.",
		}, func() float64 { return float64(mem.Entries()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "quota_store_memory_max_entries", Help: "The memory store's bound on entries (memory://?max_entries).",
		}, func() float64 { return float64(mem.MaxEntries()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "quota_store_memory_refused_total", Help: "Writes the full memory store refused; each policy's failurePolicy decided those requests.",
		}, func() float64 { return float64(mem.Refused()) }),
	)
}

func (m *Metrics) decided(applied []Applied, d limiter.Decision) {
	if m == nil {
		return
	}
	for i, a := range applied {
		m.decisions.WithLabelValues(a.Policy, a.Name, limitResult(i, d)).Inc()
	}
}

// limitResult is what the decision was for applied limit i.
func limitResult(i int, d limiter.Decision) string {
	result := ResultAllowed
	for _, r := range d.Results {
		switch {
		case r.Limit != i || r.Allowed:
		case r.DryRun:
			result = ResultWouldDeny
		case r.SubjectBound:
			return ResultSubjectBound
		default:
			return ResultDenied
		}
	}
	if !d.Allowed {
		return ResultNotConsumed
	}
	return result
}

// cancelled counts decisions whose caller went away before the store
// answered: neither a failure of the store nor a request let through.
func (m *Metrics) cancelled(applied []Applied) {
	if m == nil {
		return
	}
	for _, a := range applied {
		m.decisions.WithLabelValues(a.Policy, a.Name, ResultCancelled).Inc()
	}
}

// keyRefused counts a request refused for its key, by the limit that
// could not read it.
func (m *Metrics) keyRefused(e *KeyError) {
	if m == nil {
		return
	}
	result := ResultBadKey
	if e.missing {
		result = ResultKeyMissing
	}
	m.decisions.WithLabelValues(e.Policy, e.Limit, result).Inc()
}

func (m *Metrics) failed(applied []Applied, open bool) {
	if m == nil {
		return
	}
	result := ResultFailedClosed
	if open {
		result = ResultFailedOpen
	}
	for _, a := range applied {
		m.decisions.WithLabelValues(a.Policy, a.Name, result).Inc()
	}
}

func (m *Metrics) storeLatency(d time.Duration, err error) {
	if m == nil {
		return
	}
	outcome := "ok"
	if err != nil {
		outcome = "error"
	}
	m.storeSeconds.WithLabelValues(outcome).Observe(d.Seconds())
}
