package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/quotaops/quota-operator/internal/limiter"
	"github.com/quotaops/quota-operator/internal/testutil/bintest"
	"github.com/quotaops/quota-operator/internal/testutil/kubeenv"
	"github.com/quotaops/quota-operator/internal/testutil/localtest"
	"github.com/quotaops/quota-operator/internal/testutil/redistest"
)

// A managed Redis withholds ACL commands from the operator's user, as a
// redis-server whose user "operator" lacks +acl and +config does here.
// Each store tenancy then does what docs/tenancy.md says, with the manager
// and the sidecars as processes and pods injected by the webhook:
//   - managed: the namespace's policy says, in Enforced and an event,
//     which tenancy to choose; no Secret names a user Redis lacks;
//   - provided: users made by the admin from `quota-operator tenant-acl`'s
//     rule enforce exactly, each refused another namespace's keys by
//     Redis; a namespace without an entry is told which key is missing;
//   - shared: one user made from `tenant-acl --shared` enforces exactly,
//     and Programmed says what the choice gives up.
func TestStoreTenancyWithoutACLCommands(t *testing.T) {
	r := redistest.StartOrSkip(t)
	const adminPassword, operatorPassword = "admin-pa55", "operator-pa55"
	if err := r.Client().ConfigSet(context.Background(), "requirepass", adminPassword).Err(); err != nil {
		t.Fatal(err)
	}
	admin := redis.NewClient(&redis.Options{Addr: r.Addr, Password: adminPassword, Protocol: 2})
	t.Cleanup(func() { _ = admin.Close() })
	if err := admin.Do(context.Background(), "acl", "setuser", "operator", "on", ">"+operatorPassword, "~*", "&*", "+@all", "-acl", "-config").Err(); err != nil {
		t.Fatal(err)
	}
	bin, err := bintest.Build()
	if err != nil {
		t.Fatalf("build: %v", err)
	}
	ensureNamespace(t, operatorNS)
	kubectl(t, "apply", "-k", filepath.Join(kubeenv.ModuleRoot(), "config", "crd"))
	kubectl(t, "wait", "--for=condition=Established", "--timeout=30s", "crd/ratelimitpolicies.policy.quotaops.dev")
	storeURL := "redis://operator@" + r.Addr
	// Each subtest's manager stops when that subtest ends (its t), so only
	// one manager at a time writes the policies' status and the Secrets.
	run := func(t *testing.T, tenancy string) {
		webhookPort := localtest.FreeAddr(t)
		for _, cfg := range deployedWebhookConfigurations(t, webhookPort) {
			applyObject(t, cfg)
		}
		startManagerWith(t, bin, storeURL, webhookPort, []string{"--store-tenancy", tenancy}, []string{"QUOTA_STORE_PASSWORD=" + operatorPassword})
	}
	operator := tenantACLRunner{bin: bin, storeURL: storeURL, password: operatorPassword}

	t.Run("managed", func(t *testing.T) {
		run(t, "managed")
		ns := "tenancy-managed"
		expectToldWhy(t, ns, "StoreUserRefused", "Namespace tenancy-managed's sidecars have no store user: the store refuses the operator's user ACL SETUSER")
		if out, err := env.Kubectl("get", "secret", "quota-operator-store", "-n", ns, "-o", "name"); err == nil {
			t.Fatalf("a Secret names a user Redis refused to make: %s", out)
		}
		users, err := admin.Do(context.Background(), "acl", "users").StringSlice()
		if err != nil || slices.Contains(users, limiter.TenantUserName(ns)) {
			t.Fatalf("Redis users %v, %v; want none for %s", users, err, ns)
		}
	})

	t.Run("provided", func(t *testing.T) {
		made := map[string]string{}
		for _, ns := range []string{"tenancy-b", "tenancy-c"} {
			made[ns+".username"], made[ns+".password"] = "tenant-"+ns, ns+"-pa55"
			makeUser(t, admin, "tenant-"+ns, ns+"-pa55", operator.rule(t, ns))
		}
		putUsersSecret(t, made)
		run(t, "provided")
		expectToldWhy(t, "tenancy-d", "StoreUserMissing",
			"Namespace tenancy-d's sidecars have no store user: Secret quota-operator-system/quota-operator-store-users has no keys tenancy-d.username and tenancy-d.password.")
		expectEnforcingAs(t, "tenancy-b", "tenant-tenancy-b", "tenancy-b-pa55")
		b := redis.NewClient(&redis.Options{Addr: r.Addr, Username: "tenant-tenancy-b", Password: "tenancy-b-pa55", Protocol: 2})
		defer func() { _ = b.Close() }()
		expectRefusedKeysOf(t, b, "tenancy-c")
	})

	t.Run("shared", func(t *testing.T) {
		makeUser(t, admin, limiter.SharedUserName, "shared-pa55", operator.rule(t, "--shared"))
		putUsersSecret(t, map[string]string{"username": limiter.SharedUserName, "password": "shared-pa55"})
		run(t, "shared")
		ns := "tenancy-shared"
		expectEnforcingAs(t, ns, limiter.SharedUserName, "shared-pa55")
		msg := kubectl(t, "get", "ratelimitpolicy", "per-ip", "-n", ns, "-o", `jsonpath={.status.conditions[?(@.type=="Programmed")].message}`)
		if !strings.HasSuffix(msg, "store tenancy shared: every namespace's sidecars log in as one store user, so Redis does not keep this namespace's counters from another namespace's sidecars") {
			t.Fatalf("Programmed with shared tenancy: %q", msg)
		}
	})
}

// tenantACLRunner runs `quota-operator tenant-acl` as an administrator
// would, with the operator's store URL and password.
type tenantACLRunner struct{ bin, storeURL, password string }

func (o tenantACLRunner) rule(t *testing.T, arg string) string {
	t.Helper()
	cmd := exec.Command(o.bin, "tenant-acl", "--store", o.storeURL, arg)
	cmd.Env = append(os.Environ(), "QUOTA_STORE_PASSWORD="+o.password)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("tenant-acl %s: %v", arg, err)
	}
	return strings.TrimSpace(string(out))
}

// makeUser runs ACL SETUSER user on >password, then the rule's words.
func makeUser(t *testing.T, admin *redis.Client, user, password, rule string) {
	t.Helper()
	args := []any{"acl", "setuser", user, "on", ">" + password}
	for _, w := range strings.Fields(rule) {
		args = append(args, w)
	}
	if err := admin.Do(context.Background(), args...).Err(); err != nil {
		t.Fatalf("ACL SETUSER %s with the rule %q: %v", user, rule, err)
	}
}

// putUsersSecret replaces the users Secret of the operator's namespace.
func putUsersSecret(t *testing.T, data map[string]string) {
	t.Helper()
	_, _ = env.Kubectl("delete", "secret", "quota-operator-store-users", "-n", operatorNS, "--ignore-not-found")
	applyObject(t, &corev1.Secret{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Secret"},
		ObjectMeta: metav1.ObjectMeta{Name: "quota-operator-store-users", Namespace: operatorNS}, StringData: data})
}

// injectedPodIn makes namespace ns with the sample per-ip policy and an
// injected pod, marked Running, and returns the pod.
func injectedPodIn(t *testing.T, ns string) *corev1.Pod {
	t.Helper()
	ensureNamespace(t, ns)
	kubectl(t, "apply", "-n", ns, "-f", filepath.Join(kubeenv.ModuleRoot(), "config", "samples", "policy_v1alpha1_ratelimitpolicy_per_ip.yaml"))
	ports := map[string]string{"upstream": localtest.FreeAddr(t), "proxy": localtest.FreeAddr(t), "admin": localtest.FreeAddr(t)}
	pod := createPod(t, appPod("api", ns, ports))
	if n := sidecarCount(pod); n != 1 {
		t.Fatalf("a pod in %s got %d sidecars", ns, n)
	}
	kubectl(t, "patch", "pod", pod.Name, "-n", ns, "--subresource=status", "--type=merge", "-p", `{"status":{"phase":"Running"}}`)
	return pod
}

// expectEnforcingAs: namespace ns's Secret names user and password, and
// the injected sidecar, logged in with them, enforces the sample exactly
// and reports it (Enforced True).
func expectEnforcingAs(t *testing.T, ns, user, password string) {
	t.Helper()
	pod := injectedPodIn(t, ns)
	localtest.WaitFor(t, 15*time.Second, "the Secret of "+ns, func() error {
		u, p := secretValue(t, ns, "quota-operator-store", "username"), secretValue(t, ns, "quota-operator-store", "password")
		if u != user || p != password {
			return fmt.Errorf("user %q and a password of %d bytes; want %q and the administrator's", u, len(p), user)
		}
		return nil
	})
	serveApp(t, upstreamOf(pod))
	expectSampleLimit(t, runInjectedSidecar(t, pod))
	expectConditionIn(t, ns, "ratelimitpolicy/per-ip", "Enforced", "True 1/1 selected pods enforce generation 1")
}

// upstreamOf is the address the pod's app listens on, as its annotation
// names it.
func upstreamOf(pod *corev1.Pod) string {
	return "127.0.0.1:" + pod.Annotations["quotaops.dev/upstream-port"]
}

// expectRefusedKeysOf: Redis refuses c every key of namespace other.
func expectRefusedKeysOf(t *testing.T, c *redis.Client, other string) {
	t.Helper()
	ctx := context.Background()
	counter := limiter.CounterKey{Namespace: other, Policy: "per-ip", Limit: "l"}.Key("0")
	for what, err := range map[string]error{
		"its config":  c.HGetAll(ctx, "qo:v1:config:{"+other+"}:docs").Err(),
		"a counter":   c.Do(ctx, "fcall", "qo1_incr", "1", counter, "1", "1000").Err(),
		"an app key":  c.Do(ctx, "fcall_ro", "qo1_get", "1", limiter.AppKey(other, "k")).Err(),
		"its channel": subscribeErr(ctx, c, "qo:v1:config:{"+other+"}:changed"),
	} {
		if err == nil || !strings.HasPrefix(err.Error(), "NOPERM") {
			t.Errorf("%s on %s of %s: %v; want NOPERM", c.Options().Username, what, other, err)
		}
	}
}

func subscribeErr(ctx context.Context, c *redis.Client, channel string) error {
	sub := c.Subscribe(ctx, channel)
	defer func() { _ = sub.Close() }()
	_, err := sub.Receive(ctx)
	return err
}

// expectToldWhy: in namespace ns, with an injected pod, the sample
// policy's Enforced is False with a message that starts with want, and an
// event of reason says so.
func expectToldWhy(t *testing.T, ns, reason, want string) {
	t.Helper()
	injectedPodIn(t, ns)
	expectConditionMatching(t, ns, "ratelimitpolicy/per-ip", "Enforced", func(out string) bool { return strings.HasPrefix(out, "False "+want) })
	expectEvent(t, ns, "per-ip", reason)
}

// expectEvent waits for an event of reason about the object name.
func expectEvent(t *testing.T, namespace, name, reason string) {
	t.Helper()
	localtest.WaitFor(t, 10*time.Second, reason+" event on "+name, func() error {
		out, err := env.Kubectl("get", "events.events.k8s.io", "-n", namespace, "--field-selector=regarding.name="+name+",reason="+reason, "-o", "name")
		if err != nil || out == "" {
			return fmt.Errorf("events: %w %q", err, out)
		}
		return nil
	})
}
