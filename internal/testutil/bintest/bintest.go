// Package bintest builds the project's programs for tests that run them as
// processes, the way a pod or a user runs them.
package bintest

import (
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"time"

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
	removeStale(name)
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

// staleAfter is when an earlier test process's build is surely no longer
// run: longer than any test or benchmark run.
const staleAfter = 3 * time.Hour

// removeStale removes the builds of name that earlier test processes left
// (each leaves its folder, which its binaries outlive the test functions
// in): 90 MB each, they filled the build machine's disk over a few days,
// until the one-node cluster's kubelet saw disk pressure and scheduled
// nothing.
func removeStale(name string) {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), name+"-bin-*"))
	for _, d := range dirs {
		if info, err := os.Stat(d); err == nil && time.Since(info.ModTime()) > staleAfter {
			_ = os.RemoveAll(d)
		}
	}
}
