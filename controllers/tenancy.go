package controllers

import (
	"context"
	"fmt"
	"sync"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/quotaops/quota-operator/api/v1alpha1"
)

// Tenancy is how the sidecars of each namespace get their store user.
type Tenancy string

const (
	// TenancyManaged: the manager keeps one ACL user per namespace, which
	// reaches only that namespace's keys (its user needs ACL SETUSER).
	TenancyManaged Tenancy = "managed"
	// TenancyProvided: an administrator makes each namespace's user with
	// the rule `quota-operator tenant-acl NAMESPACE` prints and puts its
	// credentials in the users Secret; the manager runs no ACL command.
	TenancyProvided Tenancy = "provided"
	// TenancyShared: every namespace's sidecars get the one credential of
	// the users Secret; Redis keeps no namespace from another's keys.
	TenancyShared Tenancy = "shared"
)

// Tenancies are the values --store-tenancy takes.
var Tenancies = []Tenancy{TenancyManaged, TenancyProvided, TenancyShared}

// Keys of the users Secret: NAMESPACE.username and NAMESPACE.password
// with provided (a namespace's name holds no dot, so no key of one
// namespace is another's), and username and password with shared. The
// gateway rate-limit service's entry is gatewayEntry's (no namespace name
// starts with "_").
const gatewayEntry = "_gateway"

// SharedNote is what Programmed adds with TenancyShared: what the choice
// gives up.
const SharedNote = "; store tenancy shared: every namespace's sidecars log in as one store user, so Redis does not keep this namespace's counters from another namespace's sidecars"

// TenantProblems holds, by namespace, what keeps its sidecars from a
// store user, as the StoreSecretReconciler last found it, for the
// namespace's policies and quotas to report in Enforced.
type TenantProblems struct {
	mu sync.Mutex
	m  map[string]TenantProblem
}

// TenantProblem is why a namespace's sidecars have no store user.
type TenantProblem struct{ Reason, Message string }

func (p *TenantProblems) set(namespace string, problem *TenantProblem) {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if problem == nil {
		delete(p.m, namespace)
		return
	}
	if p.m == nil {
		p.m = map[string]TenantProblem{}
	}
	p.m[namespace] = *problem
}

func (p *TenantProblems) get(namespace string) (TenantProblem, bool) {
	if p == nil {
		return TenantProblem{}, false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	problem, ok := p.m[namespace]
	return problem, ok
}

// refusedProblem: the store refuses the manager ACL commands, so with
// TenancyManaged namespace's sidecars can have no user.
func refusedProblem(namespace string, err error) *TenantProblem {
	return &TenantProblem{Reason: v1alpha1.ReasonStoreUserRefused, Message: fmt.Sprintf(
		"Namespace %s's sidecars have no store user: the store refuses the operator's user ACL SETUSER (%v). "+
			"Choose another store tenancy (--store-tenancy, chart value store.tenancy): provided, where an administrator makes each namespace's user "+
			"with the rule `quota-operator tenant-acl %s` prints, or shared, one credential for every namespace with no isolation in Redis",
		namespace, err, namespace)}
}

// missingProblem: the users Secret has no credentials for id.
func missingProblem(secret client.ObjectKey, namespace string, t Tenancy) *TenantProblem {
	msg := fmt.Sprintf("Namespace %s's sidecars have no store user: Secret %s has no keys %s.username and %s.password. "+
		"Make the user with the rule `quota-operator tenant-acl %s` prints, then add both keys (store tenancy provided)",
		namespace, secret, namespace, namespace, namespace)
	if t == TenancyShared {
		msg = fmt.Sprintf("Namespace %s's sidecars have no store user: Secret %s has no keys username and password, "+
			"the credential every namespace's sidecars share (store tenancy shared)", namespace, secret)
	}
	return &TenantProblem{Reason: v1alpha1.ReasonStoreUserMissing, Message: msg}
}

// entryPrefix is where id's credentials are in the users Secret.
func entryPrefix(t Tenancy, id string) string {
	if t == TenancyShared {
		return ""
	}
	return id + "."
}

// providedCredentials reads id's username and password from the users
// Secret; ok is false when either is missing or empty.
func (r *StoreSecretReconciler) providedCredentials(ctx context.Context, id string) (user, password string, ok bool, err error) {
	s, err := r.readSecret(ctx, r.ProvidedUsers)
	if err != nil || s == nil {
		return "", "", false, err
	}
	prefix := entryPrefix(r.Tenancy, id)
	user, password = string(s.Data[prefix+secretKeyUsername]), string(s.Data[prefix+secretKeyPassword])
	return user, password, user != "" && password != "", nil
}

// keepProvided copies id's credentials from the users Secret into the
// Secret at secret, or reports the missing entry for namespace ("": the
// gateway, which has no policies to tell).
func (r *StoreSecretReconciler) keepProvided(ctx context.Context, secret client.ObjectKey, namespace, id string) (missing bool, err error) {
	user, password, ok, err := r.providedCredentials(ctx, id)
	if err != nil {
		return false, err
	}
	if !ok {
		if namespace != "" {
			r.Problems.set(namespace, missingProblem(r.ProvidedUsers, namespace, r.Tenancy))
		}
		return true, nil
	}
	have, err := r.readSecret(ctx, secret)
	if err != nil {
		return false, err
	}
	if err := r.writeSecret(ctx, secret, have, user, password); err != nil {
		return false, err
	}
	r.Problems.set(namespace, nil)
	return false, nil
}

// conditionForProblem sets Enforced from a namespace's store-user problem.
func conditionForProblem(st *v1alpha1.PolicyStatus, gen int64, e *enforcement, problem TenantProblem) {
	st.EnforcedPods = fmt.Sprintf("0/%d", e.selected)
	setCondition(st, gen, v1alpha1.ConditionEnforced, metav1.ConditionFalse, problem.Reason, problem.Message)
}
