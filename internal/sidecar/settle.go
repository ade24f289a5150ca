package sidecar

import (
	"context"
	"errors"
	"time"

	"github.com/quotaops/quota-operator/internal/limiter"
)

// settler is a Decider that charges decided requests what they really
// cost (*limiter.Limiter).
type settler interface {
	Settle(ctx context.Context, d limiter.Decision, charges []limiter.Charge) error
}

// How a settle the store did not take at once is retried: in the
// background, with backoff, for settleRetryFor, at most maxSettling at a
// time; then it is counted in quota_cost_settle_failures_total and the
// reserve stays charged.
const (
	settleRetryFor   = time.Minute
	settleRetryFirst = 100 * time.Millisecond
	settleRetryMax   = 5 * time.Second
	maxSettling      = 256
)

// settle charges what responses said applied's limits cost. It tries once
// within the store timeout (so that a client's next request sees it) unless
// the breaker is open, then in the background; it never fails the response.
func (e *Enforcer) settle(d limiter.Decision, applied []Applied, charges []limiter.Charge) {
	s, ok := e.Limiter.(settler)
	if !ok {
		return
	}
	if !e.Breaker.Open() {
		ctx, cancel := context.WithTimeout(context.Background(), e.timeout())
		err := s.Settle(ctx, d, charges)
		cancel()
		if e.settled(applied, charges, err) {
			return
		}
	}
	if e.settling.Add(1) > maxSettling {
		e.settling.Add(-1)
		e.settleGaveUp(applied, charges, errors.New("too many settles waiting for the store"))
		return
	}
	go func() {
		defer e.settling.Add(-1)
		e.retrySettle(s, d, applied, charges)
	}()
}

func (e *Enforcer) retrySettle(s settler, d limiter.Decision, applied []Applied, charges []limiter.Charge) {
	wait, deadline := settleRetryFirst, time.Now().Add(settleRetryFor)
	var err error
	for time.Now().Before(deadline) {
		time.Sleep(wait)
		wait = min(2*wait, settleRetryMax)
		ctx, cancel := context.WithTimeout(context.Background(), e.timeout())
		err = s.Settle(ctx, d, charges)
		cancel()
		if e.settled(applied, charges, err) {
			return
		}
	}
	e.settleGaveUp(applied, charges, err)
}

// settled reports whether a settle attempt ended, counting what it
// charged; a store error is worth another try.
func (e *Enforcer) settled(applied []Applied, charges []limiter.Charge, err error) bool {
	switch {
	case err == nil:
		for _, c := range charges {
			e.Metrics.costSettled(applied[c.Limit], c.Units)
		}
		return true
	case errors.Is(err, limiter.ErrInvalid), errors.Is(err, limiter.ErrNothingToSettle):
		e.settleGaveUp(applied, charges, err) // no retry changes it
		return true
	}
	return false
}

func (e *Enforcer) settleGaveUp(applied []Applied, charges []limiter.Charge, err error) {
	for _, c := range charges {
		e.Metrics.settleFailed(applied[c.Limit])
	}
	if e.logNow() {
		a := applied[charges[0].Limit]
		e.Log.Info("A response's cost was not settled; its reserve stays charged (logged at most once a minute)",
			"policy", a.Policy, "limit", a.Name, "error", errString(err))
	}
}

// costUnknown counts a response that did not say its cost, and logs it at
// most once a minute.
func (e *Enforcer) costUnknown(a Applied, why string) {
	e.Metrics.costUnknown(a, why)
	if e.logNow() {
		e.Log.Info("A response did not say what its request cost; its reserve stays charged (logged at most once a minute)",
			"policy", a.Policy, "limit", a.Name, "reason", why)
	}
}

// logNow reports whether a cost problem may be logged: at most once a
// minute, since a broken upstream would say so on every response.
func (e *Enforcer) logNow() bool {
	now := time.Now().Unix()
	last := e.lastCostLog.Load()
	return now-last >= 60 && e.lastCostLog.CompareAndSwap(last, now)
}

func errString(err error) string {
	if err == nil {
		return "the store did not answer in time"
	}
	return err.Error()
}
