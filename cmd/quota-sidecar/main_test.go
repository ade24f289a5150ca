package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/quotaops/quota-operator/internal/testutil/bintest"
	"github.com/quotaops/quota-operator/internal/testutil/kubeenv"
	"github.com/quotaops/quota-operator/internal/testutil/localtest"
)

// help is what a program prints for -h after its name, and its exit code.
func help(t *testing.T, bin string, args ...string) (string, int) {
	t.Helper()
	var out bytes.Buffer
	cmd := exec.Command(bin, append(args, "-h")...)
	cmd.Stdout, cmd.Stderr = &out, &out
	code := exitCode(t, cmd.Run())
	return out.String(), code
}

// exitCode is a finished program's exit code.
func exitCode(t *testing.T, err error) int {
	t.Helper()
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		return exit.ExitCode()
	case err != nil:
		t.Fatal(err)
	}
	return 0
}

// quota-sidecar takes exactly the flags of `quota-operator sidecar`, with
// the same defaults and help, and refuses wrong ones as it does.
func TestSameFlagsAsQuotaOperatorSidecar(t *testing.T) {
	slim, err := bintest.BuildSidecar()
	if err != nil {
		t.Fatal(err)
	}
	full, err := bintest.Build()
	if err != nil {
		t.Fatal(err)
	}
	got, gotCode := help(t, slim)
	want, wantCode := help(t, full, "sidecar")
	if got != want || gotCode != wantCode || !strings.Contains(got, "-upstream string") || !strings.Contains(got, "-grpc-listen string") {
		t.Fatalf("quota-sidecar -h (exit %d):\n%s\nquota-operator sidecar -h (exit %d):\n%s", gotCode, got, wantCode, want)
	}
	out, err := exec.Command(slim, "--namespace", "team-a").CombinedOutput()
	if code := exitCode(t, err); code != 2 || string(out) != "quota-sidecar: --upstream is required\n" {
		t.Fatalf("without --upstream: %v, %q; want exit 2 and the reason", err, out)
	}
}

// It is the sidecar: with a policy file on the memory store, the 100
// requests per minute of the per-ip sample pass to the app, and the 101st
// gets 429 with nothing remaining.
func TestEnforcesAPolicyFile(t *testing.T) {
	bin, err := bintest.BuildSidecar()
	if err != nil {
		t.Fatal(err)
	}
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("app")) }))
	defer app.Close()
	labels := filepath.Join(t.TempDir(), "labels")
	if err := os.WriteFile(labels, []byte(`app="demo-api"`+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	proxy, admin := localtest.FreeAddr(t), localtest.FreeAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "--store", "memory://", "--upstream", app.URL, "--listen", proxy, "--admin-listen", admin,
		"--health-listen", "", "--policy-file", filepath.Join(kubeenv.ModuleRoot(), "config", "samples", "policy_v1alpha1_ratelimitpolicy_per_ip.yaml"),
		"--pod-labels-file", labels)
	var logs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cancel(); _ = cmd.Wait() }()
	localtest.WaitOK(t, 30*time.Second, "http://"+admin+"/readyz")
	var codes []int
	var last *http.Response
	for range 101 {
		resp, err := http.Get("http://" + proxy + "/")
		if err != nil {
			t.Fatalf("%v\n%s", err, logs.String())
		}
		_ = resp.Body.Close()
		codes, last = append(codes, resp.StatusCode), resp
	}
	want := strings.Repeat("200 ", 100) + "429 "
	if got := fmt.Sprint(codes); got != "["+strings.TrimSpace(want)+"]" || last.Header.Get("X-RateLimit-Remaining") != "0" {
		t.Fatalf("statuses %s, last X-RateLimit-Remaining %q; want 100 × 200 then 429 with 0 remaining", got, last.Header.Get("X-RateLimit-Remaining"))
	}
}

// What keeps it small: it links no Kubernetes client, controller, webhook
// or API server types of the manager.
func TestLinksNoKubernetesClient(t *testing.T) {
	cmd := exec.Command("go", "list", "-deps", "./cmd/quota-sidecar")
	cmd.Dir = kubeenv.ModuleRoot()
	out, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, pkg := range strings.Fields(string(out)) {
		for _, banned := range []string{"k8s.io/client-go/", "sigs.k8s.io/controller-runtime/pkg/client", "sigs.k8s.io/controller-runtime/pkg/manager",
			"github.com/quotaops/quota-operator/controllers", "github.com/quotaops/quota-operator/internal/webhook"} {
			if pkg == strings.TrimSuffix(banned, "/") || strings.HasPrefix(pkg, banned) {
				t.Errorf("quota-sidecar links %s", pkg)
			}
		}
	}
}
