// Package bench compares the sidecar, in its own process as in a pod, with
// references measured in the same run on the same Redis: a do-nothing
// rate-limit service (the floor), a bare reverse proxy, and, when
// RATELIMIT_BIN names a build of envoyproxy/ratelimit, the anchor. It prints
// the per-decision costs and the ratios docs/performance.md states as
// targets.
package bench

import (
	"context"
	"fmt"
	"os"
	"testing"

	"github.com/quotaops/quota-operator/api/v1alpha1"
	"github.com/quotaops/quota-operator/internal/config"
	"github.com/quotaops/quota-operator/internal/store"
	"github.com/quotaops/quota-operator/internal/store/storetest"
	"github.com/quotaops/quota-operator/internal/testutil/redistest"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// redisS is the Redis every server of a run shares.
var redisS *redistest.Server

func TestMain(m *testing.M) {
	if serveRole() {
		return
	}
	os.Exit(m.Run())
}

// The namespace and policy the sidecar enforces; the anchor's domain has
// the same name, so one request means the same to both.
const (
	benchNS     = "bench"
	policyName  = "api"
	hotLimit    = 10
	huge        = 1_000_000_000
	callers     = 50
	subjects    = 1000
	hotDescName = "hot"
)

// benchPolicy has a limit no subject reaches and one a hot key is far
// over. The hot limit only matches paths the proxy load never asks for.
func benchPolicy() *v1alpha1.RateLimitPolicy {
	return &v1alpha1.RateLimitPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: benchNS, Name: policyName},
		Spec: v1alpha1.RateLimitPolicySpec{Limits: []v1alpha1.Limit{
			{Name: "per-user", Key: []v1alpha1.KeySource{{Source: v1alpha1.SourceHeader, Name: "X-User"}},
				Rates: []v1alpha1.Rate{{Limit: huge, Window: "1h"}}},
			{Name: hotDescName, Match: &v1alpha1.Match{PathPrefix: "/hot"},
				Key:   []v1alpha1.KeySource{{Source: v1alpha1.SourceHeader, Name: "X-Hot"}},
				Rates: []v1alpha1.Rate{{Limit: hotLimit, Window: "1h"}}},
		}},
	}
}

// anchorConfig is the same policy in envoyproxy/ratelimit's terms.
const anchorConfig = `domain: api
descriptors:
  - key: per-user
    rate_limit: {unit: hour, requests_per_unit: 1000000000}
  - key: hot
    rate_limit: {unit: hour, requests_per_unit: 10}
`

// publish compiles p and writes it to the store in its namespace, as the
// operator does, and returns the namespace's new config revision.
func publish(tb testing.TB, s *store.Redis, p *v1alpha1.RateLimitPolicy) int64 {
	tb.Helper()
	doc, err := config.CompileRateLimitPolicy(p)
	if err != nil {
		tb.Fatal(err)
	}
	raw, err := doc.Encode()
	if err != nil {
		tb.Fatal(err)
	}
	rev, err := storetest.PutConfig(context.Background(), s, p.Namespace, doc.ID(), raw)
	if err != nil {
		tb.Fatal(err)
	}
	return rev
}

// BenchmarkCompare runs every case once, whatever b.N: each case sets its
// own count of decisions or its own duration, so that every process in a
// case sees the same load. Run it with -benchtime 1x.
func BenchmarkCompare(b *testing.B) {
	redisS = redistest.StartOrSkip(b)
	w := newWorld(b)
	rep := &report{}
	// BENCH_ONLY: grpc or proxy, one half, to profile it; ab, only the
	// A/B against BASELINE_BIN.
	only := os.Getenv("BENCH_ONLY")
	if only == "ab" && w.baseline == nil {
		b.Fatal("BENCH_ONLY=ab needs BASELINE_BIN")
	}
	var ab map[string][]abRound
	for range b.N {
		if only == "" || only == "grpc" {
			rep.grpc = runGRPCCases(b, w)
		}
		if only == "" || only == "proxy" {
			rep.proxy = runProxyCases(b, w)
		}
		if w.baseline != nil {
			ab = runAB(b, w)
		}
	}
	if only != "ab" {
		rep.print(os.Stdout, w.anchor != nil)
		rep.metrics(b)
	}
	if ab != nil {
		b.ReportMetric(float64(printAB(os.Stdout, ab)), "ab-worse")
	}
	if n := rep.failedOpen(); n > 0 {
		fmt.Printf("\nTHIS RUN DOES NOT COUNT: %d decisions failed open\n", n)
	}
}
