//go:build cluster

// Package cluster tests the operator as users run it: installed from
// config/default with its own image, under its own ServiceAccount and
// the RBAC it ships, on the one-node cluster hack/cluster.sh starts (a real
// kubelet, containerd, runc, CNI bridge, kube-proxy and CoreDNS). The API
// server reaches the webhook through its Service; a client pod reaches the
// workload through the workload's Service.
//
// Run it with `make cluster-up test-cluster`; it reads:
//
//	QUOTA_CLUSTER_KUBECONFIG  an admin kubeconfig of the cluster
//	QUOTA_KUBECTL             the kubectl to use
//	QUOTA_IMG                 the operator's image, imported into the node
//	QUOTA_REDIS_IMG           a Redis image with redis-cli, imported too
//	QUOTA_TESTAPP_IMG         test/cluster/testapp's image, imported too
package cluster

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/quotaops/quota-operator/internal/testutil/kubeenv"
	"github.com/quotaops/quota-operator/internal/testutil/localtest"
	"github.com/quotaops/quota-operator/internal/webhook"
)

const (
	operatorNS     = "quota-operator-system"
	managerDeploy  = "quota-operator-controller-manager"
	managerSA      = "system:serviceaccount:" + operatorNS + ":quota-operator-controller-manager"
	redisSts       = "quota-operator-redis"
	leaseName      = "quota-operator.quotaops.dev"
	appNS          = "shop"
	clientNS       = "shop-client"
	workloadURL    = "http://api.shop.svc.cluster.local/"
	storeSecret    = "quota-operator-store"
	tenantHeader   = "X-Tenant"
	rolloutTimeout = "180s"
)

var env struct {
	kubeconfig, kubectl, img, redisImg, testappImg string
}

func TestMain(m *testing.M) {
	for name, dst := range map[string]*string{"QUOTA_CLUSTER_KUBECONFIG": &env.kubeconfig, "QUOTA_KUBECTL": &env.kubectl,
		"QUOTA_IMG": &env.img, "QUOTA_REDIS_IMG": &env.redisImg, "QUOTA_TESTAPP_IMG": &env.testappImg} {
		if *dst = os.Getenv(name); *dst == "" {
			fmt.Fprintf(os.Stderr, "%s is not set: run this test with `make cluster-up test-cluster`\n", name)
			os.Exit(2)
		}
	}
	os.Exit(m.Run())
}

// One story, in the order a user lives it; each step needs the ones before.
func TestOperatorOnTheNode(t *testing.T) {
	deployOperator(t)
	deployWorkload(t)
	applyPolicy(t, 5)
	t.Run("a client pod through the Service gets exactly the limit", func(t *testing.T) {
		expectExactly(t, "tenant-a", 5)
	})
	t.Run("the first sidecar on the node serves 3,000 requests under half its memory limit", expectSmallFootprint)
	t.Run("kubectl get rlp shows the policy enforced by its pods", expectEnforcedByPods)
	t.Run("sidecars reach Redis as their namespace's own user", expectTenantUser)
	t.Run("the other replica takes over when the leader is deleted", func(t *testing.T) {
		expectLeaderFailover(t)
	})
	t.Run("the bundled Redis keeps usage when its pod is deleted and when it is killed", func(t *testing.T) {
		expectUsageKeptAcrossRedisRestarts(t)
		// The sidecars' connections to the old Redis are gone; a decision
		// must reach the new one before counts can be exact.
		expectLimit(t, 7, 30*time.Second)
		expectExactly(t, "tenant-c", 7)
	})
	t.Run("a rollout restart of the workload keeps the counters", func(t *testing.T) {
		got := restartWorkload(t, "tenant-c")
		if got.Status != 429 || got.Header["X-RateLimit-Remaining"] != "0" {
			t.Fatalf("tenant-c after the restart: %+v, want 429 with nothing remaining", got)
		}
		expectExactly(t, "tenant-d", 7)
	})
	t.Run("kubectl quota checks a tenant through the API server and the manager", expectPluginCheck)
	t.Run("metrics are read from the sidecar's health port from another pod", expectMetrics)
	t.Run("the manager's metrics are for those allowed to read them", expectManagerMetrics)
	t.Run("deleting a pod drops no request in flight", expectInFlightKept)
	t.Run("a pod that starts while Redis is down is Ready and fails open or closed as each policy says", expectStartDuringOutage)
	t.Run("the manager needs no more than it is granted", expectLeastPrivilege)
	t.Run("a labelled namespace keeps its Jobs, TCP pods and opted-out pods", expectOtherPodsKept)
	t.Run("overlays/redis-ha fails over when the primary's pod is deleted under load", expectRedisHAFailover)
	t.Run("a kustomization with namespace platform-quotas on top of config/default installs there and limits exactly", expectKustomizeInAnotherNamespace)
	t.Run("helm install in platform-quotas on a TLS Redis of the team's own, its CA and password from the chart's values, limits exactly", expectHelmInAnotherNamespace)
	t.Run("helm install gives an operator that limits the traffic exactly", expectHelmInstall)
}

// expectHelmInstall removes the operator and the workload, installs the
// chart with Helm's Go module (as `helm install --wait` does), and runs
// the workload again: exactly the limit passes.
func expectHelmInstall(t *testing.T) {
	cleanup(t)
	start := time.Now()
	if err := helmInstall(operatorNS, map[string]any{"image": imageValues(env.img),
		"redis": map[string]any{"image": env.redisImg}}); err != nil {
		t.Fatalf("helm install: %v", err)
	}
	t.Logf("helm install --wait took %v", time.Since(start).Round(time.Second))
	deployWorkload(t)
	applyPolicy(t, 5)
	expectExactly(t, "helm-tenant", 5)
}

func ptrTo[T any](v T) *T { return &v }

// apiPods are the workload's running pods, by name, with their IPs.
func apiPods(t *testing.T) map[string]string {
	t.Helper()
	out := kubectl(t, "-n", appNS, "get", "pods", "-l", "app=demo-api", "--field-selector=status.phase=Running",
		"-o", `jsonpath={range .items[*]}{.metadata.name} {.status.podIP}{"\n"}{end}`)
	pods := map[string]string{}
	for _, line := range strings.Split(out, "\n") {
		if name, ip, ok := strings.Cut(line, " "); ok {
			pods[name] = ip
		}
	}
	return pods
}

// expectMetrics: after a decision in each pod, its health port shows it.
func expectMetrics(t *testing.T) {
	for name, ip := range apiPods(t) {
		clientGetURL(t, "http://"+ip+":8000/", "tenant-metrics", 1, false)
		got := clientGetURL(t, "http://"+ip+":9902/metrics", "", 1, true)[0]
		want := `quota_decisions_total{limit="per-tenant",namespace="shop",policy="per-tenant",result="allowed"}`
		if got.Status != 200 || !strings.Contains(got.Body, want) || !strings.Contains(got.Body, "quota_config_revision{namespace=") {
			i := strings.Index(got.Body, "quota_")
			t.Fatalf("pod %s metrics: %d, want %s in %q", name, got.Status, want, got.Body[max(i, 0):])
		}
	}
}

// expectManagerMetrics reads the manager's metrics through their Service,
// over HTTPS, from the client pod: with the token of a ServiceAccount bound
// to the metrics-reader ClusterRole (what a Prometheus gets), without a
// token, and with the token of one that is not bound.
func expectManagerMetrics(t *testing.T) {
	applyYAML(t, fmt.Sprintf(`
apiVersion: v1
kind: ServiceAccount
metadata: {name: scraper, namespace: %[1]s}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: nobody, namespace: %[1]s}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: quota-test-scraper}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: quota-operator-metrics-reader}
subjects: [{kind: ServiceAccount, name: scraper, namespace: %[1]s}]
`, clientNS))
	t.Cleanup(func() { _, _ = run("delete", "clusterrolebinding", "quota-test-scraper", "--ignore-not-found") })
	const url = "https://quota-operator-controller-manager-metrics-service." + operatorNS + ".svc:8443/metrics"
	for _, c := range []struct {
		account string
		status  int
	}{{"scraper", 200}, {"", 401}, {"nobody", 403}} {
		args := []string{"-n", clientNS, "exec", "client", "--", "/testapp", "get", "--url=" + url, "--insecure", "--body"}
		if c.account != "" {
			token := kubectl(t, "-n", clientNS, "create", "token", c.account)
			args = append(args, "--header=Authorization=Bearer "+token)
		}
		var got answer
		if err := json.Unmarshal([]byte(kubectl(t, args...)), &got); err != nil {
			t.Fatal(err)
		}
		// Either replica may answer; both make API requests, only the
		// leader reconciles.
		if got.Status != c.status || c.status == 200 && !strings.Contains(got.Body, "rest_client_requests_total{") {
			t.Fatalf("as %q: %d %.300q, want %d", c.account, got.Status, got.Body, c.status)
		}
	}
}

// expectInFlightKept deletes a pod while a slow request goes through its
// sidecar to the app; the app finishes it, and the sidecar, which stops
// after the app, passes the answer on.
func expectInFlightKept(t *testing.T) {
	var name, ip string
	for name, ip = range apiPods(t) {
		break
	}
	type result struct {
		answers []answer
		err     error
	}
	done := make(chan result, 1)
	go func() {
		a, err := clientRun("http://"+ip+":8000/?sleep=4s", "tenant-in-flight", 1, false)
		done <- result{a, err}
	}()
	time.Sleep(time.Second)
	kubectl(t, "-n", appNS, "delete", "pod", name, "--wait=false")
	r := <-done
	if r.err != nil {
		t.Fatal(r.err)
	}
	if got := r.answers[0]; got.Status != 200 || got.Header["X-RateLimit-Limit"] != "7" {
		t.Fatalf("the request in flight when its pod was deleted: %+v", got)
	}
	kubectl(t, "-n", appNS, "rollout", "status", "deployment/api", "--timeout="+rolloutTimeout)
}

// expectStartDuringOutage starts a pod while Redis is down. Its sidecar
// enforces the copy of the config the manager keeps in the namespace's
// ConfigMap, so the pod is Ready within 15 s of its app's start; the
// per-tenant policy (Open) passes, the metered quota (Closed) answers 503
// with Retry-After. When Redis is back, the quota counts on from what was
// used. (Before, the pod stayed unready until Redis came back.)
func expectStartDuringOutage(t *testing.T) {
	kubectl(t, "-n", operatorNS, "scale", "statefulset/"+redisSts, "--replicas=0")
	kubectl(t, "-n", operatorNS, "wait", "--for=delete", "pod", "-l", "app.kubernetes.io/name="+redisSts, "--timeout=60s")
	before := apiPods(t)
	kubectl(t, "-n", appNS, "scale", "deployment/api", "--replicas=3")
	var fresh string
	localtest.WaitFor(t, 60*time.Second, "a new pod with its app started", func() error {
		for name := range apiPods(t) {
			if _, old := before[name]; !old && containerStarted(t, name, "app") {
				fresh = name
				return nil
			}
		}
		return errors.New("none yet")
	})
	kubectl(t, "-n", appNS, "wait", "--for=condition=Ready", "pod/"+fresh, "--timeout=15s")
	base := "http://" + apiPods(t)[fresh] + ":8000/"
	if got, err := clientRun(base, "outage-open", 1, false); err != nil || got[0].Status != 200 {
		t.Fatalf("the Open policy through the new pod during the outage: %+v, %v", got, err)
	}
	got, err := clientRunHeader(base+"metered", "X-Api-Key=sk-kept", 1, false)
	if err != nil || got[0].Status != 503 || got[0].Header["Retry-After"] == "" {
		t.Fatalf("the Closed quota through the new pod during the outage: %+v, %v; want 503 with Retry-After", got, err)
	}
	kubectl(t, "-n", operatorNS, "scale", "statefulset/"+redisSts, "--replicas=1")
	kubectl(t, "-n", operatorNS, "rollout", "status", "statefulset/"+redisSts, "--timeout="+rolloutTimeout)
	meteredAnswer(t, "sk-kept", "990")
	kubectl(t, "-n", appNS, "scale", "deployment/api", "--replicas=2")
}

func containerStarted(t *testing.T, pod, container string) bool {
	t.Helper()
	out, err := run("-n", appNS, "get", "pod", pod, "-o",
		`jsonpath={.status.containerStatuses[?(@.name=="`+container+`")].started}`)
	return err == nil && out == "true"
}

func podCondition(t *testing.T, ns, pod, condition string) string {
	t.Helper()
	return kubectl(t, "-n", ns, "get", "pod", pod, "-o", `jsonpath={.status.conditions[?(@.type=="`+condition+`")].status}`)
}

// deployOperator installs config/default as the README says, with `make
// deploy` (which sets the images in a kustomization of its own on top, as
// GitOps users do with `images:`).
func deployOperator(t *testing.T) {
	// What an earlier run on this cluster may have left.
	cleanup(t)
	if out, err := makeTarget("deploy", "IMG="+env.img, "REDIS_IMG="+env.redisImg); err != nil {
		t.Fatalf("make deploy: %v\n%s", err, out)
	}
	t.Cleanup(func() { cleanup(t) })
	kubectl(t, "-n", operatorNS, "rollout", "status", "statefulset/"+redisSts, "--timeout="+rolloutTimeout)
	kubectl(t, "-n", operatorNS, "rollout", "status", "deployment/"+managerDeploy, "--timeout="+rolloutTimeout)
	kubectl(t, "-n", operatorNS, "wait", "--for=condition=Available", "deployment/"+managerDeploy, "--timeout=60s")
	if got := kubectl(t, "-n", operatorNS, "get", "deployment", managerDeploy, "-o", "jsonpath={.status.readyReplicas}"); got != "2" {
		t.Fatalf("ready replicas: %q, want 2", got)
	}
	sa := kubectl(t, "-n", operatorNS, "get", "pods", "-l", "control-plane=controller-manager",
		"-o", "jsonpath={range .items[*]}{.spec.serviceAccountName}{\" \"}{.spec.containers[0].image}{\"\\n\"}{end}")
	for _, line := range strings.Split(sa, "\n") {
		if line != "quota-operator-controller-manager "+env.img {
			t.Fatalf("manager pod runs as/with %q, want its own ServiceAccount and %s", line, env.img)
		}
	}
	localtest.WaitFor(t, 60*time.Second, "a leader", func() error {
		if leader(t) == "" {
			return fmt.Errorf("lease %s has no holder", leaseName)
		}
		return nil
	})
}

// makeTarget runs make in the module root, with kubectl pointed at the
// cluster.
func makeTarget(target string, vars ...string) (string, error) {
	args := append([]string{"-C", kubeenv.ModuleRoot(), "--no-print-directory", target,
		"KUBECTL=" + env.kubectl + " --kubeconfig=" + env.kubeconfig}, vars...)
	out, err := exec.Command("make", args...).CombinedOutput()
	return string(out), err
}

// cleanup removes what the test made, namespaces first so the manager is
// still there to take its finalizers off the policies.
func cleanup(t *testing.T) {
	removeWorkload(t)
	if out, err := makeTarget("undeploy"); err != nil {
		t.Logf("make undeploy: %v\n%s", err, out)
	}
	recycleVolumes(t)
}

// recycleVolumes empties the node's volumes that an uninstalled Redis
// released and makes them available again, as a cluster's provisioner
// would delete them and make new ones: the test installs Redis several
// times (with overlays/redis-ha, six claims), more than hack/cluster.sh's
// volumes would hold once each.
func recycleVolumes(t *testing.T) {
	localtest.WaitFor(t, 60*time.Second, "the operator's volumes released", func() error {
		out, err := run("get", "pv", "-l", "quotaops.dev/volume=local", "-o",
			`jsonpath={range .items[?(@.status.phase=="Bound")]}{.spec.claimRef.namespace}{"\n"}{end}`)
		if err != nil || strings.Contains(out, operatorNS) || strings.Contains(out, platformNS) {
			return fmt.Errorf("bound to claims of %s or %s: %w", operatorNS, platformNS, err)
		}
		return nil
	})
	out := kubectl(t, "get", "pv", "-l", "quotaops.dev/volume=local", "-o",
		`jsonpath={range .items[?(@.status.phase=="Released")]}{.metadata.name} {.spec.local.path}{"\n"}{end}`)
	for _, line := range strings.Split(out, "\n") {
		name, dir, ok := strings.Cut(line, " ")
		if !ok {
			continue
		}
		entries, err := os.ReadDir(dir)
		if err != nil {
			t.Fatalf("volume %s: %v", name, err)
		}
		for _, e := range entries {
			if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
				t.Fatal(err)
			}
		}
		kubectl(t, "patch", "pv", name, "--type=json", `-p=[{"op":"remove","path":"/spec/claimRef"}]`)
	}
}

func prefixed(prefix string, names []string) []string {
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = prefix + n
	}
	return out
}

// deployWorkload runs the app in a namespace opted into injection, behind a
// Service pointed at the sidecar, and a client pod in a namespace that is
// not opted in.
func deployWorkload(t *testing.T) {
	kubectl(t, "create", "namespace", appNS)
	kubectl(t, "label", "namespace", appNS, "quotaops.dev/inject=enabled")
	kubectl(t, "create", "namespace", clientNS)
	dropPageCache(t)
	applyYAML(t, fmt.Sprintf(workloadYAML, appNS, env.testappImg, appNS, clientNS, env.testappImg))
	kubectl(t, "-n", appNS, "rollout", "status", "deployment/api", "--timeout="+rolloutTimeout)
	kubectl(t, "-n", clientNS, "wait", "--for=condition=Ready", "pod/client", "--timeout="+rolloutTimeout)
	expectInjected(t)
}

const workloadYAML = `
apiVersion: apps/v1
kind: Deployment
metadata: {name: api, namespace: %s}
spec:
  replicas: 2
  selector: {matchLabels: {app: demo-api}}
  template:
    metadata: {labels: {app: demo-api}}
    spec:
      containers:
        - name: app
          image: %s
          args: [serve, --listen=:8080]
          ports: [{name: http, containerPort: 8080}]
          securityContext: {runAsNonRoot: true, runAsUser: 65532}
---
# The Service targets the app's port by name, as it did before the app
# opted in: the sidecar takes that name, so traffic goes through it.
apiVersion: v1
kind: Service
metadata: {name: api, namespace: %s}
spec:
  selector: {app: demo-api}
  ports: [{name: http, port: 80, targetPort: http}]
---
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: %s}
spec:
  containers:
    - name: client
      image: %s
      args: [serve, --listen=:8080]
      securityContext: {runAsNonRoot: true, runAsUser: 65532}
`

// expectInjected: every pod of the workload runs the native sidecar the
// API server had the webhook add, under the app port's name, and the
// namespace got the store Secret.
func expectInjected(t *testing.T) {
	t.Helper()
	out := kubectl(t, "-n", appNS, "get", "pods", "-l", "app=demo-api", "--field-selector=status.phase=Running",
		"-o", `jsonpath={range .items[*]}{.metadata.name}: init {.spec.initContainers[*].name} {.spec.initContainers[*].restartPolicy}`+
			` {.spec.initContainers[*].ports[0].name}, containers {.spec.containers[*].name} {.spec.containers[0].ports[0].name}{"\n"}{end}`)
	for _, line := range strings.Split(out, "\n") {
		_, got, _ := strings.Cut(line, ": ")
		if want := "init " + webhook.ContainerName + " Always http, containers app " + webhook.AppPortName; got != want {
			t.Fatalf("pod %q, want %q", line, want)
		}
	}
	kubectl(t, "-n", appNS, "get", "secret", storeSecret)
}

// restartWorkload restarts the workload's pods, waits until the old ones
// are gone and the new ones injected, and returns the first answer the new
// ones give tenant: until kube-proxy drops the old pods' addresses, a
// connection may still go to one and time out; only an answer tells of
// counters.
func restartWorkload(t *testing.T, tenant string) answer {
	t.Helper()
	old := strings.Fields(kubectl(t, "-n", appNS, "get", "pods", "-l", "app=demo-api", "-o", "jsonpath={.items[*].metadata.name}"))
	kubectl(t, "-n", appNS, "rollout", "restart", "deployment/api")
	kubectl(t, "-n", appNS, "rollout", "status", "deployment/api", "--timeout="+rolloutTimeout)
	kubectl(t, append([]string{"-n", appNS, "wait", "--for=delete", "--timeout=60s"}, prefixed("pod/", old)...)...)
	expectInjected(t)
	var got answer
	localtest.WaitFor(t, 30*time.Second, "an answer from the new pods", func() error {
		if got = clientGet(t, tenant, 1)[0]; got.Error != "" {
			return errors.New(got.Error)
		}
		return nil
	})
	return got
}

func applyPolicy(t *testing.T, limit int) {
	t.Helper()
	applyYAML(t, fmt.Sprintf(`
apiVersion: policy.quotaops.dev/v1alpha1
kind: RateLimitPolicy
metadata: {name: per-tenant, namespace: %s}
spec:
  selector: {matchLabels: {app: demo-api}}
  limits:
    - name: per-tenant
      key: [{source: Header, name: %s}]
      algorithm: TokenBucket
      rates: [{limit: %d, window: 24h}]
`, appNS, tenantHeader, limit))
	expectLimit(t, limit, 30*time.Second)
}

// expectLimit waits until the workload answers with the limit six times
// in a row (each a new connection, so both pods answer), asking as tenants
// of its own so no counter of the test moves.
func expectLimit(t *testing.T, limit int, within time.Duration) {
	t.Helper()
	probe, inARow := 0, 0
	localtest.WaitFor(t, within, fmt.Sprintf("limit %d in force", limit), func() error {
		probe++
		got := clientGet(t, fmt.Sprintf("probe-%d-%d", limit, probe), 1)[0]
		if got.Header["X-RateLimit-Limit"] != strconv.Itoa(limit) {
			inARow = 0
			return fmt.Errorf("%+v", got)
		}
		if inARow++; inARow < 6 {
			return fmt.Errorf("%d answers in a row so far", inARow)
		}
		return nil
	})
}

// expectExactly: a fresh tenant gets n answers of 200, counting down, and
// then 429 with every rate-limit header.
func expectExactly(t *testing.T, tenant string, n int) {
	t.Helper()
	answers := clientGet(t, tenant, n+1)
	for i, a := range answers[:n] {
		if a.Status != 200 || a.Header["X-RateLimit-Remaining"] != strconv.Itoa(n-1-i) {
			t.Fatalf("%s, request %d of %d: %+v", tenant, i+1, n, a)
		}
	}
	denied := answers[n]
	h := denied.Header
	wantPolicy := fmt.Sprintf(`"per-tenant";q=%d;w=86400`, n)
	if denied.Status != 429 || h["X-RateLimit-Limit"] != strconv.Itoa(n) || h["X-RateLimit-Remaining"] != "0" ||
		h["Retry-After"] == "" || h["RateLimit-Policy"] != wantPolicy {
		t.Fatalf("%s, request %d: %+v; want 429, limit %d, remaining 0, Retry-After and RateLimit-Policy %s",
			tenant, n+1, denied, n, wantPolicy)
	}
}

// answer is one line of `testapp get`.
type answer struct {
	Status int               `json:"status"`
	Header map[string]string `json:"header"`
	Body   string            `json:"body"`
	Error  string            `json:"error"`
	Millis int64             `json:"ms"`
}

// clientGet sends n requests as tenant from the client pod through the
// workload's Service.
func clientGet(t *testing.T, tenant string, n int) []answer {
	t.Helper()
	return clientGetURL(t, workloadURL, tenant, n, false)
}

// clientGetURL sends n requests to url from the client pod, as tenant when
// one is given.
func clientGetURL(t *testing.T, url, tenant string, n int, body bool) []answer {
	t.Helper()
	answers, err := clientRun(url, tenant, n, body)
	if err != nil {
		t.Fatal(err)
	}
	return answers
}

// clientRun is clientGetURL for any goroutine: it returns its error.
func clientRun(url, tenant string, n int, body bool) ([]answer, error) {
	header := ""
	if tenant != "" {
		header = tenantHeader + "=" + tenant
	}
	return clientRunHeader(url, header, n, body)
}

// clientRunHeader is clientRun with any one header, K=V, and more of
// testapp get's flags.
func clientRunHeader(url, header string, n int, body bool, flags ...string) ([]answer, error) {
	args := []string{"-n", clientNS, "exec", "client", "--", "/testapp", "get", "--url=" + url, "--n=" + strconv.Itoa(n),
		"--body=" + strconv.FormatBool(body)}
	args = append(args, flags...)
	if header != "" {
		args = append(args, "--header="+header)
	}
	out, err := run(args...)
	if err != nil {
		return nil, fmt.Errorf("kubectl %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	var answers []answer
	dec := json.NewDecoder(strings.NewReader(out))
	for dec.More() {
		var a answer
		if err := dec.Decode(&a); err != nil {
			return nil, fmt.Errorf("client output %q: %w", out, err)
		}
		answers = append(answers, a)
	}
	if len(answers) != n {
		return nil, fmt.Errorf("%d answers, want %d: %s", len(answers), n, out)
	}
	return answers, nil
}

// leader is the pod holding the leader lease ("" when none).
func leader(t *testing.T) string {
	t.Helper()
	holder, err := run("-n", operatorNS, "get", "lease", leaseName, "-o", "jsonpath={.spec.holderIdentity}")
	if err != nil {
		return ""
	}
	pod, _, _ := strings.Cut(holder, "_")
	return pod
}

// expectLeaderFailover deletes the leader's pod; the other replica must
// take the lease and reconcile: a changed policy is enforced after.
func expectLeaderFailover(t *testing.T) {
	// Its log goes with its pod.
	expectNothingForbidden(t)
	old := leader(t)
	kubectl(t, "-n", operatorNS, "delete", "pod", old, "--wait=false")
	deleted := time.Now()
	// Sidecars enforce on their own while no manager leads.
	if got := clientGet(t, "tenant-a", 1)[0]; got.Status != 429 {
		t.Fatalf("tenant-a while the leader goes: %+v, want 429", got)
	}
	localtest.WaitFor(t, 90*time.Second, "a new leader", func() error {
		if now := leader(t); now == "" || now == old {
			return fmt.Errorf("leader %q", now)
		}
		return nil
	})
	t.Logf("a new leader %v after the leader's pod was deleted", time.Since(deleted).Round(10*time.Millisecond))
	applyPolicy(t, 7)
	expectExactly(t, "tenant-b", 7)
	kubectl(t, "-n", operatorNS, "rollout", "status", "deployment/"+managerDeploy, "--timeout="+rolloutTimeout)
}

// expectUsageKeptAcrossRedisRestarts: 7 of a monthly quota are used
// through a sidecar; the Redis pod is deleted, then its redis-server
// killed (SIGKILL, from the node). Each time Redis comes back from its
// volume: kubectl get uq still shows the usage, the next request's headers
// count on from it, and the manager reports no loss. (Before, Redis kept
// nothing: usage started again from 0.)
func expectUsageKeptAcrossRedisRestarts(t *testing.T) {
	applyYAML(t, fmt.Sprintf(meteredQuota, appNS, 1000))
	meteredAnswer(t, "probe-0", "999") // in force; 1 used by the probe
	for i := range 7 {
		if got := meteredGet(t, "sk-kept"); got.Status != 200 || got.Header["X-RateLimit-Remaining"] != strconv.Itoa(999-i) {
			t.Fatalf("request %d of the quota: %+v", i+1, got)
		}
	}
	expectUsed(t, 8) // kubectl shows what every subject used

	old := redisPod(t)
	oldUID := kubectl(t, "-n", operatorNS, "get", "pod", old, "-o", "jsonpath={.metadata.uid}")
	kubectl(t, "-n", operatorNS, "delete", "pod", old)
	pod := newRedisPodReady(t, oldUID)
	expectConfigInRedis(t, pod)
	expectUsed(t, 8)
	if got := meteredAnswer(t, "sk-kept", "992"); got.Status != 200 {
		t.Fatalf("the first request after the pod was deleted: %+v", got)
	}

	// No increment in the last second: the append-only file, fsynced every
	// second, holds every one.
	time.Sleep(1500 * time.Millisecond)
	restarts := redisRestarts(t, pod)
	killOnNode(t, pod, "redis-server")
	localtest.WaitFor(t, 60*time.Second, "redis-server restarted in its pod", func() error {
		if n := redisRestarts(t, pod); n <= restarts {
			return fmt.Errorf("%d restarts", n)
		}
		if podCondition(t, operatorNS, pod, "Ready") != "True" {
			return errors.New("not Ready")
		}
		return nil
	})
	expectUsed(t, 9)
	if got := meteredAnswer(t, "sk-kept", "991"); got.Status != 200 {
		t.Fatalf("the first request after redis-server was killed: %+v", got)
	}
	if out := kubectl(t, "-n", appNS, "get", "events", "--field-selector=reason=CountersLost", "-o", "name"); out != "" {
		t.Fatalf("the manager reported a loss after restarts that kept the data: %s", out)
	}
}

const meteredQuota = `
apiVersion: policy.quotaops.dev/v1alpha1
kind: UsageQuota
metadata: {name: metered, namespace: %s}
spec:
  selector: {matchLabels: {app: demo-api}}
  subject: {source: Header, name: X-Api-Key}
  match: {pathPrefix: /metered}
  failurePolicy: Closed
  limit: %d
  period: Month
  timeZone: Europe/Berlin
`

// meteredGet sends one request of the quota as the API key key.
func meteredGet(t *testing.T, key string) answer {
	t.Helper()
	answers, err := clientRunHeader(workloadURL+"metered", "X-Api-Key="+key, 1, false)
	if err != nil {
		t.Fatal(err)
	}
	return answers[0]
}

// meteredAnswer retries until a request of the quota is decided (a
// sidecar whose connection to Redis went away may answer before it is
// back, by its failure policy, without headers) and expects the first
// decided one to leave remaining.
func meteredAnswer(t *testing.T, key, remaining string) answer {
	t.Helper()
	var got answer
	localtest.WaitFor(t, 60*time.Second, "a decided request of the quota", func() error {
		if got = meteredGet(t, key); got.Header["X-RateLimit-Limit"] != "1000" {
			return fmt.Errorf("%+v", got)
		}
		return nil
	})
	if got.Header["X-RateLimit-Remaining"] != remaining {
		t.Fatalf("%s: %+v; want %s remaining of 1000", key, got, remaining)
	}
	return got
}

// expectUsed waits until kubectl get uq shows used, the units every
// subject of the quota used, read from the store.
func expectUsed(t *testing.T, used int) {
	t.Helper()
	localtest.WaitFor(t, 60*time.Second, fmt.Sprintf("kubectl get uq showing %d used", used), func() error {
		out, err := run("-n", appNS, "get", "uq", "metered", "--no-headers", "-o", "custom-columns=USED:.status.usage.consumed,REPORTED:.status.conditions[?(@.type==\"UsageReported\")].reason")
		if err != nil {
			return err
		}
		if f := strings.Fields(out); len(f) != 2 || f[0] != strconv.Itoa(used) || f[1] != "FromStore" {
			return fmt.Errorf("used, reported: %q", out)
		}
		return nil
	})
}

func redisPod(t *testing.T) string {
	t.Helper()
	return kubectl(t, "-n", operatorNS, "get", "pods", "-l", "app.kubernetes.io/name="+redisSts, "-o", "jsonpath={.items[0].metadata.name}")
}

// newRedisPodReady waits for a Redis pod other than the one of oldUID
// (the StatefulSet gives the new one the old one's name) to be Ready.
func newRedisPodReady(t *testing.T, oldUID string) string {
	t.Helper()
	var pod string
	localtest.WaitFor(t, 120*time.Second, "a new Redis pod Ready", func() error {
		out, err := run("-n", operatorNS, "get", "pods", "-l", "app.kubernetes.io/name="+redisSts,
			"-o", `jsonpath={range .items[*]}{.metadata.name} {.metadata.uid} {.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}`)
		if err != nil {
			return err
		}
		for _, line := range strings.Split(out, "\n") {
			if f := strings.Fields(line); len(f) == 3 && f[1] != oldUID && f[2] == "True" {
				pod = f[0]
				return nil
			}
		}
		return fmt.Errorf("pods: %q", out)
	})
	return pod
}

// expectConfigInRedis: the namespace's config is in the new Redis.
func expectConfigInRedis(t *testing.T, pod string) {
	t.Helper()
	key := "qo:v1:config:{" + appNS + "}:docs"
	localtest.WaitFor(t, 10*time.Second, "config in Redis", func() error {
		out, err := redisCLI(t, pod, "HEXISTS", key, "RateLimitPolicy/per-tenant")
		if err != nil || out != "1" {
			return fmt.Errorf("HEXISTS %s: %q: %w", key, out, err)
		}
		return nil
	})
}

func redisRestarts(t *testing.T, pod string) int {
	t.Helper()
	n, _ := strconv.Atoi(kubectl(t, "-n", operatorNS, "get", "pod", pod, "-o", `jsonpath={.status.containerStatuses[?(@.name=="redis")].restartCount}`))
	return n
}

// killOnNode sends SIGKILL to the pod's process named name, from the node
// (this machine): a container cannot kill its own PID 1, and the image
// has no kill.
func killOnNode(t *testing.T, pod, name string) {
	t.Helper()
	uid := kubectl(t, "-n", operatorNS, "get", "pod", pod, "-o", "jsonpath={.metadata.uid}")
	for pid := range nodeProcesses(t, name, uid) {
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		return
	}
	t.Fatalf("no %s process of pod %s on this node", name, pod)
}

// expectEnforcedByPods: both pods of the workload report, through Redis,
// that they enforce the policy's generation, and kubectl shows it.
func expectEnforcedByPods(t *testing.T) {
	localtest.WaitFor(t, 30*time.Second, "the policy enforced by 2/2 pods", func() error {
		out, err := run("-n", appNS, "get", "rlp", "per-tenant")
		if err != nil {
			return err
		}
		if !regexp.MustCompile(`(?m)^per-tenant\s.*\sTrue\s+True\s+2/2\s`).MatchString(out) {
			return errors.New(out)
		}
		return nil
	})
	msg := kubectl(t, "-n", appNS, "get", "rlp", "per-tenant", "-o", `jsonpath={.status.conditions[?(@.type=="Enforced")].message}`)
	if msg != "2/2 selected pods enforce generation 1" {
		t.Fatalf("Enforced: %q", msg)
	}
}

// expectTenantUser: Redis lists the sidecars' connections under the
// namespace's own user, whose name the namespace's Secret holds, and that
// user may not reach another namespace's keys.
func expectTenantUser(t *testing.T) {
	user := kubectl(t, "-n", appNS, "get", "secret", storeSecret, "-o", "jsonpath={.data.username}")
	if raw, _ := base64.StdEncoding.DecodeString(user); string(raw) != "quota-ns-"+appNS {
		t.Fatalf("the Secret names user %q", raw)
	}
	pod := kubectl(t, "-n", operatorNS, "get", "pods", "-l", "app.kubernetes.io/name="+redisSts, "-o", "jsonpath={.items[0].metadata.name}")
	clients, err := redisCLI(t, pod, "CLIENT", "LIST")
	if err != nil || !strings.Contains(clients, " user=quota-ns-"+appNS+" ") {
		t.Fatalf("no client of user quota-ns-%s: %v\n%s", appNS, err, clients)
	}
	perms, err := redisCLI(t, pod, "ACL", "DRYRUN", "quota-ns-"+appNS, "GET", "qo:v1:app:{kube-system/k}")
	if err != nil || !strings.Contains(perms, "no permissions to access the 'qo:v1:app:{kube-system/k}' key") {
		t.Fatalf("ACL DRYRUN of another namespace's key: %v: %q", err, perms)
	}
}

func redisCLI(t *testing.T, pod string, args ...string) (string, error) {
	t.Helper()
	return run(append([]string{"-n", operatorNS, "exec", pod, "-c", "redis", "--", "/usr/local/bin/redis-cli",
		"--no-auth-warning", "--user", "default", "--pass", redisPassword(t)}, args...)...)
}

// redisPassword is the admin password of the bundled Redis (and of its
// Sentinels), from the Secret the manager generated.
func redisPassword(t *testing.T) string {
	t.Helper()
	enc := kubectl(t, "-n", operatorNS, "get", "secret", "quota-operator-redis", "-o", "jsonpath={.data.password}")
	password, err := base64.StdEncoding.DecodeString(enc)
	if err != nil {
		t.Fatal(err)
	}
	return string(password)
}

// expectPluginCheck: a support user bound to the usage viewer role in the
// workload's namespace sees, with kubectl quota, that tenant-d used all 7
// of its requests, consuming nothing: the plugin asks with a QuotaQuery,
// which the manager answers under its own ServiceAccount's RBAC. Hashing the subject needs the
// install's subject key, which the platform team hands over as a file:
// the support user may read no Secret, and without the key is refused.
func expectPluginCheck(t *testing.T) {
	kubectl(t, "-n", appNS, "create", "rolebinding", "support-usage", "--clusterrole=quota-operator-usage-viewer", "--user=support-sam")
	defer func() { _, _ = run("-n", appNS, "delete", "rolebinding", "support-usage") }()
	bin := filepath.Join(t.TempDir(), "kubectl-quota")
	build := exec.Command("go", "build", "-o", bin, "./cmd/kubectl-quota")
	build.Dir = kubeenv.ModuleRoot()
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	check := []string{"--kubeconfig", env.kubeconfig, "--as", "support-sam", "-n", appNS,
		"check", "rlp/per-tenant", "--limit", "per-tenant", "--subject", "tenant-d"}
	out, err := exec.Command(bin, check...).CombinedOutput()
	if want := "hashing a subject needs the install's subject key, from the Secret " + appNS + "/quota-operator-store"; err == nil || !strings.Contains(string(out), want) {
		t.Fatalf("kubectl quota check without the subject key: %v\n%s\nwant %q", err, out, want)
	}
	key, err := base64.StdEncoding.DecodeString(kubectl(t, "-n", operatorNS, "get", "secret", "quota-operator-subject-key", "-o", "jsonpath={.data.subject-key}"))
	keyFile := filepath.Join(t.TempDir(), "subject-key")
	if err == nil {
		err = os.WriteFile(keyFile, key, 0o600)
	}
	if err != nil || len(key) != 64 {
		t.Fatalf("the install's subject key (%d bytes): %v", len(key), err)
	}
	for range 2 { // twice: the first check consumed nothing
		out, err := exec.Command(bin, append(check, "--subject-key-file", keyFile)...).CombinedOutput()
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		if err != nil || len(lines) != 3 || lines[0] != "Denied: a request now would get 429 Too Many Requests (nothing was consumed)" {
			t.Fatalf("kubectl quota check: %v\n%s", err, out)
		}
		if row := strings.Fields(lines[2]); len(row) != 7 || strings.Join(row[:6], " ") != "ratelimitpolicy/per-tenant per-tenant 24h 7/7 0 false" {
			t.Fatalf("kubectl quota check row: %q", lines[2])
		}
	}
}

// expectLeastPrivilege: nothing the manager did was refused, and its
// ServiceAccount can neither list nor read Secrets across the cluster.
func expectLeastPrivilege(t *testing.T) {
	expectNothingForbidden(t)
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"list", "secrets", "--all-namespaces"}, "no"},
		{[]string{"watch", "secrets", "--all-namespaces"}, "no"},
		{[]string{"get", "secrets", "--all-namespaces"}, "no"},
		{[]string{"get", "secrets/someone-elses", "-n", appNS}, "no"},
		{[]string{"list", "secrets", "-n", operatorNS}, "no"},
		{[]string{"get", "secrets/" + storeSecret, "-n", appNS}, "yes"},
		{[]string{"update", "mutatingwebhookconfigurations/someone-elses"}, "no"},
		{[]string{"update", "mutatingwebhookconfigurations/quota-operator-mutating-webhook-configuration"}, "yes"},
		{[]string{"delete", "apiservices/v1alpha1.usage.quotaops.dev"}, "yes"},
		{[]string{"delete", "apiservices/v1.apps"}, "no"},
		{[]string{"update", "apiservices/v1alpha1.usage.quotaops.dev"}, "no"},
		{[]string{"get", "configmaps/extension-apiserver-authentication", "-n", "kube-system"}, "no"},
	} {
		t.Run(strings.Join(c.args, " "), func(t *testing.T) {
			out, _ := run(append([]string{"auth", "can-i", "--as=" + managerSA}, c.args...)...)
			if out != c.want {
				t.Fatalf("can-i %v: %q, want %q", c.args, out, c.want)
			}
		})
	}
	t.Run("a token Secret or another name is refused by the admission policy", expectSecretsFenced)
}

// expectSecretsFenced: RBAC lets the manager create Secrets anywhere (can-i
// says yes), and the shipped ValidatingAdmissionPolicy refuses, in a real
// create as its service account, a service-account token for coredns in
// kube-system and a Secret of another name: the review's way to a token.
func expectSecretsFenced(t *testing.T) {
	if out, _ := run("auth", "can-i", "--as="+managerSA, "create", "secrets", "-n", "kube-system"); out != "yes" {
		t.Fatalf("can-i create secrets -n kube-system: %q; RBAC cannot bound a create, so want yes", out)
	}
	for name, doc := range map[string]string{
		"not kubernetes.io/service-account-token": `{"apiVersion":"v1","kind":"Secret","metadata":{"name":"` + storeSecret +
			`","namespace":"kube-system","labels":{"app.kubernetes.io/managed-by":"quota-operator"},"annotations":{"kubernetes.io/service-account.name":"coredns"}},"type":"kubernetes.io/service-account-token"}`,
		"quota-operator-subject-key, not someone-elses": `{"apiVersion":"v1","kind":"Secret","metadata":{"name":"someone-elses",` +
			`"namespace":"kube-system","labels":{"app.kubernetes.io/managed-by":"quota-operator"}},"type":"Opaque"}`,
	} {
		out, err := runStdin(doc, "create", "--as="+managerSA, "-f", "-")
		if err == nil || !strings.Contains(err.Error(), "Forbidden") || !strings.Contains(err.Error(), name) {
			t.Fatalf("create as the manager: %v\n%s\nwant refused: %s", err, out, name)
		}
	}
}

// expectNothingForbidden: no manager log line says the API server refused
// it something.
func expectNothingForbidden(t *testing.T) {
	t.Helper()
	logs := kubectl(t, "-n", operatorNS, "logs", "-l", "control-plane=controller-manager", "--tail=-1", "--prefix")
	var refused []string
	for _, line := range strings.Split(logs, "\n") {
		if strings.Contains(strings.ToLower(line), "forbidden") {
			refused = append(refused, line)
		}
	}
	if len(refused) > 0 {
		t.Fatalf("the manager was refused something:\n%s", strings.Join(refused, "\n"))
	}
}

func applyYAML(t *testing.T, doc string) {
	t.Helper()
	file := filepath.Join(t.TempDir(), "objects.yaml")
	writeFile(t, file, doc)
	kubectl(t, "apply", "-f", file)
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// kubectl runs kubectl as the cluster's admin and fails the test on error.
func kubectl(t *testing.T, args ...string) string {
	t.Helper()
	out, err := run(args...)
	if err != nil {
		t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// run runs kubectl as the cluster's admin and returns its trimmed
// standard output; standard error is in the error.
func run(args ...string) (string, error) { return runStdin("", args...) }

// runStdin is run with stdin as kubectl's standard input.
func runStdin(stdin string, args ...string) (string, error) {
	cmd := exec.Command(env.kubectl, append([]string{"--kubeconfig", env.kubeconfig}, args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		return strings.TrimSpace(out.String()), fmt.Errorf("%w: %s", err, strings.TrimSpace(errOut.String()))
	}
	return strings.TrimSpace(out.String()), nil
}
