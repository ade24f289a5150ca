// Command quota-sidecar is the sidecar alone: `quota-operator sidecar`
// with the same flags, in a program that links no Kubernetes client, no
// controller, no webhook and no gRPC, so each pod it runs in pays for less
// memory. Given --grpc-listen, it runs `quota-operator sidecar` in its
// place, from the same folder.
package main

import (
	"os"

	// Public CA roots, used when the system has none, as in quota-operator.
	_ "golang.org/x/crypto/x509roots/fallback"

	"github.com/quotaops/quota-operator/internal/cli"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	os.Exit(cli.RunSidecar("quota-sidecar", os.Args[1:], os.Stderr, version, nil))
}
