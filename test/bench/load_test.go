package bench

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	extv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/quotaops/quota-operator/internal/store"
	"github.com/quotaops/quota-operator/internal/testutil/benchutil"
)

// sample is what one server did under one load.
type sample struct {
	server   string
	n        int
	rate     float64       // decisions or requests per second
	p50, p99 time.Duration // latency as the load generator saw it
	cpu      float64       // µs of the server process's CPU per decision
	redis    float64       // µs of Redis CPU per decision
	scripts  float64       // FCALL (and EVAL) per decision, as Redis ran them
	calls    float64       // every command Redis ran per decision, scripts' own included
	failed   int64         // decisions the sidecar let through failed open
}

func envInt(name string, def int) int {
	if n, err := strconv.Atoi(os.Getenv(name)); err == nil && n > 0 {
		return n
	}
	return def
}

func envDuration(name string, def time.Duration) time.Duration {
	if d, err := time.ParseDuration(os.Getenv(name)); err == nil && d > 0 {
		return d
	}
	return def
}

// grpcCase is one load on Envoy's rate-limit API: the request for the
// i-th call and the answer every measured call must get.
type grpcCase struct {
	name string
	req  func(i int) *rlsv3.RateLimitRequest
	want rlsv3.RateLimitResponse_Code
}

func descriptor(key, value string) *extv3.RateLimitDescriptor {
	return &extv3.RateLimitDescriptor{Entries: []*extv3.RateLimitDescriptor_Entry{{Key: key, Value: value}}}
}

// grpcCases are the loads, asking for the policy by the domain that
// names it: the policy's name in a sidecar, "namespace/policy" at the
// gateway service (grpcCasesFor).
func grpcCases() []grpcCase { return grpcCasesFor(policyName) }

func grpcCasesFor(domain string) []grpcCase {
	users := make([]*rlsv3.RateLimitRequest, subjects)
	for i := range users {
		users[i] = &rlsv3.RateLimitRequest{Domain: domain, Descriptors: []*extv3.RateLimitDescriptor{descriptor("per-user", "user-"+strconv.Itoa(i))}}
	}
	hot := &rlsv3.RateLimitRequest{Domain: domain, Descriptors: []*extv3.RateLimitDescriptor{descriptor(hotDescName, "tenant-7")}}
	return []grpcCase{
		{name: "1000 keys under limit", req: func(i int) *rlsv3.RateLimitRequest { return users[i%len(users)] }, want: rlsv3.RateLimitResponse_OK},
		{name: "one key far over limit", req: func(int) *rlsv3.RateLimitRequest { return hot }, want: rlsv3.RateLimitResponse_OVER_LIMIT},
	}
}

// runGRPCCases measures every case on the floor, the sidecar, the
// gateway service and the anchor, one after the other, with the same
// callers on one connection.
func runGRPCCases(b *testing.B, w *world) map[string][]sample {
	n := envInt("BENCH_DECISIONS", 40000)
	servers := []proc{w.floor, w.sidecar, w.gateway}
	if w.anchor != nil {
		servers = append(servers, *w.anchor)
	}
	out := map[string][]sample{}
	for i, c := range grpcCases() {
		for _, p := range servers {
			asked := c
			if p.domain != "" {
				asked = grpcCasesFor(p.domain)[i]
			}
			want := c.want
			if p.name == "floor" {
				want = rlsv3.RateLimitResponse_OK
			}
			out[c.name] = append(out[c.name], measureGRPC(b, w, p, asked, want, n))
		}
	}
	return out
}

func measureGRPC(b *testing.B, w *world, p proc, c grpcCase, want rlsv3.RateLimitResponse_Code, n int) sample {
	conn, err := grpc.NewClient(p.grpc, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = conn.Close() }()
	client := rlsv3.NewRateLimitServiceClient(conn)
	op := func(i int) error {
		resp, err := client.ShouldRateLimit(context.Background(), c.req(i))
		if err != nil {
			return fmt.Errorf("%s: %w", p.name, err)
		}
		if resp.OverallCode != want {
			return fmt.Errorf("%s, %s: call %d answered %v, want %v", p.name, c.name, i, resp.OverallCode, want)
		}
		return nil
	}
	// Warm-up: connections, scripts, and a hot key pushed over its limit.
	// Every call completes; none is abandoned.
	warm := func(i int) error {
		_, err := client.ShouldRateLimit(context.Background(), c.req(i))
		return err
	}
	if _, err := benchutil.ClosedLoop(callers, 2*subjects, warm); err != nil {
		b.Fatal(err)
	}
	return measure(b, w, p, n, func() ([]time.Duration, error) { return benchutil.ClosedLoop(callers, n, op) })
}

// measure reads every CPU and command account around run.
func measure(b *testing.B, w *world, p proc, n int, run func() ([]time.Duration, error)) sample {
	cpu, rcpu := benchutil.ProcessCPU(p.name, p.pid), benchutil.RedisCPU(w.store.Client())
	cpu0, rcpu0, st0, f0 := read(b, cpu), read(b, rcpu), redisCountsOf(b, w.store), failedOpen(b, p)
	start := time.Now()
	lat, err := run()
	elapsed := time.Since(start)
	if err != nil {
		b.Fatal(err)
	}
	cpu1, rcpu1, st1, f1 := read(b, cpu), read(b, rcpu), redisCountsOf(b, w.store), failedOpen(b, p)
	slices.Sort(lat)
	per := func(d time.Duration) float64 { return float64(d.Microseconds()) / float64(n) }
	return sample{
		server: p.name, n: n, rate: float64(n) / elapsed.Seconds(),
		p50: lat[len(lat)/2], p99: lat[len(lat)*99/100],
		cpu: per(cpu1 - cpu0), redis: per(rcpu1 - rcpu0),
		scripts: float64(st1.scripts-st0.scripts) / float64(n), calls: float64(st1.calls-st0.calls) / float64(n),
		failed: f1 - f0,
	}
}

func read(b *testing.B, p benchutil.CPUProbe) time.Duration {
	d, err := p.Read()
	if err != nil {
		b.Fatal(err)
	}
	return d
}

type counts struct{ scripts, calls int64 }

// redisCountsOf reads the scripts Redis ran and every command it ran,
// those the scripts called included.
func redisCountsOf(b *testing.B, s *store.Redis) counts {
	var c counts
	var err error
	if c.scripts, c.calls, err = benchutil.CommandCalls(s.Client()); err != nil {
		b.Fatal(err)
	}
	return c
}

// openLoop sends rate requests per second for d, each when it is due
// whether or not earlier ones were answered, as users' traffic arrives.
func openLoop(rate int, d time.Duration, op func(i int) error) ([]time.Duration, error) {
	n := int(d.Seconds() * float64(rate))
	lat := make([]time.Duration, n)
	var failed atomic.Int64
	var first atomic.Value
	var wg sync.WaitGroup
	interval := time.Second / time.Duration(rate)
	start := time.Now()
	for i := range n {
		if wait := time.Until(start.Add(time.Duration(i) * interval)); wait > 0 {
			time.Sleep(wait)
		}
		wg.Go(func() {
			t := time.Now()
			if err := op(i); err != nil && failed.Add(1) == 1 {
				first.Store(err)
			}
			lat[i] = time.Since(t)
		})
	}
	wg.Wait()
	if err, ok := first.Load().(error); ok {
		return lat, fmt.Errorf("%d of %d requests failed, the first: %w", failed.Load(), n, err)
	}
	return lat, nil
}

// runProxyCases sends the same open-loop HTTP load straight to the
// upstream, through the bare proxy and through the sidecar, per rate.
func runProxyCases(b *testing.B, w *world) map[int][]sample {
	d := time.Duration(envInt("BENCH_PROXY_SECONDS", 5)) * time.Second
	out := map[int][]sample{}
	for _, rate := range []int{1000, 3000} {
		for _, p := range []proc{{name: "direct", proxy: w.upstream}, w.bare, w.sidecar} {
			out[rate] = append(out[rate], measureProxy(b, w, p, rate, d))
		}
	}
	return out
}

func measureProxy(b *testing.B, w *world, p proc, rate int, d time.Duration) sample {
	tr := &http.Transport{MaxIdleConnsPerHost: 1024, DisableCompression: true}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	op := func(i int) error {
		req, _ := http.NewRequest(http.MethodGet, p.proxy+"/v1/items", nil)
		req.Header.Set("X-User", "user-"+strconv.Itoa(i%subjects))
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("%s answered %s", p.name, resp.Status)
		}
		if p.metrics != "" && resp.Header.Get("X-RateLimit-Limit") != strconv.Itoa(huge) {
			return fmt.Errorf("%s decided no limit: X-RateLimit-Limit %q", p.name, resp.Header.Get("X-RateLimit-Limit"))
		}
		return nil
	}
	if _, err := openLoop(rate, time.Second, op); err != nil {
		b.Fatal(err)
	}
	if p.pid == 0 {
		p.pid = os.Getpid() // direct: no proxy process; this one's CPU is the client's
	}
	n := int(d.Seconds() * float64(rate))
	return measure(b, w, p, n, func() ([]time.Duration, error) { return openLoop(rate, d, op) })
}
