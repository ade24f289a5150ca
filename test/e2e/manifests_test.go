// Package e2e checks the deployable manifests against a real API server.
package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

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
	for _, ns := range []string{"quota-operator-system", "system"} {
		if out, err := env.Kubectl("create", "namespace", ns); err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
	}
	for _, dir := range []string{"default", "webhook"} {
		t.Run(dir, func(t *testing.T) {
			built, err := env.Kubectl("kustomize", filepath.Join(kubeenv.ModuleRoot(), "config", dir))
			if err != nil {
				t.Fatalf("kustomize: %v\n%s", err, built)
			}
			file := filepath.Join(t.TempDir(), dir+".yaml")
			if err := os.WriteFile(file, []byte(built), 0o644); err != nil {
				t.Fatal(err)
			}
			out, err := env.Kubectl("apply", "--dry-run=server", "-f", file)
			if err != nil {
				t.Fatalf("apply --dry-run=server: %v\n%s", err, out)
			}
			objects := len(topLevelKind.FindAllString(built, -1))
			if applied := strings.Count(out, "(server dry run)"); objects < 10 && dir == "default" || applied != objects {
				t.Fatalf("%d objects built, %d applied:\n%s", objects, applied, out)
			}
			t.Logf("%d objects pass a server-side dry run", objects)
		})
	}
}
