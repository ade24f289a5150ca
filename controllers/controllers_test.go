package controllers_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/quotaops/quota-operator/api/v1alpha1"
	"github.com/quotaops/quota-operator/controllers"
	"github.com/quotaops/quota-operator/internal/config"
	"github.com/quotaops/quota-operator/internal/limiter"
	"github.com/quotaops/quota-operator/internal/subject"
	"github.com/quotaops/quota-operator/internal/testutil/kubeenv"
)

var ctx = context.Background()

func rateLimitPolicy(ns, name string, limit int64) *v1alpha1.RateLimitPolicy {
	return &v1alpha1.RateLimitPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: v1alpha1.RateLimitPolicySpec{
			Selector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "api"}},
			Limits: []v1alpha1.Limit{{Name: "per-ip", Key: []v1alpha1.KeySource{{Source: v1alpha1.SourceClientIP}},
				Rates: []v1alpha1.Rate{{Limit: limit, Window: "1m"}}}},
		},
	}
}

// stored returns the document id in ns's config, or an error saying why not.
func stored(ns, id string) (*config.Policy, error) {
	_, docs, err := st.Configs(ctx, ns)
	if err != nil {
		return nil, err
	}
	doc, ok := docs[id]
	if !ok {
		return nil, fmt.Errorf("%s not in the config of %s", id, ns)
	}
	return config.Decode(doc)
}

// conditions reads obj again and checks its conditions at its generation.
func conditions(obj client.Object, st func() *v1alpha1.PolicyStatus, want map[string]string) error {
	if err := k8s.Get(ctx, client.ObjectKeyFromObject(obj), obj); err != nil {
		return err
	}
	s := st()
	if s.ObservedGeneration != obj.GetGeneration() {
		return fmt.Errorf("observedGeneration %d, generation %d", s.ObservedGeneration, obj.GetGeneration())
	}
	for kind, reason := range want {
		c := apimeta.FindStatusCondition(s.Conditions, kind)
		if c == nil || c.Reason != reason || c.ObservedGeneration != obj.GetGeneration() {
			return fmt.Errorf("condition %s = %+v; want reason %s", kind, c, reason)
		}
	}
	return nil
}

var programmed = map[string]string{v1alpha1.ConditionAccepted: v1alpha1.ReasonAccepted, v1alpha1.ConditionProgrammed: v1alpha1.ReasonProgrammed}

func TestRateLimitPolicyLifecycle(t *testing.T) {
	ns := namespace(t)
	p := rateLimitPolicy(ns, "api", 100)
	status := func() *v1alpha1.PolicyStatus { return &p.Status.PolicyStatus }
	createProgrammed(t, p, status)
	if !reflect.DeepEqual(p.Finalizers, []string{controllers.Finalizer}) {
		t.Fatalf("finalizers %v", p.Finalizers)
	}
	doc, err := stored(ns, "RateLimitPolicy/api")
	if err != nil || doc.Generation != 1 || doc.Limits[0].Rates[0] != (config.Rate{Limit: 100, WindowMs: 60000}) {
		t.Fatalf("stored %+v, %v", doc, err)
	}

	p.Spec.Limits[0].Rates[0].Limit = 200
	expectUpdated(t, p, status, "RateLimitPolicy/api", func(doc *config.Policy) bool { return doc.Limits[0].Rates[0].Limit == 200 })
	expectDeleted(t, p, "RateLimitPolicy/api")
}

// createProgrammed creates obj and waits for it to be accepted and
// programmed.
func createProgrammed(t *testing.T, obj client.Object, status func() *v1alpha1.PolicyStatus) {
	t.Helper()
	if err := k8s.Create(ctx, obj); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "programmed", func() error { return conditions(obj, status, programmed) })
}

// expectUpdated updates obj and waits for the store to hold its second
// generation, passing check, and for its status to say so.
func expectUpdated(t *testing.T, obj client.Object, status func() *v1alpha1.PolicyStatus, id string, check func(*config.Policy) bool) {
	t.Helper()
	if err := k8s.Update(ctx, obj); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "update in the store", func() error {
		doc, err := stored(obj.GetNamespace(), id)
		if err != nil || doc.Generation != 2 || !check(doc) {
			return fmt.Errorf("stored %+v, %w", doc, err)
		}
		return conditions(obj, status, programmed)
	})
}

// expectDeleted deletes obj and waits for it and its config to be gone.
func expectDeleted(t *testing.T, obj client.Object, id string) {
	t.Helper()
	if err := k8s.Delete(ctx, obj); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "delete", func() error {
		if err := k8s.Get(ctx, client.ObjectKeyFromObject(obj), obj); !apierrors.IsNotFound(err) {
			return fmt.Errorf("object still there: %w", err)
		}
		if _, err := stored(obj.GetNamespace(), id); err == nil {
			return errors.New("config still in the store")
		}
		return nil
	})
}

func TestUsageQuotaStatus(t *testing.T) {
	ns := namespace(t)
	newYork, _ := time.LoadLocation("America/New_York")
	q := &v1alpha1.UsageQuota{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "exports"},
		Spec: v1alpha1.UsageQuotaSpec{
			Selector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "api"}},
			Subject:  v1alpha1.Subject{Source: "Header", Name: "X-Api-Key"},
			Feature:  "exports", Limit: 10, Period: "Day", TimeZone: "America/New_York",
			Overrides: []v1alpha1.Override{{Subject: "partner", Limit: 500}},
		},
	}
	if err := k8s.Create(ctx, q); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "programmed", func() error {
		return conditions(q, func() *v1alpha1.PolicyStatus { return &q.Status.PolicyStatus }, programmed)
	})
	doc, err := stored(ns, "UsageQuota/exports")
	if err != nil || doc.Quota.Overrides[0] != (config.Override{SubjectHash: subject.Hash("partner"), Limit: 500}) {
		t.Fatalf("stored %+v, %v", doc, err)
	}
	// The sidecars' decisions feed the usage the status shows.
	for subj, n := range map[string]int{"sk_a": 3, "partner": 2} {
		for range n {
			if _, err := lim.Decide(ctx, limiter.Request{Limits: []limiter.Limit{{
				Key: limiter.QuotaKey(ns, "exports", "exports", subj), Algorithm: limiter.Quota,
				Rates: []limiter.Rate{{Limit: 10}}, Period: limiter.Day, Location: newYork, Cost: 1,
			}}}); err != nil {
				t.Fatal(err)
			}
		}
	}
	want := &v1alpha1.Usage{Subjects: 2, Consumed: 5, Top: []v1alpha1.Consumer{
		{Subject: subject.Hash("sk_a"), Used: 3, Remaining: 7},
		{Subject: "partner", Used: 2, Remaining: 498},
	}}
	eventually(t, 5*time.Second, "usage in status", func() error {
		if err := k8s.Get(ctx, client.ObjectKeyFromObject(q), q); err != nil {
			return err
		}
		if !reflect.DeepEqual(q.Status.Usage, want) {
			return fmt.Errorf("usage %+v; want %+v", q.Status.Usage, want)
		}
		return nil
	})
	start, end, _ := limiter.Day.Bounds(time.Now(), newYork)
	if p := q.Status.Period; p == nil || !p.Start.Time.Equal(start) || !p.End.Time.Equal(end) {
		t.Fatalf("period %+v; want [%v, %v)", q.Status.Period, start, end)
	}
	expectUsageMetrics(t, q, map[string]float64{"quota_usage_subjects": 2, "quota_usage_max_subjects": 100000, "quota_usage_consumed": 5,
		"quota_usage_top_used_ratio": 0.3})
	expectSubjectBound(t, q, end)
	out := kubectl(t, "get", "uq", "-n", ns)
	for _, w := range []string{"LIMIT", "PERIOD", "USED", "SUBJECTS", "PROGRAMMED", "exports   10      Day      5      2          True"} {
		if !strings.Contains(out, w) {
			t.Errorf("kubectl get uq lacks %q:\n%s", w, out)
		}
	}
}

// expectUsageMetrics: the manager exports what status shows, for alerts.
func expectUsageMetrics(t *testing.T, q *v1alpha1.UsageQuota, want map[string]float64) {
	t.Helper()
	families, err := ctrlmetrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if _, ok := want[f.GetName()]; ok && labels["namespace"] == q.Namespace && labels["name"] == q.Name {
				got[f.GetName()] = m.GetGauge().GetValue()
			}
		}
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("manager metrics %v; want %v", got, want)
	}
}

// expectSubjectBound: within the default bound the condition is True;
// lowered to the two subjects seen, it turns False before any is denied.
func expectSubjectBound(t *testing.T, q *v1alpha1.UsageQuota, end time.Time) {
	t.Helper()
	c := apimeta.FindStatusCondition(q.Status.Conditions, v1alpha1.ConditionSubjectsWithinBound)
	if c == nil || c.Status != metav1.ConditionTrue || c.Message != "2 of 100000 subjects tracked this period" {
		t.Fatalf("condition %+v", c)
	}
	if err := k8s.Get(ctx, client.ObjectKeyFromObject(q), q); err != nil {
		t.Fatal(err)
	}
	q.Spec.MaxSubjects = 2
	if err := k8s.Update(ctx, q); err != nil {
		t.Fatal(err)
	}
	want := "2 of 2 subjects tracked this period; new subjects are denied until the period ends at " + end.UTC().Format(time.RFC3339) +
		": raise spec.maxSubjects if they are real"
	eventually(t, 5*time.Second, "the bound reached", func() error {
		if err := k8s.Get(ctx, client.ObjectKeyFromObject(q), q); err != nil {
			return err
		}
		c := apimeta.FindStatusCondition(q.Status.Conditions, v1alpha1.ConditionSubjectsWithinBound)
		if c == nil || c.Status != metav1.ConditionFalse || c.Reason != v1alpha1.ReasonBoundReached || c.Message != want {
			return fmt.Errorf("condition %+v", c)
		}
		return nil
	})
}

func TestUsageQuotaUpdateAndDelete(t *testing.T) {
	ns := namespace(t)
	q := &v1alpha1.UsageQuota{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "monthly"},
		Spec: v1alpha1.UsageQuotaSpec{
			Selector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "api"}},
			Subject:  v1alpha1.Subject{Source: "ClientIP"}, Limit: 1000, Period: "Month",
		},
	}
	status := func() *v1alpha1.PolicyStatus { return &q.Status.PolicyStatus }
	createProgrammed(t, q, status)
	q.Spec.Limit, q.Spec.TimeZone = 2000, "Asia/Kolkata"
	expectUpdated(t, q, status, "UsageQuota/monthly", func(doc *config.Policy) bool {
		return doc.Quota.Limit == 2000 && doc.Quota.TimeZone == "Asia/Kolkata"
	})
	expectDeleted(t, q, "UsageQuota/monthly")
}

// A time zone the schema's pattern allows but no zone database knows is
// refused in status, and nothing reaches the store.
func TestUnknownTimeZoneIsNotAccepted(t *testing.T) {
	ns := namespace(t)
	q := &v1alpha1.UsageQuota{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "mars"},
		Spec: v1alpha1.UsageQuotaSpec{
			Selector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "api"}},
			Subject:  v1alpha1.Subject{Source: "ClientIP"}, Limit: 10, Period: "Month", TimeZone: "Mars/Olympus_Mons",
		},
	}
	if err := k8s.Create(ctx, q); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "not accepted", func() error {
		err := conditions(q, func() *v1alpha1.PolicyStatus { return &q.Status.PolicyStatus },
			map[string]string{v1alpha1.ConditionAccepted: v1alpha1.ReasonInvalid, v1alpha1.ConditionProgrammed: v1alpha1.ReasonInvalid})
		if err != nil {
			return err
		}
		msg := apimeta.FindStatusCondition(q.Status.Conditions, v1alpha1.ConditionAccepted).Message
		if want := `spec.timeZone: Invalid value: "Mars/Olympus_Mons": not an IANA time zone`; msg != want {
			return fmt.Errorf("message %q; want %q", msg, want)
		}
		return nil
	})
	if _, err := stored(ns, "UsageQuota/mars"); err == nil {
		t.Fatal("an invalid quota reached the store")
	}
}

// The store goes down: Programmed turns False with StoreUnavailable and a
// warning event. It comes back empty (no persistence): with no manual step
// the config is written back and Programmed turns True again.
func TestStoreOutageAndRecovery(t *testing.T) {
	ns := namespace(t)
	p := rateLimitPolicy(ns, "api", 100)
	status := func() *v1alpha1.PolicyStatus { return &p.Status.PolicyStatus }
	createProgrammed(t, p, status)
	if err := redisS.Stop(); err != nil {
		t.Fatal(err)
	}
	p.Spec.Limits[0].Rates[0].Limit = 300
	if err := k8s.Update(ctx, p); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, "StoreUnavailable", func() error {
		return conditions(p, status, map[string]string{v1alpha1.ConditionAccepted: v1alpha1.ReasonAccepted, v1alpha1.ConditionProgrammed: v1alpha1.ReasonStoreUnavailable})
	})
	eventually(t, 10*time.Second, "warning event", func() error { return hasEvent(ns, "api", "Warning", v1alpha1.ReasonStoreUnavailable) })
	restarted := time.Now()
	if err := redisS.Start(); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, "recovered", func() error {
		if err := conditions(p, status, programmed); err != nil {
			return err
		}
		doc, err := stored(ns, "RateLimitPolicy/api")
		if err != nil || doc.Limits[0].Rates[0].Limit != 300 {
			return fmt.Errorf("stored %+v, %w", doc, err)
		}
		return nil
	})
	t.Logf("programmed again %v after the store was restarted", time.Since(restarted).Round(10*time.Millisecond))
}

// A policy deleted while the store does not answer (Redis stopped, its
// data kept) goes after the finalize timeout, with a warning event, rather
// than blocking its namespace's deletion for the whole outage; when the
// store answers again, its config is removed from it. Before, the
// finalizer waited for the store however long it took.
func TestDeleteDuringOutageIsBounded(t *testing.T) {
	ns := namespace(t)
	p := rateLimitPolicy(ns, "gone", 100)
	createProgrammed(t, p, func() *v1alpha1.PolicyStatus { return &p.Status.PolicyStatus })
	if err := redisS.Pause(); err != nil {
		t.Fatal(err)
	}
	resumed := false
	defer func() {
		if !resumed {
			_ = redisS.Resume()
		}
	}()
	deleted := time.Now()
	if err := k8s.Delete(ctx, p); err != nil {
		t.Fatal(err)
	}
	// Alone it is gone in about 5 s (one 5 s store call, then the
	// timeout has passed); in the whole package, the policies of earlier
	// tests that are being finalized share the workers, each giving up
	// after the timeout in turn. Without the timeout it would never go.
	eventually(t, finalizeAfter+60*time.Second, "the policy gone", func() error {
		err := k8s.Get(ctx, client.ObjectKeyFromObject(p), &v1alpha1.RateLimitPolicy{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("still there: %w", err)
	})
	t.Logf("deleted %v after the delete, the store unreachable", time.Since(deleted).Round(100*time.Millisecond))
	eventually(t, 10*time.Second, "the warning event", func() error { return hasEvent(ns, "gone", "Warning", controllers.ReasonConfigLeftInStore) })
	if err := redisS.Resume(); err != nil {
		t.Fatal(err)
	}
	resumed = true
	eventually(t, 20*time.Second, "the config removed from the store", func() error {
		if _, err := stored(ns, "RateLimitPolicy/gone"); err == nil || !strings.Contains(err.Error(), "not in the config") {
			return fmt.Errorf("stored: %w", err)
		}
		return nil
	})
}

func hasEvent(ns, name, kind, reason string) error {
	var list eventsv1.EventList
	if err := k8s.List(ctx, &list, client.InNamespace(ns)); err != nil {
		return err
	}
	for _, e := range list.Items {
		if e.Regarding.Name == name && e.Type == kind && e.Reason == reason {
			return nil
		}
	}
	return fmt.Errorf("no %s event %s for %s among %d", kind, reason, name, len(list.Items))
}

// After FLUSHALL every object's config is back within 10s.
func TestConfigBackAfterFlush(t *testing.T) {
	ns := namespace(t)
	for i := range 3 {
		if err := k8s.Create(ctx, rateLimitPolicy(ns, fmt.Sprintf("p%d", i), 100)); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, 10*time.Second, "all in the store", func() error { return storedCount(ns, 3) })
	if err := redisS.Client().FlushAll(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	took := eventually(t, 10*time.Second, "config back after FLUSHALL", func() error { return storedCount(ns, 3) })
	t.Logf("config back %v after FLUSHALL", took.Round(10*time.Millisecond))
}

func storedCount(ns string, want int) error {
	_, docs, err := st.Configs(ctx, ns)
	if err != nil {
		return err
	}
	if len(docs) != want {
		return fmt.Errorf("%d documents; want %d", len(docs), want)
	}
	return nil
}

// Every sample applied with kubectl is programmed into the store.
func TestSamplesAreProgrammed(t *testing.T) {
	ns := namespace(t)
	kubectl(t, "apply", "-n", ns, "-k", filepath.Join(kubeenv.ModuleRoot(), "config", "samples"))
	eventually(t, 15*time.Second, "every sample programmed", func() error {
		if err := storedCount(ns, 9); err != nil {
			return err
		}
		out := kubectlOut("get", "rlp,uq", "-n", ns, "-o", `jsonpath={range .items[*]}{.metadata.name}={.status.conditions[?(@.type=="Programmed")].status}{"\n"}{end}`)
		if n := strings.Count(out, "=True"); n != 9 {
			return fmt.Errorf("%d of 9 programmed:\n%s", n, out)
		}
		return nil
	})
}

// kubectl runs the API server's own kubectl against the test cluster.
func kubectl(t *testing.T, args ...string) string {
	t.Helper()
	return env.MustKubectl(t, args...)
}

func kubectlOut(args ...string) string {
	out, _ := env.Kubectl(args...)
	return out
}
