//go:build cluster

package cluster

import (
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"helm.sh/helm/v4/pkg/action"
	chartv2 "helm.sh/helm/v4/pkg/chart/v2"
	"helm.sh/helm/v4/pkg/chart/v2/loader"
	"helm.sh/helm/v4/pkg/kube"
	"k8s.io/cli-runtime/pkg/genericclioptions"

	"github.com/quotaops/quota-operator/controllers"
	"github.com/quotaops/quota-operator/internal/limiter"
	"github.com/quotaops/quota-operator/internal/testutil/bintest"
	"github.com/quotaops/quota-operator/internal/testutil/kubeenv"
	"github.com/quotaops/quota-operator/internal/testutil/localtest"
	"github.com/quotaops/quota-operator/internal/testutil/testpki"
)

// The namespace a platform team installs into, and the one its own Redis
// runs in.
const (
	platformNS      = "platform-quotas"
	platformRedisNS = "platform-redis"
)

// expectKustomizeInAnotherNamespace installs config/default under a
// kustomization that sets namespace platform-quotas, as a GitOps
// repository would, and the workload is limited exactly: the store URL,
// the webhooks' exclusion and everything else followed the namespace.
func expectKustomizeInAnotherNamespace(t *testing.T) {
	cleanup(t)
	top := t.TempDir()
	base, err := filepath.Rel(top, filepath.Join(kubeenv.ModuleRoot(), "config", "default"))
	if err != nil {
		t.Fatal(err)
	}
	img, tag := imageParts(env.img)
	redisImg, redisTag := imageParts(env.redisImg)
	writeFile(t, filepath.Join(top, "kustomization.yaml"), fmt.Sprintf(`namespace: %s
resources:
  - %s
images:
  - {name: controller, newName: %s, newTag: %q}
  - {name: redis, newName: %s, newTag: %q}
`, platformNS, base, img, tag, redisImg, redisTag))
	built := kubectl(t, "kustomize", top)
	if strings.Contains(built, "quota-operator-system") {
		t.Fatal("the build still names quota-operator-system")
	}
	installed := filepath.Join(t.TempDir(), "install.yaml")
	writeFile(t, installed, built)
	kubectl(t, "apply", "--server-side", "-f", installed)
	t.Cleanup(func() {
		removeWorkload(t)
		if out, err := run("delete", "--ignore-not-found", "--timeout=120s", "-f", installed); err != nil {
			t.Logf("delete the install: %v\n%s", err, out)
		}
		recycleVolumes(t)
	})
	kubectl(t, "-n", platformNS, "rollout", "status", "statefulset/"+redisSts, "--timeout="+rolloutTimeout)
	kubectl(t, "-n", platformNS, "rollout", "status", "deployment/"+managerDeploy, "--timeout="+rolloutTimeout)
	if url := kubectl(t, "-n", platformNS, "get", "deployment", managerDeploy, "-o",
		`jsonpath={.spec.template.spec.containers[0].env[?(@.name=="STORE_URL")].value}`); url != "redis://quota-operator-redis.$(POD_NAMESPACE).svc:6379/0" {
		t.Fatalf("STORE_URL %q", url)
	}
	deployWorkload(t)
	applyPolicy(t, 5)
	expectExactly(t, "kustomize-tenant", 5)
}

// expectHelmInAnotherNamespace installs the chart into platform-quotas on
// a Redis of the team's own, as a managed Redis is: rediss:// in another
// namespace, its certificate signed by a private CA given only through
// store.tls.ca; the operator's user there lacks +acl and +config; its
// password is in a Secret named platform-redis-password that appears only
// after the install began. The manager waits for it (its pod does not
// start without it; nothing generates it). With store.tenancy provided,
// the administrator makes the namespace's user from `quota-operator
// tenant-acl`'s rule and hands it over in quota-operator-store-users; the
// workload's sidecars log in as that user and limit exactly.
func expectHelmInAnotherNamespace(t *testing.T) {
	const password = "platform-pa55word"
	cleanup(t) // the install before this one has the cluster-wide objects
	deployTLSRedis(t, password)
	kubectl(t, "create", "namespace", platformNS)
	kubectl(t, "-n", platformNS, "create", "secret", "generic", "platform-redis-ca", "--from-file=ca.crt="+filepath.Join(tlsDir, "ca.crt"))
	done := make(chan error, 1)
	go func() { done <- helmInstall(platformNS, helmValuesOwnRedis()) }()
	t.Cleanup(func() {
		removeWorkload(t)
		if err := helmUninstall(platformNS); err != nil {
			t.Logf("helm uninstall: %v", err)
		}
		for _, ns := range []string{platformNS, platformRedisNS} {
			if out, err := run("delete", "namespace", ns, "--ignore-not-found", "--timeout=120s"); err != nil {
				t.Logf("delete namespace %s: %v\n%s", ns, err, out)
			}
		}
	})
	expectManagerWaitsForSecret(t)
	kubectl(t, "-n", platformNS, "create", "secret", "generic", "platform-redis-password", "--from-literal=password="+password)
	if err := <-done; err != nil {
		t.Fatalf("helm install: %v", err)
	}
	provideTenantUser(t, appNS, "shop-pa55word")
	deployWorkload(t)
	if got := kubectl(t, "-n", appNS, "get", "secret", storeSecret, "-o", "jsonpath={.data.ca\\.crt} {.data.username}"); got != base64.StdEncoding.EncodeToString(must(os.ReadFile(filepath.Join(tlsDir, "ca.crt"))))+" "+base64.StdEncoding.EncodeToString([]byte("team-"+appNS)) {
		t.Fatalf("the namespace's Secret holds ca.crt and username %q; want the store's CA and the administrator's user", got)
	}
	applyPolicy(t, 5)
	expectExactly(t, "helm-own-redis-tenant", 5)
	expectSharedTenancy(t)
	expectManagedTenancyRefused(t)
}

// expectSharedTenancy: the administrator makes one user from `tenant-acl
// --shared`'s rule and puts it in the users Secret; after a helm upgrade
// to store.tenancy=shared, the namespace's Secret names that user, the
// restarted sidecars enforce exactly as it, and Programmed says what the
// choice gives up.
func expectSharedTenancy(t *testing.T) {
	const password = "shared-pa55word"
	makePlatformUser(t, limiter.SharedUserName, password, "--shared")
	kubectl(t, "-n", platformNS, "patch", "secret", "quota-operator-store-users", "--type=merge",
		"-p", `{"stringData":{"username":"`+limiter.SharedUserName+`","password":"`+password+`"}}`)
	helmUpgradeTenancy(t, "shared")
	expectStoreUser(t, limiter.SharedUserName)
	if got := restartWorkload(t, "helm-shared-probe"); got.Status != 200 {
		t.Fatalf("the first request as the shared user: %+v", got)
	}
	expectExactly(t, "helm-shared-tenant", 5)
	msg := kubectl(t, "-n", appNS, "get", "rlp", "per-tenant", "-o", `jsonpath={.status.conditions[?(@.type=="Programmed")].message}`)
	if !strings.HasSuffix(msg, controllers.SharedNote) {
		t.Fatalf("Programmed with shared tenancy: %q; want it to end %q", msg, controllers.SharedNote)
	}
}

// expectManagedTenancyRefused: after a helm upgrade to
// store.tenancy=managed on this Redis, which refuses the operator ACL
// SETUSER, the namespace's policy says so in Enforced and an event, Redis
// has no user for the namespace, and its Secret still names a user Redis
// has: the sidecars keep enforcing.
func expectManagedTenancyRefused(t *testing.T) {
	helmUpgradeTenancy(t, "managed")
	const why = "sidecars have no store user: the store refuses the operator's user ACL SETUSER"
	localtest.WaitFor(t, 90*time.Second, "Enforced StoreUserRefused", func() error {
		got, err := run("-n", appNS, "get", "rlp", "per-tenant", "-o",
			`jsonpath={.status.conditions[?(@.type=="Enforced")].status} {.status.conditions[?(@.type=="Enforced")].reason}: {.status.conditions[?(@.type=="Enforced")].message}`)
		if err != nil {
			return err
		}
		if !strings.HasPrefix(got, "False StoreUserRefused: ") || !strings.Contains(got, why) {
			return fmt.Errorf("Enforced %q", got)
		}
		return nil
	})
	if out := kubectl(t, "-n", appNS, "get", "events.events.k8s.io", "--field-selector=regarding.name=per-tenant,reason=StoreUserRefused", "-o", "name"); out == "" {
		t.Fatal("no StoreUserRefused event on the policy")
	}
	users, err := platformRedisCLI(t, "ACL", "USERS")
	if err != nil || slices.Contains(strings.Fields(users), limiter.TenantUserName(appNS)) || !slices.Contains(strings.Fields(users), limiter.SharedUserName) {
		t.Fatalf("Redis users %q, %v; want the shared user and none for %s", users, err, appNS)
	}
	expectStoreUser(t, limiter.SharedUserName)
	expectExactly(t, "helm-managed-tenant", 5)
}

// helmUpgradeTenancy upgrades the release in platform-quotas to another
// store tenancy and waits for the manager's rollout.
func helmUpgradeTenancy(t *testing.T, tenancy string) {
	t.Helper()
	values := helmValuesOwnRedis()
	values["store"].(map[string]any)["tenancy"] = tenancy
	if err := helmUpgrade(platformNS, values); err != nil {
		t.Fatalf("helm upgrade to store.tenancy=%s: %v", tenancy, err)
	}
}

// expectStoreUser waits until the workload namespace's store Secret names
// user.
func expectStoreUser(t *testing.T, user string) {
	t.Helper()
	localtest.WaitFor(t, 60*time.Second, "the store Secret of "+appNS+" naming "+user, func() error {
		got, err := run("-n", appNS, "get", "secret", storeSecret, "-o", "jsonpath={.data.username}")
		if err != nil {
			return err
		}
		if got != base64.StdEncoding.EncodeToString([]byte(user)) {
			return fmt.Errorf("username %q (base64)", got)
		}
		return nil
	})
}

// provideTenantUser does what an administrator of a managed Redis does
// for namespace ns: makes its user with the rule `quota-operator
// tenant-acl` prints for the store's seal, and puts its name and password
// in the Secret quota-operator-store-users.
func provideTenantUser(t *testing.T, ns, password string) {
	t.Helper()
	makePlatformUser(t, "team-"+ns, password, ns)
	kubectl(t, "-n", platformNS, "create", "secret", "generic", "quota-operator-store-users",
		"--from-literal="+ns+".username=team-"+ns, "--from-literal="+ns+".password="+password)
}

// makePlatformUser makes user in the team's Redis with the rule
// `quota-operator tenant-acl ARG` prints for the store's seal, as its
// administrator does.
func makePlatformUser(t *testing.T, user, password, arg string) {
	t.Helper()
	var seal string
	localtest.WaitFor(t, 60*time.Second, "the store's seal, which the manager writes", func() error {
		out, err := platformRedisCLI(t, "GET", "qo:seal")
		if err != nil {
			return err
		}
		if seal = strings.TrimSpace(out); seal == "" {
			return errors.New("no qo:seal yet")
		}
		return nil
	})
	bin, err := bintest.Build()
	if err != nil {
		t.Fatal(err)
	}
	rule, err := exec.Command(bin, "tenant-acl", "--seal", seal, arg).Output()
	if err != nil {
		t.Fatalf("tenant-acl %s: %v", arg, err)
	}
	if out, err := platformRedisCLI(t, append([]string{"ACL", "SETUSER", user, "on", ">" + password}, strings.Fields(string(rule))...)...); err != nil || strings.TrimSpace(out) != "OK" {
		t.Fatalf("ACL SETUSER %s with tenant-acl %s's rule: %q %v", user, arg, out, err)
	}
}

// platformRedisCLI runs redis-cli in the team's Redis as its admin.
func platformRedisCLI(t *testing.T, args ...string) (string, error) {
	t.Helper()
	return run(append([]string{"-n", platformRedisNS, "exec", "deploy/redis", "-c", "redis", "--", "/usr/local/bin/redis-cli",
		"--tls", "--cacert", "/tls/ca.crt", "--no-auth-warning", "--user", "default", "--pass", platformAdminPassword}, args...)...)
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// platformAdminPassword is the default user's password of the team's
// Redis, which only the test (its administrator) uses; the operator logs
// in as "operator", who may not run ACL or CONFIG.
const platformAdminPassword = "platform-admin-pa55"

// tlsDir holds the CA and the certificate of the team's Redis.
var tlsDir string

// deployTLSRedis runs a Redis that speaks TLS only, with a certificate for
// its Service's name signed by a new CA, and a user "operator" with the
// password from a Secret, who may do all but ACL and CONFIG.
func deployTLSRedis(t *testing.T, password string) {
	t.Helper()
	tlsDir = t.TempDir()
	caKey, ca := testpki.NewCert(t, tlsDir, "ca", &x509.Certificate{IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}, nil, nil)
	testpki.NewCert(t, tlsDir, "server", &x509.Certificate{DNSNames: []string{"redis." + platformRedisNS + ".svc", "redis." + platformRedisNS + ".svc.cluster.local"},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}, ca, caKey)
	kubectl(t, "create", "namespace", platformRedisNS)
	kubectl(t, "-n", platformRedisNS, "create", "secret", "generic", "redis-tls", "--from-file=tls.crt="+filepath.Join(tlsDir, "server.crt"),
		"--from-file=tls.key="+filepath.Join(tlsDir, "server.key"), "--from-file=ca.crt="+filepath.Join(tlsDir, "ca.crt"))
	kubectl(t, "-n", platformRedisNS, "create", "secret", "generic", "redis-password", "--from-literal=password="+password)
	applyYAML(t, fmt.Sprintf(tlsRedisYAML, platformRedisNS, env.redisImg, platformAdminPassword, platformRedisNS))
	kubectl(t, "-n", platformRedisNS, "rollout", "status", "deployment/redis", "--timeout="+rolloutTimeout)
}

const tlsRedisYAML = `
apiVersion: apps/v1
kind: Deployment
metadata: {name: redis, namespace: %s}
spec:
  selector: {matchLabels: {app: redis}}
  template:
    metadata: {labels: {app: redis}}
    spec:
      containers:
        - name: redis
          image: %s
          args: [--port, "0", --tls-port, "6379", --tls-cert-file, /tls/tls.crt, --tls-key-file, /tls/tls.key,
                 --tls-ca-cert-file, /tls/ca.crt, --tls-auth-clients, "no", --requirepass, %s, --save, "", --appendonly, "no",
                 --user, operator, "on", ">$(REDIS_PASSWORD)", "~*", "&*", "+@all", "-acl", "-config"]
          env:
            - name: REDIS_PASSWORD
              valueFrom: {secretKeyRef: {name: redis-password, key: password}}
          ports: [{name: redis, containerPort: 6379}]
          volumeMounts: [{name: tls, mountPath: /tls, readOnly: true}]
      volumes: [{name: tls, secret: {secretName: redis-tls, defaultMode: 0444}}]
---
apiVersion: v1
kind: Service
metadata: {name: redis, namespace: %s}
spec:
  selector: {app: redis}
  ports: [{name: redis, port: 6379, targetPort: redis}]
`

// helmValuesOwnRedis point the chart at the team's Redis.
func helmValuesOwnRedis() map[string]any {
	return map[string]any{
		"image": imageValues(env.img),
		"redis": map[string]any{"enabled": false},
		"store": map[string]any{"url": "rediss://operator@redis." + platformRedisNS + ".svc:6379/0", "passwordSecret": "platform-redis-password", "tenancy": "provided",
			"tls": map[string]any{"ca": map[string]any{"secret": "platform-redis-ca"}}},
	}
}

// expectManagerWaitsForSecret: while the password Secret is missing, the
// manager's pods are created but do not start, and no Secret of that name
// is generated.
func expectManagerWaitsForSecret(t *testing.T) {
	t.Helper()
	localtest.WaitFor(t, 60*time.Second, "the manager's pods waiting for the password Secret", func() error {
		out, err := run("-n", platformNS, "get", "pods", "-l", "control-plane=controller-manager", "-o",
			`jsonpath={range .items[*]}{.status.phase}{"\n"}{end}`)
		if err != nil {
			return err
		}
		if strings.Count(out, "Pending") != 2 {
			return fmt.Errorf("pods in phases %q; want 2 Pending", out)
		}
		return nil
	})
	time.Sleep(5 * time.Second)
	if out, err := run("-n", platformNS, "get", "secret", "platform-redis-password", "-o", "name"); err == nil {
		t.Fatalf("the password Secret was generated: %s", out)
	}
}

// imageParts splits an image reference into its repository and tag.
func imageParts(ref string) (repository, tag string) {
	i := strings.LastIndex(ref, ":")
	return ref[:i], ref[i+1:]
}

// imageValues is the chart's image values for ref.
func imageValues(ref string) map[string]any {
	repository, tag := imageParts(ref)
	return map[string]any{"repository": repository, "tag": tag}
}

// helmInstall installs the chart here as `helm install --wait` does.
func helmInstall(ns string, values map[string]any) error {
	return helmInstallChart(ns, localChart(), values)
}

// helmInstallChart installs the chart at path (a folder or a packaged
// .tgz) as `helm install --wait` does.
func helmInstallChart(ns, path string, values map[string]any) error {
	cfg, chrt, err := helmChart(ns, path)
	if err != nil {
		return err
	}
	install := action.NewInstall(cfg)
	install.ReleaseName, install.Namespace, install.CreateNamespace = "quota-operator", ns, true
	install.WaitStrategy, install.Timeout = kube.StatusWatcherStrategy, 4*time.Minute
	_, err = install.Run(chrt, values)
	return err
}

// helmUpgrade upgrades the release in ns to the chart here with values,
// and waits until its objects are ready.
func helmUpgrade(ns string, values map[string]any) error {
	return helmUpgradeChart(ns, localChart(), values)
}

// helmUpgradeChart is helmUpgrade to the chart at path.
func helmUpgradeChart(ns, path string, values map[string]any) error {
	cfg, chrt, err := helmChart(ns, path)
	if err != nil {
		return err
	}
	upgrade := action.NewUpgrade(cfg)
	upgrade.Namespace, upgrade.WaitStrategy, upgrade.Timeout = ns, kube.StatusWatcherStrategy, 4*time.Minute
	_, err = upgrade.Run("quota-operator", chrt, values)
	return err
}

func helmUninstall(ns string) error {
	cfg, err := helmConfig(ns)
	if err != nil {
		return err
	}
	uninstall := action.NewUninstall(cfg)
	uninstall.WaitStrategy, uninstall.Timeout = kube.StatusWatcherStrategy, 2*time.Minute
	_, err = uninstall.Run("quota-operator")
	return err
}

// helmChart is Helm's configuration for ns and the chart at path.
func helmChart(ns, path string) (*action.Configuration, *chartv2.Chart, error) {
	cfg, err := helmConfig(ns)
	if err != nil {
		return nil, nil, err
	}
	chrt, err := loader.Load(path)
	return cfg, chrt, err
}

// localChart is the chart of this tree.
func localChart() string { return filepath.Join(kubeenv.ModuleRoot(), "charts", "quota-operator") }

func helmConfig(ns string) (*action.Configuration, error) {
	flags := genericclioptions.NewConfigFlags(false)
	flags.KubeConfig, flags.Namespace = &env.kubeconfig, ptrTo(ns)
	cfg := action.NewConfiguration()
	return cfg, cfg.Init(flags, ns, "secret")
}

// removeWorkload deletes the workload's namespaces while the manager is
// still there to take the finalizers off their policies.
func removeWorkload(t *testing.T) {
	for _, ns := range []string{appNS, clientNS} {
		if out, err := run("delete", "namespace", ns, "--ignore-not-found", "--timeout=120s"); err != nil {
			t.Logf("delete namespace %s: %v\n%s", ns, err, out)
		}
	}
}
