package limiter

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/quotaops/quota-operator/internal/store"
	"github.com/redis/go-redis/v9"
)

// batcher decides concurrent decisions together: while a call is in
// flight, new ones queue, and a worker sends all that queued as one script
// call per group (on a Cluster, a group is a hash tag: one script's keys
// must share a slot). decide.lua takes them one after the other, so each
// is exactly what it would be alone, and Redis pays a script call's fixed
// cost once per batch instead of once per decision. Alone, a call goes
// straight out, paying no hand-off.
//
// One worker is the rule: all that queues during its round trip goes out
// in its next batch, so the fewer batches in flight, the fewer system
// calls and script calls per decision. A second worker starts only when a
// whole batch is waiting, when Redis rather than the client's CPU is the
// bottleneck, and workers beyond the first leave as soon as the queue is
// empty.
type batcher struct {
	c       redis.UniversalClient
	queue   chan *batchCall
	workers atomic.Int32
	// inFlight counts calls between submit and reply.
	inFlight atomic.Int32
}

type batchCall struct {
	ctx context.Context
	// Calls of one group and time may share a script call.
	group string
	at    int64
	// deadline, when set, bounds the call with ctx.
	deadline time.Time
	keys     []string
	// args is decide.lua's ARGV for this call alone: the time, then the
	// decision's header and its entries, of which there are entries.
	args    []any
	entries int
	// reply is {stale, now µs, then 4 values per entry}.
	reply []int64
	err   error
	done  chan struct{}
}

const (
	// directBelow: with fewer calls in flight, a call goes straight out.
	directBelow = 1
	maxBatch    = 64
	maxWorkers  = 8
	// maxBatchEntries bounds the entries of one script call, whatever the
	// number of calls: the work Redis does in one go, which every other
	// client waits behind. A call with more goes out alone (a decision
	// holds at most MaxDecisionEntries).
	maxBatchEntries = 512
	// workerIdle is how long an idle worker waits before it exits.
	workerIdle = time.Second
)

func newBatcher(c redis.UniversalClient) *batcher {
	return &batcher{c: c, queue: make(chan *batchCall, 4*maxBatch)}
}

// run makes one decision.
func (b *batcher) run(ctx context.Context, call *batchCall) ([]int64, error) {
	defer b.inFlight.Add(-1)
	call.ctx = ctx
	if b.inFlight.Add(1) <= directBelow {
		b.direct(call)
		return call.reply, call.err
	}
	call.done = make(chan struct{})
	select {
	case b.queue <- call:
	default:
		b.direct(call) // queue full
		return call.reply, call.err
	}
	b.ensureWorker()
	select {
	case <-call.done:
		return call.reply, call.err
	case <-ctx.Done():
		// The worker may still send it; a decision that commits after its
		// caller gave up is like one whose reply was lost on the network.
		return nil, ctx.Err()
	}
	// No timer waits for the call's own deadline: the worker fails it if
	// the deadline passes before it is sent, and bounds the batch it goes
	// in by the latest deadline of that batch's calls.
}

// direct sends one call as a script call of its own.
func (b *batcher) direct(c *batchCall) {
	ctx := c.ctx
	if !c.deadline.IsZero() {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, c.deadline)
		defer cancel()
	}
	calls := []*batchCall{c}
	keys, args := joinCalls(calls)
	v, err := b.c.FCall(ctx, "qo1_decide", keys, args...).Slice()
	answer(calls, v, store.LibraryError(err))
}

func (b *batcher) ensureWorker() {
	for {
		n := b.workers.Load()
		if n >= maxWorkers || n > 0 && len(b.queue) < maxBatch {
			return
		}
		if b.workers.CompareAndSwap(n, n+1) {
			go b.work()
			return
		}
	}
}

func (b *batcher) work() {
	idle := time.NewTimer(workerIdle)
	defer idle.Stop()
	for {
		select {
		case first := <-b.queue:
			for next := first; next != nil; {
				var batch []*batchCall
				batch, next = b.fill(next)
				b.send(batch)
			}
			if len(b.queue) == 0 && b.leave(2) {
				return
			}
			idle.Reset(workerIdle)
		case <-idle.C:
			b.leave(1)
			if len(b.queue) > 0 {
				b.ensureWorker() // a call queued as this worker left
			}
			return
		}
	}
}

// leave counts this worker out if at least least workers are running.
func (b *batcher) leave(least int32) bool {
	for {
		n := b.workers.Load()
		if n < least {
			return false
		}
		if b.workers.CompareAndSwap(n, n-1) {
			return true
		}
	}
}

// fill is first and what queued after it, up to maxBatch calls and
// maxBatchEntries entries; a call that would pass the entries is carried
// to the next batch.
func (b *batcher) fill(first *batchCall) (batch []*batchCall, carry *batchCall) {
	batch = []*batchCall{first}
	entries := first.entries
	for len(batch) < maxBatch {
		select {
		case c := <-b.queue:
			if entries+c.entries > maxBatchEntries {
				return batch, c
			}
			batch, entries = append(batch, c), entries+c.entries
		default:
			return batch, nil
		}
	}
	return batch, nil
}

// send decides the live calls of batch, one script call per group, all in
// one pipeline. The pipeline runs until the latest of their deadlines; a
// call whose deadline passed before it was sent is answered with its
// context's error.
func (b *batcher) send(batch []*batchCall) {
	live := batch[:0]
	var deadline time.Time
	now := time.Now()
	for _, c := range batch {
		d, err := c.until(now)
		if err != nil {
			c.err = err
			close(c.done)
			continue
		}
		if d.After(deadline) {
			deadline = d
		}
		live = append(live, c)
	}
	if len(live) == 0 {
		return
	}
	ctx, cancel := context.Background(), context.CancelFunc(func() {})
	if !deadline.IsZero() {
		ctx, cancel = context.WithDeadline(ctx, deadline)
	}
	defer cancel()
	groups := groupCalls(live)
	pipe := b.c.Pipeline()
	cmds := make([]*redis.Cmd, len(groups))
	for i, g := range groups {
		keys, args := joinCalls(g)
		cmds[i] = pipe.FCall(ctx, "qo1_decide", keys, args...)
	}
	_, _ = pipe.Exec(ctx)
	for i, g := range groups {
		v, err := cmds[i].Slice()
		answer(g, v, store.LibraryError(err))
		for _, c := range g {
			close(c.done)
		}
	}
}

// until is the call's deadline, the earlier of its own and its context's
// (zero: none), or why it can no longer be sent.
func (c *batchCall) until(now time.Time) (time.Time, error) {
	if err := c.ctx.Err(); err != nil {
		return time.Time{}, err
	}
	d := c.deadline
	if cd, ok := c.ctx.Deadline(); ok && (d.IsZero() || cd.Before(d)) {
		d = cd
	}
	if !d.IsZero() && !now.Before(d) {
		return time.Time{}, context.DeadlineExceeded
	}
	return d, nil
}

// groupCalls splits calls by group and time, in their order.
func groupCalls(calls []*batchCall) [][]*batchCall {
	type key struct {
		group string
		at    int64
	}
	var groups [][]*batchCall
	index := make(map[key]int, 1)
	for _, c := range calls {
		i, ok := index[key{c.group, c.at}]
		if !ok {
			i = len(groups)
			index[key{c.group, c.at}] = i
			groups = append(groups, nil)
		}
		groups[i] = append(groups[i], c)
	}
	return groups
}

// joinCalls is one script call's keys and arguments for calls, which share
// their time: a lone call's own, or the time once and every call's rest.
func joinCalls(calls []*batchCall) ([]string, []any) {
	if len(calls) == 1 {
		return calls[0].keys, calls[0].args
	}
	nk, na := 0, 1
	for _, c := range calls {
		nk, na = nk+len(c.keys), na+len(c.args)-1
	}
	keys, args := make([]string, 0, nk), make([]any, 1, na)
	args[0] = calls[0].args[0]
	for _, c := range calls {
		keys, args = append(keys, c.keys...), append(args, c.args[1:]...)
	}
	return keys, args
}

// answer gives each call its decision from a script's flat reply v.
func answer(calls []*batchCall, v []any, err error) {
	var now int64
	if err == nil {
		now, err = replyInt(v, 0)
	}
	at := 1
	for _, c := range calls {
		if err != nil {
			c.err = err
			continue
		}
		at, err = c.read(v, at, now)
	}
}

// read takes this call's reply from v at i, and returns where the next
// one starts. An error of the reply's shape is returned; the decision's
// own error is this call's alone.
func (c *batchCall) read(v []any, i int, now int64) (int, error) {
	first, err := replyInt(v, i)
	switch {
	case err != nil:
		c.err = err
		return i, err
	case first == -1:
		c.reply = []int64{1, now}
		return i + 1, nil
	case first == -2:
		msg, _ := replyAt(v, i+1).(string)
		c.err = replyError(msg)
		return i + 2, nil
	}
	c.reply = make([]int64, 2+4*c.entries)
	c.reply[1] = now
	for j := range 4 * c.entries {
		if c.reply[2+j], err = replyInt(v, i+j); err != nil {
			c.err = err
			return i, err
		}
	}
	return i + 4*c.entries, nil
}

func replyAt(v []any, i int) any {
	if i < len(v) {
		return v[i]
	}
	return nil
}

func replyInt(v []any, i int) (int64, error) {
	n, ok := replyAt(v, i).(int64)
	if !ok {
		return 0, fmt.Errorf("a reply of %d values, value %d of type %T", len(v), i, replyAt(v, i))
	}
	return n, nil
}

// replyError is one decision's error inside a script's reply: an error
// Redis answered, as go-redis's own are.
type replyError string

func (e replyError) Error() string { return string(e) }

// RedisError marks it as the server's answer (go-redis's redis.Error).
func (replyError) RedisError() {}
