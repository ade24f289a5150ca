// Command quota-operator is the one binary of the project: the operator and
// the sidecar are subcommands, so both always run the same version.
package main

import (
	"fmt"
	"io"
	"os"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

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
		{"demo", "run the manager and a sidecar locally against an API server, apply the samples and show what they do", runDemo},
		{"version", "print the version", func(_ []string, stdout, _ io.Writer) int {
			fmt.Fprintln(stdout, version)
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
