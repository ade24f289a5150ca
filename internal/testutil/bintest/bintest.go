// Package bintest builds the quota-operator binary for tests that run it as
// a process, the way a pod or a user runs it.
package bintest

import (
	"os"
	"os/exec"
	"path/filepath"
	"sync"

	"github.com/quotaops/quota-operator/internal/testutil/kubeenv"
)

// Build builds quota-operator once per test process and returns its path.
var Build = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "quota-operator-bin-")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "quota-operator")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/quota-operator")
	cmd.Dir = kubeenv.ModuleRoot()
	cmd.Stderr = os.Stderr
	return bin, cmd.Run()
})
