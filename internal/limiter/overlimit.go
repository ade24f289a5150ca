package limiter

import (
	"sync"
	"sync/atomic"
	"time"
)

// overLimit remembers the rates the store denied, for as long as the store
// must keep denying them, so a hot key far over its limit costs no store
// call. It only ever denies what the store would deny:
//   - a fixed window or quota counter only grows until its window or period
//     ends, so a cost above what remained stays denied until then;
//   - a sliding window or token bucket frees room with time, and the store
//     said when the same cost could pass: until then it is denied.
//
// An entry holds for the same limit, window and (for the last two) cost
// only, so a raised or lowered limit goes to the store at once. Its end is
// taken from when the request was sent, before the store's clock read it,
// less a margin of 0.1% for the two clocks' rates: it ends no later than
// the store's window does.
//
// It is off on a Redis Cluster, where a decision across slots commits slot
// by slot and gives back what it took when another slot denied: a counter
// seen full there may drop. What it cannot see elsewhere: a counter lowered
// behind its back (a flushed or restarted store) is denied until the entry
// ends, at most the window or period.
type overLimit struct {
	off bool
	mu  sync.Mutex
	m   map[overKey]overEntry
	// epoch counts forgets (a reset, a new config revision). A decision
	// takes it before it is sent, and what its reply says is over is
	// learned only in the same epoch: a reply from before a forget may
	// be from before the reset that caused it.
	epoch atomic.Uint64
}

// now is the epoch a decision about to be sent is in.
func (o *overLimit) now() uint64 { return o.epoch.Load() }

// maxOverEntries bounds the cache: past it, the cache starts again empty.
const maxOverEntries = 1 << 16

type overKey struct{ key, member string }

type overEntry struct {
	alg         Algorithm
	max, window int64
	// rem (fixed window, quota): a cost above it is denied. cost (sliding
	// window, token bucket): that cost, exactly, is denied.
	rem, cost int64
	// until is when the denial ends, with the margin; retry and reset are
	// what the store answered: when the request could pass (never: its cost
	// is above the limit) and when the rate is full again.
	until, retry, reset time.Time
	never               bool
}

func keyOf(e entry) overKey { return overKey{key: e.keys[len(e.keys)-1], member: e.member} }

// known answers a request from the cache when one of its enforced rates is
// known to deny. The decision holds only the results of those rates: the
// others were not read.
func (o *overLimit) known(entries []entry, now time.Time) (Decision, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.m) == 0 {
		return Decision{}, false
	}
	d := Decision{Known: true}
	for _, e := range entries {
		if e.dry {
			continue
		}
		c, ok := o.m[keyOf(e)]
		if !ok || !c.denies(e, now) {
			continue
		}
		r := c.result(e, now)
		if len(d.Results) == 0 || better(r, d.Results[d.Decider]) {
			d.Decider = len(d.Results)
		}
		d.Results = append(d.Results, r)
	}
	return d, len(d.Results) > 0
}

func (c overEntry) denies(e entry, now time.Time) bool {
	if !now.Before(c.until) || c.alg != e.alg || c.max != e.max || c.window != e.window {
		return false
	}
	if e.alg == FixedWindow || e.alg == Quota {
		return e.cost > c.rem
	}
	return e.cost == c.cost
}

func (c overEntry) result(e entry, now time.Time) Result {
	r := Result{Limit: e.limit, Rate: e.rate, Max: e.max, Remaining: max(c.rem, 0), ResetAfter: c.reset.Sub(now), RetryAfter: c.retry.Sub(now)}
	if c.never || e.cost > e.max {
		r.RetryAfter = Never
	}
	return r
}

// learn keeps the enforced denials of a decision sent at sent, and forgets
// the rates that allowed.
func (o *overLimit) learn(entries []entry, verdicts []verdict, sent time.Time, epoch uint64) {
	if o.off {
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	for i, e := range entries {
		v := verdicts[i]
		switch {
		case v.allowed:
			if len(o.m) > 0 {
				delete(o.m, keyOf(e))
			}
		case !e.dry && !v.full && epoch == o.epoch.Load():
			o.put(keyOf(e), entryFor(e, v, sent))
		}
	}
}

func entryFor(e entry, v verdict, sent time.Time) overEntry {
	at := func(ms int64) time.Time { return sent.Add(time.Duration(ms) * time.Millisecond) }
	c := overEntry{alg: e.alg, max: e.max, window: e.window, rem: v.remaining, cost: e.cost,
		reset: at(v.resetMs), retry: at(v.retryMs), never: v.retryMs < 0}
	end := v.retryMs
	if e.alg == FixedWindow || e.alg == Quota || c.never {
		end = v.resetMs
	}
	d := time.Duration(end) * time.Millisecond
	c.until = sent.Add(d - d/1000 - time.Millisecond)
	return c
}

func (o *overLimit) put(k overKey, c overEntry) {
	if o.m == nil || len(o.m) >= maxOverEntries {
		o.m = make(map[overKey]overEntry)
	}
	o.m[k] = c
}

// forget drops what the cache knows of entries' counters.
func (o *overLimit) forget(entries []entry) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.epoch.Add(1)
	for _, e := range entries {
		delete(o.m, keyOf(e))
	}
}

// clear drops everything the cache knows.
func (o *overLimit) clear() {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.epoch.Add(1)
	o.m = nil
}
