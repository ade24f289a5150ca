// Command quota-operator is the binary of everything that runs in the
// cluster: the operator, the sidecar and the gateway rate-limit service are
// subcommands, so all run the same version.
package main

import (
	"fmt"
	"io"
	"os"

	// Public CA roots, used when the system has none: the image holds
	// nothing but this binary, and a managed Redis (rediss://) presents a
	// certificate from a public CA. A system bundle or tls_ca_file wins.
	_ "golang.org/x/crypto/x509roots/fallback"

	buildinfo "github.com/quotaops/quota-operator/internal/version"
)

// version and commit are set at build time with -ldflags "-X
// main.version=... -X main.commit=..."; without them the commit comes from
// what `go build` records of the git checkout.
var version, commit = "dev", ""

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

type command struct {
	name    string
	summary string
	run     func(args []string, stdout, stderr io.Writer) int
}

func commands() []command {
	return []command{
		{"manager", "run the operator: reconcile RateLimitPolicy and UsageQuota into the store", runManager},
		{"sidecar", "run the sidecar: enforce the namespace's policies in front of an app", runSidecar},
		{"ratelimit", "run the rate-limit service for gateways: Envoy's protocol, domains \"namespace/policy\"", runRatelimit},
		{"tenant-acl", "print the ACL rule of a namespace's store user, for an administrator who makes the users (--store-tenancy=provided)", runTenantACL},
		{"redis-ha", "write a Redis or Sentinel pod's config at its start, where the Sentinels say the primary is (config/overlays/redis-ha)", runRedisHA},
		{"demo", "run the manager and a sidecar locally against an API server, apply the samples and show what they do", runDemo},
		{"version", "print the version, the commit it was built from and the Go version", func(_ []string, stdout, _ io.Writer) int {
			fmt.Fprintln(stdout, buildinfo.Text(version, commit))
			return 0
		}},
	}
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		usage(stdout)
		return boolToCode(len(args) == 0)
	}
	for _, c := range commands() {
		if c.name == args[0] {
			return c.run(args[1:], stdout, stderr)
		}
	}
	fmt.Fprintf(stderr, "quota-operator: unknown command %q\n\n", args[0])
	usage(stderr)
	return 2
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "Usage: quota-operator <command> [flags]\n\nCommands:")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-10s %s\n", c.name, c.summary)
	}
}

// boolToCode gives exit code 2 (usage error) when true.
func boolToCode(usageError bool) int {
	if usageError {
		return 2
	}
	return 0
}
