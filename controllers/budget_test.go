package controllers_test

import (
	"fmt"
	"testing"
	"time"

	apimeta "k8s.io/apimachinery/pkg/api/meta"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/quotaops/quota-operator/api/v1alpha1"
)

// The review's config, 200 policies of 32 limits with empty matches, would
// have every request of the namespace decided against 6,400 rates in one
// Redis call. The operator keeps a namespace within the 256 rates one
// request may be decided against: the oldest 8 policies (256 rates) are
// programmed, the other 192 are refused with TooManyLimits and kept out
// of the store; deleting a programmed one makes room for the next.
func TestNamespaceBudgetRefusesTheRest(t *testing.T) {
	ns := namespace(t)
	createWidePolicies(t, ns, 200, 32)
	count := func() (programmed, refused int, msg string, err error) { return budgetStates(ns, "p199") }
	want := fmt.Sprintf("namespace %s already holds 256 rates in older RateLimitPolicies and UsageQuotas, and this one's 32 would pass the 256 that one request may be decided against: every limit of every policy may match one request, and Redis decides them all at once; remove or merge policies, or give this one fewer rates", ns)
	eventually(t, 60*time.Second, "8 programmed and 192 refused", func() error {
		programmed, refused, msg, err := count()
		if err == nil && (programmed != 8 || refused != 192 || msg != want) {
			err = fmt.Errorf("%d programmed, %d refused; p199 says %q", programmed, refused, msg)
		}
		return err
	})
	_, docs, err := st.Configs(ctx, ns)
	if err != nil || len(docs) != 8 {
		t.Fatalf("%d documents in the store, %v; want the 8 programmed", len(docs), err)
	}
	first := rateLimitPolicy(ns, "p000", 100)
	if err := k8s.Delete(ctx, first); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "the next policy programmed in the room made", func() error {
		programmed, refused, _, err := count()
		if err == nil && (programmed != 8 || refused != 191) {
			err = fmt.Errorf("%d programmed, %d refused", programmed, refused)
		}
		return err
	})
}

// createWidePolicies creates n policies of limits token-bucket limits each,
// with empty matches, named p000 onwards.
func createWidePolicies(t *testing.T, ns string, n, limits int) {
	t.Helper()
	for i := range n {
		p := rateLimitPolicy(ns, fmt.Sprintf("p%03d", i), 100)
		p.Spec.Limits = nil
		for l := range limits {
			p.Spec.Limits = append(p.Spec.Limits, v1alpha1.Limit{Name: fmt.Sprintf("l%02d", l), Algorithm: v1alpha1.TokenBucket,
				Rates: []v1alpha1.Rate{{Limit: 100, Window: "1m"}}})
		}
		if err := k8s.Create(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
}

// budgetStates counts ns's policies that are programmed and that the
// budget refused, with the refusal's message on policy name.
func budgetStates(ns, name string) (programmed, refused int, msg string, err error) {
	var list v1alpha1.RateLimitPolicyList
	if err := k8s.List(ctx, &list, client.InNamespace(ns)); err != nil {
		return 0, 0, "", err
	}
	for _, p := range list.Items {
		c := apimeta.FindStatusCondition(p.Status.Conditions, v1alpha1.ConditionAccepted)
		switch {
		case c == nil:
		case c.Status == "True":
			programmed++
		case c.Reason == v1alpha1.ReasonTooManyLimits:
			refused++
			if p.Name == name {
				msg = c.Message
			}
		}
	}
	return programmed, refused, msg, nil
}
