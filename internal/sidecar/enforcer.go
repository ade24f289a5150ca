package sidecar

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"

	"github.com/quotaops/quota-operator/internal/limiter"
	"github.com/quotaops/quota-operator/internal/store"
)

// Decider is the limiter as the sidecar uses it. Decide bounds its store
// calls by req.Deadline.
type Decider interface {
	Decide(ctx context.Context, req limiter.Request) (limiter.Decision, error)
}

// knower is a Decider that can answer without its store what it knows is
// over (*limiter.Limiter).
type knower interface {
	Known(req limiter.Request) (limiter.Decision, bool)
}

// Verdict is what to do with a request; the HTTP proxy turns it into
// headers (setHeaders), the local API and the gRPC service into their own
// answers.
type Verdict struct {
	// Status is 0 to pass the request on, 429 when a limit denies, 503
	// when the store failed and a FailClosed policy applies.
	Status   int
	Decision limiter.Decision
	// StoreFailed: the decision was not made; failure policies decided.
	StoreFailed bool
	// Invalid: the request cannot be decided as it is (the limiter's
	// ErrInvalid); Status is 400. Not a store failure: no failure policy.
	Invalid error
}

// Enforcer makes one decision per request, bounded by a timeout, and
// applies the failure policies when the store cannot answer.
type Enforcer struct {
	Limiter Decider
	// Timeout bounds each store call (default 50ms).
	Timeout time.Duration
	Breaker *Breaker
	Metrics *Metrics
	// FailurePolicy, when set ("Open" or "Closed"), overrides every
	// policy's failurePolicy in this pod.
	FailurePolicy string
	// Log receives what goes wrong with costs read from responses.
	Log logr.Logger

	// settling counts the settles being retried (settle.go);
	// lastCostLog is when a cost problem was last logged (Unix s).
	settling, lastCostLog atomic.Int64
}

// Check decides a request that matched applied. When a limit takes its
// cost from the response, the verdict's decision can be settled.
func (e *Enforcer) Check(ctx context.Context, applied []Applied) Verdict {
	return e.check(ctx, applied, limiter.Request{})
}

// Peek decides without consuming.
func (e *Enforcer) Peek(ctx context.Context, applied []Applied) Verdict {
	return e.check(ctx, applied, limiter.Request{Peek: true})
}

// Reserve decides as Check does, keeping the decision settleable whatever
// the limits (the local API's reservations).
func (e *Enforcer) Reserve(ctx context.Context, applied []Applied) Verdict {
	return e.check(ctx, applied, limiter.Request{Settleable: true})
}

func (e *Enforcer) check(ctx context.Context, applied []Applied, req limiter.Request) Verdict {
	var v Verdict
	if len(applied) == 0 {
		return v
	}
	peek := req.Peek
	req.Limits = make([]limiter.Limit, len(applied))
	for i, a := range applied {
		req.Limits[i] = a.Limit
		req.Settleable = req.Settleable || a.cost != nil && !peek
	}
	d, err := e.decide(ctx, req)
	if err != nil && ctx.Err() != nil {
		// Nobody waits for this answer: not a request the failure policy
		// let through or refused.
		e.Metrics.cancelled(applied)
		return Verdict{StoreFailed: true, Status: http.StatusServiceUnavailable}
	}
	if errors.Is(err, limiter.ErrInvalid) {
		return Verdict{Invalid: err, Status: http.StatusBadRequest}
	}
	if err != nil {
		return e.failed(applied)
	}
	v.Decision = d
	if !d.Allowed {
		v.Status = http.StatusTooManyRequests
	}
	if !peek {
		e.Metrics.decided(applied, d)
	}
	return v
}

// decide is guard for decisions: the store timeout goes to the limiter as
// the request's deadline, which a busy sidecar's concurrent decisions share
// one timer for, rather than as a context of its own per decision.
func (e *Enforcer) decide(ctx context.Context, req limiter.Request) (limiter.Decision, error) {
	if !e.Breaker.Allow() {
		// A rate known to deny is denied still: failing open would let
		// a hot key's flood through while the store is away.
		if k, ok := e.Limiter.(knower); ok {
			if d, ok := k.Known(req); ok {
				return d, nil
			}
		}
		return limiter.Decision{}, errBreakerOpen
	}
	start := time.Now()
	req.Deadline = start.Add(e.timeout())
	d, err := e.Limiter.Decide(ctx, req)
	if err == nil && d.Known {
		// No store call: nothing to time or judge; a probe the breaker let
		// through goes to the next call.
		e.Breaker.Forget()
		return d, nil
	}
	e.Metrics.storeLatency(time.Since(start), err)
	e.record(ctx, err)
	return d, err
}

// The values of a pod's failure policy override.
const (
	FailOpen   = "Open"
	FailClosed = "Closed"
)

// failed applies the failure policies: any FailClosed policy that matched
// answers 503; otherwise the request passes, counted as failed open.
func (e *Enforcer) failed(applied []Applied) Verdict {
	v := Verdict{StoreFailed: true}
	for _, a := range applied {
		if a.FailClosed && e.FailurePolicy != FailOpen || e.FailurePolicy == FailClosed {
			v.Status = http.StatusServiceUnavailable
		}
	}
	e.Metrics.failed(applied, v.Status == 0)
	return v
}

type breakerError struct{}

func (breakerError) Error() string { return "circuit breaker open: the store failed repeatedly" }

var errBreakerOpen error = breakerError{}

// Breaker stops calling a store that keeps failing: after Threshold
// failures in a row it opens for Cooldown, during which decisions fail at
// once; then it lets one probe through, and closes when a probe succeeds.
type Breaker struct {
	Threshold int
	Cooldown  time.Duration
	Now       func() time.Time

	mu        sync.Mutex
	failures  int
	openUntil time.Time
	probing   bool
}

// NewBreaker returns a breaker opening after 5 failures for 1s.
func NewBreaker() *Breaker {
	return &Breaker{Threshold: 5, Cooldown: time.Second, Now: time.Now}
}

// Allow reports whether a store call may go ahead.
func (b *Breaker) Allow() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.failures < b.Threshold {
		return true
	}
	if b.probing || b.Now().Before(b.openUntil) {
		return false
	}
	b.probing = true
	return true
}

// Record notes the outcome of a call Allow let through.
func (b *Breaker) Record(err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.probing = false
	if err == nil {
		b.failures = 0
		return
	}
	b.failures++
	if b.failures >= b.Threshold {
		b.openUntil = b.Now().Add(b.Cooldown)
	}
}

func (e *Enforcer) timeout() time.Duration {
	if e.Timeout <= 0 {
		return 50 * time.Millisecond
	}
	return e.Timeout
}

// record tells the breaker how a store call went. Errors that say nothing
// about the store's health are not failures: a caller that went away (any
// client could cancel on purpose), a limit the limiter refuses (a policy
// file that never met the schema), a full memory store that still serves
// what it holds, and a store that answered "not that" (a value that is not
// an integer, or would overflow).
func (e *Enforcer) record(ctx context.Context, err error) {
	switch {
	case err != nil && ctx.Err() != nil:
		e.Breaker.Forget()
	case errors.Is(err, limiter.ErrInvalid), errors.Is(err, store.ErrFull), errors.Is(err, store.ErrNotInteger),
		errors.Is(err, store.ErrOverflow), errors.Is(err, store.ErrWrongType), errors.Is(err, store.ErrInvalidTTL):
		e.Breaker.Record(nil)
	default:
		e.Breaker.Record(err)
	}
}

// Forget ends a call Allow let through without judging the store: a call
// its caller abandoned. A probe it was is given to the next call.
func (b *Breaker) Forget() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.probing = false
}

// Open reports whether the breaker is refusing calls.
func (b *Breaker) Open() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.failures >= b.Threshold
}
