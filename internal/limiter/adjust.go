package limiter

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/quotaops/quota-operator/internal/store"
)

// Adjustment resets a limit's counters for one subject, or grants it extra
// units of a quota for the current period.
type Adjustment struct {
	// ID makes it happen at most once: the store keeps a record under it,
	// beside the counters, until MarkerKeep after the window or period it
	// changed ends, and a later call with the same ID answers from it.
	ID string
	// Grant is the units given back for the current period (a quota only);
	// 0 resets the current window or period.
	Grant int64
}

// Adjusted is what an Adjustment found and left.
type Adjusted struct {
	// Replayed: it had been applied before; the values are those of then.
	Replayed bool
	// At is when it was applied, by the store's clock.
	At time.Time
	// Rates has one entry per rate of the limit.
	Rates []AdjustedRate
}

// AdjustedRate is one rate before and after. Used is what counts against
// Max; a grant is a credit, so Used may go below 0 and what remains,
// Max - Used, above Max.
type AdjustedRate struct {
	Max, UsedBefore, UsedAfter int64
}

// MarkerKeep is how long an adjustment's record outlives the window or
// period it changed: long enough for its caller to record the outcome
// elsewhere (a status) even after days of outage.
const MarkerKeep = 7 * 24 * time.Hour

// ErrNotShared: the store is this process's memory, which holds no one
// else's counters.
var ErrNotShared = errors.New("limiter: counters are in this process only: adjusting or listing them needs a shared store (Redis)")

// Adjust applies adj to the counters of lim, for lim.Key's subject, in one
// atomic step, at most once per adj.ID.
func (l *Limiter) Adjust(ctx context.Context, lim Limit, adj Adjustment) (Adjusted, error) {
	re, ok := l.engine.(redisEngine)
	if !ok {
		return Adjusted{}, ErrNotShared
	}
	if err := validate([]Limit{lim}); err != nil {
		return Adjusted{}, err
	}
	if err := adj.check(lim); err != nil {
		return Adjusted{}, err
	}
	for range maxAttempts {
		local, now, entries, err := l.planNow([]Limit{lim})
		if err != nil {
			return Adjusted{}, err
		}
		at := int64(0)
		if !l.storeTime {
			at = now.UnixMicro()
		}
		reply, err := re.adjust(ctx, entries, adj, at)
		if err != nil {
			return Adjusted{}, err
		}
		if l.storeTime && reply[0] != 1 {
			l.learnOffset(local, reply[1])
		}
		if reply[0] != -1 {
			l.over.forget(entries)
			return adjusted(entries, reply), nil
		}
	}
	return Adjusted{}, errClockCrossing
}

// ForgetKnown drops every rate known to deny, so the next decisions ask the
// store: its counters were changed behind this limiter's back (an
// adjustment made elsewhere).
func (l *Limiter) ForgetKnown() { l.over.clear() }

func (adj Adjustment) check(lim Limit) error {
	switch {
	case adj.ID == "":
		return fmt.Errorf("%w: an adjustment needs an ID", ErrInvalid)
	case adj.Grant < 0:
		return fmt.Errorf("%w: a grant of %d units", ErrInvalid, adj.Grant)
	case adj.Grant > 0 && lim.Algorithm != Quota:
		return fmt.Errorf("%w: only a quota takes a grant, not a %s limit", ErrInvalid, lim.Algorithm)
	}
	return nil
}

// adjust calls qo1_adjust (adjust.lua): its reply is state, now µs, then used before and
// after per entry.
func (r redisEngine) adjust(ctx context.Context, entries []entry, adj Adjustment, atUs int64) ([]int64, error) {
	action := "reset"
	if adj.Grant > 0 {
		action = "grant"
	}
	keys := append([]string{TaggedKey(entries[0].tag, "adj", adj.ID)}, keysOf(entries)...)
	args := appendEntries([]any{atUs, action, adj.Grant, MarkerKeep.Milliseconds()}, entries, func(i int) any { return entries[i].maxSubjects })
	reply, err := r.c.FCall(ctx, "qo1_adjust", keys, args...).Int64Slice()
	if err != nil {
		return nil, fmt.Errorf("limiter: adjust: %w", store.LibraryError(err))
	}
	if len(reply) < 2 || reply[0] != -1 && len(reply) != 2+2*len(entries) {
		return nil, fmt.Errorf("limiter: adjust: reply of %d values for %d rates", len(reply), len(entries))
	}
	return reply, nil
}

func adjusted(entries []entry, reply []int64) Adjusted {
	out := Adjusted{Replayed: reply[0] == 1, At: time.UnixMicro(reply[1])}
	for i, e := range entries {
		out.Rates = append(out.Rates, AdjustedRate{Max: e.max, UsedBefore: reply[2+2*i], UsedAfter: reply[3+2*i]})
	}
	return out
}
