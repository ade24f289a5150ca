package v1alpha1_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/quotaops/quota-operator/internal/testutil/kubeenv"
)

// `make verify` fails when a type changes and the generated code and CRDs
// were not regenerated. The test copies the tracked tree into a scratch
// repository, adds a field to RateLimitPolicySpec and runs make verify there.
func TestVerifyCatchesStaleGeneratedFiles(t *testing.T) {
	if _, err := exec.LookPath("make"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("make is not installed")
		}
		t.Skip("make is not installed")
	}
	root, dir := kubeenv.ModuleRoot(), t.TempDir()
	files := sh(t, root, "git", "ls-files", "-z")
	for _, f := range strings.Split(strings.TrimRight(files, "\x00"), "\x00") {
		copyFile(t, filepath.Join(root, f), filepath.Join(dir, f))
	}
	sh(t, dir, "git", "init", "-q")
	sh(t, dir, "git", "add", "-A")
	sh(t, dir, "git", "-c", "user.email=t@example.com", "-c", "user.name=t", "commit", "-qm", "copy")
	types := filepath.Join(dir, "api", "v1alpha1", "ratelimitpolicy_types.go")
	src, err := os.ReadFile(types)
	if err != nil {
		t.Fatal(err)
	}
	changed := strings.Replace(string(src), "type RateLimitPolicySpec struct {\n",
		"type RateLimitPolicySpec struct {\n\t// note is new.\n\t// +optional\n\t// +kubebuilder:validation:MaxLength=64\n\tNote string `json:\"note,omitempty\"`\n", 1)
	if err := os.WriteFile(types, []byte(changed), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("make", "verify")
	cmd.Dir = dir
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err == nil {
		t.Fatalf("make verify passed with a type changed and nothing regenerated:\n%s", out.String())
	}
	for _, want := range []string{"Generated files are stale", "config/crd/bases/policy.quotaops.dev_ratelimitpolicies.yaml"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("make verify output lacks %q:\n%s", want, out.String())
		}
	}
}

func sh(t *testing.T, dir string, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %v: %v", name, args, err)
	}
	return string(out)
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	raw, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	info, err := os.Stat(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, raw, info.Mode().Perm()); err != nil {
		t.Fatal(err)
	}
}
