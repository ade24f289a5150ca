// Command demo is what `make demo` runs: it starts a local kube-apiserver
// and etcd (envtest, from the binaries hack/k8s-binaries.sh builds),
// installs the CRDs with kubectl, then runs `quota-operator demo` against
// it, and stops the control plane when the demo ends or on Ctrl-C.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/quotaops/quota-operator/internal/testutil/kubeenv"
)

func main() {
	binary := flag.String("binary", "bin/quota-operator", "the quota-operator binary")
	store := flag.String("store", "memory://", "store URL for the manager and the sidecar")
	duration := flag.String("duration", "", "how long the demo keeps running after its summary; empty: until Ctrl-C")
	flag.Parse()
	os.Exit(run(*binary, *store, *duration))
}

func run(binary, store, duration string) int {
	// Ctrl-C reaches the demo too (one process group): it stops, then
	// the control plane does.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	fmt.Println("[0/5] Starting a local Kubernetes API server (kube-apiserver and etcd, no nodes)")
	env, err := kubeenv.Start(kubeenv.Options{})
	if err != nil {
		fmt.Fprintf(os.Stderr, "demo: %v\n", err)
		return 1
	}
	defer func() { _ = env.Stop() }()
	kubeconfig, err := env.Kubeconfig()
	if err != nil {
		fmt.Fprintf(os.Stderr, "demo: %v\n", err)
		return 1
	}
	kubectl := filepath.Join(env.BinDir, "kubectl")
	fmt.Printf("      Installing the CRDs: kubectl apply -k config/crd\n")
	for _, args := range [][]string{
		{"apply", "-k", filepath.Join(kubeenv.ModuleRoot(), "config", "crd")},
		{"wait", "--for=condition=Established", "--timeout=60s", "crd/ratelimitpolicies.policy.quotaops.dev", "crd/usagequotas.policy.quotaops.dev"},
	} {
		if out, err := env.Kubectl(args...); err != nil {
			fmt.Fprintf(os.Stderr, "demo: kubectl %v: %v\n%s", args, err, out)
			return 1
		}
	}
	args := []string{"demo", "--kubeconfig", kubeconfig, "--kubectl", kubectl, "--store", store,
		"--samples", filepath.Join(kubeenv.ModuleRoot(), "config", "samples")}
	if duration != "" {
		args = append(args, "--duration", duration)
	}
	cmd := exec.CommandContext(ctx, binary, args...)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	// On Ctrl-C the demo gets its own SIGINT; CommandContext's kill is the
	// fallback should it hang.
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	if err := cmd.Run(); err != nil {
		var exit *exec.ExitError
		if errors.As(err, &exit) && ctx.Err() == nil {
			return exit.ExitCode()
		}
		if ctx.Err() == nil {
			fmt.Fprintf(os.Stderr, "demo: %v\n", err)
			return 1
		}
	}
	return 0
}
