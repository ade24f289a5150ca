package bench

import (
	"fmt"
	"io"
	"testing"
	"time"
)

type report struct {
	grpc  map[string][]sample
	proxy map[int][]sample
}

func find(samples []sample, server string) (sample, bool) {
	for _, s := range samples {
		if s.server == server {
			return s, true
		}
	}
	return sample{}, false
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f", float64(d.Microseconds())/1000) }

func (r *report) print(out io.Writer, anchor bool) {
	fmt.Fprintf(out, "\nEnvoy RLS API, %d callers on one connection (closed loop)\n", callers)
	fmt.Fprintf(out, "%-24s %-22s %10s %8s %8s %12s %12s %10s %10s %8s\n",
		"case", "server", "decisions/s", "p50 ms", "p99 ms", "server µs/op", "redis µs/op", "scripts/op", "calls/op", "failed-open")
	for _, c := range grpcCases() {
		for _, s := range r.grpc[c.name] {
			fmt.Fprintf(out, "%-24s %-22s %10.0f %8s %8s %12.1f %12.1f %10.3f %10.3f %8d\n",
				c.name, s.server, s.rate, ms(s.p50), ms(s.p99), s.cpu, s.redis, s.scripts, s.calls, s.failed)
		}
	}
	fmt.Fprintf(out, "\nHTTP through the proxy, open loop\n")
	fmt.Fprintf(out, "%-10s %-12s %10s %8s %8s %12s %12s %10s %8s\n", "rate/s", "path", "requests/s", "p50 ms", "p99 ms", "proc µs/req", "redis µs/req", "scripts/req", "failed-open")
	for _, rate := range []int{1000, 3000} {
		for _, s := range r.proxy[rate] {
			fmt.Fprintf(out, "%-10d %-12s %10.0f %8s %8s %12.1f %12.1f %10.3f %8d\n", rate, s.server, s.rate, ms(s.p50), ms(s.p99), s.cpu, s.redis, s.scripts, s.failed)
		}
	}
	fmt.Fprintf(out, "(direct: proc is the load generator's own CPU, for scale.)\n\nTargets (issue 16), ratios from this run:\n")
	for _, t := range r.targets(anchor) {
		verdict := "PASS"
		if !t.ok {
			verdict = "FAIL"
		}
		fmt.Fprintf(out, "  %-4s %-70s %s\n", verdict, t.name, t.value)
	}
}

type target struct {
	name, value string
	ok          bool
}

func (r *report) targets(anchor bool) []target {
	under, over := r.grpc[grpcCases()[0].name], r.grpc[grpcCases()[1].name]
	floor, _ := find(under, "floor")
	sc, _ := find(under, "sidecar")
	hot, _ := find(over, "sidecar")
	ts := []target{
		{name: "1. sidecar CPU per RLS decision <= 1.15x the floor's", value: fmt.Sprintf("%.2fx (%.1f / %.1f µs)", sc.cpu/floor.cpu, sc.cpu, floor.cpu), ok: sc.cpu <= 1.15*floor.cpu},
	}
	if anchor {
		a, _ := find(under, "envoyproxy/ratelimit")
		ah, _ := find(over, "envoyproxy/ratelimit")
		ts = append(ts,
			target{name: "2. Redis CPU per decision <= 0.5x the anchor's", value: fmt.Sprintf("%.2fx (%.1f / %.1f µs)", sc.redis/a.redis, sc.redis, a.redis), ok: sc.redis <= 0.5*a.redis},
			target{name: "3b. over-limit key: sidecar CPU <= the anchor's", value: fmt.Sprintf("%.2fx (%.1f / %.1f µs)", hot.cpu/ah.cpu, hot.cpu, ah.cpu), ok: hot.cpu <= ah.cpu})
		if gw, ok := find(under, "gateway"); ok {
			ts = append(ts, target{name: "2g. gateway service: Redis CPU per decision <= 0.5x the anchor's",
				value: fmt.Sprintf("%.2fx (%.1f / %.1f µs)", gw.redis/a.redis, gw.redis, a.redis), ok: gw.redis <= 0.5*a.redis})
		}
	}
	ts = append(ts,
		target{name: "   store scripts per decision under limit <= 1", value: fmt.Sprintf("%.3f", sc.scripts), ok: sc.scripts <= 1},
		target{name: "3. store scripts per decision for a known over-limit key == 0", value: fmt.Sprintf("%.3f", hot.scripts), ok: hot.scripts == 0})
	for _, rate := range []int{1000, 3000} {
		bare, ok := find(r.proxy[rate], "bare proxy")
		side, measured := find(r.proxy[rate], "sidecar")
		if !ok || !measured {
			continue // BENCH_ONLY=grpc: nothing to judge
		}
		ts = append(ts,
			target{name: fmt.Sprintf("4. proxy at %d/s: sidecar CPU per request <= 1.1x the bare proxy's", rate),
				value: fmt.Sprintf("%.2fx (%.1f / %.1f µs)", side.cpu/bare.cpu, side.cpu, bare.cpu), ok: side.cpu <= 1.1*bare.cpu},
			target{name: fmt.Sprintf("4. proxy at %d/s: sidecar p99 <= the bare proxy's + 0.3 ms", rate),
				value: fmt.Sprintf("%+.2f ms (%s / %s)", float64((side.p99-bare.p99).Microseconds())/1000, ms(side.p99), ms(bare.p99)), ok: side.p99-bare.p99 <= 300*time.Microsecond})
	}
	return ts
}

func (r *report) failedOpen() int64 {
	var n int64
	for _, ss := range r.grpc {
		for _, s := range ss {
			n += s.failed
		}
	}
	for _, ss := range r.proxy {
		for _, s := range ss {
			n += s.failed
		}
	}
	return n
}

// metrics reports the ratios where benchstat can compare runs.
func (r *report) metrics(b *testing.B) {
	under := r.grpc[grpcCases()[0].name]
	floor, _ := find(under, "floor")
	sc, _ := find(under, "sidecar")
	b.ReportMetric(sc.cpu/floor.cpu, "sidecar/floor-cpu")
	b.ReportMetric(float64(r.failedOpen()), "failed-open")
}
