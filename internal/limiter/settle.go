package limiter

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"time"

	"github.com/quotaops/quota-operator/internal/store"
)

// commitment is what an allowed decision wrote, kept in its Decision so
// that its cost can be settled later.
type commitment struct {
	entries  []entry
	verdicts []verdict
	// atUs is the store's time of the decision: a sliding window's units
	// went to that instant's sub-window.
	atUs int64
}

// Charge is what one limit of a decided request really cost, once known.
type Charge struct {
	// Limit indexes the request's Limits.
	Limit int
	// Units is the cost (0 or more); the limit's Cost was the reserve the
	// decision charged, and the difference is charged now: a refund when
	// Units is below the reserve.
	Units int64
}

// ErrNothingToSettle: the decision consumed nothing (it denied, peeked or
// was answered without the store), or its Request was not Settleable.
var ErrNothingToSettle = errors.New("limiter: the decision consumed nothing to settle")

// Settle charges each limit of d what it really cost, less the reserve its
// decision took, in one atomic store call (one per hash tag in a
// Cluster). Every rate of the limit moves by the same units: a window's
// count in the window the decision counted in, a quota's usage in its
// period, a token bucket's debt from now. A window or period that has
// ended since is left alone: its units no longer limit anything. A
// settle above the reserve may take a rate past its limit: the request
// was served, and the next one is denied.
func (l *Limiter) Settle(ctx context.Context, d Decision, charges []Charge) error {
	c := d.commit
	if c == nil {
		return ErrNothingToSettle
	}
	entries, err := c.moves(charges)
	if err != nil || len(entries) == 0 {
		return err
	}
	at := int64(0)
	if !l.storeTime {
		at = l.now().UnixMicro()
	}
	if err := l.engine.settle(ctx, entries, c, at); err != nil {
		return err
	}
	// A refund may leave a rate known to deny with room again.
	l.over.forget(movedEntries(entries))
	return nil
}

// moves are the committed entries of the charged limits, each with its
// cost replaced by the signed units to move.
func (c *commitment) moves(charges []Charge) ([]movedEntry, error) {
	byLimit := make(map[int]int64, len(charges))
	for _, ch := range charges {
		switch {
		case ch.Units < 0 || ch.Units > MaxValue:
			return nil, fmt.Errorf("%w: limits[%d] cost %d units: want 0..%d", ErrInvalid, ch.Limit, ch.Units, int64(MaxValue))
		case !c.has(ch.Limit):
			return nil, fmt.Errorf("%w: a charge for limits[%d], which the decision did not have", ErrInvalid, ch.Limit)
		}
		byLimit[ch.Limit] = ch.Units
	}
	var out []movedEntry
	for i, e := range c.entries {
		if units, ok := byLimit[e.limit]; ok && units != e.cost {
			out = append(out, movedEntry{entry: e, units: units - e.cost, created: c.verdicts[i].created})
		}
	}
	return out, nil
}

func (c *commitment) has(limit int) bool {
	_, ok := c.costOf(limit)
	return ok
}

// movedEntry is one rate's counter to move by units (signed).
type movedEntry struct {
	entry
	units   int64
	created bool
}

func movedEntries(m []movedEntry) []entry {
	out := make([]entry, len(m))
	for i := range m {
		out[i] = m[i].entry
	}
	return out
}

func (r redisEngine) settle(ctx context.Context, moves []movedEntry, c *commitment, nowUs int64) error {
	var errs []error
	for _, g := range byTag(moves, func(m movedEntry) string { return m.tag }, r.cluster) {
		args := make([]any, 0, 2+argsPerEntry*len(g))
		args = append(args, c.atUs, nowUs)
		for _, m := range g {
			created := "-"
			if m.created {
				created = "created"
			}
			args = append(args, algCode(m.alg), m.max, m.window, m.units, dryArg(m.entry), m.start, m.end, m.member, created)
		}
		if err := r.c.FCall(ctx, "qo1_settle", keysOf(movedEntries(g)), args...).Err(); err != nil {
			errs = append(errs, fmt.Errorf("limiter: settle: %w", store.LibraryError(err)))
		}
	}
	return errors.Join(errs...)
}

// settle moves each counter as qo1_settle does, in one transaction.
func (me memoryEngine) settle(ctx context.Context, moves []movedEntry, c *commitment, nowUs int64) error {
	return me.m.Update(ctx, keysOf(movedEntries(moves)), func(tx *store.MemoryTx) error {
		if nowUs == 0 {
			nowUs = tx.Now().UnixMicro()
		}
		for _, m := range moves {
			if err := settleEntry(tx, m, c.atUs, nowUs); err != nil {
				return err
			}
		}
		return nil
	})
}

func settleEntry(tx *store.MemoryTx, m movedEntry, atUs, nowUs int64) error {
	switch m.alg {
	case FixedWindow:
		return moveCount(tx, m.keys[0], m.units)
	case SlidingWindow:
		field := strconv.FormatInt(min(max(slidingBucket(atUs/1000, m.start, m.window), 0), subWindows-1), 10)
		return moveField(tx, m.keys[1], field, m.units, m.units > 0)
	case TokenBucket:
		return moveBucket(tx, m, float64(nowUs))
	}
	fields, err := tx.Fields(m.keys[0])
	if _, ok := fields[m.member]; err != nil || !ok {
		return err
	}
	if err := moveField(tx, m.keys[0], m.member, m.units, false); err != nil {
		return err
	}
	return moveCount(tx, m.keys[1], m.units)
}

// moveCount adds units to an integer key that still exists, keeping its
// TTL, and removes it at 0 or below.
func moveCount(tx *store.MemoryTx, key string, units int64) error {
	left := tx.TTL(key)
	if left <= 0 {
		return nil
	}
	next, err := tx.IncrementBy(key, units, left)
	if err == nil && next <= 0 {
		err = tx.Delete(key)
	}
	return err
}

// moveField adds units to a hash field that exists (or, with create, to a
// hash that does), keeping the hash's TTL; a field at 0 or below goes.
func moveField(tx *store.MemoryTx, key, field string, units int64, create bool) error {
	fields, err := tx.Fields(key)
	if err != nil {
		return err
	}
	cur, had := fields[field]
	left := tx.TTL(key)
	if left <= 0 || !had && !create {
		return nil
	}
	if cur+units <= 0 {
		units = -cur // AddField removes a field that reaches 0
	}
	_, err = tx.AddField(key, field, units, left)
	return err
}

func moveBucket(tx *store.MemoryTx, m movedEntry, now float64) error {
	key := m.keys[0]
	raw, ok, err := tx.Get(key)
	if err != nil {
		return err
	}
	tat := now
	switch {
	case ok:
		if tat, err = strconv.ParseFloat(string(raw), 64); err != nil || math.IsNaN(tat) || math.IsInf(tat, 0) {
			return store.ErrNotInteger
		}
		if m.units > 0 {
			tat = math.Max(tat, now)
		}
	case m.units <= 0:
		return nil
	}
	tat += float64(m.units) * float64(m.window) * 1000 / float64(m.max)
	if tat <= now {
		return tx.Delete(key)
	}
	return tx.Set(key, strconv.AppendFloat(nil, tat, 'g', 17, 64), time.Duration(max(1, ceilMs(tat-now)))*time.Millisecond)
}

// After is d as it stands once charges are settled: each charged limit's
// rates have what the difference from the reserve leaves (0 at least,
// their limit at most), and the deciding rate is chosen again. It asks no
// store: a response's rate-limit headers come from it.
func (d Decision) After(charges []Charge) Decision {
	if d.commit == nil || len(charges) == 0 {
		return d
	}
	out := d
	out.Results = slices.Clone(d.Results)
	for i := range out.Results {
		r := &out.Results[i]
		for _, ch := range charges {
			if ch.Limit != r.Limit {
				continue
			}
			reserve, _ := d.commit.costOf(r.Limit)
			delta := ch.Units - reserve
			r.Remaining = min(max(r.Remaining-delta, 0), r.Max)
		}
	}
	out.Decider = -1
	for i, r := range out.Results {
		if out.Decider < 0 || better(r, out.Results[out.Decider]) {
			out.Decider = i
		}
	}
	return out
}

// costOf is what the decision took for limit, and whether it decided it.
func (c *commitment) costOf(limit int) (int64, bool) {
	for _, e := range c.entries {
		if e.limit == limit {
			return e.cost, true
		}
	}
	return 0, false
}
