package webhook

import (
	"context"
	"errors"

	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	utilerrors "k8s.io/apimachinery/pkg/util/errors"
	"k8s.io/apimachinery/pkg/util/validation/field"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/quotaops/quota-operator/api/v1alpha1"
	"github.com/quotaops/quota-operator/internal/config"
)

// Only what the CRD schema and its CEL rules cannot check: that a time zone
// exists, and that a label selector's operators and values fit together.
// failurePolicy=ignore: the controller checks the same (Accepted=False), so
// a manager that is down delays the answer, it never blocks an apply.
// +kubebuilder:webhook:path=/validate-policy-quotaops-dev-v1alpha1-ratelimitpolicy,mutating=false,failurePolicy=ignore,sideEffects=None,groups=policy.quotaops.dev,resources=ratelimitpolicies,verbs=create;update,versions=v1alpha1,name=validate-ratelimitpolicy.quotaops.dev,admissionReviewVersions=v1
// +kubebuilder:webhook:path=/validate-policy-quotaops-dev-v1alpha1-usagequota,mutating=false,failurePolicy=ignore,sideEffects=None,groups=policy.quotaops.dev,resources=usagequotas,verbs=create;update,versions=v1alpha1,name=validate-usagequota.quotaops.dev,admissionReviewVersions=v1

// Compiles validates an object by compiling it as the controller will,
// so admission and the Accepted condition always agree.
type Compiles[T client.Object] struct {
	Kind    string
	Compile func(T) (*config.Policy, error)
	// Spec returns the object's spec, to tell spec changes from others.
	Spec func(T) any
}

// ValidateCreate refuses an object the controller would not accept.
func (c Compiles[T]) ValidateCreate(_ context.Context, obj T) (admission.Warnings, error) {
	return nil, c.check(obj)
}

// ValidateUpdate refuses a new spec the controller would not accept. An
// update that leaves the spec as it was (a finalizer removed, a label
// added) always passes: an object that got in while the webhook was away
// must still be deletable.
func (c Compiles[T]) ValidateUpdate(_ context.Context, oldObj, newObj T) (admission.Warnings, error) {
	if newObj.GetDeletionTimestamp() != nil || apiequality.Semantic.DeepEqual(c.Spec(oldObj), c.Spec(newObj)) {
		return nil, nil
	}
	return nil, c.check(newObj)
}

// ValidateDelete lets every delete through.
func (c Compiles[T]) ValidateDelete(context.Context, T) (admission.Warnings, error) { return nil, nil }

func (c Compiles[T]) check(obj T) error {
	_, err := c.Compile(obj)
	if err == nil {
		return nil
	}
	var list field.ErrorList
	var agg utilerrors.Aggregate
	if errors.As(err, &agg) {
		for _, e := range agg.Errors() {
			var fe *field.Error
			if errors.As(e, &fe) {
				list = append(list, fe)
			}
		}
	}
	if len(list) == 0 {
		list = field.ErrorList{field.Invalid(field.NewPath("spec"), nil, err.Error())}
	}
	return apierrors.NewInvalid(v1alpha1.GroupVersion.WithKind(c.Kind).GroupKind(), obj.GetName(), list)
}

// SetupPolicyValidation serves the validating webhooks of both kinds from
// mgr's webhook server.
func SetupPolicyValidation(mgr ctrl.Manager) error {
	err := builder.WebhookManagedBy(mgr, &v1alpha1.RateLimitPolicy{}).
		WithValidator(Compiles[*v1alpha1.RateLimitPolicy]{Kind: config.KindRateLimitPolicy, Compile: config.CompileRateLimitPolicy,
			Spec: func(p *v1alpha1.RateLimitPolicy) any { return p.Spec }}).Complete()
	if err != nil {
		return err
	}
	return builder.WebhookManagedBy(mgr, &v1alpha1.UsageQuota{}).
		WithValidator(Compiles[*v1alpha1.UsageQuota]{Kind: config.KindUsageQuota, Compile: config.CompileUsageQuota,
			Spec: func(q *v1alpha1.UsageQuota) any { return q.Spec }}).Complete()
}
