// Package e2e checks the deployable manifests against a real API server.
package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/quotaops/quota-operator/internal/testutil/kubeenv"
)

var env *kubeenv.Env

// topLevelKind finds each object's kind line in kustomize's output.
var topLevelKind = regexp.MustCompile(`(?m)^kind: `)

func TestMain(m *testing.M) {
	var err error
	if env, err = kubeenv.Start(kubeenv.Options{}); err != nil {
		fmt.Fprintf(os.Stderr, "control plane: %v\n", err)
		os.Exit(1)
	}
	code := m.Run()
	_ = env.Stop()
	os.Exit(code)
}

// Every manifest kustomize builds from config/default and config/webhook is
// accepted by the API server (server-side dry run: admission and schema,
// nothing stored).
func TestManifestsPassServerDryRun(t *testing.T) {
	// Namespaced objects need their namespace to exist, even in a dry run;
	// config/webhook on its own still has the bases' "system".
	for _, ns := range []string{"quota-operator-system", "system", "demo"} {
		ensureNamespace(t, ns)
	}
	installCertManagerCRDs(t)
	installMonitoringCRDs(t)
	for _, dir := range []string{"default", "base", "redis", "webhook", "overlays/redis-less", "overlays/cert-manager", "prometheus",
		"gateway", "overlays/gateway", "redis-ha", "overlays/redis-ha", "overlays/redis-ha-gateway",
		"samples/install/external-redis"} {
		t.Run(dir, func(t *testing.T) {
			built, err := env.Kubectl("kustomize", filepath.Join(kubeenv.ModuleRoot(), "config", dir))
			if err != nil {
				t.Fatalf("kustomize: %v\n%s", err, built)
			}
			file := filepath.Join(t.TempDir(), "built.yaml")
			if err := os.WriteFile(file, []byte(built), 0o644); err != nil {
				t.Fatal(err)
			}
			out, err := env.Kubectl("apply", "--dry-run=server", "-f", file)
			if err != nil {
				t.Fatalf("apply --dry-run=server: %v\n%s", err, out)
			}
			expectEnvReferencesDefined(t, built)
			objects := len(topLevelKind.FindAllString(built, -1))
			if applied := strings.Count(out, "(server dry run)"); objects < 10 && dir == "default" || applied != objects {
				t.Fatalf("%d objects built, %d applied:\n%s", objects, applied, out)
			}
			t.Logf("%d objects pass a server-side dry run", objects)
		})
	}
}

// The CRDs of cert-manager and of the Prometheus Operator come from their
// Go modules, the one source of them this machine can reach, so the
// overlays that use them are checked like the others.
const (
	certManagerVersion        = "v1.21.2"
	prometheusOperatorVersion = "v0.85.0"
)

func installCertManagerCRDs(t *testing.T) {
	t.Helper()
	installModuleCRDs(t, "github.com/cert-manager/cert-manager@"+certManagerVersion, "deploy/crds",
		"cert-manager.io_issuers.yaml", "cert-manager.io_certificates.yaml")
}

func installMonitoringCRDs(t *testing.T) {
	t.Helper()
	installModuleCRDs(t, "github.com/prometheus-operator/prometheus-operator@"+prometheusOperatorVersion, "example/prometheus-operator-crd",
		"monitoring.coreos.com_servicemonitors.yaml", "monitoring.coreos.com_podmonitors.yaml", "monitoring.coreos.com_prometheusrules.yaml")
}

// installModuleCRDs installs the CRD files in dir of module@version and
// waits for them to be established. Each file holds one CRD, named
// <group>_<plural>.yaml.
func installModuleCRDs(t *testing.T, module, dir string, files ...string) {
	t.Helper()
	var paths, crds []string
	for _, f := range files {
		paths = append(paths, filepath.Join(dir, f))
		group, plural, _ := strings.Cut(strings.TrimSuffix(f, ".yaml"), "_")
		crds = append(crds, plural+"."+group)
	}
	installModuleFiles(t, module, paths, crds)
}

// installModuleFiles applies files of module@version, and waits for the
// CRDs named crds to be established.
func installModuleFiles(t *testing.T, module string, files, crds []string) {
	t.Helper()
	cmd := exec.Command("go", "mod", "download", "-json", module)
	cmd.Dir = t.TempDir() // outside this module: go.mod stays as it is
	cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod", "GO111MODULE=on")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go mod download %s: %v\n%s", module, err, out)
	}
	var mod struct{ Dir string }
	if err := json.Unmarshal(out, &mod); err != nil || mod.Dir == "" {
		t.Fatalf("go mod download %s: %v\n%s", module, err, out)
	}
	args := []string{"apply", "--server-side"}
	for _, f := range files {
		args = append(args, "-f", filepath.Join(mod.Dir, f))
	}
	names := []string{"wait", "--for=condition=Established", "--timeout=30s"}
	for _, crd := range crds {
		names = append(names, "crd/"+crd)
	}
	if out, err := env.Kubectl(args...); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if out, err := env.Kubectl(names...); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
}

// A kustomization on top of any folder of config/ sets the image with an
// `images:` entry, as GitOps users and `make deploy` do, and the injected
// sidecar's image (SIDECAR_IMAGE) follows the manager's.
func TestImagesEntrySetsManagerAndSidecar(t *testing.T) {
	const img = "registry.example.com/team/quota-operator:v9.9.9"
	// overlays/redis-ha runs the image in two init containers too: the
	// Redis pods' and the Sentinels'.
	for dir, uses := range map[string]int{"default": 1, "base": 1, "overlays/redis-less": 1, "overlays/cert-manager": 1, "overlays/redis-ha": 3} {
		t.Run(dir, func(t *testing.T) {
			top := t.TempDir()
			base, err := filepath.Rel(top, filepath.Join(kubeenv.ModuleRoot(), "config", dir))
			if err != nil {
				t.Fatal(err)
			}
			k := "resources:\n  - " + base + "\nimages:\n  - name: controller\n    newName: registry.example.com/team/quota-operator\n    newTag: v9.9.9\n"
			if err := os.WriteFile(filepath.Join(top, "kustomization.yaml"), []byte(k), 0o600); err != nil {
				t.Fatal(err)
			}
			built, err := env.Kubectl("kustomize", top)
			if err != nil {
				t.Fatalf("kustomize: %v\n%s", err, built)
			}
			if got := strings.Count(built, "image: "+img); got != uses {
				t.Errorf("the image is used %d times, want %d, in:\n%s", got, uses, managerDeployment(built))
			}
			if want := "- name: SIDECAR_IMAGE\n          value: " + img; strings.Count(built, want) != 1 {
				t.Errorf("want %q once in:\n%s", want, managerDeployment(built))
			}
			if strings.Contains(built, "controller:latest") {
				t.Errorf("controller:latest is left in:\n%s", managerDeployment(built))
			}
		})
	}
}

// No install ships a Secret, and so no password: the manager generates
// Redis's password at install time, and every other Secret at run time.
// Before, overlays/redis shipped "change-me-before-production".
func TestNoPasswordInConfig(t *testing.T) {
	for _, dir := range []string{"default", "base", "redis", "overlays/redis-less", "overlays/cert-manager", "prometheus", "overlays/gateway",
		"redis-ha", "overlays/redis-ha", "overlays/redis-ha-gateway",
		"samples/install/external-redis"} {
		built, err := env.Kubectl("kustomize", filepath.Join(kubeenv.ModuleRoot(), "config", dir))
		if err != nil {
			t.Fatalf("%s: kustomize: %v\n%s", dir, err, built)
		}
		if regexp.MustCompile(`(?m)^kind: Secret$`).MatchString(built) {
			t.Errorf("config/%s builds a Secret", dir)
		}
		for _, word := range []string{"requirepass ", "password=", "change-me"} {
			if strings.Contains(built, word) {
				t.Errorf("config/%s holds %q", dir, word)
			}
		}
	}
}

// managerDeployment is the manager's Deployment in kustomize's output.
func managerDeployment(built string) string {
	for _, doc := range strings.Split(built, "\n---\n") {
		if strings.Contains(doc, "name: quota-operator-controller-manager\n") && strings.Contains(doc, "kind: Deployment") {
			return doc
		}
	}
	return built
}

// `make build` stamps the binary: `quota-operator version` names the
// version and the commit it was built from.
func TestVersionNamesTheCommit(t *testing.T) {
	root := kubeenv.ModuleRoot()
	if out, err := exec.Command("make", "-C", root, "--no-print-directory", "build", "VERSION=v9.9.9-test").CombinedOutput(); err != nil {
		t.Fatalf("make build: %v\n%s", err, out)
	}
	out, err := exec.Command(filepath.Join(root, "bin", "quota-operator"), "version").CombinedOutput()
	head, gerr := exec.Command("git", "-C", root, "rev-parse", "HEAD").Output()
	if err != nil || gerr != nil {
		t.Fatalf("%v, %v: %s", err, gerr, out)
	}
	if want := "v9.9.9-test (commit " + strings.TrimSpace(string(head)) + ", " + runtime.Version() + ")\n"; string(out) != want {
		t.Fatalf("version %q; want %q", out, want)
	}
}

// `make build-installer` writes one manifest with the image pinned, for the
// manager and the sidecar it injects, and the API server accepts all of it.
func TestBuildInstaller(t *testing.T) {
	const img = "registry.example.com/team/quota-operator:v9.9.9"
	ensureNamespace(t, "quota-operator-system")
	file := filepath.Join(t.TempDir(), "install.yaml")
	if out, err := exec.Command("make", "-C", kubeenv.ModuleRoot(), "--no-print-directory", "build-installer",
		"IMG="+img, "INSTALLER="+file).CombinedOutput(); err != nil {
		t.Fatalf("make build-installer: %v\n%s", err, out)
	}
	raw, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	built := string(raw)
	for _, want := range []string{"image: " + img, "- name: SIDECAR_IMAGE\n          value: " + img} {
		if strings.Count(built, want) != 1 {
			t.Errorf("want %q once in:\n%s", want, managerDeployment(built))
		}
	}
	out, err := env.Kubectl("apply", "--server-side", "--dry-run=server", "-f", file)
	if err != nil {
		t.Fatalf("apply --dry-run=server: %v\n%s", err, out)
	}
	if objects, applied := len(topLevelKind.FindAllString(built, -1)), strings.Count(out, "(server dry run)"); objects < 15 || applied != objects {
		t.Fatalf("%d objects built, %d applied:\n%s", objects, applied, out)
	}
}

// Every folder of config/ works under a kustomization that sets another
// namespace: nothing of quota-operator-system is left (the webhooks'
// exclusion, cert-manager's names, store URLs, monitors), and the result
// passes a server-side dry run in that namespace.
func TestManifestsFollowAnotherNamespace(t *testing.T) {
	const ns = "platform-quotas"
	ensureNamespace(t, ns)
	installCertManagerCRDs(t)
	installMonitoringCRDs(t)
	for _, dir := range []string{"default", "base", "overlays/redis-less", "overlays/cert-manager", "prometheus", "grafana",
		"gateway", "overlays/gateway", "overlays/redis-ha", "overlays/redis-ha-gateway", "samples/install/external-redis"} {
		t.Run(dir, func(t *testing.T) {
			top := t.TempDir()
			// kustomize takes a base by a relative path only.
			base, err := filepath.Rel(top, filepath.Join(kubeenv.ModuleRoot(), "config", dir))
			if err != nil {
				t.Fatal(err)
			}
			kustomization := "namespace: " + ns + "\nresources:\n  - " + base + "\n"
			if err := os.WriteFile(filepath.Join(top, "kustomization.yaml"), []byte(kustomization), 0o644); err != nil {
				t.Fatal(err)
			}
			built, err := env.Kubectl("kustomize", top)
			if err != nil {
				t.Fatalf("kustomize: %v\n%s", err, built)
			}
			for i, line := range strings.Split(built, "\n") {
				if strings.Contains(line, "quota-operator-system") {
					t.Errorf("line %d still names quota-operator-system: %s", i+1, strings.TrimSpace(line))
				}
			}
			file := filepath.Join(t.TempDir(), "built.yaml")
			if err := os.WriteFile(file, []byte(built), 0o644); err != nil {
				t.Fatal(err)
			}
			if out, err := env.Kubectl("apply", "--dry-run=server", "-f", file); err != nil {
				t.Fatalf("apply --dry-run=server: %v\n%s", err, out)
			}
		})
	}
}

var envReference = regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`)

// expectEnvReferencesDefined: Kubernetes expands $(VAR) in a container's
// env values only from variables defined before it in the list, and in
// its args from any of them; a reference it cannot expand stays as text.
// A strategic merge patch once moved STORE_URL, which names
// $(POD_NAMESPACE), before POD_NAMESPACE, and the manager dialled
// "quota-operator-redis.$(POD_NAMESPACE).svc".
func expectEnvReferencesDefined(t *testing.T, built string) {
	t.Helper()
	for _, doc := range strings.Split(built, "\n---\n") {
		var obj struct {
			Kind     string
			Metadata struct{ Name string }
			Spec     struct {
				Template struct {
					Spec struct{ Containers, InitContainers []corev1.Container }
				}
			}
		}
		if err := yaml.Unmarshal([]byte(doc), &obj); err != nil {
			t.Fatal(err)
		}
		pod := obj.Spec.Template.Spec
		for _, c := range append(pod.InitContainers, pod.Containers...) {
			defined := map[string]bool{}
			for _, e := range c.Env {
				for _, m := range envReference.FindAllStringSubmatch(e.Value, -1) {
					if !defined[m[1]] {
						t.Errorf("%s %s, container %s: env %s names $(%s), which is not defined before it", obj.Kind, obj.Metadata.Name, c.Name, e.Name, m[1])
					}
				}
				defined[e.Name] = true
			}
			for _, a := range append(append([]string{}, c.Command...), c.Args...) {
				for _, m := range envReference.FindAllStringSubmatch(a, -1) {
					if !defined[m[1]] {
						t.Errorf("%s %s, container %s: argument %q names $(%s), which its env lacks", obj.Kind, obj.Metadata.Name, c.Name, a, m[1])
					}
				}
			}
		}
	}
}
