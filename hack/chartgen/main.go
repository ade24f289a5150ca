// Command chartgen writes the Helm chart's generated parts from kustomize's
// output, so the chart installs the objects config/ holds and cannot drift
// from them: CRDs into crds/, every other object into templates/, with
// what values.yaml sets put in as template expressions. `make chart`
// (part of `make manifests`) runs it; Chart.yaml, values.yaml and
// _helpers.tpl are written by hand.
//
//	chartgen --base base.yaml --redis redis.yaml --redis-ha redis-ha.yaml --prometheus prometheus.yaml --grafana grafana.yaml --gateway gateway.yaml --out charts/quota-operator
package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"

	"sigs.k8s.io/yaml"
)

// operatorNamespace is the namespace config/ installs into; the chart
// installs into the release's.
const operatorNamespace = "quota-operator-system"

// managerEnv are the manager's environment variables that values set, and
// the template expressions that set them.
var managerEnv = map[string]string{
	"SIDECAR_IMAGE":                  `{{ include "quota-operator.image" . | quote }}`,
	"STORE_URL":                      `{{ include "quota-operator.storeURL" . | quote }}`,
	"STORE_PASSWORD_SECRET":          `{{ include "quota-operator.storePasswordSecret" . | quote }}`,
	"STORE_SENTINEL_PASSWORD_SECRET": `{{ include "quota-operator.storeSentinelPasswordSecret" . | quote }}`,
	"SIDECAR_CPU":                    `{{ .Values.sidecar.resources.cpu | quote }}`,
	"SIDECAR_MEMORY":                 `{{ .Values.sidecar.resources.memory | quote }}`,
	"SIDECAR_FAILURE_POLICY":         `{{ .Values.sidecar.failurePolicy | quote }}`,
	"STORE_PASSWORD_FILE":            `{{ include "quota-operator.storePasswordFile" . | quote }}`,
	"STORE_TENANCY":                  `{{ .Values.store.tenancy | quote }}`,
	"GATEWAY_NAMESPACES":             `{{ if .Values.gateway.enabled }}{{ .Values.gateway.namespaces | quote }}{{ else }}""{{ end }}`,
}

func main() {
	in := map[string]*string{"base": new(string), "redis": new(string), "redis-ha": new(string), "prometheus": new(string), "grafana": new(string),
		"gateway": new(string), "cert-manager": new(string)}
	for name, p := range in {
		flag.StringVar(p, name, "", "kustomize output of config/"+name)
	}
	out := flag.String("out", "", "the chart's folder")
	flag.Parse()
	if err := run(in, *out); err != nil {
		fmt.Fprintf(os.Stderr, "chartgen: %v\n", err)
		os.Exit(1)
	}
}

// parts are the generated template files: each from a kustomize output,
// shown when its condition (empty: always) holds.
var parts = []struct{ input, file, condition string }{
	{"base", "operator.yaml", ""},
	{"redis", "redis.yaml", "and .Values.redis.enabled (not .Values.redis.ha.enabled)"},
	{"redis-ha", "redis-ha.yaml", "and .Values.redis.enabled .Values.redis.ha.enabled"},
	{"prometheus", "prometheus.yaml", ".Values.metrics.prometheus.enabled"},
	{"grafana", "grafana.yaml", ".Values.metrics.grafanaDashboard.enabled"},
	{"gateway", "gateway.yaml", ".Values.gateway.enabled"},
}

func run(in map[string]*string, out string) error {
	if out == "" {
		return errors.New("--out is required")
	}
	for _, dir := range []string{"crds", "templates"} {
		if err := os.MkdirAll(filepath.Join(out, dir), 0o755); err != nil {
			return err
		}
	}
	certManager, err := readObjects(*in["cert-manager"])
	if err != nil {
		return fmt.Errorf("cert-manager: %w", err)
	}
	alt := byKey(certManager)
	seen := map[string]bool{}
	for _, p := range parts {
		objects, err := readObjects(*in[p.input])
		if err != nil {
			return fmt.Errorf("%s: %w", p.input, err)
		}
		for _, o := range objects {
			seen[key(o)] = true
		}
		// The cert-manager install holds config/default's Redis, not the
		// HA one: only its own objects have another form there.
		a := alt
		if p.input == "redis-ha" {
			a = nil
		}
		if err := writePart(out, p.file, p.condition, objects, a); err != nil {
			return err
		}
	}
	var only []map[string]any
	for _, o := range certManager {
		if !seen[key(o)] {
			only = append(only, o)
		}
	}
	return writePart(out, "cert-manager.yaml", ".Values.certManager.enabled", only, nil)
}

func key(obj map[string]any) string {
	kind, _ := obj["kind"].(string)
	name, _ := nested(obj, "metadata", "name").(string)
	return kind + "/" + name
}

func byKey(objects []map[string]any) map[string]map[string]any {
	out := map[string]map[string]any{}
	for _, o := range objects {
		out[key(o)] = o
	}
	return out
}

func readObjects(file string) ([]map[string]any, error) {
	raw, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	var objects []map[string]any
	for _, doc := range strings.Split(string(raw), "\n---\n") {
		var obj map[string]any
		if err := yaml.Unmarshal([]byte(doc), &obj); err != nil {
			return nil, err
		}
		if obj != nil {
			objects = append(objects, obj)
		}
	}
	return objects, nil
}

// writePart writes CRDs to crds/ as they are and the other objects (but
// the Namespace, which the release's is) as one template. An object that
// the cert-manager install (alt) holds otherwise is written both ways,
// chosen by certManager.enabled.
func writePart(out, file, condition string, objects []map[string]any, alt map[string]map[string]any) error {
	var b bytes.Buffer
	b.WriteString("# Generated by hack/chartgen from config/ (make chart); do not edit.\n")
	if condition != "" {
		fmt.Fprintf(&b, "{{- if %s }}\n", condition)
	}
	for _, obj := range objects {
		kind, _ := obj["kind"].(string)
		name, _ := nested(obj, "metadata", "name").(string)
		raw, err := yaml.Marshal(obj)
		if err != nil {
			return err
		}
		switch kind {
		case "Namespace":
			continue
		case "CustomResourceDefinition":
			if err := os.WriteFile(filepath.Join(out, "crds", name+".yaml"), raw, 0o644); err != nil {
				return err
			}
			continue
		}
		other, differs := alt[key(obj)]
		if differs && !reflect.DeepEqual(other, obj) {
			otherRaw, err := yaml.Marshal(other)
			if err != nil {
				return err
			}
			fmt.Fprintf(&b, "{{- if .Values.certManager.enabled }}\n---\n%s\n{{- else }}\n---\n%s\n{{- end }}\n",
				strings.TrimRight(templated(kind, name, string(otherRaw)), "\n"), strings.TrimRight(templated(kind, name, string(raw)), "\n"))
			continue
		}
		text := templated(kind, name, string(raw))
		if cond, ok := objectConditions[kind+"/"+name]; ok {
			text = fmt.Sprintf("{{- if %s }}\n---\n%s{{- end }}\n", cond, text)
			b.WriteString(text)
			continue
		}
		if strings.Contains(text, "image: controller:") || strings.Contains(text, "image: redis:") {
			return fmt.Errorf("%s %s: an image that no value sets (chartgen's withImages knows config/'s tags)", kind, name)
		}
		b.WriteString("---\n")
		b.WriteString(text)
	}
	if condition != "" {
		b.WriteString("{{- end }}\n")
	}
	return os.WriteFile(filepath.Join(out, "templates", file), b.Bytes(), 0o644)
}

// objectConditions render an object only when its condition holds.
var objectConditions = map[string]string{
	// One replica and a PDB of minAvailable 1 would block every drain.
	"PodDisruptionBudget/quota-operator-controller-manager": "gt (int .Values.replicaCount) 1",
}

// escaped keeps braces that config/ holds (the alert rules' own
// templates) from being read by Helm.
var escaped = strings.NewReplacer("{{", "\x00<", "}}", "\x00>")
var unescaped = strings.NewReplacer("\x00<", `{{ "{{" }}`, "\x00>", `{{ "}}" }}`)

// templated puts the values into one object's YAML.
func templated(kind, name, text string) string {
	text = escaped.Replace(text)
	return unescaped.Replace(withValues(kind, name, text))
}

func withValues(kind, name, text string) string {
	text = strings.ReplaceAll(text, operatorNamespace, "{{ .Release.Namespace }}")
	switch {
	case kind == "Deployment" && name == "quota-operator-controller-manager":
		return managerTemplate(text)
	case kind == "StatefulSet" && name == "quota-operator-redis":
		return redisTemplate(text)
	case kind == "StatefulSet" && name == "quota-operator-redis-sentinel":
		return withStorageClass(withImages(text))
	case kind == "Deployment" && name == "quota-operator-ratelimit":
		return gatewayTemplate(text)
	case kind == "ServiceMonitor" || kind == "PodMonitor" || kind == "PrometheusRule":
		return withMetadataLabels(text, ".Values.metrics.prometheus.labels")
	case kind == "ConfigMap" && name == "quota-operator-gateway":
		return replaceLine(text, "namespaces: ", `namespaces: {{ required "gateway.namespaces: the namespaces the rate-limit service serves" .Values.gateway.namespaces | quote }}`)
	}
	return text
}

// redisTemplate sets the bundled Redis's images, maxmemory and resources,
// and its volume's size and StorageClass (none: the cluster's default).
func redisTemplate(text string) string {
	text = withImages(text)
	text = replaceLine(text, "storage: ", `storage: {{ .Values.redis.persistence.size | quote }}`)
	text = strings.Replace(text, "- --maxmemory\n        - 200mb\n", "- --maxmemory\n        - {{ .Values.redis.maxmemory | quote }}\n", 1)
	text = containerResources(text, "redis", ".Values.redis.resources")
	return withStorageClass(text)
}

// containerResources puts values in place of the resources of the
// container named name.
func containerResources(text, name, values string) string {
	lines := strings.Split(text, "\n")
	indent := ""
	for i, line := range lines {
		trimmed := strings.TrimLeft(line, " ")
		if trimmed == "name: "+name && indent == "" { // the container's; a port may have the name too
			indent = indentOf(line)
			continue
		}
		if indent == "" || line != indent+"resources:" {
			continue
		}
		end := blockEnd(lines, i, indent+" ")
		with := fmt.Sprintf("%s  {{- toYaml %s | nindent %d }}", indent, values, len(indent)+2)
		return strings.Join(append(lines[:i+1], append([]string{with}, lines[end:]...)...), "\n")
	}
	return text
}

// withMetadataLabels adds the labels of values to an object's own.
func withMetadataLabels(text, values string) string {
	lines := strings.Split(text, "\n")
	for i, line := range lines {
		if line != "  labels:" {
			continue
		}
		end := blockEnd(lines, i, "    ")
		with := fmt.Sprintf("    {{- with %s }}{{ toYaml . | nindent 4 }}{{- end }}", values)
		return strings.Join(append(lines[:end:end], append([]string{with}, lines[end:]...)...), "\n")
	}
	labels := fmt.Sprintf("metadata:\n  {{- with %s }}\n  labels: {{- toYaml . | nindent 4 }}\n  {{- end }}", values)
	return strings.Replace(text, "metadata:", labels, 1)
}

// withImages sets Redis's image, and the operator's where an init
// container runs it (overlays/redis-ha).
func withImages(text string) string {
	text = strings.ReplaceAll(text, "image: redis:7.4-alpine", `image: {{ .Values.redis.image | quote }}`)
	return strings.ReplaceAll(text, "image: controller:latest", `image: {{ include "quota-operator.image" . | quote }}`)
}

// withStorageClass adds the volume claim's StorageClass from values (none:
// the cluster's default).
func withStorageClass(text string) string {
	lines := strings.Split(text, "\n")
	for i, line := range lines {
		if trimmed := strings.TrimLeft(line, " "); trimmed == "accessModes:" {
			indent := line[:len(line)-len(trimmed)]
			class := indent + "{{- with .Values.redis.persistence.storageClass }}\n" + indent + "storageClassName: {{ . | quote }}\n" + indent + "{{- end }}"
			lines = append(lines[:i], append([]string{class}, lines[i:]...)...)
			break
		}
	}
	return strings.Join(lines, "\n")
}

// gatewayTemplate sets the gateway rate-limit service's image, replicas
// and store.
func gatewayTemplate(text string) string {
	text = replaceLine(text, "image: ", `image: {{ include "quota-operator.image" . | quote }}`)
	text = replaceLine(text, "replicas: ", "replicas: {{ .Values.gateway.replicaCount }}")
	return replaceLine(text, "value: redis://", `value: {{ include "quota-operator.gatewayStoreURL" . | quote }}`)
}

// managerTemplate sets the manager's image, replicas, resources and the
// environment values set.
func managerTemplate(text string) string {
	text = replaceLine(text, "image: ", `image: {{ include "quota-operator.image" . | quote }}`)
	text = replaceLine(text, "replicas: ", "replicas: {{ .Values.replicaCount }}")
	lines := strings.Split(text, "\n")
	var out []string
	for i := 0; i < len(lines); {
		matched := false
		for _, rule := range managerRules {
			if emit, end, ok := rule(lines, i); ok {
				out, i, matched = append(out, emit...), end, true
				break
			}
		}
		if !matched {
			out, i = append(out, lines[i]), i+1
		}
	}
	return strings.Join(out, "\n")
}

// A lineRule rewrites the block of lines that starts at i, when it is
// the block it knows: it returns what to write instead and where the
// block ends.
type lineRule func(lines []string, i int) (emit []string, end int, ok bool)

var managerRules = []lineRule{managerEnvValue, podMetadata, podSchedulingFields, configSpread, podVolumes, managerResources}

func indentOf(line string) string { return line[:len(line)-len(strings.TrimLeft(line, " "))] }

// blockEnd is the first line after i that does not start with one of
// prefixes.
func blockEnd(lines []string, i int, prefixes ...string) int {
	end := i + 1
	for end < len(lines) && slices.ContainsFunc(prefixes, func(p string) bool { return strings.HasPrefix(lines[end], p) }) {
		end++
	}
	return end
}

// managerEnvValue: an environment variable values set.
func managerEnvValue(lines []string, i int) ([]string, int, bool) {
	v, ok := envName(strings.TrimSpace(lines[i]))
	if !ok || i+1 >= len(lines) || !strings.HasPrefix(strings.TrimSpace(lines[i+1]), "value:") {
		return nil, 0, false
	}
	return []string{lines[i], indentOf(lines[i]) + "  value: " + v}, i + 2, true
}

// podMetadata: the pod template's labels, then podLabels and
// podAnnotations.
func podMetadata(lines []string, i int) ([]string, int, bool) {
	if lines[i] != "      labels:" || i == 0 || lines[i-1] != "    metadata:" {
		return nil, 0, false
	}
	end := blockEnd(lines, i, "        ")
	emit := append(slices.Clone(lines[i:end]), "        {{- with .Values.podLabels }}{{ toYaml . | nindent 8 }}{{- end }}",
		"      {{- with .Values.podAnnotations }}", "      annotations: {{- toYaml . | nindent 8 }}", "      {{- end }}")
	return emit, end, true
}

// podSchedulingFields: where the pod runs, before its service account.
func podSchedulingFields(lines []string, i int) ([]string, int, bool) {
	if lines[i] != "      serviceAccountName: quota-operator-controller-manager" {
		return nil, 0, false
	}
	return append(slices.Clone(podScheduling), lines[i]), i + 1, true
}

// configSpread: config/'s soft spread is values.yaml's default, which
// podSchedulingFields writes.
func configSpread(lines []string, i int) ([]string, int, bool) {
	if lines[i] != "      topologySpreadConstraints:" {
		return nil, 0, false
	}
	return nil, blockEnd(lines, i, "      - ", "        "), true
}

// podVolumes: after the lists' own items, the store's CA and password
// (store.tls.ca, store.passwordSecret) and extraVolumes or
// extraVolumeMounts.
func podVolumes(lines []string, i int) ([]string, int, bool) {
	trimmed, indent := strings.TrimSpace(lines[i]), indentOf(lines[i])
	helper, ok := map[string]string{"volumeMounts:": "storeMounts", "volumes:": "storeVolumes"}[trimmed]
	if !ok {
		return nil, 0, false
	}
	extra := map[string]string{"volumeMounts:": "extraVolumeMounts", "volumes:": "extraVolumes"}[trimmed]
	end := blockEnd(lines, i, indent+"- ", indent+"  ")
	return append(slices.Clone(lines[i:end]),
		fmt.Sprintf(`%s{{- with include "quota-operator.%s" . }}{{ . | nindent %d }}{{- end }}`, indent, helper, len(indent)),
		fmt.Sprintf(`%s{{- with .Values.%s }}{{ toYaml . | nindent %d }}{{- end }}`, indent, extra, len(indent))), end, true
}

// managerResources: the container's resources from values.
func managerResources(lines []string, i int) ([]string, int, bool) {
	indent := indentOf(lines[i])
	if strings.TrimSpace(lines[i]) != "resources:" || len(indent) < 8 {
		return nil, 0, false
	}
	return []string{lines[i], fmt.Sprintf("%s  {{- toYaml .Values.resources | nindent %d }}", indent, len(indent)+2)},
		blockEnd(lines, i, indent+" "), true
}

// podScheduling are the manager pod's fields values set where it runs.
var podScheduling = []string{
	"      {{- with .Values.nodeSelector }}", "      nodeSelector: {{- toYaml . | nindent 8 }}", "      {{- end }}",
	"      {{- with .Values.tolerations }}", "      tolerations: {{- toYaml . | nindent 8 }}", "      {{- end }}",
	"      {{- with .Values.affinity }}", "      affinity: {{- toYaml . | nindent 8 }}", "      {{- end }}",
	"      {{- with .Values.topologySpreadConstraints }}", "      topologySpreadConstraints: {{- toYaml . | nindent 8 }}", "      {{- end }}",
	"      {{- with .Values.priorityClassName }}", "      priorityClassName: {{ . | quote }}", "      {{- end }}",
}

func envName(trimmed string) (string, bool) {
	name, ok := strings.CutPrefix(trimmed, "- name: ")
	if !ok {
		return "", false
	}
	v, ok := managerEnv[name]
	return v, ok
}

// replaceLine replaces the value of the first line that starts with key
// (after its indentation).
func replaceLine(text, key, with string) string {
	lines := strings.Split(text, "\n")
	for i, line := range lines {
		if trimmed := strings.TrimLeft(line, " "); strings.HasPrefix(trimmed, key) {
			lines[i] = line[:len(line)-len(trimmed)] + with
			break
		}
	}
	return strings.Join(lines, "\n")
}

func nested(obj map[string]any, keys ...string) any {
	var cur any = obj
	for _, k := range keys {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil
		}
		cur = m[k]
	}
	return cur
}
