package sidecar

import (
	"io"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/quotaops/quota-operator/internal/limiter"
	"github.com/quotaops/quota-operator/internal/store"
)

// Metrics are the sidecar's Prometheus metrics. Labels are names from the
// config (namespace, policy, limit), never subjects, so their number is
// bounded by the config whatever the traffic. A nil *Metrics records
// nothing.
//
// They are kept with VictoriaMetrics/metrics, which writes Prometheus's
// text format without the Prometheus client's protobuf runtime: that
// client made up about 2 MiB of what each sidecar holds resident
// (docs/performance.md). Its exposition has TYPE lines and empty HELP
// lines; docs/sidecar.md describes each metric.
type Metrics struct {
	set       *metrics.Set
	namespace string
	// counters are the counters of quota_decisions_total and the cost
	// metrics by their labels, made on first use so a decision costs a
	// lookup, not a name.
	counters     *sync.Map
	storeSeconds map[string]*metrics.PrometheusHistogram
	// ConfigRevision and ConfigErrors are quota_config_revision and
	// quota_config_errors_total.
	ConfigRevision *metrics.Gauge
	ConfigErrors   *metrics.Counter
}

// counterKey names one counter series in a namespace: its metric, policy,
// limit and the value of its one other label, if any.
type counterKey struct{ metric, policy, limit, value string }

// storeBuckets are quota_store_request_duration_seconds's, in seconds.
var storeBuckets = []float64{.0005, .001, .002, .005, .01, .025, .05, .1, .25}

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
	metrics.ExposeMetadata(true)
	return namespaceMetrics(metrics.NewSet(), namespace, breakerOpen)
}

// ForNamespace registers another namespace's quota_* series beside m's,
// for a gateway that serves several.
func (m *Metrics) ForNamespace(namespace string, breakerOpen func() bool) *Metrics {
	return namespaceMetrics(m.set, namespace, breakerOpen)
}

func namespaceMetrics(set *metrics.Set, namespace string, breakerOpen func() bool) *Metrics {
	m := &Metrics{set: set, namespace: namespace, counters: &sync.Map{}, storeSeconds: map[string]*metrics.PrometheusHistogram{}}
	for _, outcome := range []string{"ok", "error"} {
		m.storeSeconds[outcome] = set.NewPrometheusHistogramExt(m.series("quota_store_request_duration_seconds", "outcome", outcome), storeBuckets)
	}
	m.ConfigRevision = set.NewGauge(m.series("quota_config_revision"), nil)
	m.ConfigErrors = set.NewCounter(m.series("quota_config_errors_total"))
	set.NewGauge(m.series("quota_store_breaker_open"), func() float64 {
		if breakerOpen() {
			return 1
		}
		return 0
	})
	return m
}

// series names a series of the namespace: name{labels}, the namespace's
// among them, sorted by name as the Prometheus client wrote them.
func (m *Metrics) series(name string, labels ...string) string {
	type label struct{ name, value string }
	all := []label{{"namespace", m.namespace}}
	for i := 0; i+1 < len(labels); i += 2 {
		all = append(all, label{labels[i], labels[i+1]})
	}
	slices.SortFunc(all, func(a, b label) int { return strings.Compare(a.name, b.name) })
	parts := make([]string, len(all))
	for i, l := range all {
		parts[i] = l.name + `="` + labelEscaper.Replace(l.value) + `"`
	}
	return name + "{" + strings.Join(parts, ",") + "}"
}

// labelEscaper escapes a label value as the text format wants.
var labelEscaper = strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`)

// WritePrometheus writes every series, and the process's own (go_* and
// process_*), in Prometheus's text format.
func (m *Metrics) WritePrometheus(w io.Writer) {
	m.set.WritePrometheus(w)
	metrics.WriteProcessMetrics(w)
}

// count adds one to quota_decisions_total for a limit and result.
func (m *Metrics) count(policy, limit, result string) {
	m.counter("quota_decisions_total", policy, limit, "result", result).Inc()
}

// counter is the series of metric for a limit of a policy; label, unless
// empty, is its one other label's name, with value.
func (m *Metrics) counter(metric, policy, limit, label, value string) *metrics.Counter {
	key := counterKey{metric, policy, limit, value}
	c, ok := m.counters.Load(key)
	if !ok {
		labels := []string{"policy", policy, "limit", limit}
		if label != "" {
			labels = append(labels, label, value)
		}
		c, _ = m.counters.LoadOrStore(key, m.set.GetOrCreateCounter(m.series(metric, labels...)))
	}
	return c.(*metrics.Counter)
}

// costSettled counts the units a response said its request cost, once
// settled.
func (m *Metrics) costSettled(a Applied, units int64) {
	if m != nil {
		m.counter("quota_cost_settled_units_total", a.Policy, a.Name, "", "").AddInt64(units)
	}
}

// costUnknown counts a response that did not say what its request cost,
// by why; the reserve stays charged.
func (m *Metrics) costUnknown(a Applied, why string) {
	if m != nil {
		m.counter("quota_cost_unknown_total", a.Policy, a.Name, "reason", why).Inc()
	}
}

// costReasons are every reason label of quota_cost_unknown_total.
var costReasons = []string{CostMissing, CostMalformed, CostOverBound, CostNotJSON, CostCut}

// watchCosts makes the cost series of every limit of ps that reads its
// cost from the response, at 0: dashboards and alerts see them before the
// first response (and the names of the config bound their number).
func (m *Metrics) watchCosts(ps *Policies) {
	if m == nil {
		return
	}
	ps.eachCost(func(policy, limit string) {
		m.counter("quota_cost_settled_units_total", policy, limit, "", "")
		m.counter("quota_cost_settle_failures_total", policy, limit, "", "")
		for _, why := range costReasons {
			m.counter("quota_cost_unknown_total", policy, limit, "reason", why)
		}
	})
}

// settleFailed counts a cost the store never took: the reserve stays.
func (m *Metrics) settleFailed(a Applied) {
	if m != nil {
		m.counter("quota_cost_settle_failures_total", a.Policy, a.Name, "", "").Inc()
	}
}

// WatchMemory exports a memory store's fill: its entries, bound and
// refusals.
func (m *Metrics) WatchMemory(mem *store.Memory) {
	m.set.NewGauge(m.series("quota_store_memory_entries"), func() float64 { return float64(mem.Entries()) })
	m.set.NewGauge(m.series("quota_store_memory_max_entries"), func() float64 { return float64(mem.MaxEntries()) })
	refused := m.series("quota_store_memory_refused_total")
	m.set.RegisterMetricsWriter(func(w io.Writer) { metrics.WriteCounterUint64(w, refused, uint64(mem.Refused())) })
}

func (m *Metrics) decided(applied []Applied, d limiter.Decision) {
	if m == nil {
		return
	}
	for i, a := range applied {
		m.count(a.Policy, a.Name, limitResult(i, d))
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
		m.count(a.Policy, a.Name, ResultCancelled)
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
	m.count(e.Policy, e.Limit, result)
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
		m.count(a.Policy, a.Name, result)
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
	m.storeSeconds[outcome].Update(d.Seconds())
}
