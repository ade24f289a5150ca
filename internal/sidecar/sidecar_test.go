package sidecar_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/quotaops/quota-operator/api/v1alpha1"
	"github.com/quotaops/quota-operator/internal/rls"
	"github.com/quotaops/quota-operator/internal/rlsserver"
	"github.com/quotaops/quota-operator/internal/sidecar"
	"github.com/quotaops/quota-operator/internal/store"
	"github.com/quotaops/quota-operator/internal/testutil/redistest"
	"github.com/quotaops/quota-operator/internal/testutil/sidecartest"
)

var (
	redisS     *redistest.Server
	startError error
)

func TestMain(m *testing.M) { redistest.Main(m, &redisS, &startError) }

// upstream answers 200 "ok" and shows the X-Forwarded-For it received.
func upstream(t testing.TB) *url.URL {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Seen-Forwarded-For", r.Header.Get("X-Forwarded-For"))
		n, _ := io.Copy(io.Discard, r.Body) // as an app does: the whole body, then the answer
		w.Header().Set("Seen-Body-Bytes", strconv.FormatInt(n, 10))
		_, _ = io.WriteString(w, "ok")
	}))
	t.Cleanup(srv.Close)
	u, _ := url.Parse(srv.URL)
	return u
}

// running is a sidecar serving in the test process.
type running struct {
	proxy, admin, grpc string
	store              *store.Redis
}

// start runs a sidecar for namespace on the test Redis, trusting 127.0.0.1
// as a proxy so tests can pick client addresses with X-Forwarded-For.
func start(t testing.TB, namespace string) running {
	t.Helper()
	redistest.SkipIfMissing(t, startError)
	s, err := store.Open(redisS.URL + "?pool_size=64")
	if err != nil {
		t.Fatal(err)
	}
	proxyLn, _ := net.Listen("tcp", "127.0.0.1:0")
	adminLn, _ := net.Listen("tcp", "127.0.0.1:0")
	grpcLn, _ := net.Listen("tcp", "127.0.0.1:0")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- sidecar.Serve(ctx, sidecar.Options{
			Upstream: upstream(t), Namespace: namespace, Trusted: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")},
			Timeout: 50 * time.Millisecond, Resync: time.Second, Log: logr.Discard(),
			RLS: func(h rls.Handler) sidecar.RLSServer { return rlsserver.New(h, nil) },
		}, s, sidecar.Listeners{Proxy: proxyLn, Admin: adminLn, GRPC: grpcLn})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("sidecar: %v", err)
		}
		_ = s.Close()
	})
	r := running{proxy: "http://" + proxyLn.Addr().String(), admin: "http://" + adminLn.Addr().String(),
		grpc: grpcLn.Addr().String(), store: s.(*store.Redis)}
	return r
}

// publish writes p to the store as the operator would.
func (r running) publish(t testing.TB, p *v1alpha1.RateLimitPolicy) {
	sidecartest.Publish(t, r.store, p)
}

// revisionLine is the metrics line of a sidecar of ns enforcing rev.
func revisionLine(ns string, rev int) string {
	return fmt.Sprintf("quota_config_revision{namespace=%q} %d\n", ns, rev)
}

func perIP(ns string, limit int64, window string, mutate ...func(*v1alpha1.RateLimitPolicy)) *v1alpha1.RateLimitPolicy {
	p := &v1alpha1.RateLimitPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "api"},
		Spec: v1alpha1.RateLimitPolicySpec{
			Limits: []v1alpha1.Limit{{Name: "per-ip", Key: []v1alpha1.KeySource{{Source: v1alpha1.SourceClientIP}},
				Rates: []v1alpha1.Rate{{Limit: limit, Window: window}}}},
		},
	}
	for _, m := range mutate {
		m(p)
	}
	return p
}

// answer is a response, read and closed.
type answer struct {
	StatusCode int
	Status     string
	Header     http.Header
}

// get sends GET /v1/items as client.
func get(t testing.TB, base, client string) answer {
	t.Helper()
	return send(t, base+"/v1/items", client)
}

func send(t testing.TB, url, client string) answer {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	if client != "" {
		req.Header.Set("X-Forwarded-For", client)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	_, _ = io.Copy(io.Discard, resp.Body)
	return answer{StatusCode: resp.StatusCode, Status: resp.Status, Header: resp.Header}
}

// waitReady waits for the sidecar to load a config with the wanted limit.
func waitReady(t testing.TB, base, client string, limit string) time.Duration {
	t.Helper()
	start := time.Now()
	for time.Since(start) < 5*time.Second {
		if resp := get(t, base, client); resp.Header.Get("X-RateLimit-Limit") == limit {
			return time.Since(start)
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("limit %s not enforced within 5s", limit)
	return 0
}

func namespace(t testing.TB) string {
	return strings.ToLower(strings.NewReplacer("/", "-", "_", "-").Replace(t.Name())) + fmt.Sprint(time.Now().UnixNano()%100000)
}

// A limit on pathPrefix /api/ holds for every spelling of a path under it
// that the app reads as the same path: doubled slashes, "." and "..". Before,
// only the first request counted and the others passed.
func TestPathPrefixMatchesTheCleanPath(t *testing.T) {
	ns := namespace(t)
	sc := start(t, ns)
	sc.publish(t, perIP(ns, 1, "1h", func(p *v1alpha1.RateLimitPolicy) {
		p.Spec.Limits[0].Key = nil
		p.Spec.Limits[0].Match = &v1alpha1.Match{PathPrefix: "/api/"}
	}))
	waitMetric(t, sc.admin, revisionLine(ns, 1))
	if got := send(t, sc.proxy+"/api/login", ""); got.StatusCode != http.StatusOK || got.Header.Get("X-RateLimit-Remaining") != "0" {
		t.Fatalf("/api/login: %s %v", got.Status, got.Header)
	}
	for _, p := range []string{"//api/login", "/./api/login", "/x/../api/login", "/api//login", "/api/./login/"} {
		if got := send(t, sc.proxy+p, ""); got.StatusCode != http.StatusTooManyRequests {
			t.Fatalf("%s after /api/login: %s", p, got.Status)
		}
	}
	for _, p := range []string{"/apix/login", "/", "/static/../public/a"} {
		if got := send(t, sc.proxy+p, ""); got.StatusCode != http.StatusOK || got.Header.Get("X-RateLimit-Limit") != "" {
			t.Fatalf("%s is not under /api/: %s %v", p, got.Status, got.Header)
		}
	}
}
