package e2e

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/quotaops/quota-operator/internal/testutil/kubeenv"
)

// The gateways' CRDs come from their Go modules, as cert-manager's do.
const (
	envoyGatewayVersion = "v1.9.1"
	istioAPIVersion     = "v1.32.0"
)

// The examples that point Envoy Gateway (an EnvoyPatchPolicy) and an Istio
// ingress gateway (an EnvoyFilter) at the gateway rate-limit service are
// accepted by those projects' real CRDs, with the policy they enforce.
func TestGatewayExamplesPassServerDryRun(t *testing.T) {
	for _, ns := range []string{"team-a", "istio-system"} {
		ensureNamespace(t, ns)
	}
	installModuleFiles(t, "github.com/envoyproxy/gateway@"+envoyGatewayVersion,
		[]string{"charts/gateway-helm/charts/crds/crds/generated/gateway.envoyproxy.io_envoypatchpolicies.yaml"},
		[]string{"envoypatchpolicies.gateway.envoyproxy.io"})
	installModuleFiles(t, "istio.io/api@"+istioAPIVersion, []string{"kubernetes/customresourcedefinitions.gen.yaml"},
		[]string{"envoyfilters.networking.istio.io"})
	if out, err := env.Kubectl("apply", "--server-side", "-k", filepath.Join(kubeenv.ModuleRoot(), "config", "crd")); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if out, err := env.Kubectl("wait", "--for=condition=Established", "--timeout=30s", "crd/ratelimitpolicies.policy.quotaops.dev"); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	dir := filepath.Join(kubeenv.ModuleRoot(), "config", "samples", "gateway")
	tests := []struct{ file, want string }{
		{"ratelimitpolicy.yaml", "ratelimitpolicy.policy.quotaops.dev/api created (server dry run)"},
		{"envoy-gateway.yaml", "envoypatchpolicy.gateway.envoyproxy.io/quota-operator-ratelimit created (server dry run)"},
		{"istio.yaml", "envoyfilter.networking.istio.io/quota-operator-ratelimit created (server dry run)"},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			out, err := env.Kubectl("apply", "--dry-run=server", "-f", filepath.Join(dir, tt.file))
			if err != nil || strings.TrimSpace(out) != tt.want {
				t.Fatalf("%v: %q, want %q", err, out, tt.want)
			}
		})
	}
}
