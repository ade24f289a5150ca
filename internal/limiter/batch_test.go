package limiter

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/quotaops/quota-operator/internal/store"
	"github.com/quotaops/quota-operator/internal/testutil/benchutil"
	"github.com/quotaops/quota-operator/internal/testutil/redistest"
)

// A burst of concurrent decisions is answered in full and counted exactly;
// the extra workers it started leave as soon as the queue is empty, and the
// last one after workerIdle.
func TestBatcherBurst(t *testing.T) {
	srv := redistest.StartOrSkip(t)
	c := srv.Client()
	t.Cleanup(func() { _ = c.Close() })
	b := newBatcher(c)
	const callers, each = 256, 4
	nowMs := time.Now().UnixMilli()
	e := entry{alg: FixedWindow, max: callers * each, cost: 1, window: 3_600_000, start: nowMs - nowMs%3_600_000}
	e.keys = []string{"{batch}:burst"}
	var wg sync.WaitGroup
	peak := make(chan int32)
	stop := make(chan struct{})
	go func() { peak <- peakWorkers(b, stop) }()
	errs := make(chan error, callers*each)
	for range callers {
		wg.Go(func() {
			for range each {
				reply, err := b.run(context.Background(), decideCall("", []entry{e}, attempt{atUs: nowMs * 1000}))
				if err == nil && (len(reply) != 6 || reply[2] != 1) {
					t.Errorf("reply %v, want an allowed decision", reply)
				}
				if err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(stop)
	t.Logf("At most %d workers during the burst", <-peak)
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if got, err := c.Get(context.Background(), store.SealedKey(srv.Seal(), e.keys[0])).Int(); err != nil || got != callers*each {
		t.Fatalf("counter = %d, %v; want %d", got, err, callers*each)
	}
	if scripts := scriptCalls(t, c); scripts >= callers*each {
		t.Fatalf("%d script calls for %d decisions: the burst was not batched", scripts, callers*each)
	}
	// The worker that sent the last batch may still be on its way out.
	waitWorkers(t, b, 1, 100*time.Millisecond)
	waitWorkers(t, b, 0, workerIdle+time.Second)
}

// scriptCalls is how many EVALSHA and EVAL calls Redis ran.
func scriptCalls(t *testing.T, c *redis.Client) int64 {
	t.Helper()
	n, _, err := benchutil.CommandCalls(c)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// In one script call, a decision that fails (its key holds a list or a
// string that is no integer) is answered with its error and writes
// nothing, not even the entries of it that could pass; the decisions
// before and after it commit, each seeing the writes of those before it.
func TestBatchedDecisionsStandAlone(t *testing.T) {
	srv := redistest.StartOrSkip(t)
	c := srv.Client()
	t.Cleanup(func() { _ = c.Close() })
	ctx := context.Background()
	seal := srv.Seal()
	if err := errors.Join(c.RPush(ctx, store.SealedKey(seal, "{batch}:list"), "x").Err(), c.Set(ctx, store.SealedKey(seal, "{batch}:text"), "abc", 0).Err()); err != nil {
		t.Fatal(err)
	}
	nowMs := time.Now().UnixMilli()
	e := entry{alg: FixedWindow, max: 2, cost: 1, window: 3_600_000, start: nowMs - nowMs%3_600_000}
	call := func(keys ...string) *batchCall {
		var entries []entry
		for _, k := range keys {
			e.keys = []string{k}
			entries = append(entries, e)
		}
		c := decideCall("", entries, attempt{atUs: nowMs * 1000})
		c.ctx, c.done = ctx, make(chan struct{})
		return c
	}
	steps := []batchStep{
		{call: call("{batch}:n"), allowed: 1},
		{call: call("{batch}:list"), err: "WRONGTYPE"},
		{call: call("{batch}:n"), allowed: 1},
		{call: call("{batch}:m", "{batch}:list"), err: "WRONGTYPE"},
		{call: call("{batch}:text"), err: "ERR quota-operator: a limiter counter is not an integer"},
		{call: call("{batch}:n"), allowed: 0},
	}
	calls := make([]*batchCall, len(steps))
	for i, st := range steps {
		calls[i] = st.call
	}
	if err := c.ConfigResetStat(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	newBatcher(c).send(calls)
	for i, st := range steps {
		st.check(t, i)
	}
	if n, _ := c.Get(ctx, store.SealedKey(seal, "{batch}:n")).Int(); n != 2 {
		t.Fatalf("counter %d, want 2", n)
	}
	if n, err := c.Exists(ctx, store.SealedKey(seal, "{batch}:m")).Result(); err != nil || n != 0 {
		t.Fatalf("the failed decision wrote its first entry: EXISTS = %d, %v", n, err)
	}
	if n := scriptCalls(t, c); n != 1 {
		t.Fatalf("%d script calls for %d decisions, want 1", n, len(steps))
	}
}

type batchStep struct {
	call    *batchCall
	allowed int64  // of the first entry
	err     string // the error's prefix
}

func (st batchStep) check(t *testing.T, i int) {
	t.Helper()
	bc := st.call
	switch {
	case st.err != "" && (bc.err == nil || !strings.HasPrefix(bc.err.Error(), st.err)):
		t.Fatalf("decision %d: %v, %v; want the error %q", i, bc.reply, bc.err, st.err)
	case st.err == "" && (bc.err != nil || len(bc.reply) != 6 || bc.reply[2] != st.allowed):
		t.Fatalf("decision %d: %v, %v; want allowed=%d", i, bc.reply, bc.err, st.allowed)
	}
}

func waitWorkers(t *testing.T, b *batcher, want int32, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for b.workers.Load() > want {
		if time.Now().After(deadline) {
			t.Fatalf("%d workers after %v, want at most %d", b.workers.Load(), within, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func peakWorkers(b *batcher, stop chan struct{}) int32 {
	var peak int32
	for {
		select {
		case <-stop:
			return peak
		default:
			peak = max(peak, b.workers.Load())
			time.Sleep(100 * time.Microsecond)
		}
	}
}

// A request's Deadline bounds its store calls with no context deadline:
// on a Redis that stopped answering, a decision alone and 20 concurrent
// ones (batched) all fail with DeadlineExceeded, long before they would
// without it (the server never answers while stopped).
func TestRequestDeadlineBoundsAHungStore(t *testing.T) {
	srv := redistest.StartOrSkip(t)
	s, err := store.Open(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	l, err := New(s)
	if err != nil {
		t.Fatal(err)
	}
	lim := Limit{Key: CounterKey{Namespace: "hung", Policy: "p", Limit: "l"}, Algorithm: FixedWindow,
		Rates: []Rate{{Limit: 1000, Window: time.Hour}}, Cost: 1}
	decide := func() error {
		_, err := l.Decide(context.Background(), Request{Limits: []Limit{lim}, Deadline: time.Now().Add(100 * time.Millisecond)})
		return err
	}
	if err := decide(); err != nil {
		t.Fatal(err)
	}
	if err := srv.Pause(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Resume() })
	for _, callers := range []int{1, 20} {
		start := time.Now()
		errs := make(chan error, callers)
		var wg sync.WaitGroup
		for range callers {
			wg.Go(func() { errs <- decide() })
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("%d callers: %v, want DeadlineExceeded", callers, err)
			}
		}
		if took := time.Since(start); took > 2*time.Second {
			t.Fatalf("%d callers took %v on a stopped store with a deadline of 100ms", callers, took)
		}
	}
	if err := srv.Resume(); err != nil {
		t.Fatal(err)
	}
	// The connections cut by the deadlines are replaced.
	deadline := time.Now().Add(5 * time.Second)
	for err := decide(); err != nil; err = decide() {
		if time.Now().After(deadline) {
			t.Fatalf("after Resume: %v", err)
		}
	}
}

// One script call takes decisions of every algorithm, whose entries have
// different numbers of arguments (a quota's 9, the others' 6) and keys (a
// sliding window's and a quota's 2): each is decided on its own keys, and
// a later decision sees an earlier one's write.
func TestBatchedDecisionsOfEveryAlgorithm(t *testing.T) {
	srv := redistest.StartOrSkip(t)
	c := srv.Client()
	t.Cleanup(func() { _ = c.Close() })
	ctx := context.Background()
	now := time.Now()
	limit := func(alg Algorithm, name string) Limit {
		l := Limit{Key: CounterKey{Namespace: "mix", Policy: "p", Limit: name, Subject: []string{"s"}}, Algorithm: alg,
			Rates: []Rate{{Limit: 5, Window: time.Hour}}, Cost: 1}
		if alg == Quota {
			l.Period, l.Location, l.MaxSubjects = Day, time.UTC, 10
		}
		return l
	}
	plans := [][]Limit{
		{limit(Quota, "q"), limit(FixedWindow, "f")},
		{limit(SlidingWindow, "s")},
		{limit(TokenBucket, "t")},
		{limit(FixedWindow, "f")},
	}
	calls := make([]*batchCall, len(plans))
	for i, limits := range plans {
		entries, err := plan(limits, now, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		calls[i] = decideCall("", entries, attempt{atUs: now.UnixMicro()})
		calls[i].ctx, calls[i].done = ctx, make(chan struct{})
	}
	if err := c.ConfigResetStat(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	newBatcher(c).send(calls)
	// Per call: allowed and remaining of each entry; the quota's allowed
	// is 1 + 4, the subject being new in its period.
	want := [][]int64{{5, 4, 1, 4}, {1, 4}, {1, 4}, {1, 3}}
	for i, bc := range calls {
		if bc.err != nil || len(bc.reply) != 2+4*len(want[i])/2 {
			t.Fatalf("call %d: %v, %v", i, bc.reply, bc.err)
		}
		for j := 0; j < len(want[i]); j += 2 {
			if got := bc.reply[2+2*j : 2+2*j+2]; got[0] != want[i][j] || got[1] != want[i][j+1] {
				t.Fatalf("call %d entry %d: allowed, remaining = %v; want %v", i, j/2, got, want[i][j:j+2])
			}
		}
	}
	if n := scriptCalls(t, c); n != 1 {
		t.Fatalf("%d script calls, want 1", n)
	}
}

// A batch carries at most maxBatchEntries entries, however many calls
// queue: a call that would pass them waits for the next batch. Before,
// the bound counted calls, and 64 calls of 256 entries went out as one
// script call of 16,384.
func TestBatchEntriesBounded(t *testing.T) {
	b := newBatcher(nil)
	call := func(entries int) *batchCall { return &batchCall{entries: entries} }
	for range 10 {
		b.queue <- call(MaxDecisionEntries)
	}
	first := call(MaxDecisionEntries)
	total, batches := 0, 0
	for next := first; next != nil; {
		var batch []*batchCall
		batch, next = b.fill(next)
		n := 0
		for _, c := range batch {
			n += c.entries
		}
		if n > maxBatchEntries {
			t.Fatalf("a batch of %d entries; at most %d", n, maxBatchEntries)
		}
		total, batches = total+len(batch), batches+1
	}
	if total != 11 || batches != 6 {
		t.Fatalf("%d calls in %d batches; want 11 in 6 (two of 256 entries each, then the last alone)", total, batches)
	}
}
