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

	extv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

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
	proxy := localtest.FreeAddr(t)
	_, logs := runSample(t, bin, "--upstream", app.URL, "--listen", proxy)
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
// or API server types of the manager, and no gRPC.
func TestLinksNoKubernetesClient(t *testing.T) {
	cmd := exec.Command("go", "list", "-deps", "./cmd/quota-sidecar")
	cmd.Dir = kubeenv.ModuleRoot()
	out, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, pkg := range strings.Fields(string(out)) {
		for _, banned := range []string{"k8s.io/client-go/", "sigs.k8s.io/controller-runtime/pkg/client", "sigs.k8s.io/controller-runtime/pkg/manager",
			"github.com/quotaops/quota-operator/controllers", "github.com/quotaops/quota-operator/internal/webhook",
			"google.golang.org/grpc", "github.com/envoyproxy/go-control-plane"} {
			if pkg == strings.TrimSuffix(banned, "/") || strings.HasPrefix(pkg, banned) {
				t.Errorf("quota-sidecar links %s", pkg)
			}
		}
	}
}

// Given --grpc-listen, quota-sidecar becomes `quota-operator sidecar`, the
// program beside it (as in the image), which answers Envoy's rate-limit
// service; without that program it says what is missing.
func TestGRPCListenRunsQuotaOperatorSidecar(t *testing.T) {
	dir := t.TempDir()
	for _, build := range []func() (string, error){bintest.BuildSidecar, bintest.Build} {
		bin, err := build()
		if err != nil {
			t.Fatal(err)
		}
		copyFile(t, bin, filepath.Join(dir, filepath.Base(bin)))
	}
	slim := filepath.Join(dir, "quota-sidecar")
	grpcAddr := localtest.FreeAddr(t)
	args := []string{"--upstream", "http://127.0.0.1:9", "--listen", localtest.FreeAddr(t), "--grpc-listen", grpcAddr}
	cmd, logs := runSample(t, slim, args...)
	if exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", cmd.Process.Pid)); err != nil || exe != filepath.Join(dir, "quota-operator") {
		t.Fatalf("the process runs %q (%v), want quota-operator beside quota-sidecar", exe, err)
	}
	conn, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close() }()
	resp, err := rlsv3.NewRateLimitServiceClient(conn).ShouldRateLimit(context.Background(), &rlsv3.RateLimitRequest{Domain: "per-ip",
		Descriptors: []*extv3.RateLimitDescriptor{{Entries: []*extv3.RateLimitDescriptor_Entry{{Key: "per-ip", Value: "10.0.0.1"}}}}})
	if err != nil || resp.OverallCode != rlsv3.RateLimitResponse_OK || len(resp.Statuses) != 1 || resp.Statuses[0].LimitRemaining != 99 {
		t.Fatalf("ShouldRateLimit: %v, %v; want OK with 99 remaining\n%s", resp, err, logs.String())
	}

	alone := filepath.Join(t.TempDir(), "quota-sidecar")
	copyFile(t, slim, alone)
	out, err := exec.Command(alone, append(args, "--store", "memory://", "--namespace", "alone", "--admin-listen", localtest.FreeAddr(t))...).CombinedOutput()
	if code := exitCode(t, err); code != 1 || !strings.Contains(string(out), "--grpc-listen is served by quota-operator, which is not beside this program") {
		t.Fatalf("alone: exit %d, %q; want exit 1 and what is missing", code, out)
	}
}

// runSample runs bin with args on the memory store, enforcing the per-ip
// sample policy for a pod labelled app=demo-api, until the test ends, and
// returns once it is ready.
func runSample(t *testing.T, bin string, args ...string) (*exec.Cmd, *bytes.Buffer) {
	t.Helper()
	labels := filepath.Join(t.TempDir(), "labels")
	if err := os.WriteFile(labels, []byte(`app="demo-api"`+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	admin := localtest.FreeAddr(t)
	cmd := exec.Command(bin, append([]string{"--store", "memory://", "--admin-listen", admin, "--health-listen", "",
		"--policy-file", filepath.Join(kubeenv.ModuleRoot(), "config", "samples", "policy_v1alpha1_ratelimitpolicy_per_ip.yaml"),
		"--pod-labels-file", labels}, args...)...)
	var logs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	localtest.WaitOK(t, 30*time.Second, "http://"+admin+"/readyz")
	return cmd, &logs
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	raw, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, raw, 0o755); err != nil {
		t.Fatal(err)
	}
}
