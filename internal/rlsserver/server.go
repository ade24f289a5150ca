// Package rlsserver serves an rls.Handler as Envoy's rate-limit service
// on grpc-go: for quota-operator's sidecar and the gateway service. Its
// codec reads and writes internal/rls's messages directly, with no
// generated types and no reflection. quota-sidecar does not link it
// (docs/performance.md).
package rlsserver

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"

	"github.com/quotaops/quota-operator/internal/rls"
)

// Server is the rate-limit service of one rls.Handler.
type Server struct {
	grpc *grpc.Server
}

// New serves h, over TLS (mTLS when it asks for client certificates) when
// tlsConfig is not nil. Stream workers keep their grown stacks: a
// goroutine per call would grow and copy its stack on every call through
// the Redis client.
func New(h rls.Handler, tlsConfig *tls.Config) *Server {
	opts := []grpc.ServerOption{grpc.NumStreamWorkers(64), grpc.ForceServerCodecV2(codec{})}
	if tlsConfig != nil {
		opts = append(opts, grpc.Creds(credentials.NewTLS(tlsConfig)))
	}
	s := grpc.NewServer(opts...)
	s.RegisterService(&serviceDesc, service{h})
	return &Server{grpc: s}
}

// Serve accepts calls on ln until Stop.
func (s *Server) Serve(ln net.Listener) error { return s.grpc.Serve(ln) }

// Stop lets calls in flight finish until ctx ends, then cuts them.
func (s *Server) Stop(ctx context.Context) {
	done := make(chan struct{})
	go func() { s.grpc.GracefulStop(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		s.grpc.Stop()
	}
}

// rateLimitService is the interface grpc-go checks a service against.
type rateLimitService interface {
	shouldRateLimit(ctx context.Context, req *rls.Request) (*rls.Response, error)
}

type service struct{ handle rls.Handler }

func (s service) shouldRateLimit(ctx context.Context, req *rls.Request) (*rls.Response, error) {
	resp, err := s.handle(ctx, req)
	var st *rls.Status
	if errors.As(err, &st) {
		return nil, status.Error(codes.Code(st.Code), st.Message)
	}
	return resp, err
}

var serviceDesc = grpc.ServiceDesc{
	ServiceName: "envoy.service.ratelimit.v3.RateLimitService",
	HandlerType: (*rateLimitService)(nil),
	Methods: []grpc.MethodDesc{{MethodName: "ShouldRateLimit",
		Handler: func(srv any, ctx context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
			req := new(rls.Request)
			if err := dec(req); err != nil {
				return nil, err
			}
			return srv.(rateLimitService).shouldRateLimit(ctx, req)
		}}},
	Metadata: "envoy/service/ratelimit/v3/rls.proto",
}

// codec reads requests and writes answers as internal/rls does.
type codec struct{}

func (codec) Name() string { return "proto" }

func (codec) Marshal(v any) (mem.BufferSlice, error) {
	resp, ok := v.(*rls.Response)
	if !ok {
		return nil, fmt.Errorf("rlsserver: cannot marshal %T", v)
	}
	return mem.BufferSlice{mem.SliceBuffer(resp.Marshal(make([]byte, 0, 64)))}, nil
}

func (codec) Unmarshal(data mem.BufferSlice, v any) error {
	req, ok := v.(*rls.Request)
	if !ok {
		return fmt.Errorf("rlsserver: cannot unmarshal into %T", v)
	}
	buf := data.MaterializeToBuffer(mem.DefaultBufferPool())
	defer buf.Free()
	// The request copies what it keeps (strings), so the buffer can go.
	return req.Unmarshal(buf.ReadOnlyData())
}

var _ encoding.CodecV2 = codec{}
