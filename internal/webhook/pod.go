package webhook

import (
	"context"

	corev1 "k8s.io/api/core/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
)

// +kubebuilder:webhook:path=/mutate--v1-pod,mutating=true,failurePolicy=fail,sideEffects=None,groups="",resources=pods,verbs=create,versions=v1,name=inject.quotaops.dev,admissionReviewVersions=v1,reinvocationPolicy=IfNeeded
// +kubebuilder:rbac:groups="",resources=namespaces,verbs=get;list;watch

// PodInjector is the mutating admission webhook for Pods. The webhook
// configuration's namespaceSelector keeps it away from kube-system and the
// operator's own namespace.
type PodInjector struct {
	// Namespaces reads the pod's namespace for the opt-in label.
	Namespaces client.Reader
	Config     Config
}

// Default injects the sidecar into an opted-in pod.
func (p *PodInjector) Default(ctx context.Context, pod *corev1.Pod) error {
	optedIn := false
	if _, decided := pod.Annotations[AnnotationInject]; !decided {
		ns := pod.Namespace
		if req, err := admission.RequestFromContext(ctx); err == nil && req.Namespace != "" {
			ns = req.Namespace
		}
		var n corev1.Namespace
		if err := p.Namespaces.Get(ctx, client.ObjectKey{Name: ns}, &n); err != nil {
			return err
		}
		optedIn = n.Labels[LabelInject] == "enabled"
	}
	_, err := Inject(pod, optedIn, p.Config)
	return err
}

// SetupWithManager serves the webhook from mgr's webhook server.
func (p *PodInjector) SetupWithManager(mgr ctrl.Manager) error {
	return builder.WebhookManagedBy(mgr, &corev1.Pod{}).WithDefaulter(p).Complete()
}
