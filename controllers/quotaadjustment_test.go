package controllers_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/quotaops/quota-operator/api/v1alpha1"
	"github.com/quotaops/quota-operator/controllers"
	"github.com/quotaops/quota-operator/internal/limiter"
	"github.com/quotaops/quota-operator/internal/subject"
	"github.com/quotaops/quota-operator/internal/testutil/kubeenv"
)

func dailyQuota(ns, name string, limit int64) *v1alpha1.UsageQuota {
	return &v1alpha1.UsageQuota{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: v1alpha1.UsageQuotaSpec{
			Selector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "api"}},
			Subject:  v1alpha1.Subject{Source: "Header", Name: "X-Api-Key"},
			Limit:    limit, Period: "Day", TimeZone: "UTC",
		},
	}
}

// quotaLimit is the limit a sidecar decides for q's subject.
func quotaLimit(q *v1alpha1.UsageQuota, subj string) limiter.Limit {
	return limiter.Limit{Key: limiter.QuotaKey(q.Namespace, q.Name, "", subj), Algorithm: limiter.Quota,
		Rates: []limiter.Rate{{Limit: q.Spec.Limit}}, Period: limiter.Day, Location: time.UTC, Cost: 1, MaxSubjects: 100000}
}

// take makes n decisions on a limiter of its own, as a sidecar that knows
// nothing of earlier denials, and fails unless exactly allowed pass.
func take(t *testing.T, lim limiter.Limit, n, allowed int) {
	t.Helper()
	side := lim0(t)
	got := 0
	for range n {
		d, err := side.Decide(ctx, limiter.Request{Limits: []limiter.Limit{lim}})
		if err != nil {
			t.Fatal(err)
		}
		if d.Allowed {
			got++
		}
	}
	if got != allowed {
		t.Fatalf("%d of %d decisions allowed; want %d", got, n, allowed)
	}
}

func create(t *testing.T, objs ...client.Object) {
	t.Helper()
	for _, o := range objs {
		if err := k8s.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
}

func adjustment(ns, name string, target v1alpha1.AdjustmentTarget, subj v1alpha1.AdjustmentSubject, units int64) *v1alpha1.QuotaAdjustment {
	qa := &v1alpha1.QuotaAdjustment{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: v1alpha1.QuotaAdjustmentSpec{Target: target, Subject: subj, Action: v1alpha1.ActionReset, Reason: "ticket 4711"}}
	if units > 0 {
		qa.Spec.Action, qa.Spec.Units = v1alpha1.ActionGrant, units
	}
	return qa
}

// expectApplied waits for Applied=True and checks the status exactly.
func expectApplied(t *testing.T, qa *v1alpha1.QuotaAdjustment, message string, rates ...v1alpha1.AdjustedRate) {
	t.Helper()
	eventually(t, 10*time.Second, "applied", func() error { return appliedCondition(qa, metav1.ConditionTrue, v1alpha1.ReasonApplied, message) })
	if qa.Status.AppliedAt == nil || time.Since(qa.Status.AppliedAt.Time) > time.Minute || !reflect.DeepEqual(qa.Status.Rates, rates) {
		t.Fatalf("status %+v; want rates %+v applied just now", qa.Status, rates)
	}
	if err := hasEvent(qa.Namespace, qa.Name, corev1.EventTypeNormal, v1alpha1.ReasonApplied); err != nil {
		t.Fatal(err)
	}
}

func appliedCondition(qa *v1alpha1.QuotaAdjustment, status metav1.ConditionStatus, reason, message string) error {
	if err := k8s.Get(ctx, client.ObjectKeyFromObject(qa), qa); err != nil {
		return err
	}
	c := apimeta.FindStatusCondition(qa.Status.Conditions, v1alpha1.ConditionApplied)
	if c == nil || c.Status != status || c.Reason != reason || c.Message != message || qa.Status.ObservedGeneration != qa.Generation {
		return fmt.Errorf("Applied = %+v; want %s %s %q", c, status, reason, message)
	}
	return nil
}

// A Reset brings remaining back to the full limit exactly once: neither a
// manager that stopped between the store and the status, nor a status
// lost and written again, resets a second time.
func TestQuotaAdjustmentResetsOnce(t *testing.T) {
	ns := namespace(t)
	q := dailyQuota(ns, "api-calls", 10)
	create(t, q)
	eventually(t, 10*time.Second, "programmed", func() error {
		return conditions(q, func() *v1alpha1.PolicyStatus { return &q.Status.PolicyStatus }, programmed)
	})
	lim := quotaLimit(q, "sk_live_alice")
	take(t, lim, 7, 7)
	rev, _, _ := st.Configs(ctx, ns)

	qa := adjustment(ns, "reset-alice", v1alpha1.AdjustmentTarget{Kind: v1alpha1.TargetUsageQuota, Name: q.Name},
		v1alpha1.AdjustmentSubject{Values: []string{"sk_live_alice"}}, 0)
	create(t, qa)
	// A manager that wrote the store and stopped before the status: its
	// status write fails. The package's manager races it for the object;
	// whichever comes first, the counters change once.
	crashed := &controllers.QuotaAdjustmentReconciler{Client: failingStatus{k8s}, Adjuster: lim0(t), Announce: st, Events: discard{}}
	if _, err := crashed.Reconcile(ctx, ctrl.Request{NamespacedName: client.ObjectKeyFromObject(qa)}); err == nil {
		t.Log("the package's manager applied it first")
	}
	hash := subject.Hash("sk_live_alice")
	msg := "Reset of UsageQuota api-calls of subject " + hash + " applied: remaining 3 -> 10 of 10"
	want := v1alpha1.AdjustedRate{Limit: 10, UsedBefore: 7, UsedAfter: 0, RemainingBefore: 3, RemainingAfter: 10}
	expectApplied(t, qa, msg, want)
	if qa.Status.SubjectHash != hash || qa.Status.Period == nil {
		t.Fatalf("status %+v; want subject %s and the period", qa.Status, hash)
	}
	if now, _, _ := st.Configs(ctx, ns); now <= rev {
		t.Fatalf("config revision %d after the reset, %d before: sidecars were not told", now, rev)
	}
	take(t, lim, 4, 4)
	out := kubectl(t, "get", "qadj", "-n", ns)
	for _, w := range []string{"NAME          ACTION   KIND         TARGET      UNITS   APPLIED   REMAINING   APPLIED AT   AGE", "reset-alice   Reset    UsageQuota   api-calls           True      10"} {
		if !strings.Contains(out, w) {
			t.Errorf("kubectl get qadj lacks %q:\n%s", w, out)
		}
	}

	// The status is lost (restored from a backup without it, say): the
	// manager applies it again and finds the store's record.
	applied := qa.Status.AppliedAt.DeepCopy()
	qa.Status = v1alpha1.QuotaAdjustmentStatus{}
	if err := k8s.Status().Update(ctx, qa); err != nil {
		t.Fatal(err)
	}
	expectApplied(t, qa, msg, want)
	if !qa.Status.AppliedAt.Equal(applied) {
		t.Fatalf("appliedAt %v after the replay; want the first %v", qa.Status.AppliedAt, applied)
	}
	take(t, lim, 7, 6)
}

// lim0 is a limiter of the test's own on the package's Redis.
func lim0(t *testing.T) *limiter.Limiter {
	l, err := limiter.New(st)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// failingStatus is a client whose status writes fail, as if the manager
// stopped right before them.
type failingStatus struct{ client.Client }

func (f failingStatus) Status() client.SubResourceWriter { return failingWriter{f.Client.Status()} }

type failingWriter struct{ client.SubResourceWriter }

func (failingWriter) Patch(context.Context, client.Object, client.Patch, ...client.SubResourcePatchOption) error {
	return errors.New("the manager stopped")
}

type discard struct{}

func (discard) Eventf(runtime.Object, runtime.Object, string, string, string, string, ...any) {}

// A Grant adds exactly N units to what remains in this period, for the
// subject's own limit when it has an override; the raw subject never
// reaches status.
func TestQuotaAdjustmentGrants(t *testing.T) {
	ns := namespace(t)
	q := dailyQuota(ns, "exports", 5)
	q.Spec.Overrides = []v1alpha1.Override{{Subject: "partner", Limit: 8}}
	create(t, q)
	lim := quotaLimit(q, "sk_bob")
	take(t, lim, 6, 5)
	qa := adjustment(ns, "grant-bob", v1alpha1.AdjustmentTarget{Kind: v1alpha1.TargetUsageQuota, Name: q.Name},
		v1alpha1.AdjustmentSubject{Hash: subject.Hash("sk_bob")}, 3)
	create(t, qa)
	expectApplied(t, qa, "Grant of 3 units on UsageQuota exports of subject "+subject.Hash("sk_bob")+" applied: remaining 0 -> 3 of 5",
		v1alpha1.AdjustedRate{Limit: 5, UsedBefore: 5, UsedAfter: 2, RemainingBefore: 0, RemainingAfter: 3})
	take(t, lim, 5, 3)

	partner := quotaLimit(q, "partner")
	partner.Rates = []limiter.Rate{{Limit: 8}}
	take(t, partner, 2, 2)
	qa = adjustment(ns, "grant-partner", v1alpha1.AdjustmentTarget{Kind: v1alpha1.TargetUsageQuota, Name: q.Name},
		v1alpha1.AdjustmentSubject{Values: []string{"partner"}}, 10)
	create(t, qa)
	expectApplied(t, qa, "Grant of 10 units on UsageQuota exports of subject "+subject.Hash("partner")+" applied: remaining 6 -> 16 of 8",
		v1alpha1.AdjustedRate{Limit: 8, UsedBefore: 2, UsedAfter: -8, RemainingBefore: 6, RemainingAfter: 16})
	// The quota's status shows a credit as what remains; consumed is what
	// was really consumed: 8 by bob and 2 by the partner.
	want := &v1alpha1.Usage{Subjects: 2, Consumed: 10, Top: []v1alpha1.Consumer{{Subject: subject.Hash("sk_bob"), Used: 5, Remaining: 0}, {Subject: "partner", Used: 0, Remaining: 16}}}
	eventually(t, 5*time.Second, "usage with the grants", func() error {
		if err := k8s.Get(ctx, client.ObjectKeyFromObject(q), q); err != nil {
			return err
		}
		if !reflect.DeepEqual(q.Status.Usage, want) {
			return fmt.Errorf("usage %+v; want %+v", q.Status.Usage, want)
		}
		return nil
	})
	take(t, partner, 17, 16)
}

// A RateLimitPolicy limit is reset in every rate; an adjustment whose
// target is missing waits for it, and one that cannot apply says why.
func TestQuotaAdjustmentOfALimit(t *testing.T) {
	ns := namespace(t)
	qa := adjustment(ns, "reset-ip", v1alpha1.AdjustmentTarget{Kind: v1alpha1.TargetRateLimitPolicy, Name: "api", Limit: "per-ip"},
		v1alpha1.AdjustmentSubject{Values: []string{"203.0.113.7"}}, 0)
	create(t, qa)
	eventually(t, 10*time.Second, "target not found", func() error {
		return appliedCondition(qa, metav1.ConditionFalse, v1alpha1.ReasonTargetNotFound, "RateLimitPolicy api does not exist; it is applied once it exists")
	})
	p := rateLimitPolicy(ns, "api", 4)
	p.Spec.Limits[0].Algorithm = "SlidingWindow"
	p.Spec.Limits[0].Rates = append(p.Spec.Limits[0].Rates, v1alpha1.Rate{Limit: 6, Window: "1h"})
	lim := limiter.Limit{Key: limiter.CounterKey{Namespace: ns, Policy: "api", Limit: "per-ip", Subject: []string{"203.0.113.7"}}, Algorithm: limiter.SlidingWindow,
		Rates: []limiter.Rate{{Limit: 4, Window: time.Minute}, {Limit: 6, Window: time.Hour}}, Cost: 1}
	take(t, lim, 5, 4)
	create(t, p)
	msg := "Reset of RateLimitPolicy api limit per-ip of subject " + subject.Hash("203.0.113.7") + " applied: remaining 0 -> 4 of 4, remaining 2 -> 6 of 6"
	eventually(t, 10*time.Second, "applied once the policy exists", func() error {
		return appliedCondition(qa, metav1.ConditionTrue, v1alpha1.ReasonApplied, msg)
	})
	if want := []v1alpha1.AdjustedRate{{Limit: 4, Window: "1m0s", UsedBefore: 4, RemainingAfter: 4}, {Limit: 6, Window: "1h0m0s", UsedBefore: 4, RemainingBefore: 2, RemainingAfter: 6}}; !reflect.DeepEqual(qa.Status.Rates, want) {
		t.Fatalf("rates %+v; want %+v", qa.Status.Rates, want)
	}
	take(t, lim, 5, 4)

	cases := []struct {
		name    string
		target  v1alpha1.AdjustmentTarget
		subject v1alpha1.AdjustmentSubject
		message string
	}{
		{"no such limit", v1alpha1.AdjustmentTarget{Kind: v1alpha1.TargetRateLimitPolicy, Name: "api", Limit: "per-user"}, v1alpha1.AdjustmentSubject{Values: []string{"a"}},
			`Not applied: RateLimitPolicy api has no limit "per-user"`},
		{"too many values", v1alpha1.AdjustmentTarget{Kind: v1alpha1.TargetRateLimitPolicy, Name: "api", Limit: "per-ip"}, v1alpha1.AdjustmentSubject{Values: []string{"a", "b"}},
			"Not applied: the target is keyed by 1 values and spec.subject gives 2"},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			bad := adjustment(ns, fmt.Sprintf("bad-%d", i), c.target, c.subject, 0)
			create(t, bad)
			eventually(t, 10*time.Second, "invalid", func() error {
				return appliedCondition(bad, metav1.ConditionFalse, v1alpha1.ReasonInvalid, c.message)
			})
		})
	}
}

// Kubernetes RBAC decides who may adjust: a user with no role on the kind
// is refused by the API server; the editor role the install ships lets a
// user adjust in the namespace it is bound in, and only there.
func TestQuotaAdjustmentNeedsRBAC(t *testing.T) {
	ns, other := namespace(t), namespace(t)
	raw, err := os.ReadFile(filepath.Join(kubeenv.ModuleRoot(), "config", "rbac", "quotaadjustment_editor_role.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var role rbacv1.ClusterRole
	if err := yaml.Unmarshal(raw, &role); err != nil {
		t.Fatal(err)
	}
	role.Name = "qadj-editor-" + ns
	create(t, &role)
	support := impersonate(t, "support-bob")
	qa := func(n string) *v1alpha1.QuotaAdjustment {
		return adjustment(n, "by-bob", v1alpha1.AdjustmentTarget{Kind: v1alpha1.TargetUsageQuota, Name: "q"}, v1alpha1.AdjustmentSubject{Values: []string{"x"}}, 1)
	}
	err = support.Create(ctx, qa(ns))
	want := `quotaadjustments.policy.quotaops.dev is forbidden: User "support-bob" cannot create resource "quotaadjustments" in API group "policy.quotaops.dev" in the namespace "` + ns + `"`
	if !apierrors.IsForbidden(err) || err.Error() != want {
		t.Fatalf("create without a role: %v; want %q", err, want)
	}
	create(t, &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "support"},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role.Name},
		Subjects: []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: "support-bob"}}})
	eventually(t, 5*time.Second, "allowed once bound", func() error { return support.Create(ctx, qa(ns)) })
	if err := support.Create(ctx, qa(other)); !apierrors.IsForbidden(err) {
		t.Fatalf("create in another namespace: %v; want forbidden", err)
	}
}

func impersonate(t *testing.T, user string) client.Client {
	cfg := rest.CopyConfig(env.Config)
	cfg.Impersonate = rest.ImpersonationConfig{UserName: user}
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	return c
}
