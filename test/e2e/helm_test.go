package e2e

import (
	"encoding/json"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"

	"helm.sh/helm/v4/pkg/action"
	"helm.sh/helm/v4/pkg/chart/common"
	"helm.sh/helm/v4/pkg/chart/v2/lint/support"
	"helm.sh/helm/v4/pkg/chart/v2/loader"
	release "helm.sh/helm/v4/pkg/release/v1"
	"sigs.k8s.io/yaml"

	"github.com/quotaops/quota-operator/internal/testutil/kubeenv"
)

func chartDir() string { return filepath.Join(kubeenv.ModuleRoot(), "charts", "quota-operator") }

// renderChart is `helm template` of the chart into quota-operator-system,
// CRDs included, through Helm's Go module.
func renderChart(t *testing.T, vals map[string]any) string {
	t.Helper()
	rel, err := installChart(t, vals)
	if err != nil {
		t.Fatalf("helm template: %v", err)
	}
	r, ok := rel.(*release.Release)
	if !ok {
		t.Fatalf("release of type %T", rel)
	}
	return r.Manifest
}

// installChart runs helm install --dry-run=client of the chart.
func installChart(t *testing.T, vals map[string]any) (any, error) {
	t.Helper()
	chrt, err := loader.Load(chartDir())
	if err != nil {
		t.Fatal(err)
	}
	install := action.NewInstall(action.NewConfiguration())
	install.DryRunStrategy = action.DryRunClient
	install.ReleaseName, install.Namespace = "quota-operator", "quota-operator-system"
	install.Replace, install.IncludeCRDs = true, true
	if install.KubeVersion, err = common.ParseKubeVersion("v1.37.2"); err != nil {
		t.Fatal(err)
	}
	return install.Run(chrt, vals)
}

// chartInstallError is what helm install says of vals.
func chartInstallError(t *testing.T, vals map[string]any) error {
	t.Helper()
	_, err := installChart(t, vals)
	return err
}

// objectsByKey parses a YAML stream into objects by kind/namespace/name.
func objectsByKey(t *testing.T, stream string) map[string]any {
	t.Helper()
	out := map[string]any{}
	for _, doc := range strings.Split(stream, "\n---") {
		var obj map[string]any
		if err := yaml.Unmarshal([]byte(doc), &obj); err != nil {
			t.Fatalf("%v:\n%s", err, doc)
		}
		if obj == nil {
			continue
		}
		meta, _ := obj["metadata"].(map[string]any)
		if clusterScopedPolicy[obj["kind"].(string)] {
			// kubectl's own kustomize does not know these kinds are
			// cluster-scoped and gives them the namespace; the pinned
			// kustomize (make deploy, the chart) does not, nor does the API
			// server keep one.
			delete(meta, "namespace")
		}
		sortEnv(obj)
		out[obj["kind"].(string)+"/"+stringOf(meta["namespace"])+"/"+stringOf(meta["name"])] = obj
	}
	return out
}

func stringOf(v any) string { s, _ := v.(string); return s }

var clusterScopedPolicy = map[string]bool{"ValidatingAdmissionPolicy": true, "ValidatingAdmissionPolicyBinding": true}

// sortEnv orders each container's env by name: kustomize's patch moves
// the variables it sets to the front, and the order means nothing when no
// value refers to another variable, as none of the manager's does.
func sortEnv(obj map[string]any) {
	spec, _ := obj["spec"].(map[string]any)
	tmpl, _ := spec["template"].(map[string]any)
	podSpec, _ := tmpl["spec"].(map[string]any)
	containers, _ := podSpec["containers"].([]any)
	for _, c := range containers {
		container, _ := c.(map[string]any)
		env, _ := container["env"].([]any)
		sort.Slice(env, func(i, j int) bool {
			return stringOf(env[i].(map[string]any)["name"]) < stringOf(env[j].(map[string]any)["name"])
		})
	}
}

// The chart passes `helm lint`, and with its default values it installs
// exactly the objects of config/default (but the Namespace, which is the
// release's, and the image's tag: the chart's appVersion, where config/
// has kustomize's placeholder controller:latest), and with
// redis.ha.enabled those of config/overlays/redis-ha: the chart is
// generated from config/ by `make chart`.
func TestHelmChartIsConfigDefault(t *testing.T) {
	lint := action.NewLint()
	lint.Strict = true
	res := lint.Run([]string{chartDir()}, nil)
	for _, m := range res.Messages {
		if m.Severity >= support.WarningSev {
			t.Errorf("helm lint: %v", m)
		}
	}
	if len(res.Errors) > 0 {
		t.Fatalf("helm lint: %v", res.Errors)
	}
	for _, c := range []struct {
		config string
		vals   map[string]any
	}{
		{"default", nil},
		{"overlays/redis-ha", map[string]any{"redis": map[string]any{"ha": map[string]any{"enabled": true}}}},
	} {
		t.Run(c.config, func(t *testing.T) { expectChartIs(t, c.vals, c.config) })
	}
	chrt, err := loader.Load(chartDir())
	if err != nil {
		t.Fatal(err)
	}
	want := `image: "controller:` + chrt.Metadata.AppVersion + `"`
	if manifest := renderChart(t, nil); !strings.Contains(manifest, want) {
		t.Errorf("the chart's default image is not its appVersion's: no %s in\n%s", want, manifest)
	}
}

func expectChartIs(t *testing.T, vals map[string]any, config string) {
	vals = maps.Clone(vals)
	if vals == nil {
		vals = map[string]any{}
	}
	vals["image"] = map[string]any{"tag": "latest"}
	chart := objectsByKey(t, renderChart(t, vals))
	built, err := env.Kubectl("kustomize", filepath.Join(kubeenv.ModuleRoot(), "config", config))
	if err != nil {
		t.Fatalf("kustomize: %v\n%s", err, built)
	}
	want := objectsByKey(t, built)
	delete(want, "Namespace//quota-operator-system")
	if len(chart) != len(want) {
		t.Errorf("the chart renders %d objects, config/%s %d", len(chart), config, len(want))
	}
	for key, obj := range want {
		if !reflect.DeepEqual(chart[key], obj) {
			got, _ := json.MarshalIndent(chart[key], "", " ")
			w, _ := json.MarshalIndent(obj, "", " ")
			t.Errorf("%s differs:\nchart: %s\nconfig/%s: %s", key, got, config, w)
		}
	}
}

// Every combination of the chart's values renders objects the API server
// accepts (server-side dry run), and the values reach the manager.
func TestHelmChartValues(t *testing.T) {
	ensureNamespace(t, "quota-operator-system")
	installMonitoringCRDs(t)
	installCertManagerCRDs(t)
	tests := []struct {
		name string
		vals map[string]any
		want []string
	}{
		{"defaults", nil, []string{`value: "redis://quota-operator-redis.$(POD_NAMESPACE).svc:6379/0"`, "kind: StatefulSet\nmetadata:\n  labels:\n    app.kubernetes.io/name: quota-operator-redis",
			"storage: \"1Gi\"", "- --appendonly\n        - \"yes\"", "kind: PodDisruptionBudget"}},
		{"redis-volume", map[string]any{"redis": map[string]any{"persistence": map[string]any{"size": "20Gi", "storageClass": "fast-ssd"}}},
			[]string{"storage: \"20Gi\"", "storageClassName: \"fast-ssd\""}},
		{"external-redis-monitors-dashboard-sidecar-defaults", map[string]any{
			"image":        map[string]any{"repository": "registry.example.com/quota-operator", "tag": "v9.9.9"},
			"redis":        map[string]any{"enabled": false},
			"store":        map[string]any{"url": "rediss://redis.example.com:6380/0", "passwordSecret": "external-redis"},
			"sidecar":      map[string]any{"resources": map[string]any{"cpu": "100m", "memory": "96Mi"}, "failurePolicy": "Closed"},
			"metrics":      map[string]any{"prometheus": map[string]any{"enabled": true}, "grafanaDashboard": map[string]any{"enabled": true}},
			"replicaCount": 3,
		}, []string{`image: "registry.example.com/quota-operator:v9.9.9"`, `value: "rediss://redis.example.com:6380/0"`,
			"name: STORE_PASSWORD_SECRET\n          value: \"\"", "name: STORE_PASSWORD_FILE\n          value: \"/etc/quota-store-password/password\"",
			"- name: store-password\n        secret:\n          secretName: \"external-redis\"",
			"- name: store-password\n          mountPath: /etc/quota-store-password", `value: "100m"`, `value: "96Mi"`, `value: "Closed"`, "replicas: 3",
			"kind: PrometheusRule", "kind: PodMonitor", "grafana_dashboard"}},
		{"cert-manager", map[string]any{"certManager": map[string]any{"enabled": true}}, []string{"kind: Certificate", "kind: Issuer",
			"cert-manager.io/inject-ca-from: quota-operator-system/quota-operator-serving-cert", "secretName: quota-operator-webhook-server-cert"}},
		{"store-ca-secret", map[string]any{"redis": map[string]any{"enabled": false},
			"store":   map[string]any{"url": "rediss://redis.example.com:6380/0", "tls": map[string]any{"ca": map[string]any{"secret": "redis-ca"}}},
			"gateway": map[string]any{"enabled": true, "namespaces": "team-a"}}, []string{
			`value: "rediss://redis.example.com:6380/0?tls_ca_file=/etc/quota-store-tls/ca.crt"`,
			"- name: store-tls-ca\n          mountPath: /etc/quota-store-tls\n          readOnly: true",
			"- name: store-tls-ca\n        secret:\n          secretName: \"redis-ca\"\n          items:\n            - key: \"ca.crt\"\n              path: ca.crt",
			// The gateway reads the copy in its own Secret.
			`value: "rediss://redis.example.com:6380/0?tls_ca_file=/etc/quota-store/ca.crt"`}},
		{"store-ca-configmap", map[string]any{"redis": map[string]any{"enabled": false},
			"store": map[string]any{"url": "rediss://redis.example.com:6380/0?dial_timeout=1s", "tls": map[string]any{"ca": map[string]any{"configMap": "redis-ca", "key": "server-ca.pem"}}}}, []string{
			`value: "rediss://redis.example.com:6380/0?dial_timeout=1s&tls_ca_file=/etc/quota-store-tls/ca.crt"`,
			"configMap:\n          name: \"redis-ca\"\n          items:\n            - key: \"server-ca.pem\""}},
		{"store-client-cert", map[string]any{"redis": map[string]any{"enabled": false},
			"store": map[string]any{"url": "rediss://redis.example.com:6380/0", "tls": map[string]any{
				"ca": map[string]any{"secret": "redis-ca"}, "clientCert": map[string]any{"secret": "redis-client"}}},
			"gateway": map[string]any{"enabled": true, "namespaces": "team-a"}}, []string{
			`value: "rediss://redis.example.com:6380/0?tls_ca_file=/etc/quota-store-tls/ca.crt&tls_cert_file=/etc/quota-store-tls-client/tls.crt&tls_key_file=/etc/quota-store-tls-client/tls.key"`,
			"- name: store-tls-client\n          mountPath: /etc/quota-store-tls-client\n          readOnly: true",
			"- name: store-tls-client\n        secret:\n          secretName: \"redis-client\"",
			`value: "rediss://redis.example.com:6380/0?tls_ca_file=/etc/quota-store/ca.crt&tls_cert_file=/etc/quota-store/tls.crt&tls_key_file=/etc/quota-store/tls.key"`}},
		{"redis-ha-gateway", map[string]any{"redis": map[string]any{"ha": map[string]any{"enabled": true}},
			"gateway": map[string]any{"enabled": true, "namespaces": "team-a"}}, []string{
			"replicas: 3", "name: quota-operator-redis-sentinel\n", "- --min-replicas-to-write",
			`value: "redis+sentinel://quota-operator-redis-sentinel-0.quota-operator-redis-sentinel.$(POD_NAMESPACE).svc:26379,quota-operator-redis-sentinel-1.quota-operator-redis-sentinel.$(POD_NAMESPACE).svc:26379,quota-operator-redis-sentinel-2.quota-operator-redis-sentinel.$(POD_NAMESPACE).svc:26379/quota/0"`,
			"/quota/0?sentinel_username=quota-sentinel&sentinel_password_file=/etc/quota-store/sentinel-password\"",
			"name: STORE_SENTINEL_PASSWORD_SECRET\n          value: \"quota-operator-redis\""}},
		{"production", map[string]any{
			"replicaCount": 3, "nodeSelector": map[string]any{"pool": "system"}, "priorityClassName": "system-cluster-critical",
			"tolerations": []any{map[string]any{"key": "dedicated", "operator": "Equal", "value": "platform", "effect": "NoSchedule"}},
			"affinity":    map[string]any{"nodeAffinity": map[string]any{"requiredDuringSchedulingIgnoredDuringExecution": map[string]any{"nodeSelectorTerms": []any{map[string]any{"matchExpressions": []any{map[string]any{"key": "pool", "operator": "In", "values": []any{"system"}}}}}}}},
			"podLabels":   map[string]any{"team": "platform"}, "podAnnotations": map[string]any{"example.com/scrape": "false"},
			"extraVolumes":      []any{map[string]any{"name": "extra", "emptyDir": map[string]any{}}},
			"extraVolumeMounts": []any{map[string]any{"name": "extra", "mountPath": "/extra"}},
			"redis":             map[string]any{"maxmemory": "1gb", "resources": map[string]any{"requests": map[string]any{"cpu": "500m", "memory": "2Gi"}, "limits": map[string]any{"memory": "2500Mi"}}},
			"metrics":           map[string]any{"prometheus": map[string]any{"enabled": true, "labels": map[string]any{"release": "kube-prometheus-stack"}}},
		}, []string{"nodeSelector:\n        pool: system", "priorityClassName: \"system-cluster-critical\"", "tolerations:\n        - effect: NoSchedule",
			"affinity:\n        nodeAffinity:", "labels:\n        control-plane: controller-manager\n        team: platform",
			"annotations:\n        example.com/scrape: \"false\"", "- emptyDir: {}\n        name: extra", "- mountPath: /extra\n          name: extra",
			"- --maxmemory\n        - \"1gb\"", "requests:\n            cpu: 500m\n            memory: 2Gi", "limits:\n            memory: 2500Mi",
			"name: quota-sidecars\n", "release: kube-prometheus-stack\n  name: quota-sidecars", "release: kube-prometheus-stack\n  name: quota-operator\n",
			"kind: PodDisruptionBudget", "topologySpreadConstraints:\n        - labelSelector:"}},
		{"gateway", map[string]any{"gateway": map[string]any{"enabled": true, "namespaces": "team-a,team-b", "replicaCount": 4}}, []string{
			"name: quota-operator-ratelimit\n  namespace: quota-operator-system\nspec:\n  replicas: 4", `namespaces: "team-a,team-b"`, "--gateway-namespaces=$(GATEWAY_NAMESPACES)", "name: GATEWAY_NAMESPACES\n          value: \"team-a,team-b\"",
			"- ratelimit\n", "appProtocol: kubernetes.io/h2c"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rendered := renderChart(t, tt.vals)
			expectEnvReferencesDefined(t, rendered)
			for _, w := range tt.want {
				if !strings.Contains(rendered, w) {
					t.Errorf("rendered chart lacks %q", w)
				}
			}
			if tt.name == "production" && strings.Contains(rendered, "whenUnsatisfiable: DoNotSchedule") {
				t.Error("the default spread is hard")
			}
			if tt.name == "external-redis-monitors-dashboard-sidecar-defaults" && strings.Contains(rendered, "app.kubernetes.io/name: quota-operator-redis\n  name: quota-operator-redis") {
				t.Error("redis.enabled=false still renders Redis")
			}
			file := filepath.Join(t.TempDir(), "chart.yaml")
			if err := os.WriteFile(file, []byte(rendered), 0o600); err != nil {
				t.Fatal(err)
			}
			out, err := env.Kubectl("apply", "--server-side", "--dry-run=server", "-f", file)
			if err != nil {
				t.Fatalf("apply --dry-run=server: %v\n%s", err, out)
			}
			if objects, applied := len(topLevelKind.FindAllString(rendered, -1)), strings.Count(out, "(server dry run)"); applied != objects {
				t.Fatalf("%d objects rendered, %d applied:\n%s", objects, applied, out)
			}
		})
	}
}

// One manager replica gets no PodDisruptionBudget (minAvailable 1 would
// block every drain); the default spreads replicas over nodes softly.
func TestHelmChartOneReplicaNoPDB(t *testing.T) {
	rendered := renderChart(t, map[string]any{"replicaCount": 1})
	if strings.Contains(rendered, "kind: PodDisruptionBudget\nmetadata:\n  name: quota-operator-controller-manager") {
		t.Error("one replica renders the manager's PodDisruptionBudget")
	}
	if !strings.Contains(rendered, "topologyKey: kubernetes.io/hostname\n          whenUnsatisfiable: ScheduleAnyway") {
		t.Error("no soft spread across nodes by default")
	}
}

// values.schema.json refuses a misspelled key and a wrong type, naming
// them, where Helm alone installed both without a word.
func TestHelmChartSchemaRefusesTypos(t *testing.T) {
	tests := []struct {
		name string
		vals map[string]any
		want []string
	}{
		{"unknown key", map[string]any{"bogusKey": 1}, []string{"bogusKey"}},
		{"misspelled nested key", map[string]any{"store": map[string]any{"passwordSecrt": "x"}}, []string{"passwordSecrt"}},
		{"wrong type", map[string]any{"replicaCount": "one"}, []string{"replicaCount", "string"}},
		{"unknown tenancy", map[string]any{"store": map[string]any{"tenancy": "isolated"}}, []string{"/store/tenancy", "managed"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := chartInstallError(t, tt.vals)
			t.Logf("helm install: %v", err)
			if err == nil {
				t.Fatal("installed")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not name %q", err, w)
				}
			}
		})
	}
}
