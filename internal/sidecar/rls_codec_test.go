package sidecar

import (
	"bytes"
	"testing"
	"time"

	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
)

// The codec's answers are byte for byte what reflection encodes, and they
// decode to the same message.
func TestRLSCodecMarshalsAsProto(t *testing.T) {
	over := &rlsv3.RateLimitResponse_DescriptorStatus{
		Code:               rlsv3.RateLimitResponse_OVER_LIMIT,
		CurrentLimit:       currentLimit("per-user", 100, 2*time.Minute),
		DurationUntilReset: durationpb.New(1500 * time.Millisecond),
	}
	ok := &rlsv3.RateLimitResponse_DescriptorStatus{
		Code:           rlsv3.RateLimitResponse_OK,
		CurrentLimit:   currentLimit("per-ip", 5000, time.Hour),
		LimitRemaining: 4999,
	}
	for name, resp := range map[string]*rlsv3.RateLimitResponse{
		"empty":      {},
		"over limit": {OverallCode: rlsv3.RateLimitResponse_OVER_LIMIT, Statuses: []*rlsv3.RateLimitResponse_DescriptorStatus{over, ok}},
		"ok":         {OverallCode: rlsv3.RateLimitResponse_OK, Statuses: []*rlsv3.RateLimitResponse_DescriptorStatus{ok}},
	} {
		t.Run(name, func(t *testing.T) {
			want, err := proto.Marshal(resp)
			if err != nil {
				t.Fatal(err)
			}
			got, err := newRLSCodec().Marshal(resp)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got.Materialize(), want) {
				t.Fatalf("codec wrote %x, proto wrote %x", got.Materialize(), want)
			}
			var back rlsv3.RateLimitResponse
			if err := newRLSCodec().Unmarshal(got, &back); err != nil || !proto.Equal(&back, resp) {
				t.Fatalf("decoded %v (%v), want %v", &back, err, resp)
			}
		})
	}
}
