//go:build cluster

package cluster

import (
	"os/exec"
	"strings"
	"testing"
	"time"
)

// expectOtherPodsKept: the workload's namespace is labelled for injection,
// and what else runs there is not broken by it. `kubectl create job`
// (a pod without ports) gets no sidecar and completes; a TCP-only pod
// keeps its port and gets no sidecar, with a warning kubectl prints; with
// the manager scaled to 0, a pod opted out by annotation is still created
// (it never reaches the webhook), and a namespace deleted more than a
// minute after the manager went down is gone within a minute. Before, the
// Job and the TCP pod were refused ("no container port"), or the TCP pod's
// port was taken by the HTTP proxy; the opted-out pod was refused while the
// manager was down; and the usage API's APIService, unavailable, held every
// namespace deletion Terminating (NamespaceDeletionDiscoveryFailure) about
// 45 s after the manager stopped, until it came back.
func expectOtherPodsKept(t *testing.T) {
	kubectl(t, "-n", appNS, "create", "job", "once", "--image="+env.testappImg, "--",
		"/testapp", "get", "--url=http://api."+appNS+".svc.cluster.local/", "--n=1")
	kubectl(t, "-n", appNS, "wait", "--for=condition=Complete", "job/once", "--timeout="+rolloutTimeout)
	if n := kubectl(t, "-n", appNS, "get", "pods", "-l", "job-name=once", "-o", "jsonpath={.items[*].spec.initContainers[*].name}"); n != "" {
		t.Fatalf("the Job's pod has init containers %q; want no sidecar", n)
	}
	out, err := runCombined("-n", appNS, "run", "tcp", "--image="+env.testappImg, "--port=5432", "--", "serve", "--listen=:5432")
	if err != nil || !strings.Contains(out, "Warning: quota-operator: no sidecar: no HTTP port") {
		t.Fatalf("kubectl run of a TCP pod: %v\n%s", err, out)
	}
	if got := kubectl(t, "-n", appNS, "get", "pod", "tcp", "-o", "jsonpath={.spec.initContainers[*].name}|{.spec.containers[*].ports[*].containerPort}"); got != "|5432" {
		t.Fatalf("the TCP pod: init containers|ports %q; want no sidecar and its own port", got)
	}

	kubectl(t, "create", "namespace", "deleted-while-down")
	kubectl(t, "-n", operatorNS, "scale", "deployment/"+managerDeploy, "--replicas=0")
	kubectl(t, "-n", operatorNS, "wait", "--for=delete", "pod", "-l", "control-plane=controller-manager", "--timeout=120s")
	expectNamespaceDeletes(t, "deleted-while-down")
	opted := `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"opted-out","annotations":{"quotaops.dev/inject":"false"}},` +
		`"spec":{"containers":[{"name":"app","image":"` + env.testappImg + `","args":["serve","--listen=:8080"],"ports":[{"name":"http","containerPort":8080}]}]}}`
	out, err = runStdin(opted, "-n", appNS, "create", "-f", "-")
	kubectl(t, "-n", operatorNS, "scale", "deployment/"+managerDeploy, "--replicas=2")
	if err != nil {
		t.Fatalf("an opted-out pod with the manager down: %v\n%s", err, out)
	}
	kubectl(t, "-n", operatorNS, "rollout", "status", "deployment/"+managerDeploy, "--timeout="+rolloutTimeout)
	kubectl(t, "-n", appNS, "delete", "pod", "tcp", "opted-out", "--wait=false")
}

// expectNamespaceDeletes waits past the point where the API server marked
// an unavailable aggregated API's discovery stale, then deletes ns, which
// must be gone within a minute, and finds discovery complete.
func expectNamespaceDeletes(t *testing.T, ns string) {
	time.Sleep(75 * time.Second)
	if out, err := runCombined("api-resources", "-o", "name"); err != nil {
		t.Fatalf("discovery with the manager down: %v\n%s", err, lastLines(out, 5))
	}
	kubectl(t, "delete", "namespace", ns, "--wait=false")
	if out, err := runCombined("wait", "--for=delete", "namespace/"+ns, "--timeout=60s"); err != nil {
		conds, _ := run("get", "namespace", ns, "-o", "jsonpath={.status.conditions}")
		t.Fatalf("namespace %s still there a minute after its deletion, with the manager down: %v\n%s\n%s", ns, err, out, conds)
	}
}

// lastLines is the end of a long output.
func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// runCombined runs kubectl and returns what it printed on both outputs
// (warnings go to stderr).
func runCombined(args ...string) (string, error) {
	out, err := exec.Command(env.kubectl, append([]string{"--kubeconfig", env.kubeconfig}, args...)...).CombinedOutput()
	return string(out), err
}
