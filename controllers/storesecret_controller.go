package controllers

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"reflect"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/workqueue"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	"github.com/quotaops/quota-operator/internal/limiter"
	"github.com/quotaops/quota-operator/internal/store"
	"github.com/quotaops/quota-operator/internal/webhook"
)

// TenantUsers keeps one store user per namespace.
type TenantUsers interface {
	Put(ctx context.Context, u store.ACLUser) error
	Delete(ctx context.Context, name string) error
	Resync(ctx context.Context) error
}

// Defaults of StoreSecretReconciler.
const (
	DefaultSecretRecheck = time.Minute
	DefaultRotationGrace = 3 * time.Minute
	tenantPasswordBytes  = 32
	secretKeyUsername    = "username"
	secretKeyPassword    = "password"
)

// ManagedLabels label what the operator creates in users' namespaces (and
// its own), so `kubectl delete -l` finds it.
func ManagedLabels() map[string]string {
	return map[string]string{"app.kubernetes.io/managed-by": "quota-operator"}
}

// StoreSecretReconciler gives every namespace that runs quota sidecars its
// own store user, which reaches only that namespace's keys, and keeps the
// user's name and password in a Secret there, which the sidecars mount.
// The admin credentials never leave the manager.
type StoreSecretReconciler struct {
	client.Client
	// Reader reads the Secret by name, straight from the API server: a
	// cached read would list and watch every Secret in the cluster, which
	// the manager may not and should not do.
	Reader client.Reader
	// Name of the Secret in each namespace.
	Name  string
	Users TenantUsers
	// Recheck is how often a namespace's Secret is read again. The manager
	// cannot watch Secrets, so a deleted Secret, which rotates the
	// password, is noticed within this time.
	Recheck time.Duration
	// Shared, when set, returns files every namespace's sidecars need to
	// reach the store (a CA bundle, a client certificate, the Sentinel
	// user's password), by Secret key. It is called at every reconcile, so
	// a renewed certificate reaches the Secrets within Recheck.
	Shared func(context.Context) (map[string][]byte, error)
	// Gateway, when set, is the gateway rate-limit service's own user.
	Gateway *GatewayUser
	// Tenancy is how namespaces get their user: with TenancyProvided and
	// TenancyShared their credentials are copied from the Secret at
	// ProvidedUsers, and Users is not called.
	Tenancy       Tenancy
	ProvidedUsers client.ObjectKey
	// Problems, when set, learns which namespaces' sidecars have no user,
	// and why.
	Problems *TenantProblems
	// RotationGrace is how long the old password still works after a
	// rotation: the kubelet needs up to about a minute to update the
	// mounted Secret, and sidecars open new connections meanwhile.
	RotationGrace time.Duration

	mu sync.Mutex
	// current is each namespace's password digest as last written, and
	// retired the digest it replaced, until when it still works.
	current map[string]string
	retired map[string]retiredPassword
}

// GatewayUser is the store user of the gateway rate-limit service: it
// reaches the namespaces it serves, and no other, with the password in
// Secret (of the manager's namespace), which the service mounts.
type GatewayUser struct {
	Secret     client.ObjectKey
	Namespaces []string
}

type retiredPassword struct {
	digest string
	until  time.Time
}

// +kubebuilder:rbac:groups="",resources=pods,verbs=get;list;watch
// Secrets are read and updated by name only; create cannot be limited to a
// name, so it stays a verb of its own.
// +kubebuilder:rbac:groups="",resources=secrets,verbs=create
// +kubebuilder:rbac:groups="",resources=secrets,resourceNames=quota-operator-store,verbs=get;update
// +kubebuilder:rbac:groups="",namespace=system,resources=secrets,resourceNames=quota-operator-ratelimit-store,verbs=get;update
// +kubebuilder:rbac:groups="",namespace=system,resources=secrets,resourceNames=quota-operator-store-users,verbs=get

// Reconcile handles one namespace: while a pod there has the sidecar, its
// Secret names a store user Redis knows (the manager's with
// TenancyManaged, removed after the last such pod; the administrator's
// otherwise).
func (r *StoreSecretReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	if r.Gateway != nil && req.NamespacedName == r.Gateway.Secret {
		return r.reconcileGateway(ctx)
	}
	ns := req.Namespace
	inUse, err := r.hasSidecars(ctx, ns)
	if err != nil {
		return ctrl.Result{}, err
	}
	if !inUse {
		r.forget(ns)
		r.Problems.set(ns, nil)
		if r.provided() {
			return ctrl.Result{}, nil
		}
		return ctrl.Result{}, r.Users.Delete(ctx, limiter.TenantUserName(ns))
	}
	key := client.ObjectKey{Namespace: ns, Name: r.Name}
	if r.provided() {
		missing, err := r.keepProvided(ctx, key, ns, ns)
		return r.after(missing), err
	}
	result, err := r.keepUser(ctx, key, ns, limiter.TenantUserName(ns),
		func(digests ...string) store.ACLUser { return limiter.TenantUser(ns, digests...) })
	if store.IsACLRefused(err) {
		// Not an error to retry every few seconds: nothing changes until
		// the store or the manager's flags do.
		r.Problems.set(ns, refusedProblem(ns, err))
		return ctrl.Result{RequeueAfter: r.Recheck}, nil
	}
	if err == nil {
		r.Problems.set(ns, nil)
	}
	return result, err
}

// provided says whether users come from the users Secret.
func (r *StoreSecretReconciler) provided() bool {
	return r.Tenancy == TenancyProvided || r.Tenancy == TenancyShared
}

// after is when to read the users Secret again: soon while an entry is
// missing, since the manager cannot watch it.
func (r *StoreSecretReconciler) after(missing bool) ctrl.Result {
	if missing {
		return ctrl.Result{RequeueAfter: min(missingRecheck, r.Recheck)}
	}
	return ctrl.Result{RequeueAfter: r.Recheck}
}

// missingRecheck is how often a missing entry of the users Secret is
// looked for.
const missingRecheck = 10 * time.Second

// reconcileGateway keeps the gateway's user and its Secret, as a
// namespace's, for as long as the manager runs with one.
func (r *StoreSecretReconciler) reconcileGateway(ctx context.Context) (ctrl.Result, error) {
	g := r.Gateway
	if r.provided() {
		missing, err := r.keepProvided(ctx, g.Secret, "", gatewayEntry)
		return r.after(missing), err
	}
	// Its passwords are keyed apart from every namespace's: a key holds a
	// "/", a namespace's name not.
	return r.keepUser(ctx, g.Secret, g.Secret.String(), limiter.GatewayUserName,
		func(digests ...string) store.ACLUser { return limiter.GatewayUser(g.Namespaces, digests...) })
}

// keepUser keeps the store user acl builds with the passwords it accepts
// (id keys them for the rotation grace), and then the Secret at secret
// naming it, and says when to look again. The user comes first: a Secret
// never names a user Redis refused to make.
func (r *StoreSecretReconciler) keepUser(ctx context.Context, secret client.ObjectKey, id, user string,
	acl func(digests ...string) store.ACLUser) (ctrl.Result, error) {
	have, err := r.readSecret(ctx, secret)
	if err != nil {
		return ctrl.Result{}, err
	}
	password, err := passwordFor(have, user)
	if err != nil {
		return ctrl.Result{}, err
	}
	digests, wait := r.digests(id, password)
	if err := r.Users.Put(ctx, acl(digests...)); err != nil {
		return ctrl.Result{}, err
	}
	if err := r.writeSecret(ctx, secret, have, user, password); err != nil {
		return ctrl.Result{}, err
	}
	return ctrl.Result{RequeueAfter: min(wait, r.Recheck)}, nil
}

func (r *StoreSecretReconciler) hasSidecars(ctx context.Context, namespace string) (bool, error) {
	var pods corev1.PodList
	if err := r.List(ctx, &pods, client.InNamespace(namespace)); err != nil {
		return false, err
	}
	for i := range pods.Items {
		if webhook.HasSidecar(&pods.Items[i]) {
			return true, nil
		}
	}
	return false, nil
}

// readSecret is the Secret at key, or nil when there is none.
func (r *StoreSecretReconciler) readSecret(ctx context.Context, key client.ObjectKey) (*corev1.Secret, error) {
	var s corev1.Secret
	if err := r.Reader.Get(ctx, key, &s); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, nil
		}
		return nil, err
	}
	return &s, nil
}

// passwordFor is the password of have, or a new one when have is missing
// (deleted to rotate it) or does not name user.
func passwordFor(have *corev1.Secret, user string) (string, error) {
	if have != nil && string(have.Data[secretKeyUsername]) == user && len(have.Data[secretKeyPassword]) > 0 {
		return string(have.Data[secretKeyPassword]), nil
	}
	return NewPassword()
}

// writeSecret keeps the Secret at key, have as read (nil: none), holding
// user, password and the Shared files.
func (r *StoreSecretReconciler) writeSecret(ctx context.Context, key client.ObjectKey, have *corev1.Secret, user, password string) error {
	data, err := r.sharedData(ctx)
	if err != nil {
		return err
	}
	data[secretKeyUsername], data[secretKeyPassword] = []byte(user), []byte(password)
	switch {
	case have == nil:
		s := corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name,
			Labels: ManagedLabels()}, Data: data}
		return r.Create(ctx, &s)
	case reflect.DeepEqual(have.Data, data):
		return nil
	}
	have.Data = data
	// Its label too: the admission policy lets the manager write only
	// Secrets that carry it (one written by hand may not).
	if have.Labels == nil {
		have.Labels = map[string]string{}
	}
	maps.Copy(have.Labels, ManagedLabels())
	return r.Update(ctx, have)
}

// sharedData is a fresh map holding the Shared files.
func (r *StoreSecretReconciler) sharedData(ctx context.Context) (map[string][]byte, error) {
	data := map[string][]byte{}
	if r.Shared == nil {
		return data, nil
	}
	shared, err := r.Shared(ctx)
	if err != nil {
		return nil, err
	}
	for k, v := range shared {
		data[k] = v
	}
	return data, nil
}

// NewPassword is a random password of 64 hex characters.
func NewPassword() (string, error) {
	var b [tenantPasswordBytes]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return hex.EncodeToString(b[:]), nil
}

// digests is what the user accepts: the password, and for RotationGrace
// after a change also the one before. wait is when to look again.
func (r *StoreSecretReconciler) digests(namespace, password string) ([]string, time.Duration) {
	sum := sha256.Sum256([]byte(password))
	digest := hex.EncodeToString(sum[:])
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.current == nil {
		r.current, r.retired = map[string]string{}, map[string]retiredPassword{}
	}
	if old := r.current[namespace]; old != "" && old != digest {
		r.retired[namespace] = retiredPassword{digest: old, until: time.Now().Add(r.RotationGrace)}
	}
	r.current[namespace] = digest
	old, ok := r.retired[namespace]
	if wait := time.Until(old.until); ok && wait > 0 {
		return []string{digest, old.digest}, wait
	}
	delete(r.retired, namespace)
	return []string{digest}, r.Recheck
}

func (r *StoreSecretReconciler) forget(namespace string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.current, namespace)
	delete(r.retired, namespace)
}

func hasSidecar(obj client.Object) bool {
	pod, ok := obj.(*corev1.Pod)
	return ok && webhook.HasSidecar(pod)
}

// SetupWithManager watches pods with the sidecar. What matters is their
// namespace, so every pod maps to one request per namespace.
func (r *StoreSecretReconciler) SetupWithManager(mgr ctrl.Manager) error {
	if r.Recheck <= 0 {
		r.Recheck = DefaultSecretRecheck
	}
	if r.RotationGrace <= 0 {
		r.RotationGrace = DefaultRotationGrace
	}
	toNamespace := handler.EnqueueRequestsFromMapFunc(func(_ context.Context, obj client.Object) []reconcile.Request {
		return []reconcile.Request{{NamespacedName: types.NamespacedName{Namespace: obj.GetNamespace(), Name: r.Name}}}
	})
	b := ctrl.NewControllerManagedBy(mgr).Named("storesecret").
		Watches(&corev1.Pod{}, toNamespace, builder.WithPredicates(predicate.NewPredicateFuncs(hasSidecar)))
	if g := r.Gateway; g != nil {
		if g.Secret.Name == r.Name {
			return fmt.Errorf("the gateway's Secret %s has the name of the namespaces' Secrets", g.Secret)
		}
		// The gateway's user has no pod to wait for: it is kept from start.
		b = b.WatchesRawSource(source.Func(func(_ context.Context, q workqueue.TypedRateLimitingInterface[reconcile.Request]) error {
			q.Add(reconcile.Request{NamespacedName: g.Secret})
			return nil
		}))
	}
	return b.Complete(r)
}
