package rlsserver

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	extv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/quotaops/quota-operator/internal/rls"
	"github.com/quotaops/quota-operator/internal/testutil/testpki"
)

// grpc-go's client is the reference peer: what it sends and expects is
// what Envoy's gRPC clients do.

// echo answers with one status per descriptor, and errors on request.
func echo(ctx context.Context, req *rls.Request) (*rls.Response, error) {
	switch req.Domain {
	case "invalid":
		return nil, rls.Errorf(rls.CodeInvalidArgument, "domain %q is not namespace/policy: ünïcode 100%%", req.Domain)
	case "plain-error":
		return nil, errors.New("the store is down")
	case "slow":
		<-ctx.Done()
		return nil, ctx.Err()
	case "deadline":
		if _, ok := ctx.Deadline(); !ok {
			return nil, rls.Errorf(rls.CodeInvalidArgument, "no deadline")
		}
	case "drain":
		time.Sleep(300 * time.Millisecond)
	}
	resp := &rls.Response{OverallCode: rls.OK}
	for _, d := range req.Descriptors {
		resp.Statuses = append(resp.Statuses, rls.DescriptorStatus{Code: rls.OK, CurrentLimit: &rls.RateLimit{Name: d.Entries[0].Key, RequestsPerUnit: 3, Unit: rls.Minute},
			LimitRemaining: uint32(d.HitsAddend), DurationUntilReset: time.Second})
	}
	return resp, nil
}

func serve(t *testing.T, tlsConfig *tls.Config) (*Server, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := New(echo, tlsConfig)
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Stop(context.Background()) })
	return srv, ln.Addr().String()
}

func client(t *testing.T, addr string, creds credentials.TransportCredentials) rlsv3.RateLimitServiceClient {
	t.Helper()
	if creds == nil {
		creds = insecure.NewCredentials()
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return rlsv3.NewRateLimitServiceClient(conn)
}

func request(domain string, hits uint64) *rlsv3.RateLimitRequest {
	d := &extv3.RateLimitDescriptor{Entries: []*extv3.RateLimitDescriptor_Entry{{Key: "per-user", Value: "alice"}}}
	if hits > 0 {
		d.HitsAddend = wrapperspb.UInt64(hits)
	}
	return &rlsv3.RateLimitRequest{Domain: domain, Descriptors: []*extv3.RateLimitDescriptor{d}}
}

func TestServerAnswersGRPCClients(t *testing.T) {
	_, addr := serve(t, nil)
	c := client(t, addr, nil)
	for _, tc := range []struct {
		name    string
		req     *rlsv3.RateLimitRequest
		timeout time.Duration
		code    codes.Code
		message string
	}{
		{name: "an answer", req: request("api", 2), code: codes.OK},
		{name: "a status with its message", req: request("invalid", 0), code: codes.InvalidArgument,
			message: `domain "invalid" is not namespace/policy: ünïcode 100%`},
		{name: "another error is Unknown", req: request("plain-error", 0), code: codes.Unknown, message: "the store is down"},
		{name: "grpc-timeout bounds the call", req: request("slow", 0), timeout: 200 * time.Millisecond, code: codes.DeadlineExceeded},
		{name: "grpc-timeout reaches the handler", req: request("deadline", 0), timeout: 5 * time.Second, code: codes.OK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			if tc.timeout > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, tc.timeout)
				defer cancel()
			}
			resp, err := c.ShouldRateLimit(ctx, tc.req)
			if st := status.Convert(err); st.Code() != tc.code || tc.message != "" && st.Message() != tc.message {
				t.Fatalf("status %v %q, want %v %q", st.Code(), st.Message(), tc.code, tc.message)
			}
			if tc.code != codes.OK {
				return
			}
			want := &rlsv3.RateLimitResponse_DescriptorStatus{Code: rlsv3.RateLimitResponse_OK, LimitRemaining: uint32(tc.req.Descriptors[0].GetHitsAddend().GetValue()),
				CurrentLimit:       &rlsv3.RateLimitResponse_RateLimit{Name: "per-user", RequestsPerUnit: 3, Unit: rlsv3.RateLimitResponse_RateLimit_MINUTE},
				DurationUntilReset: durationpb.New(time.Second)}
			if resp.OverallCode != rlsv3.RateLimitResponse_OK || len(resp.Statuses) != 1 || resp.Statuses[0].String() != want.String() {
				t.Fatalf("answer %v, want OK with %v", resp, want)
			}
		})
	}
}

func TestServerRefusesWhatItDoesNotServe(t *testing.T) {
	_, addr := serve(t, nil)
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close() }()
	t.Run("another method", func(t *testing.T) {
		err := conn.Invoke(context.Background(), "/envoy.service.ratelimit.v3.RateLimitService/Other", request("api", 0), new(rlsv3.RateLimitResponse))
		if status.Code(err) != codes.Unimplemented {
			t.Fatalf("%v, want Unimplemented", err)
		}
	})
	t.Run("a message over 4 MiB", func(t *testing.T) {
		req := request("api", 0)
		req.Descriptors[0].Entries[0].Value = strings.Repeat("x", 4<<20)
		_, err := rlsv3.NewRateLimitServiceClient(conn).ShouldRateLimit(context.Background(), req)
		if status.Code(err) != codes.ResourceExhausted {
			t.Fatalf("%v, want ResourceExhausted", err)
		}
	})
}

func TestServerOverTLS(t *testing.T) {
	dir := testpki.Write(t)
	cert, err := tls.LoadX509KeyPair(filepath.Join(dir, "server.crt"), filepath.Join(dir, "server.key"))
	if err != nil {
		t.Fatal(err)
	}
	_, addr := serve(t, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
	ca, err := os.ReadFile(filepath.Join(dir, "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca)
	c := client(t, addr, credentials.NewTLS(&tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}))
	resp, err := c.ShouldRateLimit(context.Background(), request("api", 0))
	if err != nil || resp.OverallCode != rlsv3.RateLimitResponse_OK {
		t.Fatalf("%v, %v; want OK over TLS", resp, err)
	}
}

// Stop lets a call in flight finish.
func TestServerStopDrains(t *testing.T) {
	srv, addr := serve(t, nil)
	c := client(t, addr, nil)
	if _, err := c.ShouldRateLimit(context.Background(), request("api", 0)); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := c.ShouldRateLimit(context.Background(), request("drain", 0))
		done <- err
	}()
	time.Sleep(100 * time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	srv.Stop(ctx)
	if err := <-done; err != nil {
		t.Fatalf("the call in flight at Stop: %v, want its answer", err)
	}
}
