package rls

import (
	"testing"
	"time"

	extv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// The protobuf runtime and go-control-plane's generated types are the
// reference: what they write is read the same here, and what is written
// here they read back as the intended message.

func TestRequestReadsWhatProtobufWrites(t *testing.T) {
	for _, c := range []struct {
		name string
		in   *rlsv3.RateLimitRequest
		want Request
	}{
		{"empty", &rlsv3.RateLimitRequest{}, Request{}},
		{"domain and hits", &rlsv3.RateLimitRequest{Domain: "api", HitsAddend: 7}, Request{Domain: "api", HitsAddend: 7}},
		{"descriptors with entries, a hits override and fields not read", &rlsv3.RateLimitRequest{Domain: "ns/api", Descriptors: []*extv3.RateLimitDescriptor{
			{Entries: []*extv3.RateLimitDescriptor_Entry{{Key: "per-user", Value: "alice"}, {Key: "k2", Value: ""}},
				HitsAddend: wrapperspb.UInt64(1 << 40), Limit: &extv3.RateLimitDescriptor_RateLimitOverride{RequestsPerUnit: 3}},
			{Entries: []*extv3.RateLimitDescriptor_Entry{{Key: "global"}}, HitsAddend: wrapperspb.UInt64(0), IsNegativeHits: true},
			{},
		}}, Request{Domain: "ns/api", Descriptors: []Descriptor{
			{Entries: []Entry{{"per-user", "alice"}, {"k2", ""}}, HitsAddend: 1 << 40, HasHitsAddend: true},
			{Entries: []Entry{{"global", ""}}, HasHitsAddend: true},
			{},
		}}},
	} {
		t.Run(c.name, func(t *testing.T) {
			raw, err := proto.Marshal(c.in)
			if err != nil {
				t.Fatal(err)
			}
			var got Request
			if err := got.Unmarshal(raw); err != nil {
				t.Fatal(err)
			}
			if !equalRequests(got, c.want) {
				t.Fatalf("read %+v, want %+v", got, c.want)
			}
		})
	}
}

func TestRequestRefusesMalformed(t *testing.T) {
	for name, raw := range map[string][]byte{
		"a truncated tag":          {0x80},
		"a length past the end":    {0x0a, 0x05, 'a'},
		"a descriptor's bad entry": {0x12, 0x02, 0x0a, 0x05},
	} {
		t.Run(name, func(t *testing.T) {
			var r Request
			if err := r.Unmarshal(raw); err == nil {
				t.Fatalf("read %x as %+v; want an error", raw, r)
			}
		})
	}
}

func TestResponseIsReadByProtobuf(t *testing.T) {
	for _, c := range []struct {
		name string
		in   Response
		want *rlsv3.RateLimitResponse
	}{
		{"unknown", Response{}, &rlsv3.RateLimitResponse{}},
		{"ok without statuses", Response{OverallCode: OK}, &rlsv3.RateLimitResponse{OverallCode: rlsv3.RateLimitResponse_OK}},
		{"decided and undecided descriptors", Response{OverallCode: OverLimit, Statuses: []DescriptorStatus{
			{Code: OK},
			{Code: OverLimit, CurrentLimit: &RateLimit{Name: "per-user", RequestsPerUnit: 3, Unit: Minute, UnitMultiplier: 10},
				DurationUntilReset: 90*time.Second + 250*time.Millisecond},
			{Code: OK, CurrentLimit: &RateLimit{Name: "global", RequestsPerUnit: 1 << 31, Unit: Day, UnitMultiplier: 1}, LimitRemaining: 99},
		}}, &rlsv3.RateLimitResponse{OverallCode: rlsv3.RateLimitResponse_OVER_LIMIT, Statuses: []*rlsv3.RateLimitResponse_DescriptorStatus{
			{Code: rlsv3.RateLimitResponse_OK},
			{Code: rlsv3.RateLimitResponse_OVER_LIMIT, CurrentLimit: &rlsv3.RateLimitResponse_RateLimit{Name: "per-user", RequestsPerUnit: 3,
				Unit: rlsv3.RateLimitResponse_RateLimit_MINUTE, UnitMultiplier: wrapperspb.UInt32(10)},
				DurationUntilReset: durationpb.New(90*time.Second + 250*time.Millisecond)},
			{Code: rlsv3.RateLimitResponse_OK, CurrentLimit: &rlsv3.RateLimitResponse_RateLimit{Name: "global", RequestsPerUnit: 1 << 31,
				Unit: rlsv3.RateLimitResponse_RateLimit_DAY}, LimitRemaining: 99, DurationUntilReset: durationpb.New(0)},
		}}},
		{"a long status list", Response{OverallCode: OK, Statuses: make([]DescriptorStatus, 300)},
			&rlsv3.RateLimitResponse{OverallCode: rlsv3.RateLimitResponse_OK, Statuses: emptyStatuses(300)}},
	} {
		t.Run(c.name, func(t *testing.T) {
			raw := c.in.Marshal([]byte("prefix"))
			if string(raw[:6]) != "prefix" {
				t.Fatalf("Marshal overwrote what it appends to: %q", raw[:6])
			}
			var got rlsv3.RateLimitResponse
			if err := proto.Unmarshal(raw[6:], &got); err != nil {
				t.Fatal(err)
			}
			if !proto.Equal(&got, c.want) {
				t.Fatalf("protobuf read %v, want %v", &got, c.want)
			}
		})
	}
}

func emptyStatuses(n int) []*rlsv3.RateLimitResponse_DescriptorStatus {
	out := make([]*rlsv3.RateLimitResponse_DescriptorStatus, n)
	for i := range out {
		out[i] = &rlsv3.RateLimitResponse_DescriptorStatus{}
	}
	return out
}

// Whatever the protobuf runtime accepts as a request is read here as the
// same request; nothing panics on any input.
func FuzzRequest(f *testing.F) {
	for _, req := range []*rlsv3.RateLimitRequest{
		{Domain: "api", Descriptors: []*extv3.RateLimitDescriptor{{Entries: []*extv3.RateLimitDescriptor_Entry{{Key: "per-user", Value: "alice"}}}}},
		{Domain: "ns/api", HitsAddend: 3, Descriptors: []*extv3.RateLimitDescriptor{{HitsAddend: wrapperspb.UInt64(9)}, {}}},
	} {
		raw, err := proto.Marshal(req)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(raw)
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		var got Request
		err := got.Unmarshal(raw)
		var ref rlsv3.RateLimitRequest
		if proto.Unmarshal(raw, &ref) != nil {
			return // refused there; here it may be read or refused
		}
		if err != nil {
			t.Fatalf("protobuf reads %v; here: %v", &ref, err)
		}
		if want := fromProto(&ref); !equalRequests(got, want) {
			t.Fatalf("read %+v, protobuf %+v", got, want)
		}
	})
}

func fromProto(r *rlsv3.RateLimitRequest) Request {
	out := Request{Domain: r.GetDomain(), HitsAddend: r.GetHitsAddend()}
	for _, d := range r.GetDescriptors() {
		var nd Descriptor
		for _, e := range d.GetEntries() {
			nd.Entries = append(nd.Entries, Entry{e.GetKey(), e.GetValue()})
		}
		if d.GetHitsAddend() != nil {
			nd.HitsAddend, nd.HasHitsAddend = d.GetHitsAddend().GetValue(), true
		}
		out.Descriptors = append(out.Descriptors, nd)
	}
	return out
}

func equalRequests(a, b Request) bool {
	if a.Domain != b.Domain || a.HitsAddend != b.HitsAddend || len(a.Descriptors) != len(b.Descriptors) {
		return false
	}
	for i, d := range a.Descriptors {
		e := b.Descriptors[i]
		if d.HitsAddend != e.HitsAddend || d.HasHitsAddend != e.HasHitsAddend || len(d.Entries) != len(e.Entries) {
			return false
		}
		for j := range d.Entries {
			if d.Entries[j] != e.Entries[j] {
				return false
			}
		}
	}
	return true
}
