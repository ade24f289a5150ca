package controllers_test

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql/parser"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
	"sigs.k8s.io/yaml"

	"github.com/quotaops/quota-operator/api/v1alpha1"
	"github.com/quotaops/quota-operator/internal/config"
	"github.com/quotaops/quota-operator/internal/sidecar"
	"github.com/quotaops/quota-operator/internal/store"
	"github.com/quotaops/quota-operator/internal/store/storetest"
	"github.com/quotaops/quota-operator/internal/testutil/kubeenv"
	"github.com/quotaops/quota-operator/internal/testutil/sidecartest"
)

// exported is what the binaries export: each metric (histograms by their
// _bucket, _sum and _count series) and the label names it carries.
type exported map[string]map[string]bool

func (e exported) add(metric string, labels ...string) {
	if e[metric] == nil {
		e[metric] = map[string]bool{}
	}
	for _, l := range labels {
		e[metric][l] = true
	}
}

// The alert rules and the Grafana dashboard name only metrics and labels
// that the sidecar's and the manager's real /metrics output holds, and the
// rules parse with Prometheus's own rule parser.
func TestDashboardsAndAlertsNameExportedMetrics(t *testing.T) {
	e := exported{}
	e.addText(t, sidecarMetrics(t))
	e.addManager(t)
	p := parser.NewParser(parser.Options{})
	root := kubeenv.ModuleRoot()
	for _, expr := range ruleExprs(t, p, filepath.Join(root, "config", "prometheus", "rules.yaml")) {
		e.check(t, p, "config/prometheus/rules.yaml", expr)
	}
	for _, expr := range dashboardExprs(t, filepath.Join(root, "config", "grafana", "quota-operator.json")) {
		e.check(t, p, "config/grafana/quota-operator.json", expr)
	}
}

// sidecarMetrics runs a sidecar on a memory store holding a policy and a
// quota, sends a request through it and returns its /metrics.
func sidecarMetrics(t *testing.T) string {
	t.Helper()
	const ns = "observed"
	mem := store.NewMemory()
	p := rateLimitPolicy(ns, "api", 1)
	p.Spec.Selector = metav1.LabelSelector{} // every pod, this one without labels too
	// A limit that reads its cost from the response: its cost series.
	p.Spec.Limits = append(p.Spec.Limits, v1alpha1.Limit{Name: "tokens", Rates: []v1alpha1.Rate{{Limit: 1000, Window: "1m"}},
		CostFrom: &v1alpha1.CostFrom{ResponseHeader: "X-Usage-Units"}})
	rlp, err := config.CompileRateLimitPolicy(p)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := rlp.Encode()
	if _, err := storetest.PutConfig(ctx, mem, ns, rlp.ID(), raw); err != nil {
		t.Fatal(err)
	}
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok") }))
	t.Cleanup(app.Close)
	upstream, _ := url.Parse(app.URL)
	proxy, admin, _ := sidecartest.Run(t, sidecar.Options{Namespace: ns, Upstream: upstream, Timeout: 50 * time.Millisecond,
		Resync: time.Second, Log: logr.Discard()}, mem)
	var body string
	eventually(t, 5*time.Second, "sidecar decisions in /metrics", func() error {
		for range 2 { // one allowed, one denied
			resp, err := http.Get(proxy + "/")
			if err != nil {
				return err
			}
			_ = resp.Body.Close()
		}
		resp, err := http.Get(admin + "/metrics")
		if err != nil {
			return err
		}
		defer func() { _ = resp.Body.Close() }()
		b, _ := io.ReadAll(resp.Body)
		if body = string(b); !strings.Contains(body, `result="denied"`) || !strings.Contains(body, "quota_store_request_duration_seconds_bucket") {
			return fmt.Errorf("no decisions yet:\n%s", body)
		}
		return nil
	})
	return body
}

var sampleLine = regexp.MustCompile(`^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})?\s`)
var labelName = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)="`)

func (e exported) addText(t *testing.T, text string) {
	t.Helper()
	for _, line := range strings.Split(text, "\n") {
		m := sampleLine.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		e.add(m[1])
		for _, l := range labelName.FindAllStringSubmatch(m[2], -1) {
			e.add(m[1], l[1])
		}
	}
}

// addManager adds the manager's own quota_* families, once a UsageQuota's
// usage and the store's memory have been read.
func (e exported) addManager(t *testing.T) {
	t.Helper()
	ns := namespace(t)
	q := &v1alpha1.UsageQuota{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "observed"},
		Spec: v1alpha1.UsageQuotaSpec{Selector: metav1.LabelSelector{}, Subject: v1alpha1.Subject{Source: "ClientIP"}, Limit: 5, Period: "Day"}}
	if err := k8s.Create(ctx, q); err != nil {
		t.Fatal(err)
	}
	want := []string{"quota_usage_subjects", "quota_usage_max_subjects", "quota_usage_consumed", "quota_usage_top_used_ratio",
		"quota_store_used_memory_bytes", "quota_store_maxmemory_bytes", "quota_store_data_lost_total"}
	eventually(t, 10*time.Second, "the manager's quota metrics", func() error {
		families, err := ctrlmetrics.Registry.Gather()
		if err != nil {
			return err
		}
		for _, f := range families {
			if !strings.HasPrefix(f.GetName(), "quota_") {
				continue
			}
			e.add(f.GetName())
			for _, m := range f.GetMetric() {
				for _, l := range m.GetLabel() {
					e.add(f.GetName(), l.GetName())
				}
			}
		}
		for _, name := range want {
			if e[name] == nil {
				return fmt.Errorf("%s not exported yet", name)
			}
		}
		return nil
	})
}

// check parses expr and fails for every metric it selects that no binary
// exports, every label it matches or groups by that the metrics it
// selects do not carry.
func (e exported) check(t *testing.T, p parser.Parser, file, expr string) {
	t.Helper()
	ast, err := p.ParseExpr(expr)
	if err != nil {
		t.Errorf("%s: %q does not parse: %v", file, expr, err)
		return
	}
	parser.Inspect(ast, func(n parser.Node, _ []parser.Node) error {
		switch n := n.(type) {
		case *parser.VectorSelector:
			e.checkSelector(t, file, expr, n)
		case *parser.AggregateExpr:
			for _, g := range n.Grouping {
				if !e.carried(n.Expr, g) {
					t.Errorf("%s: %q groups by %s, which the metrics it aggregates do not carry", file, expr, g)
				}
			}
		}
		return nil
	})
}

func (e exported) checkSelector(t *testing.T, file, expr string, v *parser.VectorSelector) {
	t.Helper()
	labels, ok := e[v.Name]
	if !ok {
		t.Errorf("%s: %q names metric %s, which no binary exports", file, expr, v.Name)
		return
	}
	for _, m := range v.LabelMatchers {
		if m.Name != model.MetricNameLabel && !labels[m.Name] {
			t.Errorf("%s: %q matches label %s, which %s does not carry", file, expr, m.Name, v.Name)
		}
	}
}

// carried reports whether every metric expr selects carries label.
func (e exported) carried(expr parser.Expr, label string) bool {
	ok := true
	parser.Inspect(expr, func(n parser.Node, _ []parser.Node) error {
		if v, isSel := n.(*parser.VectorSelector); isSel && !e[v.Name][label] {
			ok = false
		}
		return nil
	})
	return ok
}

// ruleExprs parses the PrometheusRule's groups with Prometheus's rule
// parser and returns every expression.
func ruleExprs(t *testing.T, p parser.Parser, file string) []string {
	t.Helper()
	raw, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var rule struct {
		Spec json.RawMessage `json:"spec"`
	}
	if err := yaml.Unmarshal(raw, &rule); err != nil {
		t.Fatal(err)
	}
	groups, err := yaml.JSONToYAML(rule.Spec)
	if err != nil {
		t.Fatal(err)
	}
	parsed, errs := rulefmt.Parse(groups, false, model.UTF8Validation, p, slog.New(slog.DiscardHandler))
	for _, err := range errs {
		t.Errorf("%s: %v", file, err)
	}
	var exprs []string
	for _, g := range parsed.Groups {
		for _, r := range g.Rules {
			exprs = append(exprs, r.Expr)
		}
	}
	if len(exprs) < 9 {
		t.Fatalf("%s: %d rules", file, len(exprs))
	}
	return exprs
}

// dashboardExprs returns every panel's queries, with Grafana's variables
// replaced by what they stand for.
func dashboardExprs(t *testing.T, file string) []string {
	t.Helper()
	raw, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatal(err)
	}
	vars := strings.NewReplacer("$__rate_interval", "5m", "$namespace", ".*")
	var exprs []string
	for _, p := range dash.Panels {
		for _, target := range p.Targets {
			exprs = append(exprs, vars.Replace(target.Expr))
		}
	}
	if len(exprs) < 10 {
		t.Fatalf("%s: %d queries", file, len(exprs))
	}
	return exprs
}
