package main

import (
	"bytes"
	"strings"
	"testing"
)

func TestRun(t *testing.T) {
	usage := "Usage: quota-operator <command> [flags]\n\nCommands:\n" +
		"  manager    run the operator: reconcile RateLimitPolicy and UsageQuota into the store\n" +
		"  sidecar    run the sidecar: enforce the namespace's policies in front of an app\n" +
		"  demo       run the manager and a sidecar locally against an API server, apply the samples and show what they do\n" +
		"  version    print the version\n"
	tests := []struct {
		args      []string
		code      int
		stdout    string
		stderrHas string
	}{
		{args: []string{"version"}, code: 0, stdout: "dev\n"},
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
