// Package bintest builds the project's programs for tests that run them as
// processes, the way a pod or a user runs them.
package bintest

import (
	"os"
	"os/exec"
	"path/filepath"
	"sync"

	"github.com/quotaops/quota-operator/internal/testutil/kubeenv"
)

// Build builds quota-operator once per test process and returns its path.
var Build = sync.OnceValues(func() (string, error) { return build("quota-operator") })

// BuildSidecar builds quota-sidecar once per test process and returns its
// path.
var BuildSidecar = sync.OnceValues(func() (string, error) { return build("quota-sidecar") })

// build builds ./cmd/name into a new folder, static and stripped as `make
// build` and the image build what ships, so measurements of a process see
// what a pod runs (a cgo build maps libc and the loader: 1.4 MiB more
// resident memory).
func build(name string) (string, error) {
	dir, err := os.MkdirTemp("", name+"-bin-")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, name)
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w", "-o", bin, "./cmd/"+name)
	cmd.Dir = kubeenv.ModuleRoot()
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	cmd.Stderr = os.Stderr
	return bin, cmd.Run()
}
