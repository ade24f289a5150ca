package limiter

import (
	"fmt"
	"strconv"
	"time"
)

// subWindows is how many buckets a sliding window keeps. The oldest bucket
// still touching the span counts in full, so the span never holds more than
// the limit; under steady overload it admits at least subWindows/(subWindows+1)
// of the limit per window.
const subWindows = 10

// entry is one rate of one limit, as the engines see it: plain numbers in
// milliseconds and the keys it reads and writes.
type entry struct {
	limit, rate int
	alg         Algorithm
	max, cost   int64
	window      int64 // ms; for a quota, the grace after the period's end
	dry         bool
	// start is the proposed window start (window algorithms) or period
	// start (quota); end is the period end. The store checks both against
	// its own clock.
	start, end int64
	member     string // quota: the subject's hash
	// maxSubjects: a quota's bound on subjects per period; 0 none.
	maxSubjects int64
	tag         string
	keys        []string
}

// plan turns limits into entries for the time now. The windows and periods
// are proposals: the store refuses them if its clock disagrees.
func plan(limits []Limit, now time.Time, grace time.Duration) ([]entry, error) {
	out := make([]entry, 0, len(limits))
	for i, lim := range limits {
		// The tag hashes the subject: once per limit, not once per key.
		tag := lim.Key.Tag()
		if lim.Algorithm == Quota {
			tag = lim.Key.QuotaTag()
		}
		for j, r := range lim.Rates {
			e, err := planRate(lim, tag, r, now, grace)
			if err != nil {
				return nil, fmt.Errorf("%w: limits[%d]: %w", ErrInvalid, i, err)
			}
			if repeats(out, e) {
				return nil, fmt.Errorf("%w: limits[%d] repeats a counter of another limit of the request", ErrInvalid, i)
			}
			e.limit, e.rate = i, j
			out = append(out, e)
		}
	}
	return out, nil
}

// repeats reports whether e writes a counter an earlier entry writes.
func repeats(earlier []entry, e entry) bool {
	last := e.keys[len(e.keys)-1]
	for _, o := range earlier {
		if o.keys[len(o.keys)-1] == last && o.member == e.member {
			return true
		}
	}
	return false
}

func planRate(lim Limit, tag string, r Rate, now time.Time, grace time.Duration) (entry, error) {
	e := entry{alg: lim.Algorithm, max: r.Limit, cost: lim.Cost, dry: lim.DryRun, window: r.Window.Milliseconds(), tag: tag}
	ms := now.UnixMilli()
	switch lim.Algorithm {
	case FixedWindow:
		e.start = ms - mod(ms, e.window)
		e.keys = []string{windowKey(tag, "fw", e.window, e.start)}
	case SlidingWindow:
		e.start = ms - mod(ms, e.window)
		e.keys = []string{windowKey(tag, "sw", e.window, e.start-e.window), windowKey(tag, "sw", e.window, e.start)}
	case TokenBucket:
		e.keys = []string{windowKey(tag, "tb", e.window)}
	case Quota:
		start, end, err := lim.Period.Bounds(now, lim.Location)
		if err != nil {
			return entry{}, err
		}
		e.start, e.end, e.window = start.UnixMilli(), end.UnixMilli(), grace.Milliseconds()
		e.member, e.maxSubjects = lim.Key.SubjectHash(), lim.MaxSubjects
		e.keys = quotaKeys(tag, start)
	}
	return e, nil
}

// quotaKeys are a period's usage (a sorted set of subject hashes by units
// consumed) and its total.
func quotaKeys(tag string, start time.Time) []string {
	s := itoa(start.Unix())
	return []string{TaggedKey(tag, "q", s, "use"), TaggedKey(tag, "q", s, "sum")}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// mod is the non-negative remainder, so windows align before 1970 too.
func mod(a, b int64) int64 {
	m := a % b
	if m < 0 {
		m += b
	}
	return m
}

// decision packages the engines' verdicts and picks the decider.
func decision(entries []entry, verdicts []verdict) Decision {
	d := Decision{Allowed: true, Decider: -1, Results: make([]Result, len(entries))}
	for i, e := range entries {
		v := verdicts[i]
		// A subject past a limit that was lowered, or a DryRun limit now
		// enforced, has used more than the limit: nothing remains, which
		// is 0, not a negative count clients would misread.
		r := Result{
			Limit: e.limit, Rate: e.rate, Allowed: v.allowed, DryRun: e.dry, Max: e.max, Remaining: max(v.remaining, 0),
			ResetAfter: time.Duration(v.resetMs) * time.Millisecond, RetryAfter: time.Duration(v.retryMs) * time.Millisecond,
			SubjectBound: v.full,
		}
		if v.retryMs < 0 {
			r.RetryAfter = Never
		}
		d.Results[i] = r
		if !r.Allowed && !r.DryRun {
			d.Allowed = false
		}
		if d.Decider < 0 || better(r, d.Results[d.Decider]) {
			d.Decider = i
		}
	}
	if !d.Allowed {
		// Nothing was consumed: the rates that would have allowed show what
		// is left now, not after a request that did not happen.
		for i, e := range entries {
			if r := &d.Results[i]; r.Allowed {
				r.Remaining = min(r.Max, r.Remaining+e.cost)
			}
		}
	}
	return d
}

// better reports whether r explains the decision better than cur: enforced
// before DryRun, a denial before an allowance, then the longest wait for a
// denial or the least remaining for an allowance.
func better(r, cur Result) bool {
	if r.DryRun != cur.DryRun {
		return !r.DryRun
	}
	if r.Allowed != cur.Allowed {
		return !r.Allowed
	}
	if !r.Allowed {
		return waitLonger(r.RetryAfter, cur.RetryAfter)
	}
	return r.Remaining < cur.Remaining
}

func waitLonger(a, b time.Duration) bool {
	if a == Never || b == Never {
		return a == Never && b != Never
	}
	return a > b
}

// stale reports whether the store's clock puts nowMs outside the window or
// period this entry proposed.
func (e entry) stale(nowMs int64) bool {
	switch e.alg {
	case FixedWindow, SlidingWindow:
		return e.start != nowMs-mod(nowMs, e.window)
	case Quota:
		return nowMs < e.start || nowMs >= e.end
	}
	return false
}

func anyStale(entries []entry, nowMs int64) bool {
	for _, e := range entries {
		if e.stale(nowMs) {
			return true
		}
	}
	return false
}

func keysOf(entries []entry) []string {
	var keys []string
	for _, e := range entries {
		keys = append(keys, e.keys...)
	}
	return keys
}
