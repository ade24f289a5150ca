package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/quotaops/quota-operator/internal/testutil/kubeenv"
)

// The manager's service account may create Secrets in every namespace,
// which RBAC cannot bound by name or type. The shipped admission policy
// lets it write only its own: quota-operator-store and
// quota-operator-redis, of type Opaque, with its managed-by label. Before,
// the review created kube-system/quota-operator-store of type
// kubernetes.io/service-account-token for coredns as the manager, then
// read the token. Other users are not affected.
func TestManagerWritesOnlyItsOwnSecrets(t *testing.T) {
	// A namespace of its own: other tests' managers keep their webhook
	// certificate in quota-operator-system.
	const ownNS = "qo-policy-test"
	ensureNamespace(t, ownNS)
	policy := filepath.Join(kubeenv.ModuleRoot(), "config", "rbac", "manager_secrets_policy.yaml")
	if out, err := env.Kubectl("apply", "-f", policy); err != nil {
		t.Fatalf("apply: %v\n%s", err, out)
	}
	t.Cleanup(func() { _, _ = env.Kubectl("delete", "-f", policy) })
	const manager = "system:serviceaccount:" + ownNS + ":quota-operator-controller-manager"
	var secretIn func(ns, name, typ string, labelled bool) string
	// RBAC lets both create Secrets anywhere, as the manager's role does:
	// what refuses is the policy alone.
	grant := filepath.Join(t.TempDir(), "grant.yaml")
	if err := os.WriteFile(grant, []byte(`apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: test-secret-writer}
rules: [{apiGroups: [""], resources: [secrets], verbs: [create, delete]}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: test-secret-writer}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: test-secret-writer}
subjects:
- {kind: ServiceAccount, name: quota-operator-controller-manager, namespace: qo-policy-test}
- {kind: User, apiGroup: rbac.authorization.k8s.io, name: someone}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := env.Kubectl("apply", "-f", grant); err != nil {
		t.Fatalf("apply: %v\n%s", err, out)
	}
	t.Cleanup(func() { _, _ = env.Kubectl("delete", "-f", grant) })
	secret := func(name, typ string, labelled bool) string { return secretIn("kube-system", name, typ, labelled) }
	secretIn = func(ns, name, typ string, labelled bool) string {
		doc := "apiVersion: v1\nkind: Secret\nmetadata:\n  name: " + name + "\n  namespace: " + ns + "\n"
		if typ == "kubernetes.io/service-account-token" {
			doc += "  annotations:\n    kubernetes.io/service-account.name: coredns\n"
		}
		if labelled {
			doc += "  labels:\n    app.kubernetes.io/managed-by: quota-operator\n"
		}
		doc += "type: " + typ + "\n"
		if typ == "kubernetes.io/tls" {
			doc += "data: {tls.crt: \"\", tls.key: \"\"}\n"
		}
		file := filepath.Join(t.TempDir(), ns+"-"+name+".yaml")
		if err := os.WriteFile(file, []byte(doc), 0o644); err != nil {
			t.Fatal(err)
		}
		return file
	}
	tests := []struct {
		name, as, file, want string
	}{
		{"a service-account token", manager, secret("quota-operator-store", "kubernetes.io/service-account-token", true),
			"the quota-operator manager writes only Secrets of type Opaque (kubernetes.io/tls for its webhook certificate), not kubernetes.io/service-account-token"},
		{"another name", manager, secret("someone-elses", "Opaque", true),
			"the quota-operator manager writes only the Secrets quota-operator-store, quota-operator-redis, quota-operator-webhook-cert, quota-operator-ratelimit-store and quota-operator-subject-key, not someone-elses"},
		{"no managed-by label", manager, secret("quota-operator-store", "Opaque", false),
			"the quota-operator manager writes only Secrets labelled app.kubernetes.io/managed-by=quota-operator"},
		{"its webhook certificate elsewhere", manager, secret("quota-operator-webhook-cert", "kubernetes.io/tls", true),
			"the quota-operator manager writes Secrets other than quota-operator-store only in its own namespace"},
		{"the gateway's Secret elsewhere", manager, secret("quota-operator-ratelimit-store", "Opaque", true),
			"the quota-operator manager writes Secrets other than quota-operator-store only in its own namespace"},
		{"its webhook certificate as Opaque", manager, secretIn(ownNS, "quota-operator-webhook-cert", "Opaque", true),
			"the quota-operator manager writes only Secrets of type Opaque (kubernetes.io/tls for its webhook certificate), not Opaque"},
		{"its webhook certificate", manager, secretIn(ownNS, "quota-operator-webhook-cert", "kubernetes.io/tls", true), ""},
		{"its Redis password", manager, secretIn(ownNS, "quota-operator-redis", "Opaque", true), ""},
		{"the gateway's Redis user", manager, secretIn(ownNS, "quota-operator-ratelimit-store", "Opaque", true), ""},
		{"the subject key", manager, secretIn(ownNS, "quota-operator-subject-key", "Opaque", true), ""},
		{"the subject key elsewhere", manager, secret("quota-operator-subject-key", "Opaque", true),
			"the quota-operator manager writes Secrets other than quota-operator-store only in its own namespace"},
		{"its own Secret", manager, secret("quota-operator-store", "Opaque", true), ""},
		{"another user, another name", "someone", secret("someone-elses", "Opaque", false), ""},
	}
	// The API server picks a new policy up within a few seconds.
	deadline := time.Now().Add(20 * time.Second)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { expectCreate(t, tt.as, tt.file, tt.want, deadline) })
	}
}

// expectCreate creates file as user as and wants it refused with want (or
// created, when want is empty), retrying until deadline while the API
// server may not have the policy yet.
func expectCreate(t *testing.T, as, file, want string, deadline time.Time) {
	for {
		out, err := env.Kubectl("create", "--as="+as, "-f", file)
		switch {
		case want == "" && err == nil:
			_, _ = env.Kubectl("delete", "-f", file)
			return
		case want != "" && err != nil && strings.Contains(out, want) && strings.Contains(out, "Forbidden"):
			return
		case time.Now().After(deadline):
			t.Fatalf("create as %s: %v\n%s\nwant refused: %q", as, err, out, want)
		}
		if err == nil {
			_, _ = env.Kubectl("delete", "-f", file) // let through before the policy was active
		}
		time.Sleep(200 * time.Millisecond)
	}
}
