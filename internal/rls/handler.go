package rls

import (
	"context"
	"fmt"
)

// StatusCode is a gRPC status code.
type StatusCode uint32

// The codes this service answers with.
const (
	CodeInvalidArgument  StatusCode = 3
	CodePermissionDenied StatusCode = 7
)

// Status is an error that answers a call with a gRPC status.
type Status struct {
	Code    StatusCode
	Message string
}

func (s *Status) Error() string {
	return fmt.Sprintf("rpc error: code = %d desc = %s", s.Code, s.Message)
}

// Errorf is a Status with a formatted message.
func Errorf(code StatusCode, format string, a ...any) error {
	return &Status{Code: code, Message: fmt.Sprintf(format, a...)}
}

// Handler answers one ShouldRateLimit call. An error that is a *Status
// answers with its code; the server maps any other.
type Handler func(ctx context.Context, req *Request) (*Response, error)
