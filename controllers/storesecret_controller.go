package controllers

import (
	"bytes"
	"context"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/predicate"

	"github.com/quotaops/quota-operator/internal/webhook"
)

// StoreSecretReconciler keeps the store password in a Secret in every
// namespace that runs a quota sidecar, so injected pods read it through a
// secretKeyRef and no pod spec ever holds it.
type StoreSecretReconciler struct {
	client.Client
	// Reader reads the Secret by name, straight from the API server: a
	// cached read would list and watch every Secret in the cluster, which
	// the manager may not and should not do.
	Reader client.Reader
	// Name of the Secret; its key "password" holds Password.
	Name     string
	Password []byte
}

// +kubebuilder:rbac:groups="",resources=pods,verbs=get;list;watch
// Secrets are read and updated by name only; create cannot be limited to a
// name, so it stays a verb of its own.
// +kubebuilder:rbac:groups="",resources=secrets,verbs=create
// +kubebuilder:rbac:groups="",resources=secrets,resourceNames=quota-operator-store,verbs=get;update

// Reconcile makes sure the Secret of the pod's namespace holds the
// password.
func (r *StoreSecretReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	var s corev1.Secret
	err := r.Reader.Get(ctx, client.ObjectKey{Namespace: req.Namespace, Name: r.Name}, &s)
	switch {
	case apierrors.IsNotFound(err):
		s = corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: req.Namespace, Name: r.Name,
			Labels: map[string]string{"app.kubernetes.io/managed-by": "quota-operator"}},
			Data: map[string][]byte{"password": r.Password}}
		return ctrl.Result{}, client.IgnoreAlreadyExists(r.Create(ctx, &s))
	case err != nil:
		return ctrl.Result{}, err
	case bytes.Equal(s.Data["password"], r.Password):
		return ctrl.Result{}, nil
	}
	s.Data = map[string][]byte{"password": r.Password}
	return ctrl.Result{}, r.Update(ctx, &s)
}

func hasSidecar(obj client.Object) bool {
	pod, ok := obj.(*corev1.Pod)
	return ok && webhook.HasSidecar(pod)
}

// SetupWithManager watches pods with the sidecar; the namespace is what
// matters, so requests name the namespace's Secret.
func (r *StoreSecretReconciler) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).Named("storesecret").
		For(&corev1.Pod{}, builder.WithPredicates(predicate.NewPredicateFuncs(hasSidecar))).
		Complete(r)
}
