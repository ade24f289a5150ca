package main

import (
	"bytes"
	"context"
	"io"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	extv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/quotaops/quota-operator/api/v1alpha1"
	"github.com/quotaops/quota-operator/internal/store"
	"github.com/quotaops/quota-operator/internal/testutil/bintest"
	"github.com/quotaops/quota-operator/internal/testutil/localtest"
	"github.com/quotaops/quota-operator/internal/testutil/redistest"
	"github.com/quotaops/quota-operator/internal/testutil/sidecartest"
)

var env = localtest.Env

func TestRatelimitFlags(t *testing.T) {
	ok := []string{"--store", "redis://redis:6379/0", "--namespaces", "team-a,team-b"}
	tests := []struct {
		name   string
		args   []string
		getenv func(string) string
		want   string // error text; empty: accepted
	}{
		{"flags", ok, env(), ""},
		{"environment", nil, env("QUOTA_STORE", "redis://redis:6379/0", "QUOTA_NAMESPACES", "team-a, team-b,team-a"), ""},
		{"mTLS", append(ok, "--tls-cert-file", "t.crt", "--tls-key-file", "t.key", "--client-ca-file", "ca.crt"), env(), ""},
		{"no namespaces", []string{"--store", "redis://redis:6379/0"}, env(), "--namespaces is required"},
		{"not a namespace", []string{"--store", "redis://r:6379", "--namespaces", "team-a,Team_B"}, env(), `"Team_B" is not a namespace name`},
		{"memory store", []string{"--namespaces", "a"}, env(), "--store must be Redis: replicas of a gateway service share their counters"},
		{"a key without its certificate", append(ok, "--tls-key-file", "t.key"), env(), "--tls-cert-file and --tls-key-file go together"},
		{"a client CA without TLS", append(ok, "--client-ca-file", "ca.crt"), env(), "--client-ca-file needs --tls-cert-file and --tls-key-file"},
		{"bad failure policy", append(ok, "--failure-policy", "open"), env(), `--failure-policy "open" is neither Open nor Closed`},
		{"no gRPC address", append(ok, "--grpc-listen", ""), env(), "--grpc-listen is required"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := parseRatelimitFlags(tt.args, io.Discard, tt.getenv)
			if tt.want == "" {
				if err != nil || !slices.Equal(c.namespaces, []string{"team-a", "team-b"}) || c.grpcListen != ":8081" {
					t.Fatalf("%+v, %v", c, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v; want one containing %q", err, tt.want)
			}
		})
	}
}

// `quota-operator ratelimit`, run as the binary is in its Deployment,
// decides by namespace and policy for two namespaces whose policies share
// a name, each on its own limit and counters, and refuses a third.
func TestRatelimitCommand(t *testing.T) {
	r := redistest.StartOrSkip(t)
	bin, err := bintest.Build()
	if err != nil {
		t.Fatal(err)
	}
	s, err := store.Open(r.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = s.Close() }()
	for ns, limit := range map[string]int64{"team-a": 1, "team-b": 2} {
		sidecartest.Publish(t, s.(*store.Redis), &v1alpha1.RateLimitPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "api"},
			Spec: v1alpha1.RateLimitPolicySpec{Limits: []v1alpha1.Limit{{Name: "per-user",
				Key: []v1alpha1.KeySource{{Source: v1alpha1.SourceHeader, Name: "X-User"}}, Rates: []v1alpha1.Rate{{Limit: limit, Window: "1h"}}}}}})
	}
	grpcAddr, health := localtest.FreeAddr(t), localtest.FreeAddr(t)
	cmd := exec.Command(bin, "ratelimit", "--namespaces", "team-a,team-b", "--grpc-listen", grpcAddr, "--health-listen", health)
	cmd.Env = append(os.Environ(), "QUOTA_STORE="+r.URL)
	var logs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = cmd.Process.Signal(os.Interrupt)
		if err := cmd.Wait(); err != nil {
			t.Errorf("ratelimit: %v\n%s", err, logs.String())
		}
	}()
	localtest.WaitOK(t, 15*time.Second, "http://"+health+"/readyz")
	conn, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close() }()
	c := rlsv3.NewRateLimitServiceClient(conn)
	for i, tc := range []struct{ domain, want string }{
		{"team-a/api", "OK"}, {"team-a/api", "OVER_LIMIT"},
		{"team-b/api", "OK"}, {"team-b/api", "OK"}, {"team-b/api", "OVER_LIMIT"},
		{"team-c/api", `rpc error: code = PermissionDenied desc = namespace "team-c" is not served here`},
	} {
		resp, err := c.ShouldRateLimit(context.Background(), &rlsv3.RateLimitRequest{Domain: tc.domain,
			Descriptors: []*extv3.RateLimitDescriptor{{Entries: []*extv3.RateLimitDescriptor_Entry{{Key: "per-user", Value: "alice"}}}}})
		got := resp.GetOverallCode().String()
		if err != nil {
			got = err.Error()
		}
		if got != tc.want {
			t.Errorf("call %d to %s: %s; want %s", i, tc.domain, got, tc.want)
		}
	}
}
