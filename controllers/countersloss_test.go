package controllers_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
	"sigs.k8s.io/yaml"

	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
	"github.com/prometheus/prometheus/tsdb/chunks"
	"github.com/prometheus/prometheus/util/annotations"

	"github.com/quotaops/quota-operator/api/v1alpha1"
	"github.com/quotaops/quota-operator/internal/limiter"
	"github.com/quotaops/quota-operator/internal/testutil/kubeenv"
)

// A Redis that comes back with its data makes no noise; one that comes
// back empty is loud: a CountersLost event on each object of the
// namespaces it held, quota_store_data_lost_total, UsageReported=False
// with CountersLost on each UsageQuota, and the alert on that metric.
// (Before, the config came back, status stayed green and usage silently
// started again from 0.)
func TestCountersLossIsLoud(t *testing.T) {
	ns := namespace(t)
	p := rateLimitPolicy(ns, "api", 100)
	q := monthlyQuota(ns, "calls")
	for _, obj := range []client.Object{p, q} {
		if err := k8s.Create(ctx, obj); err != nil {
			t.Fatal(err)
		}
	}
	usageReported := func(reason string) error {
		if err := k8s.Get(ctx, client.ObjectKeyFromObject(q), q); err != nil {
			return err
		}
		c := apimeta.FindStatusCondition(q.Status.Conditions, v1alpha1.ConditionUsageReported)
		if c == nil || c.Reason != reason {
			return fmt.Errorf("UsageReported %+v; want reason %s", c, reason)
		}
		return nil
	}
	eventually(t, 15*time.Second, "usage reported from the store", func() error { return usageReported(v1alpha1.ReasonFromStore) })
	consume(t, ns, 3)
	series := []float64{lostCount(t, ns)}

	series = append(series, expectQuietRestart(t, q, usageReported, series[0]))

	// Without it: loud.
	if err := redisS.RestartEmpty(); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{p.Name, q.Name} {
		eventually(t, 15*time.Second, "CountersLost event for "+name, func() error { return hasEvent(ns, name, "Warning", v1alpha1.ReasonCountersLost) })
	}
	eventually(t, 15*time.Second, "UsageReported False, CountersLost", func() error { return usageReported(v1alpha1.ReasonCountersLost) })
	if c := apimeta.FindStatusCondition(q.Status.Conditions, v1alpha1.ConditionUsageReported); c.Status != metav1.ConditionFalse || !strings.Contains(c.Message, "lost this namespace's counters") {
		t.Fatalf("UsageReported: %+v", c)
	}
	series = append(series, lostCount(t, ns))
	if series[2] != series[1]+1 {
		t.Fatalf("quota_store_data_lost_total %v after the empty restart, was %v; want one more", series[2], series[1])
	}
	expectAlert(t, ns, series)
}

// expectQuietRestart restarts Redis with its data: the usage is still
// there, and neither the metric (was before) nor an event says otherwise.
// It returns the metric.
func expectQuietRestart(t *testing.T, q *v1alpha1.UsageQuota, usageReported func(string) error, before float64) float64 {
	t.Helper()
	if err := redisS.RestartWithData(); err != nil {
		t.Fatal(err)
	}
	eventually(t, 15*time.Second, "usage read again after the restart", func() error {
		if err := usageReported(v1alpha1.ReasonFromStore); err != nil {
			return err
		}
		if q.Status.Usage == nil || q.Status.Usage.Consumed != 3 {
			return fmt.Errorf("usage %+v; want the 3 consumed before the restart", q.Status.Usage)
		}
		return nil
	})
	time.Sleep(3 * storeCheckEvery) // store checks that find the marker
	after := lostCount(t, q.Namespace)
	if after != before {
		t.Fatalf("quota_store_data_lost_total went from %v to %v after a restart with the data", before, after)
	}
	if err := hasEvent(q.Namespace, q.Name, "Warning", v1alpha1.ReasonCountersLost); err == nil {
		t.Fatal("a CountersLost event after a restart with the data")
	}
	return after
}

func monthlyQuota(ns, name string) *v1alpha1.UsageQuota {
	return &v1alpha1.UsageQuota{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: v1alpha1.UsageQuotaSpec{
			Selector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "api"}},
			Subject:  v1alpha1.Subject{Source: "Header", Name: "X-Api-Key"},
			Limit:    1000, Period: "Month", TimeZone: "UTC",
		},
	}
}

// consume takes n units of monthlyQuota(ns, "calls") as a sidecar would.
func consume(t *testing.T, ns string, n int) {
	t.Helper()
	for range n {
		if _, err := lim.Decide(ctx, limiter.Request{Limits: []limiter.Limit{{
			Key: limiter.QuotaKey(ns, "calls", "", "sk_live"), Algorithm: limiter.Quota,
			Rates: []limiter.Rate{{Limit: 1000}}, Period: limiter.Month, Location: time.UTC, Cost: 1,
		}}}); err != nil {
			t.Fatal(err)
		}
	}
}

// lostCount reads quota_store_data_lost_total{namespace=ns} from the
// manager's metrics registry, as /metrics exports it.
func lostCount(t *testing.T, ns string) float64 {
	t.Helper()
	families, err := ctrlmetrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != "quota_store_data_lost_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "namespace" && l.GetValue() == ns {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	t.Fatalf("no quota_store_data_lost_total for namespace %s: the counter must exist from 0 on", ns)
	return 0
}

// expectAlert evaluates the shipped QuotaStoreCountersLost rule with
// Prometheus's own engine on the values the manager exported, as a scrape
// every 30 s would have stored them (before, after the restart with data,
// after the empty one, then steady): it fires after the loss, not before.
func expectAlert(t *testing.T, ns string, values []float64) {
	t.Helper()
	expr := alertExpr(t, "QuotaStoreCountersLost")
	var samples []chunks.Sample
	for i, v := range append(values, values[len(values)-1]) {
		samples = append(samples, floatSample{int64(2*i) * 30_000, v}, floatSample{int64(2*i+1) * 30_000, v})
	}
	series := storage.NewListSeries(labels.FromStrings("__name__", "quota_store_data_lost_total", "namespace", ns, "pod", "manager-0"), samples)
	engine := promql.NewEngine(promql.EngineOpts{MaxSamples: 100000, Timeout: 10 * time.Second, LookbackDelta: 5 * time.Minute})
	firing := func(at time.Duration) bool {
		qry, err := engine.NewInstantQuery(context.Background(), oneSeries(series), nil, expr, time.UnixMilli(0).Add(at))
		if err != nil {
			t.Fatal(err)
		}
		vec, err := qry.Exec(context.Background()).Vector()
		if err != nil {
			t.Fatalf("%s: %v", expr, err)
		}
		return len(vec) == 1 && vec[0].Metric.Get("namespace") == ns
	}
	if firing(90 * time.Second) {
		t.Fatalf("%s fires after the restart with the data", expr)
	}
	if !firing(4 * time.Minute) {
		t.Fatalf("%s does not fire after the loss", expr)
	}
}

// oneSeries is a Prometheus storage holding s alone.
func oneSeries(s storage.Series) storage.Queryable {
	return &storage.MockQueryable{MockQuerier: &storage.MockQuerier{
		SelectMockFunction: func(_ bool, _ *storage.SelectHints, ms ...*labels.Matcher) storage.SeriesSet {
			for _, m := range ms {
				if !m.Matches(s.Labels().Get(m.Name)) {
					return storage.EmptySeriesSet()
				}
			}
			return &seriesSet{s: s}
		},
	}}
}

// floatSample is one scraped value.
type floatSample struct {
	t int64
	f float64
}

func (s floatSample) T() int64                    { return s.t }
func (floatSample) ST() int64                     { return 0 }
func (s floatSample) F() float64                  { return s.f }
func (floatSample) H() *histogram.Histogram       { return nil }
func (floatSample) FH() *histogram.FloatHistogram { return nil }
func (floatSample) Type() chunkenc.ValueType      { return chunkenc.ValFloat }
func (s floatSample) Copy() chunks.Sample         { return s }

type seriesSet struct {
	s    storage.Series
	done bool
}

func (ss *seriesSet) Next() bool {
	next := !ss.done
	ss.done = true
	return next
}
func (ss *seriesSet) At() storage.Series             { return ss.s }
func (*seriesSet) Err() error                        { return nil }
func (*seriesSet) Warnings() annotations.Annotations { return nil }

// alertExpr is the expression of the named alert in the shipped rules.
func alertExpr(t *testing.T, alert string) string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(kubeenv.ModuleRoot(), "config", "prometheus", "rules.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var rule struct {
		Spec struct {
			Groups []struct {
				Rules []struct {
					Alert string `json:"alert"`
					Expr  string `json:"expr"`
				} `json:"rules"`
			} `json:"groups"`
		} `json:"spec"`
	}
	if err := yaml.Unmarshal(raw, &rule); err != nil {
		t.Fatal(err)
	}
	for _, g := range rule.Spec.Groups {
		for _, r := range g.Rules {
			if r.Alert == alert {
				return r.Expr
			}
		}
	}
	t.Fatalf("no alert %s in rules.yaml", alert)
	return ""
}
