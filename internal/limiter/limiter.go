// Package limiter decides requests against rate limits and calendar quotas.
// A decision covers every limit that matches a request and is made in one
// atomic store call: either every counter moves or none does, and a denied
// request consumes nothing. Time comes from the store, so limiters whose
// clocks disagree still share windows and periods.
package limiter

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"time"

	"github.com/quotaops/quota-operator/internal/store"
)

// Algorithm is how a limit counts.
type Algorithm int

const (
	// FixedWindow counts per window aligned to the Unix epoch; the window
	// start is part of the key.
	FixedWindow Algorithm = iota + 1
	// SlidingWindow weighs the previous window by how much of it is still
	// inside the sliding span, at sub-window resolution, so it never admits
	// more than the limit in any window-long span.
	SlidingWindow
	// TokenBucket is GCRA: Limit is the burst and Window the time to refill it.
	TokenBucket
	// Quota counts per calendar period in a time zone.
	Quota
)

func (a Algorithm) String() string {
	switch a {
	case FixedWindow:
		return "FixedWindow"
	case SlidingWindow:
		return "SlidingWindow"
	case TokenBucket:
		return "TokenBucket"
	case Quota:
		return "Quota"
	}
	return fmt.Sprintf("Algorithm(%d)", int(a))
}

// MaxValue bounds limits and costs: Redis scripts compute in doubles, which
// are exact integers up to 2^53.
const MaxValue = 1<<53 - 1

// Rate is one limit per window.
type Rate struct {
	Limit  int64
	Window time.Duration
}

// Limit is one limit, for one subject, that a request must pass.
type Limit struct {
	Key       CounterKey
	Algorithm Algorithm
	// Rates holds 1 to 4 rates for the window algorithms and TokenBucket,
	// each with its own counter. A Quota has one rate; its Window is unused.
	Rates []Rate
	// Period and Location place a Quota on the calendar.
	Period   Period
	Location *time.Location
	// Cost is what the request consumes (at least 1).
	Cost int64
	// DryRun counts and reports but never denies.
	DryRun bool
	// MaxSubjects bounds the subjects a Quota tracks per period: a new
	// subject beyond it is denied and not recorded. 0: no bound.
	MaxSubjects int64
}

// Request is one decision's limits. Peek decides without consuming.
// Deadline, when set, bounds the decision's store calls as a context
// deadline would, without the context: a busy caller's decisions then
// share one timer per batch of store calls instead of one each.
type Request struct {
	Limits   []Limit
	Peek     bool
	Deadline time.Time
	// Settleable keeps what an allowed decision consumed in it, so that
	// Settle can charge its real cost later; other decisions allocate
	// nothing for it.
	Settleable bool
}

// Result is the state of one rate after the decision.
type Result struct {
	// Limit and Rate index the request's Limits and that limit's Rates.
	Limit, Rate int
	// Allowed is this rate's own verdict; a DryRun rate may say false while
	// the decision allows.
	Allowed   bool
	DryRun    bool
	Max       int64
	Remaining int64
	// ResetAfter is when the rate is back to its full limit if nothing else
	// arrives.
	ResetAfter time.Duration
	// RetryAfter is when a denied request could pass, Never when its cost is
	// above the limit.
	RetryAfter time.Duration
	// SubjectBound: denied because the quota tracks MaxSubjects subjects
	// already and this one is new.
	SubjectBound bool
}

// Never is the RetryAfter of a request that can never pass: its cost is
// above the limit.
const Never time.Duration = -1

// Decision is the answer to a Request.
type Decision struct {
	Allowed bool
	// Decider indexes Results: the enforced rate that denied with the longest
	// wait, or, when allowed, the rate with the least remaining (enforced
	// rates first). -1 when the request had no limits.
	Decider int
	// Results has one result per rate of the request; a denial answered
	// without the store, because rates were known to deny, has only theirs.
	Results []Result
	// Known: answered without the store, from rates known to deny.
	Known bool
	// commit is what an allowed decision consumed, for Settle.
	commit *commitment
}

// By returns the deciding result; the zero Result when there is none.
func (d Decision) By() Result {
	if d.Decider < 0 {
		return Result{}
	}
	return d.Results[d.Decider]
}

// ErrInvalid wraps every refusal of a malformed Request; nothing moves.
var ErrInvalid = errors.New("invalid limit")

// maxAttempts bounds the retries of a decision whose proposed windows the
// store's clock refused; the second attempt uses the store's time and fails
// only if a boundary passes within one round trip.
const maxAttempts = 3

// errClockCrossing: every attempt's plan was stale by the store's clock.
var errClockCrossing = errors.New("limiter: the store clock kept crossing window boundaries")

// Limiter decides requests against one store.
type Limiter struct {
	engine engine
	now    func() time.Time
	// storeTime: windows follow the store's clock (production); otherwise
	// the injected clock is the only clock (simulated timelines in tests).
	storeTime bool
	// offset is the store clock minus the local clock, in µs, learned from
	// every answer.
	offset atomic.Int64
	grace  time.Duration
	locks  lockStore
	// over answers rates known to deny without the store.
	over overLimit
}

// Option configures New.
type Option func(*Limiter)

// WithClock sets the local clock used to propose windows; the store's clock
// still decides.
func WithClock(now func() time.Time) Option {
	return func(l *Limiter) { l.now = now }
}

// WithSimulatedClock makes now the only clock: the store takes the time from
// the request. For tests that replay a timeline; production trusts the store.
func WithSimulatedClock(now func() time.Time) Option {
	return func(l *Limiter) { l.now, l.storeTime = now, false }
}

// WithQuotaGrace sets how long quota data outlives its period (default 1h),
// so usage of a period just ended can still be read.
func WithQuotaGrace(d time.Duration) Option {
	return func(l *Limiter) { l.grace = d }
}

// New returns a limiter on s, which must be a *store.Redis or *store.Memory.
func New(s store.Store, opts ...Option) (*Limiter, error) {
	l := &Limiter{now: time.Now, storeTime: true, grace: time.Hour, locks: s}
	for _, o := range opts {
		o(l)
	}
	var err error
	if l.engine, err = newEngine(s); err != nil {
		return nil, err
	}
	// In a Cluster, a decision across slots commits slot by slot and
	// refunds when another slot denies: a counter seen full may drop.
	if re, ok := l.engine.(redisEngine); ok && re.cluster {
		l.over.off = true
	}
	return l, nil
}

// Decide makes one atomic decision over every limit of req.
func (l *Limiter) Decide(ctx context.Context, req Request) (Decision, error) {
	if len(req.Limits) == 0 {
		// Nothing to decide, and nothing the store need see.
		return Decision{Allowed: true, Decider: -1}, nil
	}
	if err := validate(req.Limits); err != nil {
		return Decision{}, err
	}
	for range maxAttempts {
		local, now, entries, err := l.planNow(req.Limits)
		if err != nil {
			return Decision{}, err
		}
		if d, ok := l.over.known(entries, local); ok {
			return d, nil
		}
		at := int64(0)
		if !l.storeTime {
			at = now.UnixMicro()
		}
		epoch := l.over.now()
		out, err := l.engine.decide(ctx, entries, attempt{atUs: at, peek: req.Peek, deadline: req.Deadline})
		if err != nil {
			return Decision{}, err
		}
		if l.storeTime {
			l.learnOffset(local, out.nowUs)
		}
		if !out.stale {
			l.over.learn(entries, out.verdicts, local, epoch)
			d := decision(entries, out.verdicts)
			if d.Allowed && !req.Peek && req.Settleable {
				d.commit = &commitment{entries: entries, verdicts: out.verdicts, atUs: out.nowUs}
			}
			return d, nil
		}
	}
	return Decision{}, errClockCrossing
}

// Known answers req without the store when one of its enforced rates is
// known to deny, as Decide would; false when only the store can answer.
// A caller that may not reach the store (its breaker is open) still denies
// exactly what it knows is over.
func (l *Limiter) Known(req Request) (Decision, bool) {
	if validate(req.Limits) != nil {
		return Decision{}, false
	}
	local, _, entries, err := l.planNow(req.Limits)
	if err != nil {
		return Decision{}, false
	}
	return l.over.known(entries, local)
}

// planNow plans limits for the store's time as this limiter knows it,
// and returns the local time it read and that store time too.
func (l *Limiter) planNow(limits []Limit) (local, now time.Time, entries []entry, err error) {
	local = l.now()
	now = local.Add(time.Duration(l.offset.Load()) * time.Microsecond)
	entries, err = plan(limits, now, l.grace)
	return local, now, entries, err
}

// learnOffset keeps the store clock's lead over the local clock. The answer
// left the store after the request was sent, so the estimate errs by at
// most one round trip; the script corrects any window it gets wrong.
func (l *Limiter) learnOffset(sent time.Time, storeMicros int64) {
	l.offset.Store(storeMicros - sent.UnixMicro())
}

// MaxDecisionEntries bounds the rates one decision may carry, over all its
// limits: Redis decides them in one call that every other client waits
// behind, so a request that matched, say, 200 policies of 32 limits would
// stall every namespace. The operator refuses a namespace's config that
// could make a request carry more.
const MaxDecisionEntries = 256

func validate(limits []Limit) error {
	n := 0
	for _, lim := range limits {
		n += len(lim.Rates)
	}
	if n > MaxDecisionEntries {
		return fmt.Errorf("%w: a decision of %d rates over %d limits: at most %d", ErrInvalid, n, len(limits), MaxDecisionEntries)
	}
	for i, lim := range limits {
		if err := lim.check(); err != nil {
			return fmt.Errorf("%w: limits[%d] (%s): %w", ErrInvalid, i, lim.Key.Limit, err)
		}
	}
	return nil
}

// Validate reports, wrapping ErrInvalid, why Decide would refuse lim: so a
// config can be refused when it loads rather than on every request.
func (lim Limit) Validate() error {
	if err := lim.check(); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return nil
}

func (lim Limit) check() error {
	if lim.Cost < 1 || lim.Cost > MaxValue {
		return fmt.Errorf("cost %d is outside 1..%d", lim.Cost, int64(MaxValue))
	}
	if lim.Algorithm < FixedWindow || lim.Algorithm > Quota {
		return fmt.Errorf("unknown algorithm %d", int(lim.Algorithm))
	}
	if n := len(lim.Rates); n < 1 || n > 4 || lim.Algorithm == Quota && n != 1 {
		return fmt.Errorf("%d rates: want 1 to 4, exactly 1 for a quota", n)
	}
	for j := range lim.Rates {
		if err := lim.validateRate(j); err != nil {
			return fmt.Errorf("rates[%d]: %w", j, err)
		}
	}
	return lim.checkQuota()
}

func (lim Limit) checkQuota() error {
	if lim.Algorithm == Quota && lim.Location == nil {
		return errors.New("a quota needs a time zone")
	}
	if lim.MaxSubjects < 0 || lim.MaxSubjects > 0 && lim.Algorithm != Quota {
		return fmt.Errorf("maxSubjects %d: want 0, or more for a quota", lim.MaxSubjects)
	}
	return nil
}

func (lim Limit) validateRate(j int) error {
	r := lim.Rates[j]
	if r.Limit < 1 || r.Limit > MaxValue {
		return fmt.Errorf("limit %d is outside 1..%d", r.Limit, int64(MaxValue))
	}
	if lim.Algorithm == Quota {
		return nil
	}
	if r.Window < time.Millisecond || r.Window%time.Millisecond != 0 {
		return fmt.Errorf("window %v is not a whole number of milliseconds", r.Window)
	}
	if slices.ContainsFunc(lim.Rates[:j], func(o Rate) bool { return o.Window == r.Window }) {
		return fmt.Errorf("window %v appears twice", r.Window)
	}
	// Finer token intervals are below what a float64 time in µs resolves.
	if lim.Algorithm == TokenBucket && int64(r.Window/time.Microsecond) < r.Limit {
		return errors.New("a token bucket refills at most one token per microsecond")
	}
	return nil
}
