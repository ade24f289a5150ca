package main

import (
	"io"

	"github.com/quotaops/quota-operator/internal/cli"
)

// runSidecar is `quota-operator sidecar`, the same program as
// cmd/quota-sidecar, which the webhook injects.
func runSidecar(args []string, _, stderr io.Writer) int {
	return cli.RunSidecar("quota-operator sidecar", args, stderr, version)
}
