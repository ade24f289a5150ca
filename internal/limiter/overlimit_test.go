package limiter_test

import (
	"context"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/quotaops/quota-operator/internal/limiter"
	"github.com/quotaops/quota-operator/internal/store"
	"github.com/quotaops/quota-operator/internal/testutil/benchutil"
	"github.com/quotaops/quota-operator/internal/testutil/fakeclock"
	"github.com/redis/go-redis/v9"
)

// counted counts the commands a limiter's Redis store sends; nil on the
// memory store, which has no commands to count.
func counted(s store.Store) *benchutil.CommandCounter {
	r, ok := s.(*store.Redis)
	if !ok {
		return nil
	}
	c := &benchutil.CommandCounter{}
	r.Client().AddHook(c)
	return c
}

func sentSince(c *benchutil.CommandCounter, before int64) int64 {
	if c == nil {
		return 0
	}
	return c.Count() - before
}

func count(c *benchutil.CommandCounter) int64 {
	if c == nil {
		return 0
	}
	return c.Count()
}

var overAlgorithms = everyAlgorithm(3, time.Minute)

// A rate the store denied is denied again without a store command, with
// the store's answer, until that answer can change: its window ends, its
// tokens return, or its limit changes.
func TestKnownOverLimitCostsNoStoreCall(t *testing.T) {
	for _, be := range backends(t) {
		for _, alg := range overAlgorithms {
			t.Run(be.name+"/"+alg.name, func(t *testing.T) {
				clock := fakeclock.New(epoch.Add(7 * time.Second))
				l, s := simulated(t, be, clock)
				o := overTest{t: t, l: l, sent: counted(s), lim: alg.lim, cluster: be.name == "cluster"}
				o.lim.Key, o.lim.Cost = key(t, "over-"+alg.name), 1
				o.fillThenRepeat()
				o.changeTheLimit()
				wait := o.decide(o.lim).By().RetryAfter
				clock.Advance(wait - time.Millisecond)
				if d := o.decide(o.lim); d.Allowed {
					t.Fatalf("allowed 1ms before the store's retry time %v", wait)
				}
				clock.Advance(time.Millisecond)
				o.reachesTheStore("the decision at the retry time", true)
			})
		}
	}
}

type overTest struct {
	t    *testing.T
	l    *limiter.Limiter
	sent *benchutil.CommandCounter
	lim  limiter.Limit
	// cluster: the cache is off, every decision reaches the store.
	cluster bool
}

func (o overTest) decide(lim limiter.Limit) limiter.Decision {
	o.t.Helper()
	d, err := o.l.Decide(context.Background(), limiter.Request{Limits: []limiter.Limit{lim}})
	if err != nil {
		o.t.Fatal(err)
	}
	return d
}

// fillThenRepeat uses the limit of 3, is denied by the store, then 50
// times with no store command and the store's very answer.
func (o overTest) fillThenRepeat() {
	o.t.Helper()
	for i := range 3 {
		if d := o.decide(o.lim); !d.Allowed {
			o.t.Fatalf("decision %d denied: %+v", i+1, d.By())
		}
	}
	first := o.decide(o.lim)
	if first.Allowed {
		o.t.Fatal("the fourth decision was allowed")
	}
	before := count(o.sent)
	for i := range 50 {
		if d := o.decide(o.lim); d.Allowed || d.By() != first.By() || len(d.Results) != 1 {
			o.t.Fatalf("repeat %d: %+v, want the store's %+v", i, d.By(), first.By())
		}
	}
	want := int64(0)
	if o.cluster {
		want = 50
	}
	if n := sentSince(o.sent, before); n != want {
		o.t.Fatalf("50 known denials sent %d store commands, want %d", n, want)
	}
}

// changeTheLimit raises the limit, which goes to the store at once (a
// bucket whose refill time stays the same is still empty at a larger
// burst), then lowers it back below what was used.
func (o overTest) changeTheLimit() {
	o.t.Helper()
	raised := o.lim
	raised.Rates = rate(4, o.lim.Rates[0].Window)
	before := count(o.sent)
	if d := o.decide(raised); d.Allowed != (o.lim.Algorithm != limiter.TokenBucket) || d.By().Max != 4 {
		o.t.Fatalf("a raised limit did not apply at once: %+v", d.By())
	}
	if o.sent != nil && sentSince(o.sent, before) == 0 {
		o.t.Fatal("the raised limit did not reach the store")
	}
	if d := o.decide(o.lim); d.Allowed || d.By().Remaining != 0 {
		o.t.Fatalf("the limit lowered back: %+v, want denied with 0 remaining", d.By())
	}
}

func (o overTest) reachesTheStore(what string, allowed bool) {
	o.t.Helper()
	before := count(o.sent)
	if d := o.decide(o.lim); d.Allowed != allowed {
		o.t.Fatalf("%s: %+v, want allowed %v", what, d.By(), allowed)
	}
	if o.sent != nil && sentSince(o.sent, before) == 0 {
		o.t.Fatalf("%s did not reach the store", what)
	}
}

// On a random timeline of costs and steps, every denial answered without
// the store is one the store itself gives: a limiter with no memory of
// earlier answers, peeking at the same moment, denies too.
func TestKnownOverLimitNeverDeniesWhatTheStoreAllows(t *testing.T) {
	for _, be := range backends(t)[:2] {
		for _, alg := range overAlgorithms {
			t.Run(be.name+"/"+alg.name, func(t *testing.T) {
				clock := fakeclock.New(epoch.Add(3 * time.Second))
				l, s := simulated(t, be, clock)
				sent := counted(s)
				rng := rand.New(rand.NewPCG(7, uint64(len(alg.name))))
				lim := alg.lim
				lim.Key = key(t, "timeline-"+alg.name)
				lim.Rates = rate(5, 10*time.Second)
				if alg.lim.Algorithm == limiter.Quota {
					lim.Rates = rate(5, 0)
				}
				cached := 0
				for step := range 400 {
					clock.Advance(time.Duration(rng.IntN(1500)) * time.Millisecond)
					lim.Cost = int64(1 + rng.IntN(3))
					before := count(sent)
					d, err := l.Decide(context.Background(), limiter.Request{Limits: []limiter.Limit{lim}})
					if err != nil {
						t.Fatal(err)
					}
					if d.Allowed || sent != nil && sentSince(sent, before) > 0 {
						continue
					}
					cached++
					fresh, err := limiter.New(s, limiter.WithSimulatedClock(clock.Now))
					if err != nil {
						t.Fatal(err)
					}
					p, err := fresh.Decide(context.Background(), limiter.Request{Limits: []limiter.Limit{lim}, Peek: true})
					if err != nil {
						t.Fatal(err)
					}
					if p.Allowed {
						t.Fatalf("step %d (cost %d): denied from memory, but the store allows: %+v", step, lim.Cost, p.By())
					}
				}
				if sent != nil && cached == 0 {
					t.Fatal("no denial was answered from memory: the timeline tests nothing")
				}
				t.Logf("%d denials answered without the store", cached)
			})
		}
	}
}

// A request with no limits is allowed without a store call, and its
// answer explains nothing (Decider -1). Before, it went to Redis as a
// decision of no entries, whose empty reply misaligned the replies of the
// batch it shared.
func TestNoLimitsNoStoreCall(t *testing.T) {
	for _, be := range backends(t) {
		t.Run(be.name, func(t *testing.T) {
			l, s := simulated(t, be, fakeclock.New(epoch))
			sent := counted(s)
			before := count(sent)
			for _, peek := range []bool{false, true} {
				d, err := l.Decide(context.Background(), limiter.Request{Peek: peek})
				if err != nil || !d.Allowed || d.Decider != -1 || len(d.Results) != 0 {
					t.Fatalf("no limits (peek %v): %+v, %v; want allowed, Decider -1", peek, d, err)
				}
			}
			if n := sentSince(sent, before); n != 0 {
				t.Fatalf("%d store commands for requests with no limits; want 0", n)
			}
		})
	}
}

// gate holds the reply of the decision sent while it is armed, until the
// test opens it: a reply in flight while the counters change.
type gate struct {
	armed chan struct{} // closed: the next reply is held
	held  chan struct{} // closed when one is
	open  chan struct{}
	once  sync.Once
}

func newGate() *gate {
	return &gate{armed: make(chan struct{}), held: make(chan struct{}), open: make(chan struct{})}
}

func (g *gate) hold(err error) error {
	select {
	case <-g.armed:
		g.once.Do(func() { close(g.held); <-g.open })
	default:
	}
	return err
}

func (g *gate) DialHook(next redis.DialHook) redis.DialHook { return next }
func (g *gate) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error { return g.hold(next(ctx, cmd)) }
}
func (g *gate) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error { return g.hold(next(ctx, cmds)) }
}

// A denial whose reply was sent before a reset, but arrives after the
// sidecar forgot what it knew (ForgetKnown, at the reset's new revision),
// is not learned: the next request goes to the store, which allows it.
// Before, the late reply was cached, and the reset subject stayed denied
// until its window (up to a month for a quota) ended.
func TestLateDenialAfterForgetIsNotLearned(t *testing.T) {
	be := redisBackends(t)[0]
	l, s := simulated(t, be, fakeclock.New(epoch))
	admin, _ := simulated(t, be, fakeclock.New(epoch))
	lim := limiter.Limit{Algorithm: limiter.FixedWindow, Rates: rate(1, time.Hour), Cost: 1, Key: key(t, "late", "alice")}
	consume(t, l, lim, 1, 1)
	g := newGate()
	s.(*store.Redis).Client().AddHook(g)
	close(g.armed)
	late := make(chan limiter.Decision)
	go func() { late <- decide(t, l, lim) }() // denied by the store; its reply held
	<-g.held
	adjust(t, admin, lim, limiter.Adjustment{ID: "reset"}) // the manager resets alice
	l.ForgetKnown()                                        // and the sidecar hears the new revision
	close(g.open)
	if d := <-late; d.Allowed {
		t.Fatalf("the late decision: %+v; want the denial it was", d)
	}
	if d := decide(t, l, lim); !d.Allowed || d.Known {
		t.Fatalf("after the reset: %+v; want allowed by the store, not a remembered denial", d)
	}
}
