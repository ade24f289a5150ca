package webhook_test

import (
	"context"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/quotaops/quota-operator/api/v1alpha1"
	"github.com/quotaops/quota-operator/internal/config"
	"github.com/quotaops/quota-operator/internal/webhook"
)

func quota(name, zone string, sel metav1.LabelSelector) *v1alpha1.UsageQuota {
	return &v1alpha1.UsageQuota{ObjectMeta: metav1.ObjectMeta{Namespace: "validated", Name: name},
		Spec: v1alpha1.UsageQuotaSpec{Selector: sel, Subject: v1alpha1.Subject{Source: "ClientIP"}, Limit: 10, Period: "Day", TimeZone: zone}}
}

func policy(name string, sel metav1.LabelSelector) *v1alpha1.RateLimitPolicy {
	return &v1alpha1.RateLimitPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "validated", Name: name},
		Spec: v1alpha1.RateLimitPolicySpec{Selector: sel, Limits: []v1alpha1.Limit{{Name: "all",
			Rates: []v1alpha1.Rate{{Limit: 5, Window: "1m"}}}}}}
}

// What the CRD schema and CEL cannot check, the API server refuses through
// the validating webhook, with the field and the reason the controller
// would give.
func TestValidationThroughTheAPIServer(t *testing.T) {
	createNamespace(t, "validated", nil)
	app := metav1.LabelSelector{MatchLabels: map[string]string{"app": "api"}}
	inWithoutValues := metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "app", Operator: metav1.LabelSelectorOpIn}}}
	tests := []struct {
		name string
		obj  client.Object
		want string // the API server's whole message; empty: accepted
	}{
		{"a quota in Europe/Berlin", quota("berlin", "Europe/Berlin", app), ""},
		{"an unknown time zone", quota("mars", "Mars/Olympus_Mons", app),
			`admission webhook "validate-usagequota.quotaops.dev" denied the request: UsageQuota.policy.quotaops.dev "mars" is invalid: ` +
				`spec.timeZone: Invalid value: "Mars/Olympus_Mons": not an IANA time zone`},
		{"a quota's selector: In without values", quota("no-values", "UTC", inWithoutValues),
			`admission webhook "validate-usagequota.quotaops.dev" denied the request: UsageQuota.policy.quotaops.dev "no-values" is invalid: ` +
				`spec.selector: Invalid value: {"matchExpressions":[{"key":"app","operator":"In"}]}: values: Invalid value: null: for 'in', 'notin' operators, values set can't be empty`},
		{"a policy's selector: In without values", policy("no-values", inWithoutValues),
			`admission webhook "validate-ratelimitpolicy.quotaops.dev" denied the request: RateLimitPolicy.policy.quotaops.dev "no-values" is invalid: ` +
				`spec.selector: Invalid value: {"matchExpressions":[{"key":"app","operator":"In"}]}: values: Invalid value: null: for 'in', 'notin' operators, values set can't be empty`},
		{"a valid policy", policy("fine", app), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := k8s.Create(context.Background(), tt.obj)
			if tt.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || err.Error() != tt.want {
				t.Fatalf("error %v\nwant %s", err, tt.want)
			}
		})
	}
}

// An update that leaves an invalid spec as it was passes: an object that
// got in while the webhook was away can still lose its finalizer.
func TestValidationLetsUnchangedSpecsThrough(t *testing.T) {
	v := webhook.Compiles[*v1alpha1.UsageQuota]{Kind: config.KindUsageQuota, Compile: config.CompileUsageQuota,
		Spec: func(q *v1alpha1.UsageQuota) any { return q.Spec }}
	old := quota("mars", "Mars/Olympus_Mons", metav1.LabelSelector{})
	unfinalized := old.DeepCopy()
	unfinalized.Finalizers = nil
	if _, err := v.ValidateUpdate(context.Background(), old, unfinalized); err != nil {
		t.Fatalf("finalizer removal refused: %v", err)
	}
	changed := old.DeepCopy()
	changed.Spec.Limit = 11
	if _, err := v.ValidateUpdate(context.Background(), old, changed); err == nil {
		t.Fatal("a changed, still invalid spec was let through")
	}
}
