package sidecar_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"runtime/debug"
	"strconv"
	"testing"
	"time"

	extv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/quotaops/quota-operator/api/v1alpha1"
	"github.com/quotaops/quota-operator/internal/rlsserver"
	"github.com/quotaops/quota-operator/internal/testutil/benchutil"
	"github.com/quotaops/quota-operator/internal/testutil/localtest"
	"github.com/quotaops/quota-operator/internal/testutil/redistest"
)

// evalScript is the baseline the issue names: INCRBY and PEXPIRE in one
// script, as redis-benchmark runs it.
const evalScript = "redis.call('INCRBY', KEYS[1], 1) redis.call('PEXPIRE', KEYS[1], 60000) return 1"

// BenchmarkSidecar measures whole decisions through the sidecar against a
// local Redis: 50 concurrent callers on 1,000 distinct keys, all under
// their limit, through the Envoy gRPC service and through the HTTP proxy.
// In the same run, redis-benchmark measures INCR and the INCRBY+PEXPIRE
// script with 50 clients; x-EVAL and x-INCR are the sidecar's decisions/s
// as a fraction of those. cmds/op counts what the sidecar's store client
// sent. The CPU each process spent per decision (go: this process, the
// load generator and, but in grpc-process, the sidecar; sidecar; redis)
// says where the cores went, steadier than any rate on a shared machine.
// The load generator, the sidecar, the upstream and Redis share the
// machine's cores; grpc-process runs the sidecar binary as its own
// process, as in a pod. grpc-floor is the same load against a gRPC server
// that answers OK at once: what the protocol alone costs here, the
// ceiling for any gRPC rate-limit service on this machine.
func BenchmarkSidecar(b *testing.B) {
	redistest.SkipIfMissing(b, startError)
	// The GC setting `quota-operator sidecar` runs with, for the sidecar in
	// this process (and the load generator beside it).
	defer debug.SetGCPercent(debug.SetGCPercent(400))
	host, port, _ := net.SplitHostPort(redisS.Addr)
	ns := "bench" + strconv.FormatInt(time.Now().UnixNano()%100000, 10)
	sc := start(b, ns)
	sc.publish(b, perIP(ns, 1_000_000_000, "1h", func(p *v1alpha1.RateLimitPolicy) {
		p.Spec.Limits[0].Name = "per-user"
		p.Spec.Limits[0].Key = []v1alpha1.KeySource{{Source: v1alpha1.SourceHeader, Name: "X-User"}}
	}))
	waitMetric(b, sc.admin, revisionLine(ns, 1))
	sent := &benchutil.CommandCounter{}
	sc.store.Client().AddHook(sent)
	modes := []struct {
		name string
		op   func(b *testing.B) func(i int) error
	}{
		{"grpc", func(b *testing.B) func(int) error { return grpcOp(b, sc.grpc) }},
		{"proxy", func(b *testing.B) func(int) error { return proxyOp(sc.proxy) }},
		{"grpc-floor", func(b *testing.B) func(int) error { return grpcOp(b, okServer(b)) }},
	}
	// The same gRPC load against the sidecar binary in its own process, as
	// it runs in a pod: only the load generator is in this process.
	grpcAddr := localtest.FreeAddr(b)
	pid := startSidecarProcess(b, []string{"--upstream", "http://127.0.0.1:9", "--store", redisS.URL, "--namespace", ns, "--grpc-listen", grpcAddr}, nil).pid
	modes = append(modes, struct {
		name string
		op   func(b *testing.B) func(i int) error
	}{"grpc-process", func(b *testing.B) func(int) error { return grpcOp(b, grpcAddr) }})
	for _, m := range modes {
		b.Run(m.name, func(b *testing.B) {
			eval := benchutil.RedisBenchmark(b, host, port, 50, 50000, "EVAL", evalScript, "1", "bench:eval")
			incr := benchutil.RedisBenchmark(b, host, port, 50, 50000, "INCR", "bench:incr")
			counter := sent
			probes := []benchutil.CPUProbe{benchutil.ProcessCPU("go", os.Getpid()), benchutil.RedisCPU(redisS.Client())}
			if m.name == "grpc-process" {
				counter = nil // the store client is in the other process
				probes = append(probes, benchutil.ProcessCPU("sidecar", pid))
			}
			rate := benchutil.Measure(b, redisS.Client(), counter, 50, m.op(b), probes...)
			b.ReportMetric(eval, "EVAL/s")
			b.ReportMetric(incr, "INCR/s")
			b.ReportMetric(rate/eval, "x-EVAL")
			b.ReportMetric(rate/incr, "x-INCR")
		})
	}
}

// okServer serves benchutil.OK with the sidecar's gRPC server.
func okServer(b *testing.B) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := rlsserver.New(benchutil.OK, nil)
	go func() { _ = srv.Serve(l) }()
	b.Cleanup(func() { srv.Stop(context.Background()) })
	return l.Addr().String()
}

func grpcOp(b *testing.B, addr string) func(int) error {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = conn.Close() })
	client := rlsv3.NewRateLimitServiceClient(conn)
	reqs := make([]*rlsv3.RateLimitRequest, 1000)
	for i := range reqs {
		reqs[i] = &rlsv3.RateLimitRequest{Domain: "api", Descriptors: []*extv3.RateLimitDescriptor{descriptor("per-user", "user-"+strconv.Itoa(i))}}
	}
	return func(i int) error {
		resp, err := client.ShouldRateLimit(context.Background(), reqs[i%len(reqs)])
		if err == nil && resp.OverallCode != rlsv3.RateLimitResponse_OK {
			b.Errorf("over limit: %v", resp)
		}
		return err
	}
}

func proxyOp(base string) func(int) error {
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	return func(i int) error {
		req, _ := http.NewRequest(http.MethodGet, base+"/v1/items", nil)
		req.Header.Set("X-User", "user-"+strconv.Itoa(i%1000))
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		// Drained, or the client closes the connection instead of reusing it.
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK || resp.Header.Get("X-RateLimit-Limit") == "" {
			return &statusError{resp.Status}
		}
		return nil
	}
}

type statusError struct{ status string }

func (e *statusError) Error() string { return "unexpected answer: " + e.status }
