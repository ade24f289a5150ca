package sidecar

import (
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
)

// vtMarshaler is what go-control-plane generates beside each message
// (rls_vtproto.pb.go): a marshaller without reflection.
type vtMarshaler interface {
	SizeVT() int
	MarshalToSizedBufferVTStrict(buf []byte) (int, error)
}

// rlsCodec encodes the answers of the Envoy service with their generated
// marshallers: profiled, reflection-based marshalling took about 4% of the
// sidecar's CPU. Everything else, requests included (no decoder is
// generated for them), goes to gRPC's proto codec. The bytes are the same.
type rlsCodec struct{ encoding.CodecV2 }

func newRLSCodec() rlsCodec {
	return rlsCodec{encoding.GetCodecV2(proto.Name)}
}

func (c rlsCodec) Marshal(v any) (mem.BufferSlice, error) {
	m, ok := v.(vtMarshaler)
	if !ok {
		return c.CodecV2.Marshal(v)
	}
	size := m.SizeVT()
	buf := make([]byte, size)
	if _, err := m.MarshalToSizedBufferVTStrict(buf); err != nil {
		return nil, err
	}
	return mem.BufferSlice{mem.SliceBuffer(buf)}, nil
}
