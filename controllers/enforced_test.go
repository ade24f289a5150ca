package controllers_test

import (
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/quotaops/quota-operator/api/v1alpha1"
	"github.com/quotaops/quota-operator/internal/sidecar"
	"github.com/quotaops/quota-operator/internal/store"
	"github.com/quotaops/quota-operator/internal/testutil/sidecartest"
	"github.com/quotaops/quota-operator/internal/webhook"
)

// Enforced tells which selected pods enforce the policy's current
// generation, from what a real sidecar process reports through Redis: 1/1
// once it has loaded the policy, 0/1 after a change until it reloads, and
// a selected pod without a sidecar is named as unprotected.
func TestEnforcedFollowsTheSidecars(t *testing.T) {
	ns := namespace(t)
	p := rateLimitPolicy(ns, "api", 100)
	createProgrammed(t, p, func() *v1alpha1.PolicyStatus { return &p.Status.PolicyStatus })
	runningPod(t, ns, "api-1", "app", webhook.ContainerName)
	expectEnforced(t, p, metav1.ConditionFalse, "0/1", "0/1 selected pods enforce generation 1; not yet: api-1")

	stop := runSidecar(t, ns, "api-1")
	took := expectEnforced(t, p, metav1.ConditionTrue, "1/1", "1/1 selected pods enforce generation 1")
	t.Logf("Enforced 1/1 %v after the sidecar started", took.Round(10*time.Millisecond))
	if out := kubectl(t, "get", "rlp", "api", "-n", ns); !strings.Contains(out, "PROGRAMMED   ENFORCED   PODS") || !strings.Contains(out, "True         True       1/1") {
		t.Fatalf("kubectl get rlp:\n%s", out)
	}

	stop()
	if err := k8s.Get(ctx, client.ObjectKeyFromObject(p), p); err != nil {
		t.Fatal(err)
	}
	p.Spec.Limits[0].Rates[0].Limit = 50
	if err := k8s.Update(ctx, p); err != nil {
		t.Fatal(err)
	}
	expectEnforced(t, p, metav1.ConditionFalse, "0/1", "0/1 selected pods enforce generation 2; not yet: api-1")
	runSidecar(t, ns, "api-1")
	took = expectEnforced(t, p, metav1.ConditionTrue, "1/1", "1/1 selected pods enforce generation 2")
	t.Logf("Enforced 1/1 %v after the sidecar came back to reload", took.Round(10*time.Millisecond))

	runningPod(t, ns, "api-2", "app")
	expectEnforced(t, p, metav1.ConditionFalse, "1/2",
		"1/2 selected pods enforce generation 2; selected but without a sidecar, so not protected: api-2")
}

// runningPod creates a pod labelled app=api with these containers and
// marks it Running, as a kubelet would.
func runningPod(t *testing.T, ns, name string, containers ...string) {
	t.Helper()
	pod := podWith(ns, name, containers...)
	pod.Labels = map[string]string{"app": "api"}
	if err := k8s.Create(ctx, pod); err != nil {
		t.Fatal(err)
	}
	pod.Status.Phase = corev1.PodRunning
	if err := k8s.Status().Update(ctx, pod); err != nil {
		t.Fatal(err)
	}
}

// runSidecar runs a sidecar for pod in ns on the test Redis until the test
// ends or stop is called.
func runSidecar(t *testing.T, ns, pod string) (stop func()) {
	t.Helper()
	s, err := store.Open(redisS.URL)
	if err != nil {
		t.Fatal(err)
	}
	upstream, _ := url.Parse("http://127.0.0.1:1")
	_, _, stop = sidecartest.Run(t, sidecar.Options{Namespace: ns, PodName: pod, Upstream: upstream, Timeout: 50 * time.Millisecond,
		Resync: 10 * time.Second, Log: logr.Discard()}, s)
	return stop
}

func expectEnforced(t *testing.T, p *v1alpha1.RateLimitPolicy, status metav1.ConditionStatus, pods, message string) time.Duration {
	t.Helper()
	return eventually(t, 20*time.Second, "Enforced "+message, func() error {
		if err := k8s.Get(ctx, client.ObjectKeyFromObject(p), p); err != nil {
			return err
		}
		c := apimeta.FindStatusCondition(p.Status.Conditions, v1alpha1.ConditionEnforced)
		if c == nil || c.Status != status || c.Message != message || p.Status.EnforcedPods != pods {
			return fmt.Errorf("enforcedPods %q, condition %+v", p.Status.EnforcedPods, c)
		}
		return nil
	})
}
