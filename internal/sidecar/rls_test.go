package sidecar_test

import (
	"context"
	"strings"
	"testing"
	"time"

	extv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/quotaops/quota-operator/api/v1alpha1"
)

func descriptor(kv ...string) *extv3.RateLimitDescriptor {
	d := &extv3.RateLimitDescriptor{}
	for i := 0; i < len(kv); i += 2 {
		d.Entries = append(d.Entries, &extv3.RateLimitDescriptor_Entry{Key: kv[i], Value: kv[i+1]})
	}
	return d
}

// rlsSidecar runs a sidecar whose policy "api" has limits per-user (3/min
// by X-User) and global (100 per 10m, no key), and returns a function that
// asks its Envoy rate-limit service.
func rlsSidecar(t *testing.T) func(*rlsv3.RateLimitRequest) *rlsv3.RateLimitResponse {
	t.Helper()
	try := rlsTry(t)
	return func(req *rlsv3.RateLimitRequest) *rlsv3.RateLimitResponse {
		t.Helper()
		resp, err := try(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
}

// rlsTry is rlsSidecar for calls that may fail.
func rlsTry(t *testing.T) func(*rlsv3.RateLimitRequest) (*rlsv3.RateLimitResponse, error) {
	try, _, _ := rlsServer(t)
	return try
}

// rlsServer is rlsTry with the sidecar and its namespace.
func rlsServer(t *testing.T) (func(*rlsv3.RateLimitRequest) (*rlsv3.RateLimitResponse, error), running, string) {
	ns := namespace(t)
	sc := start(t, ns)
	sc.publish(t, perIP(ns, 3, "1m", func(p *v1alpha1.RateLimitPolicy) {
		p.Spec.Limits[0].Name = "per-user"
		p.Spec.Limits[0].Key = []v1alpha1.KeySource{{Source: v1alpha1.SourceHeader, Name: "X-User"}}
		p.Spec.Limits = append(p.Spec.Limits, v1alpha1.Limit{Name: "global", Cost: 1, Rates: []v1alpha1.Rate{{Limit: 100, Window: "10m"}}})
	}))
	waitMetric(t, sc.admin, revisionLine(ns, 1))
	conn, err := grpc.NewClient(sc.grpc, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	client := rlsv3.NewRateLimitServiceClient(conn)
	return func(req *rlsv3.RateLimitRequest) (*rlsv3.RateLimitResponse, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return client.ShouldRateLimit(ctx, req)
	}, sc, ns
}

// Descriptors that name one counter are one limit whose cost is their hits
// added, decided, never sent to the failure policy: before, the limiter
// refused the request (a counter named twice), the sidecar failed open,
// and an exhausted limit answered OK (failed_open rose by 2 here).
func TestEnvoyRateLimitServiceDuplicateDescriptors(t *testing.T) {
	try, sc, ns := rlsServer(t)
	twice := &rlsv3.RateLimitRequest{Domain: "api", Descriptors: []*extv3.RateLimitDescriptor{
		descriptor("per-user", "alice"), descriptor("per-user", "alice")}}
	once := &rlsv3.RateLimitRequest{Domain: "api", Descriptors: []*extv3.RateLimitDescriptor{descriptor("per-user", "alice")}}
	steps := []struct {
		req       *rlsv3.RateLimitRequest
		code      rlsv3.RateLimitResponse_Code
		remaining uint32
	}{
		{twice, rlsv3.RateLimitResponse_OK, 1},         // 2 of 3
		{twice, rlsv3.RateLimitResponse_OVER_LIMIT, 1}, // 2 more do not fit
		{once, rlsv3.RateLimitResponse_OK, 0},          // 3 of 3
		{twice, rlsv3.RateLimitResponse_OVER_LIMIT, 0}, // exhausted
	}
	for i, st := range steps {
		resp, err := try(st.req)
		if err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		if resp.OverallCode != st.code || len(resp.Statuses) != len(st.req.Descriptors) {
			t.Fatalf("step %d: %v; want %v", i, resp, st.code)
		}
		for j, s := range resp.Statuses {
			if s.Code != st.code || s.LimitRemaining != st.remaining {
				t.Fatalf("step %d, descriptor %d: %v; want %v with %d remaining", i, j, s, st.code, st.remaining)
			}
		}
	}
	line := `quota_decisions_total{limit="per-user",namespace="` + ns + `",policy="api",result=`
	waitMetric(t, sc.admin, line+`"allowed"} 2`)
	waitMetric(t, sc.admin, line+`"denied"} 2`)
	if body := metrics(t, sc.admin); strings.Contains(body, `result="failed_open"`) {
		t.Fatalf("a decision failed open:\n%s", grep(body, "quota_decisions_total"))
	}
}

// Requests beyond the bounds are refused as invalid before any work: 64
// descriptors of 8 entries pass, 65 descriptors or 9 entries do not.
func TestEnvoyRateLimitServiceBounds(t *testing.T) {
	try := rlsTry(t)
	request := func(descriptors, entries int) *rlsv3.RateLimitRequest {
		req := &rlsv3.RateLimitRequest{Domain: "api"}
		for range descriptors {
			kv := []string{"per-user", "alice"}
			for range entries - 1 {
				kv = append(kv, "k", "v")
			}
			req.Descriptors = append(req.Descriptors, descriptor(kv...))
		}
		return req
	}
	tests := []struct {
		descriptors, entries int
		want                 string // error message; empty: answered
	}{
		{64, 1, ""},
		{1, 8, ""},
		{65, 1, "rpc error: code = InvalidArgument desc = 65 descriptors: at most 64 per request"},
		{150_000, 1, "rpc error: code = InvalidArgument desc = 150000 descriptors: at most 64 per request"},
		{2, 9, "rpc error: code = InvalidArgument desc = descriptor 0 has 9 entries: at most 8"},
	}
	for _, tt := range tests {
		resp, err := try(request(tt.descriptors, tt.entries))
		switch {
		case tt.want == "" && (err != nil || len(resp.Statuses) != tt.descriptors):
			t.Fatalf("%d descriptors of %d entries: %v", tt.descriptors, tt.entries, err)
		case tt.want != "" && (err == nil || err.Error() != tt.want):
			t.Fatalf("%d descriptors of %d entries: %v; want %q", tt.descriptors, tt.entries, err, tt.want)
		}
	}
}

// OK until the limit, then OVER_LIMIT, with the limit, what remains and
// the time to reset.
func TestEnvoyRateLimitServiceOverLimit(t *testing.T) {
	ask := rlsSidecar(t)
	alice := &rlsv3.RateLimitRequest{Domain: "api", Descriptors: []*extv3.RateLimitDescriptor{descriptor("per-user", "alice")}}
	for i := range 3 {
		resp := ask(alice)
		st := resp.Statuses[0]
		if resp.OverallCode != rlsv3.RateLimitResponse_OK || st.LimitRemaining != uint32(2-i) ||
			st.CurrentLimit.GetRequestsPerUnit() != 3 || st.CurrentLimit.GetUnit() != rlsv3.RateLimitResponse_RateLimit_MINUTE ||
			st.CurrentLimit.GetName() != "per-user" || st.DurationUntilReset.AsDuration() <= 0 || st.DurationUntilReset.AsDuration() > time.Minute {
			t.Fatalf("call %d: %v", i, resp)
		}
	}
	if resp := ask(alice); resp.OverallCode != rlsv3.RateLimitResponse_OVER_LIMIT || resp.Statuses[0].Code != rlsv3.RateLimitResponse_OVER_LIMIT {
		t.Fatalf("4th call: %v", resp)
	}
}

func TestEnvoyRateLimitServiceKnownOverLimit(t *testing.T) {
	ask := rlsSidecar(t)
	alice := &rlsv3.RateLimitRequest{Domain: "api", Descriptors: []*extv3.RateLimitDescriptor{descriptor("per-user", "alice")}}
	for range 4 {
		ask(alice)
	}
	// With alice known to be over, a call that also carries the global
	// limit is over as a whole without reading global, whose status says
	// OK with no limit; and global (10m: MINUTE × 10) consumed nothing.
	both := &rlsv3.RateLimitRequest{Domain: "api", Descriptors: []*extv3.RateLimitDescriptor{
		descriptor("global", "ignored"), descriptor("per-user", "alice")}}
	resp := ask(both)
	if resp.OverallCode != rlsv3.RateLimitResponse_OVER_LIMIT || resp.Statuses[0].Code != rlsv3.RateLimitResponse_OK ||
		resp.Statuses[0].CurrentLimit != nil || resp.Statuses[1].Code != rlsv3.RateLimitResponse_OVER_LIMIT {
		t.Fatalf("mixed call: %v", resp)
	}
	global := &rlsv3.RateLimitRequest{Domain: "api", Descriptors: []*extv3.RateLimitDescriptor{descriptor("global", "ignored")}}
	if resp := ask(global); resp.Statuses[0].LimitRemaining != 99 || resp.Statuses[0].CurrentLimit.GetUnitMultiplier().GetValue() != 10 {
		t.Fatalf("global after the mixed call: %v, want 99 of 100 remaining", resp)
	}
}

// hits_addend is the cost; a descriptor's own hits_addend wins.
func TestEnvoyRateLimitServiceHitsAddend(t *testing.T) {
	ask := rlsSidecar(t)
	heavy := &rlsv3.RateLimitRequest{Domain: "api", HitsAddend: 40, Descriptors: []*extv3.RateLimitDescriptor{descriptor("global", "")}}
	if resp := ask(heavy); resp.Statuses[0].LimitRemaining != 60 {
		t.Fatalf("hits_addend 40: %v", resp)
	}
	heavy.Descriptors[0].HitsAddend = wrapperspb.UInt64(70)
	if resp := ask(heavy); resp.OverallCode != rlsv3.RateLimitResponse_OVER_LIMIT || resp.Statuses[0].LimitRemaining != 60 {
		t.Fatalf("descriptor hits_addend 70 over 60 remaining: %v", resp)
	}
}

// Unknown domains, limits and descriptor shapes are plain OK.
func TestEnvoyRateLimitServiceUnknown(t *testing.T) {
	ask := rlsSidecar(t)
	want := &rlsv3.RateLimitResponse{OverallCode: rlsv3.RateLimitResponse_OK, Statuses: []*rlsv3.RateLimitResponse_DescriptorStatus{{Code: rlsv3.RateLimitResponse_OK}}}
	for _, req := range []*rlsv3.RateLimitRequest{
		{Domain: "no-such-policy", Descriptors: []*extv3.RateLimitDescriptor{descriptor("per-user", "alice")}},
		{Domain: "api", Descriptors: []*extv3.RateLimitDescriptor{descriptor("no-such-limit", "x")}},
		{Domain: "api", Descriptors: []*extv3.RateLimitDescriptor{descriptor("per-user", "alice", "extra", "entry")}},
	} {
		if resp := ask(req); !proto.Equal(resp, want) {
			t.Fatalf("%v: %v; want plain OK", req, resp)
		}
	}
}
