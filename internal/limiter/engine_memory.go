package limiter

import (
	"context"
	"math"
	"strconv"
	"time"

	"github.com/quotaops/quota-operator/internal/store"
)

// memoryEngine runs each step as one store.Memory transaction: the shards of
// every key involved stay locked from the first read to the last write.
type memoryEngine struct {
	m memoryStore
}

// commit is an entry's write, run only when the whole decision passes.
type commit func() error

// decide needs no deadline: the memory store answers at once.
func (me memoryEngine) decide(ctx context.Context, entries []entry, a attempt) (outcome, error) {
	var out outcome
	err := me.m.Update(ctx, keysOf(entries), func(tx *store.MemoryTx) error {
		out.nowUs = a.atUs
		if out.nowUs == 0 {
			out.nowUs = tx.Now().UnixMicro()
		}
		if out.stale = anyStale(entries, out.nowUs/1000); out.stale {
			return nil
		}
		out.verdicts = make([]verdict, len(entries))
		commits := make([]commit, len(entries))
		pass := !a.peek
		for i, e := range entries {
			v, c, err := evaluate(tx, e, out.nowUs)
			if err != nil {
				return err
			}
			out.verdicts[i], commits[i] = v, c
			pass = pass && (v.allowed || e.dry)
		}
		if !pass {
			return nil
		}
		for _, c := range commits {
			if err := c(); err != nil {
				return err
			}
		}
		return nil
	})
	return out, err
}

func evaluate(tx *store.MemoryTx, e entry, nowUs int64) (verdict, commit, error) {
	nowMs := nowUs / 1000
	switch e.alg {
	case FixedWindow:
		return fixedStep(tx, e, nowMs)
	case SlidingWindow:
		return slidingStep(tx, e, nowMs)
	case TokenBucket:
		return bucketStep(tx, e, nowUs)
	}
	return quotaStep(tx, e, nowMs)
}

func ms(n int64) time.Duration { return time.Duration(n) * time.Millisecond }

func fixedStep(tx *store.MemoryTx, e entry, nowMs int64) (verdict, commit, error) {
	used, err := tx.Int(e.keys[0])
	if err != nil {
		return verdict{}, nil, err
	}
	left := e.start + e.window - nowMs
	return counted(used, e.cost, e.max, left), func() error {
		_, err := tx.IncrementBy(e.keys[0], e.cost, ms(left))
		return err
	}, nil
}

func slidingStep(tx *store.MemoryTx, e entry, nowMs int64) (verdict, commit, error) {
	var windows [2][subWindows]int64
	for w, key := range e.keys {
		fields, err := tx.Fields(key)
		if err != nil {
			return verdict{}, nil, err
		}
		for j := range windows[w] {
			windows[w][j] = fields[strconv.Itoa(j)]
		}
	}
	bucket := strconv.FormatInt(slidingBucket(nowMs, e.start, e.window), 10)
	// The current window is read as the previous one until its next
	// window ends.
	ttl := ms(e.start + 2*e.window - nowMs)
	return slidingVerdict(&windows[0], &windows[1], e, nowMs), func() error {
		_, err := tx.AddField(e.keys[1], bucket, e.cost, ttl)
		return err
	}, nil
}

func bucketStep(tx *store.MemoryTx, e entry, nowUs int64) (verdict, commit, error) {
	raw, ok, err := tx.Get(e.keys[0])
	if err != nil {
		return verdict{}, nil, err
	}
	tat := 0.0
	if ok {
		if tat, err = strconv.ParseFloat(string(raw), 64); err != nil || math.IsNaN(tat) || math.IsInf(tat, 0) {
			return verdict{}, nil, store.ErrNotInteger
		}
	}
	now := float64(nowUs)
	next, v := bucketTat(tat, e, now)
	return v, func() error {
		return tx.Set(e.keys[0], strconv.AppendFloat(nil, next, 'g', 17, 64), ms(max(1, ceilMs(next-now))))
	}, nil
}

func quotaStep(tx *store.MemoryTx, e entry, nowMs int64) (verdict, commit, error) {
	fields, err := tx.Fields(e.keys[0])
	if err != nil {
		return verdict{}, nil, err
	}
	if _, err := tx.Int(e.keys[1]); err != nil {
		return verdict{}, nil, err
	}
	used, known := fields[e.member]
	if !known && e.maxSubjects > 0 && int64(len(fields)) >= e.maxSubjects {
		return boundVerdict(e.end - nowMs), func() error { return nil }, nil
	}
	ttl := ms(e.end + e.window - nowMs)
	return counted(used, e.cost, e.max, e.end-nowMs), func() error {
		if _, err := tx.AddField(e.keys[0], e.member, e.cost, ttl); err != nil {
			return err
		}
		_, err := tx.IncrementBy(e.keys[1], e.cost, ttl)
		return err
	}, nil
}

func (me memoryEngine) usage(ctx context.Context, keys []string, top int) (Usage, error) {
	var u Usage
	err := me.m.Update(ctx, keys, func(tx *store.MemoryTx) error {
		fields, err := tx.Fields(keys[0])
		if err != nil {
			return err
		}
		if u.Total, err = tx.Int(keys[1]); err != nil {
			return err
		}
		u.Subjects = int64(len(fields))
		for subject, used := range fields {
			u.Top = append(u.Top, Consumer{Subject: subject, Used: used})
		}
		return nil
	})
	u.Top = topConsumers(u.Top, top)
	return u, err
}

func (me memoryEngine) acquire(ctx context.Context, key, fence string, token []byte, ttl time.Duration) (lockReply, error) {
	var r lockReply
	err := me.m.Update(ctx, []string{key, fence}, func(tx *store.MemoryTx) error {
		if _, held, err := tx.Get(key); err != nil || held {
			r.wait = tx.TTL(key)
			return err
		}
		last, err := tx.Int(fence)
		if err != nil {
			return err
		}
		r.ok, r.fence = true, max(last+1, tx.Now().UnixMicro())
		if err := tx.Set(fence, strconv.AppendInt(nil, r.fence, 10), fenceTTL); err != nil {
			return err
		}
		return tx.Set(key, token, ttl)
	})
	return r, err
}
