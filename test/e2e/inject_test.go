package e2e

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"k8s.io/apimachinery/pkg/types"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	admissionregv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"

	"github.com/redis/go-redis/v9"

	"github.com/quotaops/quota-operator/internal/testutil/bintest"
	"github.com/quotaops/quota-operator/internal/testutil/kubeenv"
	"github.com/quotaops/quota-operator/internal/testutil/localtest"
	"github.com/quotaops/quota-operator/internal/testutil/redistest"
	"github.com/quotaops/quota-operator/internal/webhook"
)

const (
	operatorNS    = "quota-operator-system"
	appNS         = "e2e"
	storePassword = "e2e-pa55word"
)

// The whole path a user takes: the manager, as a process, serves the
// injection webhook with the certificate it made itself; a pod created with
// kubectl comes back with one sidecar, also when another webhook makes the
// API server call ours again; kube-system is left alone; the sidecar then
// runs with exactly the injected container's args and env in front of an
// app, the sample policy applied with kubectl limits it, and deleting the
// policy lifts the limit within a second.
func TestInjectedSidecarEnforcesTheSamplePolicy(t *testing.T) {
	r := redistest.StartOrSkip(t)
	if err := r.Client().ConfigSet(context.Background(), "requirepass", storePassword).Err(); err != nil {
		t.Fatal(err)
	}
	bin, err := bintest.Build()
	if err != nil {
		t.Fatalf("build: %v", err)
	}
	for _, ns := range []string{operatorNS, appNS} {
		ensureNamespace(t, ns)
	}
	kubectl(t, "apply", "-k", filepath.Join(kubeenv.ModuleRoot(), "config", "crd"))
	kubectl(t, "wait", "--for=condition=Established", "--timeout=30s", "crd/ratelimitpolicies.policy.quotaops.dev")
	webhookPort := localtest.FreeAddr(t)
	for _, cfg := range deployedWebhookConfigurations(t, webhookPort) {
		applyObject(t, cfg)
	}
	touches := touchWebhook(t)
	metrics := startManager(t, bin, r.URL, webhookPort, "QUOTA_STORE_PASSWORD="+storePassword)

	expectValidation(t)
	ports := map[string]string{"upstream": localtest.FreeAddr(t), "proxy": localtest.FreeAddr(t), "admin": localtest.FreeAddr(t)}
	pod := expectInjection(t, metrics, touches, ports)
	serveApp(t, ports["upstream"])
	proxy := runInjectedSidecar(t, pod)
	expectTenantCredentials(t, r.Addr)
	kubectl(t, "apply", "-n", appNS, "-f", filepath.Join(kubeenv.ModuleRoot(), "config", "samples", "policy_v1alpha1_ratelimitpolicy_per_ip.yaml"))
	expectSampleLimit(t, proxy)
	// envtest runs no kubelet: mark the pod Running as one would.
	kubectl(t, "patch", "pod", pod.Name, "-n", appNS, "--subresource=status", "--type=merge", "-p", `{"status":{"phase":"Running"}}`)
	expectConditionIn(t, appNS, "ratelimitpolicy/per-ip", "Enforced", "True 1/1 selected pods enforce generation 1")

	start := time.Now()
	kubectl(t, "delete", "-n", appNS, "ratelimitpolicy", "per-ip", "--wait=false")
	for {
		resp := get(t, proxy)
		if resp.StatusCode == http.StatusOK && resp.Header.Get("X-RateLimit-Limit") == "" {
			break
		}
		if time.Since(start) > time.Second {
			t.Fatalf("the limit still holds %v after the policy was deleted: %s %v", time.Since(start), resp.Status, resp.Header)
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Logf("limit lifted %v after kubectl delete started", time.Since(start).Round(time.Millisecond))
}

// expectTenantCredentials: the sidecar ran with its namespace's own user,
// not the admin password, and Redis refuses that user another namespace's
// keys.
func expectTenantCredentials(t *testing.T, addr string) {
	t.Helper()
	user, password := secretValue(t, appNS, "quota-operator-store", "username"), secretValue(t, appNS, "quota-operator-store", "password")
	if user != "quota-ns-"+appNS || password == storePassword || len(password) != 64 {
		t.Fatalf("the Secret in %s names user %q with a password of %d bytes (the admin's: %v)", appNS, user, len(password), password == storePassword)
	}
	c := redis.NewClient(&redis.Options{Addr: addr, Username: user, Password: password, Protocol: 2})
	defer func() { _ = c.Close() }()
	err := c.Get(context.Background(), "qo:v1:app:{e2e-labelled/k}").Err()
	if err == nil || !strings.HasPrefix(err.Error(), "NOPERM") {
		t.Fatalf("%s reading another namespace's key: %v; want NOPERM", user, err)
	}
}

// expectValidation: what CEL cannot check, the manager's validating
// webhook refuses at kubectl apply.
func expectValidation(t *testing.T) {
	t.Helper()
	file := filepath.Join(t.TempDir(), "quota.yaml")
	quota := `{"apiVersion":"policy.quotaops.dev/v1alpha1","kind":"UsageQuota","metadata":{"name":"mars","namespace":"` + appNS + `"},
		"spec":{"selector":{},"subject":{"source":"ClientIP"},"limit":5,"period":"Day","timeZone":"Mars/Olympus_Mons"}}`
	if err := os.WriteFile(file, []byte(quota), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := env.Kubectl("apply", "-f", file)
	// Only the webhook can refuse it: the schema checks the zone's shape.
	want := `The UsageQuota "mars" is invalid: spec.timeZone: Invalid value: "Mars/Olympus_Mons": not an IANA time zone` + "\n"
	if err == nil || out != want {
		t.Fatalf("kubectl apply of an unknown time zone: %v\n%s", err, out)
	}
}

// expectInjection creates the app pod with kubectl and checks what the
// webhook makes of it and of others; it returns the pod as stored.
func expectInjection(t *testing.T, metrics string, touches *atomic.Int32, ports map[string]string) *corev1.Pod {
	t.Helper()
	calls := func() int { return injectorCalls(t, metrics) }
	before := calls()
	pod := createPod(t, appPod("api", appNS, ports))
	if n := sidecarCount(pod); n != 1 {
		t.Fatalf("%d sidecars; want 1", n)
	}
	// Ours, then the touch webhook changed the pod, then ours again.
	if got := calls() - before; got != 2 || touches.Load() != 1 || pod.Labels["e2e.quotaops.dev/touched"] != "yes" {
		t.Fatalf("injection webhook called %d times (want 2), touch webhook %d times (want 1)", got, touches.Load())
	}
	again := appPod("api-again", appNS, ports)
	again.Spec = *pod.Spec.DeepCopy()
	if n := sidecarCount(createPod(t, again)); n != 1 {
		t.Fatalf("created again from its mutated spec: %d sidecars", n)
	}
	if n := sidecarCount(createPod(t, appPod("system", "kube-system", ports))); n != 0 {
		t.Fatalf("a kube-system pod got %d sidecars", n)
	}
	// Pods that did not opt in never reach the webhook, so a manager
	// outage cannot block them; a labelled namespace opts its pods in.
	before = calls()
	if n := sidecarCount(createPod(t, plainPod("plain", appNS))); n != 0 || calls() != before {
		t.Fatalf("a pod that did not opt in: %d sidecars, %d webhook calls", n, calls()-before)
	}
	ensureNamespace(t, "e2e-labelled")
	kubectl(t, "label", "namespace", "e2e-labelled", webhook.LabelInject+"=enabled")
	if n := sidecarCount(createPod(t, plainPod("plain", "e2e-labelled"))); n != 1 {
		t.Fatalf("a pod in a labelled namespace: %d sidecars", n)
	}
	expectLabelledNamespaceKeepsOtherPods(t, calls)
	if strings.Contains(mustJSON(t, pod), storePassword) {
		t.Fatal("the store password is in the pod spec")
	}
	expectInjectTypoRefused(t)
	return pod
}

// expectLabelledNamespaceKeepsOtherPods: in a labelled namespace, a pod
// without an HTTP port is created as it is, with a warning kubectl prints
// and, when a controller owns it, an event on the owner; a pod opted out
// by annotation never reaches the webhook. Before, both were refused ("no
// container port") or, with a TCP port, given a proxy in front of it.
func expectLabelledNamespaceKeepsOtherPods(t *testing.T, calls func() int) {
	t.Helper()
	const warning = "Warning: quota-operator: no sidecar: no HTTP port to put the sidecar in front of"
	kubectl(t, "create", "job", "export", "-n", "e2e-labelled", "--image=app:1")
	jobUID := kubectl(t, "get", "job", "export", "-n", "e2e-labelled", "-o", "jsonpath={.metadata.uid}")
	job := plainPod("export-1", "e2e-labelled")
	job.Spec.Containers[0].Ports = nil
	job.OwnerReferences = []metav1.OwnerReference{{APIVersion: "batch/v1", Kind: "Job", Name: "export", UID: types.UID(jobUID), Controller: ptr.To(true)}}
	db := plainPod("postgres", "e2e-labelled")
	db.Spec.Containers[0].Ports = []corev1.ContainerPort{{Name: "postgres", ContainerPort: 5432}}
	for _, pod := range []*corev1.Pod{job, db} {
		file := filepath.Join(t.TempDir(), "pod.json")
		if err := os.WriteFile(file, []byte(mustJSON(t, pod)), 0o600); err != nil {
			t.Fatal(err)
		}
		out, err := env.Kubectl("create", "-f", file)
		if err != nil || !strings.Contains(out, warning) {
			t.Fatalf("%s in a labelled namespace: %v\n%s\nwant created with %q", pod.Name, err, out, warning)
		}
		var created corev1.Pod
		if err := json.Unmarshal([]byte(kubectl(t, "get", "pod", pod.Name, "-n", "e2e-labelled", "-o", "json")), &created); err != nil {
			t.Fatal(err)
		}
		if n := sidecarCount(&created); n != 0 || portsOf(created) != portsOf(*pod) {
			t.Fatalf("%s: %d sidecars, ports %v; want none and its own ports", pod.Name, n, created.Spec.Containers[0].Ports)
		}
	}
	expectEvent(t, "e2e-labelled", "export", "NoSidecar")
	before := calls()
	out := plainPod("opted-out", "e2e-labelled")
	out.Annotations = map[string]string{webhook.AnnotationInject: "false"}
	if n := sidecarCount(createPod(t, out)); n != 0 || calls() != before {
		t.Fatalf("a pod opted out in a labelled namespace: %d sidecars, %d webhook calls; want none", n, calls()-before)
	}
}

// portsOf names a pod's container ports and their numbers.
func portsOf(pod corev1.Pod) string {
	var b strings.Builder
	for _, c := range pod.Spec.Containers {
		for _, p := range c.Ports {
			fmt.Fprintf(&b, "%s/%s=%d ", c.Name, p.Name, p.ContainerPort)
		}
	}
	return b.String()
}

// expectInjectTypoRefused: a pod annotated inject "True", outside any
// opted-in namespace, reaches the webhook and is refused with the
// annotation named, not silently left without a sidecar.
func expectInjectTypoRefused(t *testing.T) {
	t.Helper()
	typo := plainPod("typo", appNS)
	typo.Annotations = map[string]string{webhook.AnnotationInject: "True"}
	file := filepath.Join(t.TempDir(), "pod.json")
	if err := os.WriteFile(file, []byte(mustJSON(t, typo)), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := env.Kubectl("create", "-f", file)
	want := `annotation quotaops.dev/inject: "True" is neither "true" nor "false"`
	if err == nil || !strings.Contains(out, want) {
		t.Fatalf("a pod annotated inject True: %v\n%s", err, out)
	}
}

// expectSampleLimit: the sample allows 100 requests a minute per client IP.
// Once it is in force, the answers count down to the 429 exactly.
func expectSampleLimit(t *testing.T, proxy string) {
	t.Helper()
	var first answer
	localtest.WaitFor(t, 10*time.Second, "the sample policy in force", func() error {
		first = get(t, proxy)
		if first.Header.Get("X-RateLimit-Limit") != "100" {
			return fmt.Errorf("%s %v", first.Status, first.Header)
		}
		return nil
	})
	if reset, _ := strconv.Atoi(first.Header.Get("X-RateLimit-Reset")); reset < 15 {
		// Too close to the window's end to count in one window: start in
		// the next one.
		time.Sleep(time.Duration(reset+1) * time.Second)
		first = get(t, proxy)
	}
	remaining, err := strconv.Atoi(first.Header.Get("X-RateLimit-Remaining"))
	if err != nil || first.StatusCode != http.StatusOK {
		t.Fatalf("%s %v", first.Status, first.Header)
	}
	for want := remaining - 1; want >= 0; want-- {
		resp := get(t, proxy)
		if resp.StatusCode != http.StatusOK || resp.Header.Get("X-RateLimit-Remaining") != strconv.Itoa(want) {
			t.Fatalf("with %d left: %s, remaining %q", want, resp.Status, resp.Header.Get("X-RateLimit-Remaining"))
		}
	}
	denied := get(t, proxy)
	h := denied.Header
	if denied.StatusCode != http.StatusTooManyRequests || h.Get("X-RateLimit-Limit") != "100" || h.Get("X-RateLimit-Remaining") != "0" ||
		h.Get("Retry-After") == "" || h.Get("Retry-After") != h.Get("X-RateLimit-Reset") ||
		h.Get("RateLimit-Policy") != `"per-ip";q=100;w=60` {
		t.Fatalf("the 101st request: %s %v", denied.Status, h)
	}
}

// deployedWebhookConfigurations are config/default's webhook
// configurations, pointed at the manager on this machine instead of its
// Service: envtest runs no Service network. Both kinds have the same
// webhooks[].clientConfig, so one loop serves them.
func deployedWebhookConfigurations(t *testing.T, addr string) []any {
	t.Helper()
	built := kubectl(t, "kustomize", filepath.Join(kubeenv.ModuleRoot(), "config", "default"))
	var out []any
	for _, doc := range strings.Split(built, "\n---\n") {
		var cfg map[string]any
		if err := yaml.Unmarshal([]byte(doc), &cfg); err != nil {
			t.Fatal(err)
		}
		if kind, _ := cfg["kind"].(string); !strings.HasSuffix(kind, "WebhookConfiguration") {
			continue
		}
		hooks, _ := cfg["webhooks"].([]any)
		for _, h := range hooks {
			hook, _ := h.(map[string]any)
			path, found, err := unstructured.NestedString(hook, "clientConfig", "service", "path")
			if !found || err != nil {
				t.Fatalf("webhook %v has no service path", hook["name"])
			}
			hook["clientConfig"] = map[string]any{"url": "https://" + addr + path}
		}
		out = append(out, cfg)
	}
	if len(out) != 2 {
		t.Fatalf("config/default has %d webhook configurations; want 2", len(out))
	}
	return out
}

// touchWebhook serves a second mutating webhook, called after ours, that
// labels pods in appNS once: the API server then calls ours again
// (reinvocationPolicy IfNeeded). It counts its calls.
func touchWebhook(t *testing.T) *atomic.Int32 {
	t.Helper()
	var calls atomic.Int32
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		var review admissionv1.AdmissionReview
		if err := json.NewDecoder(r.Body).Decode(&review); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		patch := `[{"op":"add","path":"/metadata/labels/e2e.quotaops.dev~1touched","value":"yes"}]`
		review.Response = &admissionv1.AdmissionResponse{UID: review.Request.UID, Allowed: true,
			Patch: []byte(patch), PatchType: ptr.To(admissionv1.PatchTypeJSONPatch)}
		review.Request = nil
		_ = json.NewEncoder(w).Encode(&review)
	}))
	t.Cleanup(srv.Close)
	applyObject(t, &admissionregv1.MutatingWebhookConfiguration{
		TypeMeta:   metav1.TypeMeta{APIVersion: "admissionregistration.k8s.io/v1", Kind: "MutatingWebhookConfiguration"},
		ObjectMeta: metav1.ObjectMeta{Name: "zz-e2e-touch"},
		Webhooks: []admissionregv1.MutatingWebhook{{
			Name: "touch.e2e.quotaops.dev", AdmissionReviewVersions: []string{"v1"},
			SideEffects: ptr.To(admissionregv1.SideEffectClassNone),
			ClientConfig: admissionregv1.WebhookClientConfig{URL: ptr.To(srv.URL + "/touch"),
				CABundle: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})},
			Rules: []admissionregv1.RuleWithOperations{{Operations: []admissionregv1.OperationType{admissionregv1.Create},
				Rule: admissionregv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"}}}},
			NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": appNS}},
			ObjectSelector:    &metav1.LabelSelector{MatchLabels: map[string]string{"app": "demo-api"}},
		}},
	})
	return &calls
}

// startManager runs `quota-operator manager` as the Deployment does: its
// own certificate in a Secret, the store password (if any) from the
// environment. It returns the metrics URL once the manager is ready.
func startManager(t *testing.T, bin, storeURL, webhookAddr string, environ ...string) string {
	t.Helper()
	return startManagerWith(t, bin, storeURL, webhookAddr, nil, environ)
}

// startManagerWith is startManager with more flags.
func startManagerWith(t *testing.T, bin, storeURL, webhookAddr string, flags, environ []string) string {
	t.Helper()
	kubeconfig, err := env.Kubeconfig()
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(webhookAddr)
	metrics, probe := localtest.FreeAddr(t), localtest.FreeAddr(t)
	cmd := exec.Command(bin, "manager", "--kubeconfig", kubeconfig, "--store", storeURL,
		"--metrics-bind-address", metrics, "--metrics-secure=false", "--health-probe-bind-address", probe,
		"--sidecar-image", "quota-operator:e2e", "--webhook-port", port,
		"--webhook-cert-secret", "quota-operator-webhook-cert", "--webhook-cert-dir", t.TempDir(),
		"--webhook-cert-hosts", "127.0.0.1", "--namespace", operatorNS)
	cmd.Args = append(cmd.Args, flags...)
	cmd.Env = append(os.Environ(), environ...)
	startProcess(t, cmd, func(logs string) {
		if strings.Contains(logs, storePassword) {
			t.Error("the store password reached the manager's logs")
		}
	})
	localtest.WaitOK(t, 30*time.Second, "http://"+probe+"/readyz")
	return "http://" + metrics + "/metrics"
}

var injectorCallsLine = regexp.MustCompile(`(?m)^controller_runtime_webhook_requests_total\{code="200",webhook="/mutate--v1-pod"\} (\d+)$`)

func injectorCalls(t *testing.T, metricsURL string) int {
	t.Helper()
	_, body := localtest.Get(t, metricsURL)
	m := injectorCallsLine.FindStringSubmatch(body)
	if m == nil {
		return 0
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

func appPod(name, ns string, ports map[string]string) *corev1.Pod {
	port := func(k string) string { _, p, _ := net.SplitHostPort(ports[k]); return p }
	return &corev1.Pod{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: map[string]string{"app": "demo-api"},
			Annotations: map[string]string{webhook.AnnotationInject: "true", webhook.AnnotationUpstreamPort: port("upstream"),
				webhook.AnnotationProxyPort: port("proxy"), webhook.AnnotationAdminPort: port("admin")}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "app:1"}}},
	}
}

func plainPod(name, ns string) *corev1.Pod {
	return &corev1.Pod{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"}, ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "app:1", Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}}}}}}
}

// createPod creates pod with kubectl and returns it as the API server
// stored it.
func createPod(t *testing.T, pod *corev1.Pod) *corev1.Pod {
	t.Helper()
	file := filepath.Join(t.TempDir(), "pod.json")
	if err := os.WriteFile(file, []byte(mustJSON(t, pod)), 0o600); err != nil {
		t.Fatal(err)
	}
	out := kubectl(t, "create", "-f", file, "-o", "json")
	var created corev1.Pod
	if err := json.Unmarshal([]byte(out), &created); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	return &created
}

func sidecarCount(pod *corev1.Pod) int {
	all := append(slices.Clone(pod.Spec.InitContainers), pod.Spec.Containers...)
	return len(slices.DeleteFunc(all, func(c corev1.Container) bool { return c.Name != webhook.ContainerName }))
}

// runInjectedSidecar starts the binary with exactly the sidecar
// container's args and env, resolved the way the kubelet resolves them:
// the downward API and the Secret read from the API server, and volumes
// mounted under a temporary root instead of /.
func runInjectedSidecar(t *testing.T, pod *corev1.Pod) string {
	t.Helper()
	c := *webhook.Sidecar(pod)
	if !slices.Equal(c.Command, []string{webhook.SidecarProgram}) {
		t.Fatalf("the sidecar's command is %q; want %s, which the image holds", c.Command, webhook.SidecarProgram)
	}
	bin, err := bintest.BuildSidecar()
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	args := mountVolumes(t, pod, c, root)
	cmd := exec.Command(bin, args...)
	cmd.Env = resolveEnv(t, pod, c.Env)
	startProcess(t, cmd, nil)
	admin := pod.Annotations[webhook.AnnotationAdminPort]
	localtest.WaitOK(t, 10*time.Second, "http://127.0.0.1:"+admin+"/readyz")
	return "http://127.0.0.1:" + strconv.Itoa(int(c.Ports[0].ContainerPort))
}

// startProcess starts cmd and, when the test ends, interrupts it, waits
// for it, shows its output if the test failed, and hands the output to
// check.
func startProcess(t *testing.T, cmd *exec.Cmd, check func(logs string)) {
	t.Helper()
	logs := &bytes.Buffer{} // one writer for both: exec calls it from one goroutine at a time
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("%q:\n%s", cmd.Args, logs.String())
		}
		if check != nil {
			check(logs.String())
		}
	})
}

// mountVolumes fills each volume the container mounts under root and
// returns its args with the mount paths moved there.
func mountVolumes(t *testing.T, pod *corev1.Pod, c corev1.Container, root string) []string {
	t.Helper()
	args := append([]string{}, c.Args...)
	for _, m := range c.VolumeMounts {
		dir := filepath.Join(root, m.Name)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for _, v := range pod.Spec.Volumes {
			if v.Name == m.Name {
				fillVolume(t, pod, v, dir)
			}
		}
		for i, a := range args {
			if strings.HasSuffix(a, "="+m.MountPath) {
				a = strings.TrimSuffix(a, m.MountPath) + dir
			}
			args[i] = strings.ReplaceAll(a, "="+m.MountPath+"/", "="+dir+"/")
		}
	}
	return args
}

// fillVolume writes what the kubelet would: the pod's labels for a
// downward API volume, a Secret's keys (once the manager created it) for a
// Secret volume.
func fillVolume(t *testing.T, pod *corev1.Pod, v corev1.Volume, dir string) {
	t.Helper()
	write := func(path, value string) {
		if err := os.WriteFile(filepath.Join(dir, path), []byte(value), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	switch {
	case v.DownwardAPI != nil:
		for _, item := range v.DownwardAPI.Items {
			if item.FieldRef == nil || item.FieldRef.FieldPath != "metadata.labels" {
				t.Fatalf("volume %s: unexpected item %+v", v.Name, item)
			}
			write(item.Path, downwardLabels(pod.Labels))
		}
	case v.Secret != nil:
		for _, item := range v.Secret.Items {
			write(item.Path, secretValue(t, pod.Namespace, v.Secret.SecretName, item.Key))
		}
	case v.ConfigMap != nil:
		for key, value := range configMapData(t, pod.Namespace, v.ConfigMap.Name, v.ConfigMap.Optional) {
			write(key, value)
		}
	default:
		t.Fatalf("volume %s: only downward API, Secret and ConfigMap volumes are emulated", v.Name)
	}
}

// configMapData is the ConfigMap's data as the kubelet mounts it now; an
// optional one that does not exist is an empty folder.
func configMapData(t *testing.T, namespace, name string, optional *bool) map[string]string {
	t.Helper()
	out, err := env.Kubectl("get", "configmap", name, "-n", namespace, "-o", "json")
	if err != nil && optional != nil && *optional && strings.Contains(out, "NotFound") {
		return nil
	}
	if err != nil {
		t.Fatalf("configmap %s: %v: %s", name, err, out)
	}
	var cm corev1.ConfigMap
	if err := json.Unmarshal([]byte(out), &cm); err != nil {
		t.Fatal(err)
	}
	return cm.Data
}

// secretValue waits for the Secret's key and returns its value.
func secretValue(t *testing.T, namespace, name, key string) string {
	t.Helper()
	var value string
	localtest.WaitFor(t, 10*time.Second, "Secret "+name, func() error {
		encoded, err := env.Kubectl("get", "secret", name, "-n", namespace, "-o", "jsonpath={.data."+key+"}")
		if err != nil || encoded == "" {
			return fmt.Errorf("%q: %w", encoded, err)
		}
		raw, err := base64.StdEncoding.DecodeString(encoded)
		value = string(raw)
		return err
	})
	return value
}

// downwardLabels writes labels as the kubelet does: key="value" lines,
// sorted.
func downwardLabels(labels map[string]string) string {
	keys := make([]string, 0, len(labels))
	for k := range labels {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "%s=%q\n", k, labels[k])
	}
	return b.String()
}

func resolveEnv(t *testing.T, pod *corev1.Pod, vars []corev1.EnvVar) []string {
	t.Helper()
	var out []string
	for _, v := range vars {
		switch {
		case v.ValueFrom == nil:
			out = append(out, v.Name+"="+v.Value)
		case v.ValueFrom.FieldRef != nil && v.ValueFrom.FieldRef.FieldPath == "metadata.namespace":
			out = append(out, v.Name+"="+pod.Namespace)
		case v.ValueFrom.FieldRef != nil && v.ValueFrom.FieldRef.FieldPath == "metadata.name":
			out = append(out, v.Name+"="+pod.Name)
		default:
			t.Fatalf("env %s: cannot resolve %+v", v.Name, v.ValueFrom)
		}
	}
	return out
}

func serveApp(t *testing.T, addr string) {
	t.Helper()
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "hello\n") }),
		ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })
}

// answer is what the test looks at in a response.
type answer struct {
	StatusCode int
	Status     string
	Header     http.Header
}

func get(t *testing.T, base string) answer {
	t.Helper()
	resp, err := http.Get(base + "/v1/items")
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	return answer{resp.StatusCode, resp.Status, resp.Header}
}

func kubectl(t *testing.T, args ...string) string {
	t.Helper()
	return env.MustKubectl(t, args...)
}

func ensureNamespace(t *testing.T, name string) {
	t.Helper()
	if out, err := env.Kubectl("create", "namespace", name); err != nil && !strings.Contains(out, "AlreadyExists") {
		t.Fatalf("%v\n%s", err, out)
	}
}

// applyObject applies obj with kubectl and deletes it when the test ends:
// a Fail-policy webhook left behind without its server would refuse every
// later pod.
func applyObject(t *testing.T, obj any) {
	t.Helper()
	file := filepath.Join(t.TempDir(), "object.json")
	if err := os.WriteFile(file, []byte(mustJSON(t, obj)), 0o600); err != nil {
		t.Fatal(err)
	}
	kubectl(t, "apply", "-f", file)
	t.Cleanup(func() { _, _ = env.Kubectl("delete", "--ignore-not-found", "-f", file) })
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	raw, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(raw)
}
