package gateway_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	extv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"github.com/go-logr/logr"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/quotaops/quota-operator/api/v1alpha1"
	"github.com/quotaops/quota-operator/internal/gateway"
	"github.com/quotaops/quota-operator/internal/store"
	"github.com/quotaops/quota-operator/internal/testutil/localtest"
	"github.com/quotaops/quota-operator/internal/testutil/redistest"
	"github.com/quotaops/quota-operator/internal/testutil/sidecartest"
	"github.com/quotaops/quota-operator/internal/testutil/testpki"
)

var (
	redisS     *redistest.Server
	startError error
)

func TestMain(m *testing.M) { redistest.Main(m, &redisS, &startError) }

// running is a gateway service in the test process and its store.
type running struct {
	grpc, health string
	store        *store.Redis
}

// serve runs the service for namespaces on the test Redis until the test
// ends, and waits until it is ready.
func serve(t *testing.T, tlsConfig *tls.Config, namespaces ...string) running {
	t.Helper()
	redistest.SkipIfMissing(t, startError)
	s, err := store.Open(redisS.URL)
	if err != nil {
		t.Fatal(err)
	}
	grpcLn, _ := net.Listen("tcp", "127.0.0.1:0")
	healthLn, _ := net.Listen("tcp", "127.0.0.1:0")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- gateway.Serve(ctx, gateway.Options{Namespaces: namespaces, Timeout: time.Second, Resync: time.Second,
			TLS: tlsConfig, Log: logr.Discard()}, s.(gateway.Store), gateway.Listeners{GRPC: grpcLn, Health: healthLn})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("gateway: %v", err)
		}
		_ = s.Close()
	})
	r := running{grpc: grpcLn.Addr().String(), health: "http://" + healthLn.Addr().String(), store: s.(*store.Redis)}
	return r
}

// publish writes p to the store as the operator would.
func (r running) publish(t *testing.T, p *v1alpha1.RateLimitPolicy) {
	sidecartest.Publish(t, r.store, p)
}

// get answers GET path of the health listener.
func (r running) get(t *testing.T, path string) (int, string) { return localtest.Get(t, r.health+path) }

// waitFor polls the health listener's path until its body holds want.
func (r running) waitFor(t *testing.T, path, want string) {
	t.Helper()
	localtest.WaitFor(t, 10*time.Second, path+" holding "+want, func() error {
		if code, body := r.get(t, path); code != 200 || !strings.Contains(body, want) {
			return fmt.Errorf("%d:\n%s", code, body)
		}
		return nil
	})
}

func policy(ns, name string, limits ...v1alpha1.Limit) *v1alpha1.RateLimitPolicy {
	return &v1alpha1.RateLimitPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: v1alpha1.RateLimitPolicySpec{Limits: limits}}
}

func perUser(limit int64) v1alpha1.Limit {
	return v1alpha1.Limit{Name: "per-user", Key: []v1alpha1.KeySource{{Source: v1alpha1.SourceHeader, Name: "X-User"}},
		Rates: []v1alpha1.Rate{{Limit: limit, Window: "1m"}}}
}

func client(t *testing.T, addr string, creds credentials.TransportCredentials) rlsv3.RateLimitServiceClient {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return rlsv3.NewRateLimitServiceClient(conn)
}

func ask(c rlsv3.RateLimitServiceClient, domain string, kv ...string) (*rlsv3.RateLimitResponse, error) {
	d := &extv3.RateLimitDescriptor{}
	for i := 0; i < len(kv); i += 2 {
		d.Entries = append(d.Entries, &extv3.RateLimitDescriptor_Entry{Key: kv[i], Value: kv[i+1]})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return c.ShouldRateLimit(ctx, &rlsv3.RateLimitRequest{Domain: domain, Descriptors: []*extv3.RateLimitDescriptor{d}})
}

// answer is a response in short: the overall code, then each descriptor's
// code, limit and remaining.
func answer(resp *rlsv3.RateLimitResponse, err error) string {
	if err != nil {
		return status.Code(err).String() + ": " + status.Convert(err).Message()
	}
	out := resp.GetOverallCode().String()
	for _, s := range resp.GetStatuses() {
		out += fmt.Sprintf(" [%s", s.GetCode())
		if l := s.GetCurrentLimit(); l != nil {
			out += fmt.Sprintf(" %s %d/%s remaining %d", l.GetName(), l.GetRequestsPerUnit(), l.GetUnit(), s.GetLimitRemaining())
		}
		out += "]"
	}
	return out
}

// One service decides for two namespaces by "namespace/policy": policies of
// the same name keep their own limits and counters, a policy with a pod
// selector is served too (a gateway has no pod), and a namespace it was not
// given is refused.
func TestDecidesByNamespaceAndPolicy(t *testing.T) {
	suffix := fmt.Sprint(time.Now().UnixNano() % 1e9)
	a, b := "team-a-"+suffix, "team-b-"+suffix
	gw := serve(t, nil, a, b)
	gw.publish(t, policy(a, "api", perUser(3)))
	gw.publish(t, policy(b, "api", perUser(5)))
	search := policy(b, "search", v1alpha1.Limit{Name: "global", Rates: []v1alpha1.Rate{{Limit: 2, Window: "1h"}}})
	search.Spec.Selector = metav1.LabelSelector{MatchLabels: map[string]string{"app": "search"}}
	gw.publish(t, search)
	gw.waitFor(t, "/metrics", fmt.Sprintf("quota_config_revision{namespace=%q} 2", b))
	gw.waitFor(t, "/metrics", fmt.Sprintf("quota_config_revision{namespace=%q} 1", a))
	if code, body := gw.get(t, "/readyz"); code != 200 || body != "ok\n" {
		t.Fatalf("readyz: %d %q", code, body)
	}
	c := client(t, gw.grpc, insecure.NewCredentials())
	type call struct {
		domain string
		kv     []string
		want   string
	}
	var calls []call
	for _, want := range []string{"OK [OK per-user 3/MINUTE remaining 2]", "OK [OK per-user 3/MINUTE remaining 1]",
		"OK [OK per-user 3/MINUTE remaining 0]", "OVER_LIMIT [OVER_LIMIT per-user 3/MINUTE remaining 0]"} {
		calls = append(calls, call{a + "/api", []string{"per-user", "alice"}, want})
	}
	for i := 4; i >= 0; i-- {
		calls = append(calls, call{b + "/api", []string{"per-user", "alice"}, fmt.Sprintf("OK [OK per-user 5/MINUTE remaining %d]", i)})
	}
	calls = append(calls,
		call{b + "/api", []string{"per-user", "alice"}, "OVER_LIMIT [OVER_LIMIT per-user 5/MINUTE remaining 0]"},
		call{a + "/api", []string{"per-user", "bob"}, "OK [OK per-user 3/MINUTE remaining 2]"},
		call{b + "/search", []string{"global", "_"}, "OK [OK global 2/HOUR remaining 1]"},
		call{b + "/search", []string{"global", "_"}, "OK [OK global 2/HOUR remaining 0]"},
		call{b + "/search", []string{"global", "_"}, "OVER_LIMIT [OVER_LIMIT global 2/HOUR remaining 0]"},
		call{a + "/search", []string{"global", "_"}, "OK [OK]"},
		call{a + "/nope", []string{"per-user", "alice"}, "OK [OK]"},
		call{"team-c-" + suffix + "/api", []string{"per-user", "alice"}, fmt.Sprintf("PermissionDenied: namespace \"team-c-%s\" is not served here", suffix)},
		call{"api", []string{"per-user", "alice"}, `InvalidArgument: domain "api" is not namespace/policy`},
		call{a + "/", []string{"per-user", "alice"}, fmt.Sprintf(`InvalidArgument: domain "%s/" is not namespace/policy`, a)},
	)
	for i, tc := range calls {
		if got := answer(ask(c, tc.domain, tc.kv...)); got != tc.want {
			t.Errorf("call %d, %s %v: got %q, want %q", i, tc.domain, tc.kv, got, tc.want)
		}
	}
	_, metrics := gw.get(t, "/metrics")
	for _, line := range []string{
		fmt.Sprintf(`quota_decisions_total{limit="per-user",namespace=%q,policy="api",result="allowed"} 4`, a),
		fmt.Sprintf(`quota_decisions_total{limit="per-user",namespace=%q,policy="api",result="denied"} 1`, a),
		fmt.Sprintf(`quota_decisions_total{limit="per-user",namespace=%q,policy="api",result="allowed"} 5`, b),
		fmt.Sprintf(`quota_decisions_total{limit="global",namespace=%q,policy="search",result="denied"} 1`, b),
	} {
		if !strings.Contains(metrics, line+"\n") {
			t.Errorf("no %s in metrics", line)
		}
	}
}

// Over mTLS, a gateway with a client certificate from the given CA is
// answered; one without a certificate, or that trusts another CA, is not.
func TestMutualTLS(t *testing.T) {
	dir := testpki.Write(t)
	f := func(name string) string { return filepath.Join(dir, name) }
	cfg, err := gateway.TLSFiles(f("server.crt"), f("server.key"), f("ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	ns := "tls-" + fmt.Sprint(time.Now().UnixNano()%1e9)
	gw := serve(t, cfg, ns)
	gw.publish(t, policy(ns, "api", perUser(3)))
	gw.waitFor(t, "/metrics", fmt.Sprintf("quota_config_revision{namespace=%q} 1", ns))
	pool := func(file string) *x509.CertPool {
		raw, _ := os.ReadFile(f(file))
		p := x509.NewCertPool()
		p.AppendCertsFromPEM(raw)
		return p
	}
	pair, err := tls.LoadX509KeyPair(f("client.crt"), f("client.key"))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		tls  *tls.Config
		want string
	}{
		{"client certificate", &tls.Config{RootCAs: pool("ca.crt"), Certificates: []tls.Certificate{pair}}, "OK [OK per-user 3/MINUTE remaining 2]"},
		{"no client certificate", &tls.Config{RootCAs: pool("ca.crt")}, "Unavailable"},
		{"another CA", &tls.Config{RootCAs: pool("other-ca.crt"), Certificates: []tls.Certificate{pair}}, "Unavailable"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := answer(ask(client(t, gw.grpc, credentials.NewTLS(tt.tls)), ns+"/api", "per-user", "alice"))
			if got != tt.want && !strings.HasPrefix(got, tt.want+": ") {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
	if _, err := ask(client(t, gw.grpc, insecure.NewCredentials()), ns+"/api", "per-user", "alice"); status.Code(err) != codes.Unavailable {
		t.Errorf("plain text: %v, want Unavailable", err)
	}
}

// A renewed key pair, written over the files as the kubelet does for a
// Secret, serves the next connection without a restart; a half-written
// one leaves the last good pair serving.
func TestTLSFilesFollowRenewal(t *testing.T) {
	dir := testpki.Write(t)
	f := func(name string) string { return filepath.Join(dir, name) }
	cfg, err := gateway.TLSFiles(f("server.crt"), f("server.key"), "")
	if err != nil {
		t.Fatal(err)
	}
	serving := func() string {
		c, err := cfg.GetConfigForClient(nil)
		if err != nil {
			t.Fatal(err)
		}
		leaf, err := x509.ParseCertificate(c.Certificates[0].Certificate[0])
		if err != nil {
			t.Fatal(err)
		}
		return leaf.Subject.CommonName
	}
	if got := serving(); got != "server" {
		t.Fatalf("serving %q", got)
	}
	renew := func(from string) {
		for _, ext := range []string{".crt", ".key"} {
			raw, err := os.ReadFile(f(from + ext))
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(f("server"+ext), raw, 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	renew("client") // any other pair will do
	if got := serving(); got != "client" {
		t.Fatalf("after the renewal: serving %q", got)
	}
	if err := os.WriteFile(f("server.key"), []byte("half"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got := serving(); got != "client" {
		t.Fatalf("after a broken write: serving %q", got)
	}
}
