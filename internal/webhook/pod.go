package webhook

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/webhook"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
)

// +kubebuilder:webhook:path=/mutate--v1-pod,mutating=true,failurePolicy=fail,sideEffects=None,groups="",resources=pods,verbs=create,versions=v1,name=inject.quotaops.dev,admissionReviewVersions=v1,reinvocationPolicy=IfNeeded
// +kubebuilder:rbac:groups="",resources=namespaces,verbs=get;list;watch

// PodInjector is the mutating admission webhook for Pods. The webhook
// configuration's namespaceSelector keeps it away from kube-system and the
// operator's own namespace, and its matchConditions away from pods
// annotated quotaops.dev/inject: "false".
type PodInjector struct {
	// Namespaces reads the pod's namespace for the opt-in label.
	Namespaces client.Reader
	Config     Config
	// Events, when set, records why a pod its namespace opted in got no
	// sidecar, on the pod's owner (a ReplicaSet, a Job): the pod does
	// not exist yet.
	Events EventRecorder
}

// EventRecorder records an event about an object.
type EventRecorder interface {
	Eventf(regarding, related runtime.Object, eventtype, reason, action, note string, args ...any)
}

// ReasonNoSidecar is the event of a pod admitted without a sidecar.
const ReasonNoSidecar = "NoSidecar"

// Handle injects the sidecar into an opted-in pod. A pod that only its
// namespace opted in and that has no HTTP port is admitted as it is, with
// a warning (kubectl prints it) and an event on its owner.
func (p *PodInjector) Handle(ctx context.Context, req admission.Request) admission.Response {
	if req.Operation != admissionv1.Create {
		return admission.Allowed("")
	}
	var pod corev1.Pod
	if err := json.Unmarshal(req.Object.Raw, &pod); err != nil {
		return admission.Errored(http.StatusBadRequest, err)
	}
	if pod.Namespace == "" {
		pod.Namespace = req.Namespace
	}
	optedIn, err := p.namespaceOptedIn(ctx, &pod)
	if err != nil {
		return admission.Errored(http.StatusInternalServerError, err)
	}
	changed, err := Inject(&pod, optedIn, p.Config)
	switch {
	case errors.Is(err, ErrNoHTTPPort):
		warning := "quota-operator: no sidecar: " + err.Error()
		p.recordSkipped(&pod, warning)
		return admission.Allowed("").WithWarnings(warning)
	case err != nil:
		return admission.Denied(err.Error())
	case !changed:
		return admission.Allowed("")
	}
	raw, err := json.Marshal(&pod)
	if err != nil {
		return admission.Errored(http.StatusInternalServerError, err)
	}
	return admission.PatchResponseFromRaw(req.Object.Raw, raw)
}

// namespaceOptedIn reads the namespace's label, unless the pod's
// annotation decides.
func (p *PodInjector) namespaceOptedIn(ctx context.Context, pod *corev1.Pod) (bool, error) {
	if _, decided := pod.Annotations[AnnotationInject]; decided {
		return false, nil
	}
	var n corev1.Namespace
	if err := p.Namespaces.Get(ctx, client.ObjectKey{Name: pod.Namespace}, &n); err != nil {
		return false, err
	}
	return n.Labels[LabelInject] == "enabled", nil
}

// recordSkipped tells the pod's owner why its pod has no sidecar. A pod
// without an owner (kubectl run) has only the warning.
func (p *PodInjector) recordSkipped(pod *corev1.Pod, why string) {
	owner := ownerOf(pod)
	if p.Events == nil || owner == nil {
		return
	}
	p.Events.Eventf(owner, nil, corev1.EventTypeWarning, ReasonNoSidecar, "Inject", "%s", why)
}

func ownerOf(pod *corev1.Pod) *corev1.ObjectReference {
	for _, o := range pod.OwnerReferences {
		if o.Controller != nil && *o.Controller {
			return &corev1.ObjectReference{APIVersion: o.APIVersion, Kind: o.Kind, Name: o.Name, UID: o.UID, Namespace: pod.Namespace}
		}
	}
	return nil
}

// SetupWithManager serves the webhook from mgr's webhook server.
func (p *PodInjector) SetupWithManager(mgr ctrl.Manager) error {
	if p.Events == nil {
		p.Events = mgr.GetEventRecorder("quota-operator-webhook")
	}
	mgr.GetWebhookServer().Register("/mutate--v1-pod", &webhook.Admission{Handler: p})
	return nil
}
