package e2e

import (
	"path/filepath"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/yaml"

	"github.com/quotaops/quota-operator/internal/testutil/kubeenv"
	"github.com/quotaops/quota-operator/internal/webhook"
)

// The shipped NetworkPolicies admit the operator's own clients and no
// other pod: Redis admits the manager, the gateway service and pods the
// webhook gave a sidecar (by the label it sets), in any namespace; the
// gateway service's gRPC port admits only pods labelled as its clients,
// its health port anyone. Before, Redis accepted every pod. (The one-node
// cluster's CNI does not enforce policies: this checks what they select.)
func TestNetworkPoliciesAdmitOnlyTheOperatorsClients(t *testing.T) {
	policies, pods := builtPolicies(t, filepath.Join(kubeenv.ModuleRoot(), "config", "overlays", "gateway"))
	for _, c := range []policyCase{
		{"quota-operator-redis", "quota-operator-redis", "redis",
			[]labels.Set{pods["quota-operator-controller-manager"], pods["quota-operator-ratelimit"], sidecarPod},
			[]labels.Set{otherPod, gatewayClient}},
		{"quota-operator-ratelimit", "quota-operator-ratelimit", "grpc",
			[]labels.Set{gatewayClient}, []labels.Set{otherPod, sidecarPod, pods["quota-operator-controller-manager"]}},
	} {
		t.Run(c.policy, func(t *testing.T) { expectPolicy(t, policies, pods, c) })
	}
	if !admitted(t, policies["quota-operator-ratelimit"], "health", otherPod) {
		t.Error("the gateway service's health port refuses probes and Prometheus")
	}
}

// With overlays/redis-ha, Redis also admits its own pods (replicas reach
// the primary) and the Sentinels; the Sentinels admit what Redis admits,
// each other (they vote) and the Redis pods (their init containers ask
// where the primary is), and no other pod.
func TestRedisHANetworkPolicies(t *testing.T) {
	policies, pods := builtPolicies(t, filepath.Join(kubeenv.ModuleRoot(), "config", "overlays", "redis-ha-gateway"))
	operators := []labels.Set{pods["quota-operator-controller-manager"], pods["quota-operator-ratelimit"], sidecarPod,
		pods["quota-operator-redis"], pods["quota-operator-redis-sentinel"]}
	for _, c := range []policyCase{
		{"quota-operator-redis", "quota-operator-redis", "redis", operators, []labels.Set{otherPod, gatewayClient}},
		{"quota-operator-redis-sentinel", "quota-operator-redis-sentinel", "sentinel", operators, []labels.Set{otherPod, gatewayClient}},
	} {
		t.Run(c.policy, func(t *testing.T) { expectPolicy(t, policies, pods, c) })
	}
}

var (
	sidecarPod    = labels.Set{"app": "web", webhook.LabelSidecar: "injected"}
	otherPod      = labels.Set{"app": "web"}
	gatewayClient = labels.Set{"app": "envoy", "quotaops.dev/ratelimit-client": "true"}
)

// policyCase: the NetworkPolicy policy guards the pods of selects on
// port, and admits and refuses pods with these labels.
type policyCase struct {
	policy, selects string
	port            string
	admits, refuses []labels.Set
}

func expectPolicy(t *testing.T, policies map[string]networkingv1.NetworkPolicy, pods map[string]labels.Set, c policyCase) {
	t.Helper()
	p, ok := policies[c.policy]
	if !ok {
		t.Fatalf("no NetworkPolicy %s", c.policy)
	}
	if !matches(t, &p.Spec.PodSelector, pods[c.selects]) || len(p.Spec.PolicyTypes) != 1 || p.Spec.PolicyTypes[0] != networkingv1.PolicyTypeIngress {
		t.Fatalf("it does not guard %s's pods (%v) for ingress", c.selects, pods[c.selects])
	}
	for _, pod := range c.admits {
		if !admitted(t, p, c.port, pod) {
			t.Errorf("port %s refuses a pod labelled %v", c.port, pod)
		}
	}
	for _, pod := range c.refuses {
		if admitted(t, p, c.port, pod) {
			t.Errorf("port %s admits a pod labelled %v", c.port, pod)
		}
	}
}

// builtPolicies are the NetworkPolicies kustomize builds from dir, by
// name, and the labels of its Deployments' and StatefulSets' pods.
func builtPolicies(t *testing.T, dir string) (map[string]networkingv1.NetworkPolicy, map[string]labels.Set) {
	t.Helper()
	built, err := env.Kubectl("kustomize", dir)
	if err != nil {
		t.Fatalf("kustomize: %v\n%s", err, built)
	}
	policies, pods := map[string]networkingv1.NetworkPolicy{}, map[string]labels.Set{}
	for _, doc := range strings.Split(built, "\n---\n") {
		var head metav1.TypeMeta
		if err := yaml.Unmarshal([]byte(doc), &head); err != nil {
			t.Fatal(err)
		}
		switch head.Kind {
		case "NetworkPolicy":
			var p networkingv1.NetworkPolicy
			if err := yaml.Unmarshal([]byte(doc), &p); err != nil {
				t.Fatal(err)
			}
			policies[p.Name] = p
		case "Deployment", "StatefulSet":
			// Both keep their pod template at spec.template.
			var d appsv1.Deployment
			if err := yaml.Unmarshal([]byte(doc), &d); err != nil {
				t.Fatal(err)
			}
			pods[d.Name] = d.Spec.Template.Labels
		}
	}
	return policies, pods
}

// admitted: a pod with these labels, in any namespace, may reach port.
func admitted(t *testing.T, p networkingv1.NetworkPolicy, port string, pod labels.Set) bool {
	for _, rule := range p.Spec.Ingress {
		if !namesPort(rule.Ports, port) {
			continue
		}
		if len(rule.From) == 0 {
			return true
		}
		for _, peer := range rule.From {
			// An empty namespace selector is every namespace; none is the
			// policy's own, where the operator's pods run.
			if peer.PodSelector != nil && matches(t, peer.PodSelector, pod) &&
				(peer.NamespaceSelector == nil || len(peer.NamespaceSelector.MatchLabels)+len(peer.NamespaceSelector.MatchExpressions) == 0) {
				return true
			}
		}
	}
	return false
}

func namesPort(ports []networkingv1.NetworkPolicyPort, port string) bool {
	for _, p := range ports {
		if p.Port != nil && p.Port.String() == port {
			return true
		}
	}
	return false
}

func matches(t *testing.T, s *metav1.LabelSelector, set labels.Set) bool {
	t.Helper()
	sel, err := metav1.LabelSelectorAsSelector(s)
	if err != nil {
		t.Fatal(err)
	}
	return len(set) > 0 && sel.Matches(set)
}
