package limiter

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/quotaops/quota-operator/internal/store"
	"github.com/redis/go-redis/v9"
)

var (
	//go:embed lua/decide.lua
	decideLua string
	//go:embed lua/refund.lua
	refundLua string
	//go:embed lua/acquire.lua
	acquireLua string
	//go:embed lua/adjust.lua
	adjustLua string
	//go:embed lua/usage.lua
	usageLua string
)

// Library is the Redis Functions library for seal: the store's functions
// and the limiter's (decide, refund, adjust, acquire, usage), which the
// manager loads on every master (store.Library).
func Library(seal string) (source, digest string, err error) {
	return store.Library(seal, decideLua, refundLua, adjustLua, acquireLua, usageLua)
}

// redisEngine runs each step as one call of a library function. On a single server or
// Sentinel group a decision is always one script. In a Cluster (or behind
// one endpoint that refuses calls across slots: the URL's cross_slot=false),
// keys of one limit and subject share a slot; a decision whose keys span
// slots runs one script per hash tag, concurrently, and refunds the slots
// that committed when another denied.
type redisEngine struct {
	c       redis.UniversalClient
	cluster bool
	batch   *batcher
}

func newRedisEngine(c redis.UniversalClient) redisEngine {
	_, cluster := c.(*redis.ClusterClient)
	return redisEngine{c: c, cluster: cluster, batch: newBatcher(c)}
}

func algCode(a Algorithm) string {
	return [...]string{FixedWindow: "f", SlidingWindow: "s", TokenBucket: "t", Quota: "q"}[a]
}

// decideCall is one decision as decide.lua takes it alone: the time, its
// header (twice the number of entries, plus 1 to peek), then its entries.
// A batch sends the time once, before every call's header.
func decideCall(group string, entries []entry, a attempt) *batchCall {
	head := 2 * len(entries)
	if a.peek {
		head++
	}
	args := make([]any, 0, 2+argsPerEntry*len(entries))
	args = append(args, a.atUs, head)
	for _, e := range entries {
		args = append(args, algCode(e.alg), e.max, e.window, e.cost, dryArg(e), e.start)
		if e.alg == Quota {
			args = append(args, e.end, e.member, e.maxSubjects)
		}
	}
	return &batchCall{group: group, at: a.atUs, deadline: a.deadline, keys: keysOf(entries), args: args, entries: len(entries)}
}

// refundArgs are refund.lua's arguments: the committed decision's time,
// the time now, then the entries, each ending with whether the decision
// created its quota subject (verdicts are the decision's).
func refundArgs(entries []entry, verdicts []verdict, atUs, nowUs int64) []any {
	args := make([]any, 0, 2+argsPerEntry*len(entries))
	return appendEntries(append(args, atUs, nowUs), entries, func(i int) any {
		if verdicts[i].created {
			return "created"
		}
		return "-"
	})
}

// appendEntries appends each entry's 9 values; the last is last(i) (a
// quota's bound on subjects for adjust.lua, whether it was created for
// refund.lua).
func appendEntries(args []any, entries []entry, last func(i int) any) []any {
	for i, e := range entries {
		args = append(args, algCode(e.alg), e.max, e.window, e.cost, dryArg(e), e.start, e.end, e.member, last(i))
	}
	return args
}

func dryArg(e entry) int {
	if e.dry {
		return 1
	}
	return 0
}

// argsPerEntry is the ARGV stride of refund.lua, and of decide.lua for a
// quota (its other entries take 6).
const argsPerEntry = 9

func (r redisEngine) decide(ctx context.Context, entries []entry, a attempt) (outcome, error) {
	groups := r.groups(entries)
	if len(groups) == 1 {
		return r.decideGroup(ctx, entries, a)
	}
	outs := make([]outcome, len(groups))
	errs := make([]error, len(groups))
	var wg sync.WaitGroup
	for i, g := range groups {
		wg.Go(func() { outs[i], errs[i] = r.decideGroup(ctx, g, a) })
	}
	wg.Wait()
	return r.merge(ctx, entries, groups, outs, errors.Join(errs...), a)
}

// groups splits entries by hash tag in a Cluster; elsewhere one script
// takes them all.
func (r redisEngine) groups(entries []entry) [][]entry {
	return byTag(entries, func(e entry) string { return e.tag }, r.cluster)
}

// byTag groups items by their hash tag, in the order each tag first
// appears; outside a Cluster, all are one group.
func byTag[T any](items []T, tag func(T) string, cluster bool) [][]T {
	if !cluster {
		return [][]T{items}
	}
	var groups [][]T
	index := make(map[string]int)
	for _, it := range items {
		i, ok := index[tag(it)]
		if !ok {
			i = len(groups)
			index[tag(it)] = i
			groups = append(groups, nil)
		}
		groups[i] = append(groups[i], it)
	}
	return groups
}

func (r redisEngine) decideGroup(ctx context.Context, entries []entry, a attempt) (outcome, error) {
	group := ""
	if r.cluster {
		group = entries[0].tag
	}
	reply, err := r.batch.run(ctx, decideCall(group, entries, a))
	if err != nil {
		return outcome{}, fmt.Errorf("limiter: decide: %w", err)
	}
	if len(reply) < 2 || reply[0] == 0 && len(reply) != 2+4*len(entries) {
		return outcome{}, fmt.Errorf("limiter: decide: reply of %d values for %d entries", len(reply), len(entries))
	}
	out := outcome{stale: reply[0] == 1, nowUs: reply[1]}
	if out.stale {
		return out, nil
	}
	for i := range entries {
		v := reply[2+4*i:]
		code, created := v[0]%4, v[0] >= 4
		out.verdicts = append(out.verdicts, verdict{allowed: code == 1, full: code == 2, created: created, remaining: v[1], resetMs: v[2], retryMs: v[3]})
	}
	return out, nil
}

// merge joins the groups' outcomes in entry order and gives back what
// committed groups took when the decision as a whole did not pass.
func (r redisEngine) merge(ctx context.Context, entries []entry, groups [][]entry, outs []outcome, err error, a attempt) (outcome, error) {
	var merged outcome
	pass := err == nil
	for _, o := range outs {
		merged.nowUs = max(merged.nowUs, o.nowUs)
		merged.stale = merged.stale || o.stale
	}
	pass = pass && !merged.stale
	byPos := make(map[[2]int]verdict, len(entries))
	for gi, g := range groups {
		for i, e := range g {
			if i < len(outs[gi].verdicts) {
				v := outs[gi].verdicts[i]
				byPos[[2]int{e.limit, e.rate}] = v
				pass = pass && (v.allowed || e.dry)
			}
		}
	}
	if !a.peek && !pass {
		if rerr := r.refund(ctx, groups, outs, a.atUs); rerr != nil {
			err = errors.Join(err, rerr)
		}
	}
	if err != nil || merged.stale {
		return merged, err
	}
	for _, e := range entries {
		merged.verdicts = append(merged.verdicts, byPos[[2]int{e.limit, e.rate}])
	}
	return merged, nil
}

// refund undoes the groups that committed: those that answered, were not
// stale, and had no enforced denial.
func (r redisEngine) refund(ctx context.Context, groups [][]entry, outs []outcome, atUs int64) error {
	var errs []error
	for gi, g := range groups {
		if !committed(g, outs[gi]) {
			continue
		}
		// The refund must land even if the caller gave up waiting.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
		err := r.c.FCall(rctx, "qo1_refund", keysOf(g), refundArgs(g, outs[gi].verdicts, outs[gi].nowUs, atUs)...).Err()
		cancel()
		if err != nil {
			errs = append(errs, fmt.Errorf("limiter: refund: %w", store.LibraryError(err)))
		}
	}
	return errors.Join(errs...)
}

func committed(g []entry, o outcome) bool {
	if o.stale || len(o.verdicts) != len(g) {
		return false
	}
	for i, e := range g {
		if !o.verdicts[i].allowed && !e.dry {
			return false
		}
	}
	return true
}

func (r redisEngine) usage(ctx context.Context, keys []string, top int) (Usage, error) {
	reply, err := r.c.FCallRo(ctx, "qo1_usage", keys, top).Slice()
	if err != nil {
		return Usage{}, fmt.Errorf("limiter: usage: %w", store.LibraryError(err))
	}
	if len(reply) < 2 || len(reply)%2 != 0 {
		return Usage{}, fmt.Errorf("limiter: usage: reply of %d values", len(reply))
	}
	card, _ := reply[0].(int64)
	u := Usage{Subjects: card}
	if t, ok := reply[1].(string); ok {
		if u.Total, err = strconv.ParseInt(t, 10, 64); err != nil {
			return Usage{}, fmt.Errorf("limiter: usage: total is not an integer")
		}
	}
	for i := 2; i+1 < len(reply); i += 2 {
		member, _ := reply[i].(string)
		score, _ := reply[i+1].(string)
		used, err := strconv.ParseFloat(score, 64)
		if err != nil {
			return Usage{}, fmt.Errorf("limiter: usage: a score is not a number")
		}
		u.Top = append(u.Top, Consumer{Subject: member, Used: int64(used)})
	}
	u.Top = topConsumers(u.Top, top)
	return u, nil
}

func (r redisEngine) acquire(ctx context.Context, key, fence string, token []byte, ttl time.Duration) (lockReply, error) {
	reply, err := r.c.FCall(ctx, "qo1_acquire", []string{key, fence}, token, ceilDuration(ttl), fenceTTL.Milliseconds()).Int64Slice()
	if err != nil {
		return lockReply{}, fmt.Errorf("limiter: acquire: %w", store.LibraryError(err))
	}
	if len(reply) != 2 {
		return lockReply{}, fmt.Errorf("limiter: acquire: reply of %d values", len(reply))
	}
	if reply[0] == 1 {
		return lockReply{ok: true, fence: reply[1]}, nil
	}
	return lockReply{wait: time.Duration(reply[1]) * time.Millisecond}, nil
}

// ceilDuration is d in whole milliseconds, rounded up.
func ceilDuration(d time.Duration) int64 {
	return int64((d + time.Millisecond - 1) / time.Millisecond)
}
