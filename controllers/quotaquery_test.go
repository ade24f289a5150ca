package controllers_test

import (
	"fmt"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/quotaops/quota-operator/api/v1alpha1"
	"github.com/quotaops/quota-operator/controllers"
	"github.com/quotaops/quota-operator/internal/limiter"
)

// askQuery creates a QuotaQuery and returns it once answered.
func askQuery(t *testing.T, ns, name string, spec v1alpha1.QuotaQuerySpec) *v1alpha1.QuotaQuery {
	t.Helper()
	q := &v1alpha1.QuotaQuery{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: spec}
	create(t, q)
	return askedAlready(t, ns, name)
}

func expectAnswered(t *testing.T, q *v1alpha1.QuotaQuery, status metav1.ConditionStatus, reason, message string) {
	t.Helper()
	c := apimeta.FindStatusCondition(q.Status.Conditions, v1alpha1.ConditionAnswered)
	if c == nil || c.Status != status || c.Reason != reason || c.Message != message {
		t.Fatalf("Answered: %+v; want %s %s %q", c, status, reason, message)
	}
}

// A QuotaQuery is answered from the store: a quota's usage with exact
// counts, a check that consumes nothing, a missing target by name. The
// answered query is deleted queryTTL after its answer.
func TestQuotaQueryAnswers(t *testing.T) {
	ns := namespace(t)
	q := dailyQuota(ns, "api-calls", 10)
	create(t, q)
	take(t, quotaLimit(q, "acme"), 3, 3)
	acme := limiter.SubjectHash([]string{"acme"})
	target := v1alpha1.AdjustmentTarget{Kind: v1alpha1.TargetUsageQuota, Name: "api-calls"}

	usage := askQuery(t, ns, "usage", v1alpha1.QuotaQuerySpec{Usage: &v1alpha1.UsageQuestion{Target: target}})
	expectAnswered(t, usage, metav1.ConditionTrue, v1alpha1.ReasonAnswered, "Answered from the store")
	day := time.Now().UTC().Truncate(24 * time.Hour)
	want := &v1alpha1.QuotaUsageAnswer{Limit: 10, Period: v1alpha1.QuotaPeriod{Start: metav1.NewTime(day), End: metav1.NewTime(day.Add(24 * time.Hour))},
		Subjects: 1, Consumed: 3, Top: []v1alpha1.Consumer{{Subject: acme, Used: 3, Remaining: 7}}}
	if got := usage.Status.Quota; !equality.Semantic.DeepEqual(got, want) {
		t.Fatalf("status.quota: %+v; want %+v", got, want)
	}

	for i := range 2 { // twice: the first consumed nothing
		check := askQuery(t, ns, fmt.Sprintf("check-%d", i), v1alpha1.QuotaQuerySpec{Check: &v1alpha1.CheckQuestion{
			Limits: []v1alpha1.CheckLimit{{Target: target, SubjectHash: acme, Cost: 7}}}})
		expectAnswered(t, check, metav1.ConditionTrue, v1alpha1.ReasonAnswered, "Answered from the store")
		wantCheck := &v1alpha1.CheckAnswer{Allowed: true, Results: []v1alpha1.CheckResult{{Allowed: true,
			Rate: v1alpha1.RateUsage{Limit: 10, Used: 3, Remaining: 7}, ResetAt: want.Period.End}}}
		if c := check.Status.Check; !equality.Semantic.DeepEqual(c, wantCheck) {
			t.Fatalf("status.check: %+v; want a cost of 7 allowed, 3 of 10 used, reset at %s", c, want.Period.End)
		}
	}

	missing := askQuery(t, ns, "missing", v1alpha1.QuotaQuerySpec{Usage: &v1alpha1.UsageQuestion{
		Target: v1alpha1.AdjustmentTarget{Kind: v1alpha1.TargetRateLimitPolicy, Name: "nope", Limit: "l"}}})
	expectAnswered(t, missing, metav1.ConditionFalse, v1alpha1.ReasonNotFound, "Not answered: RateLimitPolicy nope does not exist")

	answeredAt := usage.Status.AnsweredAt.Time
	eventually(t, queryTTL+10*time.Second, "the answered query deleted", func() error {
		err := k8s.Get(ctx, client.ObjectKeyFromObject(usage), &v1alpha1.QuotaQuery{})
		switch {
		case apierrors.IsNotFound(err):
			return nil
		case err != nil:
			return err
		}
		return fmt.Errorf("still there")
	})
	if kept := time.Since(answeredAt); kept < queryTTL {
		t.Errorf("deleted %s after its answer; want not before %s", kept, queryTTL)
	}
}

// One namespace cannot keep the store busy with queries: past
// MaxQueriesPerNamespace, queries are answered TooManyQueries without a
// store call. Those created after the limit was reached are refused
// whatever the order the operator sees them in.
func TestQuotaQueriesPerNamespaceAreBounded(t *testing.T) {
	ns := namespace(t)
	q := dailyQuota(ns, "api-calls", 10)
	create(t, q)
	spec := v1alpha1.QuotaQuerySpec{Usage: &v1alpha1.UsageQuestion{Target: v1alpha1.AdjustmentTarget{Kind: v1alpha1.TargetUsageQuota, Name: "api-calls"}}}
	const n = controllers.MaxQueriesPerNamespace + 8
	for i := range n {
		create(t, &v1alpha1.QuotaQuery{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("q-%02d", i)}, Spec: spec})
	}
	for i := controllers.MaxQueriesPerNamespace; i < n; i++ {
		got := askedAlready(t, ns, fmt.Sprintf("q-%02d", i))
		c := apimeta.FindStatusCondition(got.Status.Conditions, v1alpha1.ConditionAnswered)
		if c.Reason != v1alpha1.ReasonTooManyQueries || got.Status.Quota != nil {
			t.Fatalf("query %d of %d: %+v, quota %+v; want TooManyQueries and no answer", i+1, n, c, got.Status.Quota)
		}
		if want := fmt.Sprintf("Not answered: namespace %s has ", ns); len(c.Message) < len(want) || c.Message[:len(want)] != want {
			t.Fatalf("message %q; want it to start %q", c.Message, want)
		}
	}
}

// askedAlready waits for the answer of an existing query.
func askedAlready(t *testing.T, ns, name string) *v1alpha1.QuotaQuery {
	t.Helper()
	q := &v1alpha1.QuotaQuery{}
	eventually(t, 10*time.Second, "QuotaQuery "+name+" answered", func() error {
		if err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, q); err != nil {
			return err
		}
		if apimeta.FindStatusCondition(q.Status.Conditions, v1alpha1.ConditionAnswered) == nil {
			return fmt.Errorf("not answered")
		}
		return nil
	})
	return q
}
