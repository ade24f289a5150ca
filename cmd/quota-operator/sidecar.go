package main

import (
	"io"

	"github.com/quotaops/quota-operator/internal/cli"
	"github.com/quotaops/quota-operator/internal/rls"
	"github.com/quotaops/quota-operator/internal/rlsserver"
	"github.com/quotaops/quota-operator/internal/sidecar"
)

// runSidecar is `quota-operator sidecar`, the same program as
// cmd/quota-sidecar, which the webhook injects.
func runSidecar(args []string, _, stderr io.Writer) int {
	return cli.RunSidecar("quota-operator sidecar", args, stderr, version, rlsServer)
}

// rlsServer serves Envoy's rate-limit service with grpc-go.
func rlsServer(h rls.Handler) sidecar.RLSServer { return rlsserver.New(h, nil) }
