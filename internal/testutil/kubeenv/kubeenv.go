// Package kubeenv starts a real kube-apiserver and etcd for tests through
// controller-runtime's envtest. The binaries come from KUBEBUILDER_ASSETS or,
// when that is unset, from hack/k8s-binaries.sh, which builds them from
// the Go module proxy once and caches them outside the repository.
package kubeenv

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"

	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// Options adjust the control plane.
type Options struct {
	// CRDDirectoryPaths are installed before Start returns.
	CRDDirectoryPaths []string
	// WebhookPaths are files of webhook configurations to install, pointed
	// at a local webhook server (see Env.WebhookInstallOptions for its
	// port and certificates).
	WebhookPaths []string
}

// Env is a running control plane.
type Env struct {
	*envtest.Environment
	Config *rest.Config
	// BinDir holds kube-apiserver, etcd and kubectl.
	BinDir string

	mu         sync.Mutex
	kubeconfig string
}

// Start starts etcd and kube-apiserver. Call Stop when done, also on failure
// paths, so no process outlives the test binary.
func Start(opts Options) (*Env, error) {
	dir, err := BinaryDir()
	if err != nil {
		return nil, err
	}
	env := &envtest.Environment{
		BinaryAssetsDirectory: dir,
		CRDDirectoryPaths:     opts.CRDDirectoryPaths,
		ErrorIfCRDPathMissing: len(opts.CRDDirectoryPaths) > 0,
		WebhookInstallOptions: envtest.WebhookInstallOptions{Paths: opts.WebhookPaths},
	}
	cfg, err := env.Start()
	if err != nil {
		_ = env.Stop()
		return nil, fmt.Errorf("start kube-apiserver and etcd from %s: %w", dir, err)
	}
	return &Env{Environment: env, Config: cfg, BinDir: dir}, nil
}

// Stop stops the control plane.
func (e *Env) Stop() error { return e.Environment.Stop() }

// BinaryDir returns the directory holding the control-plane binaries,
// building them first if needed.
func BinaryDir() (string, error) {
	if dir := os.Getenv("KUBEBUILDER_ASSETS"); dir != "" {
		return dir, nil
	}
	script := filepath.Join(ModuleRoot(), "hack", "k8s-binaries.sh")
	var out bytes.Buffer
	cmd := exec.Command("bash", script)
	cmd.Stdout = &out
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("%s: %w", script, err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	return lines[len(lines)-1], nil
}

// ModuleRoot is the repository root, found from this file's location.
func ModuleRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "..")
}

// Kubeconfig writes, once, a kubeconfig for a cluster-admin user of this
// control plane and returns its path; Stop removes it.
func (e *Env) Kubeconfig() (string, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.kubeconfig != "" {
		return e.kubeconfig, nil
	}
	user, err := e.AddUser(envtest.User{Name: "quota-test-admin", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		return "", err
	}
	raw, err := user.KubeConfig()
	if err != nil {
		return "", err
	}
	path := filepath.Join(e.ControlPlane.APIServer.CertDir, "admin.kubeconfig")
	if err := os.WriteFile(path, raw, 0o600); err != nil {
		return "", err
	}
	e.kubeconfig = path
	return path, nil
}

// Kubectl runs this control plane's kubectl as cluster-admin and returns
// its combined output.
func (e *Env) Kubectl(args ...string) (string, error) {
	cfg, err := e.Kubeconfig()
	if err != nil {
		return "", err
	}
	cmd := exec.Command(filepath.Join(e.BinDir, "kubectl"), append([]string{"--kubeconfig", cfg}, args...)...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err = cmd.Run()
	return out.String(), err
}

// MustKubectl runs kubectl like Kubectl and fails the test when it fails.
func (e *Env) MustKubectl(t testing.TB, args ...string) string {
	t.Helper()
	out, err := e.Kubectl(args...)
	if err != nil {
		t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}
