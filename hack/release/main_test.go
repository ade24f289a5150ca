package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"helm.sh/helm/v4/pkg/action"
	"helm.sh/helm/v4/pkg/chart/common"
	"helm.sh/helm/v4/pkg/chart/v2/lint/support"
	"helm.sh/helm/v4/pkg/chart/v2/loader"
	release "helm.sh/helm/v4/pkg/release/v1"

	"github.com/quotaops/quota-operator/internal/testutil/kubeenv"
)

var testPlatforms = []string{"linux-amd64", "linux-arm64", "darwin-amd64", "darwin-arm64"}

// fakePlugins writes a stand-in kubectl-quota for each platform: what
// the archives hold is tested here, the cross builds by make release.
func fakePlugins(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for _, p := range testPlatforms {
		if err := os.MkdirAll(filepath.Join(dir, p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, p, "kubectl-quota"), []byte("#!/bin/sh\necho "+p+"\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func releaseInto(t *testing.T, plugins string) string {
	t.Helper()
	dist := t.TempDir()
	chart := filepath.Join(kubeenv.ModuleRoot(), "charts", "quota-operator")
	o := options{version: "v9.8.7", registry: "registry.example.com/qo", dist: dist, chart: chart, plugins: plugins,
		download: "https://example.com/dl", platforms: testPlatforms}
	if err := run(o); err != nil {
		t.Fatal(err)
	}
	return dist
}

// The release's chart is version 9.8.7, appVersion v9.8.7, passes helm
// lint, and installs the pinned image REGISTRY/quota-operator:v9.8.7; the
// same inputs give byte-identical files; SHA256SUMS checks them all.
func TestReleaseChartAndArchives(t *testing.T) {
	plugins := fakePlugins(t)
	a, b := releaseInto(t, plugins), releaseInto(t, plugins)
	sumsA, _ := os.ReadFile(filepath.Join(a, "SHA256SUMS"))
	sumsB, _ := os.ReadFile(filepath.Join(b, "SHA256SUMS"))
	if string(sumsA) != string(sumsB) || len(sumsA) == 0 {
		t.Fatalf("two builds differ:\n%s\n%s", sumsA, sumsB)
	}
	for _, want := range []string{"quota-operator-9.8.7.tgz", "krew-quota.yaml", "kubectl-quota-v9.8.7-darwin-arm64.tar.gz"} {
		if !strings.Contains(string(sumsA), "  "+want+"\n") {
			t.Errorf("SHA256SUMS lacks %s:\n%s", want, sumsA)
		}
	}
	check := exec.Command("sha256sum", "-c", "SHA256SUMS")
	check.Dir = a
	if out, err := check.CombinedOutput(); err != nil {
		t.Fatalf("sha256sum -c: %v\n%s", err, out)
	}

	expectChart(t, filepath.Join(a, "quota-operator-9.8.7.tgz"))
	krew, _ := os.ReadFile(filepath.Join(a, "krew-quota.yaml"))
	for _, want := range []string{"version: v9.8.7", "uri: https://example.com/dl/v9.8.7/kubectl-quota-v9.8.7-linux-arm64.tar.gz", "matchLabels: {os: darwin, arch: amd64}"} {
		if !strings.Contains(string(krew), want) {
			t.Errorf("krew manifest lacks %q:\n%s", want, krew)
		}
	}
}

// expectChart: the packaged chart is 9.8.7 of appVersion v9.8.7, passes
// helm lint, and installs the pinned image and no :latest.
func expectChart(t *testing.T, tgz string) {
	t.Helper()
	chrt, err := loader.Load(tgz)
	if err != nil {
		t.Fatal(err)
	}
	if chrt.Metadata.Version != "9.8.7" || chrt.Metadata.AppVersion != "v9.8.7" {
		t.Fatalf("chart %s, appVersion %s; want 9.8.7 and v9.8.7", chrt.Metadata.Version, chrt.Metadata.AppVersion)
	}
	lint := action.NewLint()
	lint.Strict = true
	res := lint.Run([]string{tgz}, nil)
	for _, m := range res.Messages {
		if m.Severity >= support.WarningSev {
			t.Errorf("helm lint: %v", m)
		}
	}
	if len(res.Errors) > 0 {
		t.Fatalf("helm lint: %v", res.Errors)
	}
	install := action.NewInstall(action.NewConfiguration())
	install.DryRunStrategy = action.DryRunClient
	install.ReleaseName, install.Namespace = "quota-operator", "quota-operator-system"
	install.Replace = true
	if install.KubeVersion, err = common.ParseKubeVersion("v1.37.2"); err != nil {
		t.Fatal(err)
	}
	rel, err := install.Run(chrt, nil)
	if err != nil {
		t.Fatalf("helm install: %v", err)
	}
	manifest := rel.(*release.Release).Manifest
	if !strings.Contains(manifest, `image: "registry.example.com/qo/quota-operator:v9.8.7"`) || strings.Contains(manifest, ":latest") {
		t.Fatalf("the chart does not run the pinned image:\n%s", grepLines(manifest, "image"))
	}
}

func grepLines(text, word string) string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if strings.Contains(l, word) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

func TestReleaseRefusesABadVersion(t *testing.T) {
	for _, v := range []string{"9.8.7", "v9.8", "v09.8.7", "v9.8.7-", "v9.8.7-rc..1", "v9.8.7+build.5", "latest"} {
		o := options{version: v, registry: "registry.example.com/qo", dist: t.TempDir(), platforms: testPlatforms}
		if err := run(o); err == nil || !strings.Contains(err.Error(), "is not vX.Y.Z") {
			t.Errorf("version %q: %v; want refused", v, err)
		}
	}
}

// A release candidate for one platform, as make test-upgrade builds one:
// the chart is the version without its v, and only that platform's
// archive is written and listed.
func TestReleaseCandidateForOnePlatform(t *testing.T) {
	dist := t.TempDir()
	o := options{version: "v0.3.0-dev.g1a2b3c", registry: "quotaops.local/candidate", dist: dist,
		chart: filepath.Join(kubeenv.ModuleRoot(), "charts", "quota-operator"), plugins: fakePlugins(t),
		download: "https://example.com/dl", platforms: []string{"linux-amd64"}}
	if err := run(o); err != nil {
		t.Fatal(err)
	}
	chrt, err := loader.Load(filepath.Join(dist, "quota-operator-0.3.0-dev.g1a2b3c.tgz"))
	if err != nil {
		t.Fatal(err)
	}
	if chrt.Metadata.Version != "0.3.0-dev.g1a2b3c" || chrt.Metadata.AppVersion != "v0.3.0-dev.g1a2b3c" {
		t.Errorf("chart %s, appVersion %s", chrt.Metadata.Version, chrt.Metadata.AppVersion)
	}
	sums, _ := os.ReadFile(filepath.Join(dist, "SHA256SUMS"))
	krew, _ := os.ReadFile(filepath.Join(dist, "krew-quota.yaml"))
	if n := strings.Count(string(sums), "kubectl-quota-"); n != 1 || strings.Count(string(krew), "uri: ") != 1 ||
		!strings.Contains(string(krew), "kubectl-quota-v0.3.0-dev.g1a2b3c-linux-amd64.tar.gz") {
		t.Fatalf("SHA256SUMS:\n%s\nkrew:\n%s", sums, krew)
	}
}

// The SBOM names the release's version for the module, where
// cyclonedx-gomod wrote a pseudo-version of another commit (or none, in
// a git worktree), in its dependency graph too.
func TestReleaseStampsTheSBOM(t *testing.T) {
	const old = "pkg:golang/github.com/quotaops/quota-operator@v0.2.1-0.20261208002739-cb537c9c0bfa?type=module"
	for name, component := range map[string]string{
		"pseudo-version": `"bom-ref": "` + old + `", "version": "v0.2.1-0.20261208002739-cb537c9c0bfa",
			"purl": "pkg:golang/github.com/quotaops/quota-operator@v0.2.1-0.20261208002739-cb537c9c0bfa?goarch=amd64\u0026goos=linux\u0026type=module"`,
		"none": `"bom-ref": "` + old + `", "purl": "pkg:golang/github.com/quotaops/quota-operator?goarch=amd64\u0026goos=linux\u0026type=module"`,
	} {
		t.Run(name, func(t *testing.T) {
			dist := t.TempDir()
			sbom := filepath.Join(dist, "quota-operator-v9.8.7.sbom.cdx.json")
			doc := `{"bomFormat": "CycloneDX", "metadata": {"component": {"name": "github.com/quotaops/quota-operator", ` + component + `}},
				"dependencies": [{"ref": "` + old + `", "dependsOn": ["pkg:golang/github.com/redis/go-redis/v9@v9.23.0?type=module"]},
					{"ref": "pkg:golang/other@v1.0.0?type=module", "dependsOn": ["` + old + `"]}]}`
			if err := os.WriteFile(sbom, []byte(doc), 0o644); err != nil {
				t.Fatal(err)
			}
			o := options{version: "v9.8.7", registry: "registry.example.com/qo", dist: dist,
				chart: filepath.Join(kubeenv.ModuleRoot(), "charts", "quota-operator"), plugins: fakePlugins(t), platforms: testPlatforms}
			if err := run(o); err != nil {
				t.Fatal(err)
			}
			got, _ := os.ReadFile(sbom)
			var bom struct {
				Metadata struct {
					Component struct {
						Ref     string `json:"bom-ref"`
						Version string `json:"version"`
						PURL    string `json:"purl"`
					} `json:"component"`
				} `json:"metadata"`
				Dependencies []struct {
					Ref       string   `json:"ref"`
					DependsOn []string `json:"dependsOn"`
				} `json:"dependencies"`
			}
			if err := json.Unmarshal(got, &bom); err != nil {
				t.Fatal(err)
			}
			const ref = "pkg:golang/github.com/quotaops/quota-operator@v9.8.7?type=module"
			c := bom.Metadata.Component
			if c.Version != "v9.8.7" || c.Ref != ref || c.PURL != "pkg:golang/github.com/quotaops/quota-operator@v9.8.7?goarch=amd64&goos=linux&type=module" ||
				len(bom.Dependencies) != 2 || bom.Dependencies[0].Ref != ref || bom.Dependencies[1].DependsOn[0] != ref {
				t.Errorf("the SBOM names the module %+v, dependencies %+v", c, bom.Dependencies)
			}
			if strings.Contains(string(got), "cb537c9c0bfa") {
				t.Errorf("the SBOM still names the pseudo-version:\n%s", got)
			}
			sums, _ := os.ReadFile(filepath.Join(dist, "SHA256SUMS"))
			if !strings.Contains(string(sums), "  quota-operator-v9.8.7.sbom.cdx.json\n") {
				t.Errorf("SHA256SUMS lacks the SBOM:\n%s", sums)
			}
		})
	}
}
