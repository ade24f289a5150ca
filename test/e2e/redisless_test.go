package e2e

import (
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/quotaops/quota-operator/internal/testutil/bintest"
	"github.com/quotaops/quota-operator/internal/testutil/kubeenv"
	"github.com/quotaops/quota-operator/internal/testutil/localtest"
	"github.com/quotaops/quota-operator/internal/webhook"
)

const redislessNS = "e2e-redisless"

// Without Redis the CRs are still the one source of truth: the manager
// compiles each namespace's policies into a ConfigMap it owns, the
// injected sidecar mounts it and enforces the policy exactly, Programmed
// says so, and a quota's usage, which no one can see across pods, is
// reported as unknown rather than 0.
func TestRedislessModeEnforcesTheConfigMap(t *testing.T) {
	bin, err := bintest.Build()
	if err != nil {
		t.Fatalf("build: %v", err)
	}
	for _, ns := range []string{operatorNS, redislessNS} {
		ensureNamespace(t, ns)
	}
	kubectl(t, "apply", "-k", filepath.Join(kubeenv.ModuleRoot(), "config", "crd"))
	webhookPort := localtest.FreeAddr(t)
	for _, cfg := range deployedWebhookConfigurations(t, webhookPort) {
		applyObject(t, cfg)
	}
	startManager(t, bin, "memory://", webhookPort)
	kubectl(t, "apply", "-n", redislessNS, "-f", filepath.Join(kubeenv.ModuleRoot(), "config", "samples", "policy_v1alpha1_ratelimitpolicy_per_ip.yaml"))
	expectCondition(t, "ratelimitpolicy/per-ip", "Programmed",
		"True Compiled into ConfigMap quota-policies in namespace "+redislessNS+" (revision 1); counters are per pod: without Redis each sidecar counts alone")
	data := configMapData(t, redislessNS, "quota-policies", nil)
	var doc struct{ Kind, Name string }
	if err := json.Unmarshal([]byte(data["RateLimitPolicy.per-ip.json"]), &doc); err != nil || doc.Kind != "RateLimitPolicy" || doc.Name != "per-ip" {
		t.Fatalf("ConfigMap data %q: %v", data, err)
	}

	ports := map[string]string{"upstream": localtest.FreeAddr(t), "proxy": localtest.FreeAddr(t), "admin": localtest.FreeAddr(t)}
	pod := createPod(t, appPod("api", redislessNS, ports))
	if c := webhook.Sidecar(pod); c == nil || !containsArg(c.Args, "--policy-file=/etc/quota-policies") || !containsArg(c.Args, "--store=memory://") {
		t.Fatalf("sidecar %+v", c)
	}
	serveApp(t, ports["upstream"])
	expectSampleLimit(t, runInjectedSidecar(t, pod))

	kubectl(t, "apply", "-n", redislessNS, "-f", filepath.Join(kubeenv.ModuleRoot(), "config", "samples", "policy_v1alpha1_usagequota_monthly.yaml"))
	expectCondition(t, "usagequota/monthly-api", "UsageReported",
		"False Usage is unknown: without Redis each sidecar counts alone, so no one sees the quota's usage across pods")
	if out := kubectl(t, "get", "usagequota/monthly-api", "-n", redislessNS, "-o", "jsonpath={.status.usage}"); out != "" {
		t.Fatalf("status.usage %q; want none", out)
	}
}

func containsArg(args []string, want string) bool { return slices.Contains(args, want) }

// expectCondition waits for obj's condition, in the Redis-less test's
// namespace, to read "Status Message".
func expectCondition(t *testing.T, obj, condition, want string) {
	t.Helper()
	expectConditionIn(t, redislessNS, obj, condition, want)
}

func expectConditionIn(t *testing.T, namespace, obj, condition, want string) {
	t.Helper()
	expectConditionMatching(t, namespace, obj, condition, func(out string) bool { return out == want })
}

// expectConditionMatching waits for a condition whose "status message"
// matches.
func expectConditionMatching(t *testing.T, namespace, obj, condition string, matches func(string) bool) {
	t.Helper()
	localtest.WaitFor(t, 15*time.Second, obj+" "+condition, func() error {
		out, err := env.Kubectl("get", obj, "-n", namespace, "-o",
			`jsonpath={.status.conditions[?(@.type=="`+condition+`")].status} {.status.conditions[?(@.type=="`+condition+`")].message}`)
		if err != nil {
			return fmt.Errorf("%q: %w", out, err)
		}
		if !matches(strings.TrimSpace(out)) {
			return errors.New(out)
		}
		return nil
	})
}
