package main

import (
	"bytes"
	"crypto/x509"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
)

func TestRun(t *testing.T) {
	usage := "Usage: quota-operator <command> [flags]\n\nCommands:\n" +
		"  manager    run the operator: reconcile RateLimitPolicy and UsageQuota into the store\n" +
		"  sidecar    run the sidecar: enforce the namespace's policies in front of an app\n" +
		"  ratelimit  run the rate-limit service for gateways: Envoy's protocol, domains \"namespace/policy\"\n" +
		"  tenant-acl print the ACL rule of a namespace's store user, for an administrator who makes the users (--store-tenancy=provided)\n" +
		"  redis-ha   write a Redis or Sentinel pod's config at its start, where the Sentinels say the primary is (config/overlays/redis-ha)\n" +
		"  demo       run the manager and a sidecar locally against an API server, apply the samples and show what they do\n" +
		"  version    print the version, the commit it was built from and the Go version\n"
	tests := []struct {
		args      []string
		code      int
		stdout    string
		stderrHas string
	}{
		{args: []string{"version"}, code: 0, stderrHas: ""},
		{args: nil, code: 2, stdout: usage},
		{args: []string{"--help"}, code: 0, stdout: usage},
		{args: []string{"frobnicate"}, code: 2, stderrHas: `unknown command "frobnicate"`},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			if code := run(tt.args, &stdout, &stderr); code != tt.code {
				t.Fatalf("exit code %d; want %d", code, tt.code)
			}
			if tt.stdout != "" && stdout.String() != tt.stdout {
				t.Fatalf("stdout %q; want %q", stdout.String(), tt.stdout)
			}
			if !strings.Contains(stderr.String(), tt.stderrHas) {
				t.Fatalf("stderr %q; want it to contain %q", stderr.String(), tt.stderrHas)
			}
		})
	}
}

// The image holds no CA bundle: with no system roots (SSL_CERT_FILE and
// SSL_CERT_DIR naming nothing), the program still trusts the public CAs
// (x509roots/fallback), so rediss:// to a managed Redis needs no
// tls_ca_file. Before, its pool was empty there.
func TestPublicRootsWithoutSystemRoots(t *testing.T) {
	if os.Getenv("QO_PRINT_ROOTS") == "1" {
		pool, err := x509.SystemCertPool()
		fmt.Println(err == nil && !pool.Equal(x509.NewCertPool()))
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestPublicRootsWithoutSystemRoots$")
	cmd.Env = append(os.Environ(), "QO_PRINT_ROOTS=1", "SSL_CERT_FILE=/nonexistent/ca.pem", "SSL_CERT_DIR=/nonexistent")
	out, err := cmd.Output()
	if err != nil || !strings.HasPrefix(string(out), "true\n") {
		t.Fatalf("roots without the system's: %v\n%s", err, out)
	}
}

// tenant-acl prints a rule for one namespace, the shared user or the
// gateway, named exactly one way; --seal saves asking the store.
func TestTenantACL(t *testing.T) {
	const seal = "AAAAAAAAAAAAAAAAAAAAAA"
	tests := []struct {
		args              []string
		code              int
		stdoutHas, stderr string
	}{
		{args: []string{"--seal", seal, "team-a"}, stdoutHas: "-@all ~qo:v1:{team-a/* ~qo:v1:app:{team-a/* %R~qo:v1:config:{team-a}:* &qo:v1:config:{team-a}:changed +auth "},
		{args: []string{"--seal", seal, "team-a"}, stdoutHas: " (~qo:s:" + seal + ":qo:v1:{team-a/* ~qo:s:" + seal + ":qo:v1:app:{team-a/* +time "},
		{args: []string{"--seal", seal, "--shared"}, stdoutHas: "-@all ~qo:v1:{* ~qo:v1:app:{* %R~qo:v1:config:{*}:* &qo:v1:config:{*}:changed "},
		{args: []string{"--seal", seal, "--gateway", "a,b"}, stdoutHas: "-@all ~qo:v1:{a/* ~qo:v1:app:{a/* ~qo:v1:{b/* ~qo:v1:app:{b/* "},
		{args: []string{"--seal", seal, "a", "b"}, code: 2, stderr: "quota-operator tenant-acl: give one NAMESPACE, or --shared, or --gateway with its namespaces\n"},
		{args: []string{"--seal", seal, "--shared", "a"}, code: 2, stderr: "quota-operator tenant-acl: give one NAMESPACE, or --shared, or --gateway with its namespaces\n"},
		{args: []string{"--seal", seal, "Team_A"}, code: 2, stderr: "quota-operator tenant-acl: \"Team_A\" is not a namespace name\n"},
		{args: []string{"team-a"}, code: 1, stderr: "quota-operator tenant-acl: give --store (the manager's store URL and credentials) or --seal\n"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			if code := run(append([]string{"tenant-acl"}, tt.args...), &stdout, &stderr); code != tt.code || stderr.String() != tt.stderr {
				t.Fatalf("exit %d, stderr %q; want %d, %q", code, stderr.String(), tt.code, tt.stderr)
			}
			if !strings.Contains(stdout.String(), tt.stdoutHas) || strings.Contains(stdout.String(), "#") {
				t.Fatalf("stdout %q; want it to hold %q and no password", stdout.String(), tt.stdoutHas)
			}
		})
	}
}
