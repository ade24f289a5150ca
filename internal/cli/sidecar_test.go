package cli

import (
	"io"
	"strings"
	"testing"
	"time"

	"github.com/quotaops/quota-operator/internal/testutil/localtest"
)

var env = localtest.Env

func TestSidecarFlags(t *testing.T) {
	ok := []string{"--upstream", "http://127.0.0.1:8080", "--namespace", "team-a"}
	tests := []struct {
		name   string
		args   []string
		getenv func(string) string
		want   string // error text; empty: accepted
	}{
		{"flags", ok, env(), ""},
		{"environment", nil, env("QUOTA_UPSTREAM", "http://127.0.0.1:8080", "QUOTA_NAMESPACE", "team-a"), ""},
		{"policy file instead of a namespace", []string{"--upstream", "http://app:80", "--policy-file", "/etc/quota"}, env(), ""},
		{"no upstream", []string{"--namespace", "a"}, env(), "--upstream is required"},
		{"no namespace", []string{"--upstream", "http://app:80"}, env(), "--namespace is required (or --policy-file)"},
		{"upstream not a URL", []string{"--upstream", "app:80", "--namespace", "a"}, env(), `--upstream "app:80" is not an http:// or https:// URL`},
		{"bad trusted proxies", append(ok, "--trusted-proxies", "10.0.0.0/40"), env(), "--trusted-proxies: netip.ParsePrefix"},
		{"bad duration in the environment", ok, env("QUOTA_STORE_TIMEOUT", "soon"), `QUOTA_STORE_TIMEOUT: parse error`},
		{"zero timeout", append(ok, "--store-timeout", "0s"), env(), "--store-timeout and --resync-interval must be positive"},
		{"failure policy override", append(ok, "--failure-policy", "Closed"), env(), ""},
		{"bad failure policy", append(ok, "--failure-policy", "closed"), env(), `--failure-policy "closed" is neither Open nor Closed`},
		{"no proxy address", append(ok, "--listen", ""), env(), "--listen and --admin-listen are required"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := parseSidecarFlags(tt.args, io.Discard, tt.getenv)
			if tt.want == "" {
				if err != nil || c.listen != ":8000" || c.adminListen != "127.0.0.1:9901" || c.healthListen != ":9902" || c.StoreTimeout != 50*time.Millisecond {
					t.Fatalf("%+v, %v", c, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v; want one containing %q", err, tt.want)
			}
		})
	}
	// A flag on the command line wins over the environment.
	c, err := parseSidecarFlags(append(ok, "--store-timeout", "20ms"), io.Discard, env("QUOTA_STORE_TIMEOUT", "90ms", "QUOTA_ADMIN_LISTEN", "127.0.0.1:9999"))
	if err != nil || c.StoreTimeout != 20*time.Millisecond || c.adminListen != "127.0.0.1:9999" {
		t.Fatalf("%+v, %v", c, err)
	}
}
