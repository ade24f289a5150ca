// Package rls is Envoy's rate-limit service protocol
// (envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit) as plain
// types: the request and answer, read and written field by field with
// protowire, and the handler that answers. It links neither grpc-go nor
// the protobuf runtime, so the sidecar's service logic costs a program
// that does not serve gRPC nothing; internal/rlsserver serves a Handler.
// Fields this service does not use are skipped when read and never
// written.
package rls

import (
	"errors"
	"fmt"
	"time"

	"google.golang.org/protobuf/encoding/protowire"
)

// Request is a RateLimitRequest.
type Request struct {
	Domain      string
	Descriptors []Descriptor
	HitsAddend  uint32
}

// Descriptor is a RateLimitDescriptor (envoy.extensions.common.ratelimit.v3).
type Descriptor struct {
	Entries []Entry
	// HitsAddend is the descriptor's own cost, when it names one.
	HitsAddend    uint64
	HasHitsAddend bool
}

// Entry is one key and value of a descriptor.
type Entry struct {
	Key, Value string
}

// Code is a RateLimitResponse.Code.
type Code int32

// The codes of an answer (0 is UNKNOWN, never answered).
const (
	OK        Code = 1
	OverLimit Code = 2
)

// Unit is a RateLimitResponse.RateLimit.Unit.
type Unit int32

// The units a limit is expressed in.
const (
	Second Unit = 1
	Minute Unit = 2
	Hour   Unit = 3
	Day    Unit = 4
)

// Response is a RateLimitResponse.
type Response struct {
	OverallCode Code
	Statuses    []DescriptorStatus
}

// DescriptorStatus answers one descriptor.
type DescriptorStatus struct {
	Code Code
	// CurrentLimit is the limit that explains the answer, if any.
	CurrentLimit   *RateLimit
	LimitRemaining uint32
	// DurationUntilReset is written with CurrentLimit, zero included, as
	// a decided descriptor has one.
	DurationUntilReset time.Duration
}

// RateLimit is a RateLimitResponse.RateLimit.
type RateLimit struct {
	Name            string
	RequestsPerUnit uint32
	Unit            Unit
	// UnitMultiplier is written when above 1.
	UnitMultiplier uint32
}

// The field numbers of the messages read and written here.
const (
	reqDomain      = 1
	reqDescriptors = 2
	reqHitsAddend  = 3

	descEntries    = 1
	descHitsAddend = 3
	entryKey       = 1
	entryValue     = 2
	wrapperValue   = 1

	respOverallCode = 1
	respStatuses    = 2
	statusCode      = 1
	statusLimit     = 2
	statusRemaining = 3
	statusReset     = 4
	limitPerUnit    = 1
	limitUnit       = 2
	limitName       = 3
	limitMultiplier = 4
	durationSeconds = 1
	durationNanos   = 2
)

var errMalformed = errors.New("malformed protobuf")

// fields calls f with each field of a message; unknown fields are for f
// to skip, which it does by returning the rest unread.
func fields(b []byte, f func(num protowire.Number, typ protowire.Type, v []byte, n uint64) error) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return errMalformed
		}
		b = b[n:]
		var raw []byte
		var scalar uint64
		switch typ {
		case protowire.VarintType:
			scalar, n = protowire.ConsumeVarint(b)
		case protowire.BytesType:
			raw, n = protowire.ConsumeBytes(b)
		default:
			n = protowire.ConsumeFieldValue(num, typ, b)
		}
		if n < 0 {
			return errMalformed
		}
		b = b[n:]
		if err := f(num, typ, raw, scalar); err != nil {
			return err
		}
	}
	return nil
}

// Unmarshal reads a RateLimitRequest. Unknown fields, and known ones of
// another wire type, are skipped, as the protobuf runtime keeps them aside.
func (r *Request) Unmarshal(b []byte) error {
	*r = Request{}
	return fields(b, func(num protowire.Number, typ protowire.Type, v []byte, n uint64) error {
		switch {
		case num == reqDomain && typ == protowire.BytesType:
			r.Domain = string(v)
		case num == reqDescriptors && typ == protowire.BytesType:
			var d Descriptor
			if err := d.unmarshal(v); err != nil {
				return fmt.Errorf("descriptor %d: %w", len(r.Descriptors), err)
			}
			r.Descriptors = append(r.Descriptors, d)
		case num == reqHitsAddend && typ == protowire.VarintType:
			r.HitsAddend = uint32(n)
		}
		return nil
	})
}

func (d *Descriptor) unmarshal(b []byte) error {
	return fields(b, func(num protowire.Number, typ protowire.Type, v []byte, _ uint64) error {
		switch {
		case num == descEntries && typ == protowire.BytesType:
			var e Entry
			if err := e.unmarshal(v); err != nil {
				return err
			}
			d.Entries = append(d.Entries, e)
		case num == descHitsAddend && typ == protowire.BytesType:
			d.HasHitsAddend = true
			return fields(v, func(num protowire.Number, typ protowire.Type, _ []byte, n uint64) error {
				if num == wrapperValue && typ == protowire.VarintType {
					d.HitsAddend = n
				}
				return nil
			})
		}
		return nil
	})
}

func (e *Entry) unmarshal(b []byte) error {
	return fields(b, func(num protowire.Number, typ protowire.Type, v []byte, _ uint64) error {
		switch {
		case num == entryKey && typ == protowire.BytesType:
			e.Key = string(v)
		case num == entryValue && typ == protowire.BytesType:
			e.Value = string(v)
		}
		return nil
	})
}

// Marshal appends the answer's encoding to b. Like the protobuf runtime,
// it leaves out fields at their zero value.
func (r *Response) Marshal(b []byte) []byte {
	b = appendVarint(b, respOverallCode, uint64(r.OverallCode))
	for i := range r.Statuses {
		b = appendMessage(b, respStatuses, r.Statuses[i].marshal)
	}
	return b
}

func (s *DescriptorStatus) marshal(b []byte) []byte {
	b = appendVarint(b, statusCode, uint64(s.Code))
	if s.CurrentLimit != nil {
		b = appendMessage(b, statusLimit, s.CurrentLimit.marshal)
	}
	b = appendVarint(b, statusRemaining, uint64(s.LimitRemaining))
	if s.CurrentLimit != nil {
		b = appendMessage(b, statusReset, func(b []byte) []byte {
			sec, nanos := s.DurationUntilReset/time.Second, s.DurationUntilReset%time.Second
			b = appendVarint(b, durationSeconds, uint64(int64(sec)))
			return appendVarint(b, durationNanos, uint64(int64(nanos)))
		})
	}
	return b
}

func (l *RateLimit) marshal(b []byte) []byte {
	b = appendVarint(b, limitPerUnit, uint64(l.RequestsPerUnit))
	b = appendVarint(b, limitUnit, uint64(l.Unit))
	if l.Name != "" {
		b = protowire.AppendTag(b, limitName, protowire.BytesType)
		b = protowire.AppendString(b, l.Name)
	}
	if l.UnitMultiplier > 1 {
		b = appendMessage(b, limitMultiplier, func(b []byte) []byte {
			return appendVarint(b, wrapperValue, uint64(l.UnitMultiplier))
		})
	}
	return b
}

// appendVarint writes a varint field unless it is zero. Negative int32 and
// int64 values arrive sign-extended, as the protobuf encoding wants.
func appendVarint(b []byte, num protowire.Number, v uint64) []byte {
	if v == 0 {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.VarintType)
	return protowire.AppendVarint(b, v)
}

// appendMessage writes a nested message: its body is written in place and
// its length prefix, whose size depends on it, moved in before it.
func appendMessage(b []byte, num protowire.Number, body func([]byte) []byte) []byte {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	start := len(b)
	b = body(b)
	n := len(b) - start
	size := protowire.SizeVarint(uint64(n))
	b = append(b, make([]byte, size)...)
	copy(b[start+size:], b[start:start+n])
	protowire.AppendVarint(b[:start], uint64(n))
	return b
}
