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
	// decisions are quota_decisions_total's counters by their labels,
	// made on first use so a decision costs a lookup, not a name.
	decisions    *sync.Map
	storeSeconds map[string]*metrics.PrometheusHistogram
	// ConfigRevision and ConfigErrors are quota_config_revision and
	// quota_config_errors_total.
	ConfigRevision *metrics.Gauge
	ConfigErrors   *metrics.Counter
}

// decisionLabels name one quota_decisions_total series in a namespace.
type decisionLabels struct{ policy, limit, result string }

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
	m := &Metrics{set: set, namespace: namespace, decisions: &sync.Map{}, storeSeconds: map[string]*metrics.PrometheusHistogram{}}
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
	key := decisionLabels{policy, limit, result}
	c, ok := m.decisions.Load(key)
	if !ok {
		c, _ = m.decisions.LoadOrStore(key, m.set.GetOrCreateCounter(
			m.series("quota_decisions_total", "policy", policy, "limit", limit, "result", result)))
	}
	c.(*metrics.Counter).Inc()
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
