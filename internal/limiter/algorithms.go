package limiter

import "math"

// The decision math, in Go for the memory engine. decide.lua is the same
// math for Redis; both pass the same tests. Times are Unix milliseconds
// except the token bucket's, which are microseconds in float64 (what Lua
// numbers are), because its emission interval is rarely a whole number.

// verdict is one entry's answer. retryMs is -1 for never.
type verdict struct {
	allowed   bool
	remaining int64
	resetMs   int64
	retryMs   int64
	// full: a quota's new subject beyond its bound; never recorded.
	full bool
	// created: committing the decision made this quota's subject; only
	// then may a refund remove it.
	created bool
}

// boundVerdict denies a new subject of a quota that tracks its bound of
// subjects already, until the period ends in resetMs.
func boundVerdict(resetMs int64) verdict {
	return verdict{full: true, resetMs: resetMs, retryMs: resetMs}
}

// counted is a verdict for "used of max, cost more" counters (fixed window
// and quota) that are full again at resetMs.
func counted(used, cost, maxv, resetMs int64) verdict {
	v := verdict{allowed: used+cost <= maxv, resetMs: resetMs}
	after := used
	if v.allowed {
		after += cost
	} else {
		v.retryMs = retryOrNever(cost, maxv, resetMs)
	}
	v.remaining = max(0, maxv-after)
	return v
}

func retryOrNever(cost, maxv, wait int64) int64 {
	if cost > maxv {
		return -1
	}
	return wait
}

// slidingBound is the offset, from a window's start, at which sub-window j
// begins, rounded up so a bucket never leaves the span early.
func slidingBound(j, window int64) int64 {
	return (j*window + subWindows - 1) / subWindows
}

// slidingBucket is the sub-window that holds nowMs.
func slidingBucket(nowMs, start, window int64) int64 {
	return (nowMs - start) * subWindows / window
}

// slidingVerdict decides over the previous and current windows' buckets.
// The span counts prev[i..] and cur[..i]: the oldest counted bucket in full.
func slidingVerdict(prev, cur *[subWindows]int64, e entry, nowMs int64) verdict {
	i := slidingBucket(nowMs, e.start, e.window)
	var used int64
	for j := i; j < subWindows; j++ {
		used += prev[j]
	}
	for j := int64(0); j <= i; j++ {
		used += cur[j]
	}
	v := verdict{allowed: used+e.cost <= e.max}
	after := used
	if v.allowed {
		after += e.cost
	}
	v.remaining = max(0, e.max-after)
	if !v.allowed && e.cost > e.max {
		v.retryMs = -1
	}
	// Buckets leave the span oldest first: the reset is when the last one
	// leaves, the retry when enough have left for this cost.
	need, freed := used+e.cost-e.max, int64(0)
	leave := func(n, at int64) {
		if n == 0 {
			return
		}
		v.resetMs, freed = at-nowMs, freed+n
		if !v.allowed && v.retryMs == 0 && freed >= need {
			v.retryMs = at - nowMs
		}
	}
	for j := i; j < subWindows; j++ {
		leave(prev[j], e.start+slidingBound(j+1, e.window))
	}
	for k := int64(0); k <= i; k++ {
		n := cur[k]
		if k == i && v.allowed {
			n += e.cost
		}
		leave(n, e.start+e.window+slidingBound(k+1, e.window))
	}
	return v
}

// bucketTat is the GCRA step: the theoretical arrival time after this
// request, and the verdict. tat is the stored one (0 when none).
func bucketTat(tat float64, e entry, nowUs float64) (float64, verdict) {
	span := float64(e.window) * 1000
	interval := span / float64(e.max)
	tat = math.Max(tat, nowUs)
	next := tat + float64(e.cost)*interval
	// 1 µs of slack absorbs float rounding in cost*interval == span.
	v := verdict{allowed: next-nowUs <= span+1}
	left := next
	if !v.allowed {
		left = tat
		v.retryMs = retryOrNever(e.cost, e.max, ceilMs(next-nowUs-span))
	}
	v.resetMs = ceilMs(left - nowUs)
	v.remaining = max(0, int64(math.Floor((span-(left-nowUs))/interval+1e-6)))
	if !v.allowed && e.dry {
		// A dry run counts, but a bucket holds at most its burst.
		next = math.Min(next, nowUs+span)
	}
	return next, v
}

func ceilMs(us float64) int64 {
	return int64(math.Ceil(us / 1000))
}
