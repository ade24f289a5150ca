// Package storetest is the conformance suite every store.Store backend must
// pass: each operation's contract, and each pattern of the design written
// with the store alone. Backends run it from their own tests.
package storetest

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quotaops/quota-operator/internal/store"
)

// Run runs every conformance case against s. Keys are prefixed with the test
// name and a start time, so the suite may share a server with other data.
func Run(t *testing.T, s store.Store) {
	prefix := fmt.Sprintf("storetest:%d:", time.Now().UnixNano())
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			c.run(t, s, func(k string) string { return prefix + c.name + ":" + k })
		})
	}
}

type keyFunc func(string) string

type testCase struct {
	name string
	run  func(t *testing.T, s store.Store, key keyFunc)
}

var cases = []testCase{
	{"Increment/missing key starts at zero", incrementMissing},
	{"Increment/non-integer values are refused and kept", incrementNonInteger},
	{"Increment/overflow is refused and value kept", incrementOverflow},
	{"Increment/keeps the TTL", incrementKeepsTTL},
	{"Expire/sets, replaces and reports existence", expireBasics},
	{"Expire/refuses a negative or zero TTL", expireInvalid},
	{"Get and Set/values round-trip byte for byte", getSetRoundTrip},
	{"Set/without TTL discards an old TTL", setDiscardsTTL},
	{"Set/refuses a negative TTL and writes nothing", setInvalidTTL},
	{"Has and Delete", hasDelete},
	{"TTL/millisecond resolution", ttlResolution},
	{"IncrementWithTTL/sets TTL once and never slides", incrementWithTTLOnce},
	{"IncrementWithTTL/repairs a key without TTL", incrementWithTTLRepairs},
	{"IncrementWithTTL/refuses a bad TTL and writes nothing", incrementWithTTLInvalid},
	{"SetIfAbsent/only the first writer wins", setIfAbsent},
	{"CompareAndDelete and CompareAndExpire need the value", compareOps},
	{"Context/a cancelled call fails and changes nothing", cancelledContext},
	{"Pattern/page views expire daily", pageViews},
	{"Pattern/user activity counter", userActivity},
	{"Pattern/global counter 64x1000 is exact", globalCounter},
	{"Pattern/session refreshed on access", sessionRefresh},
	{"Pattern/temporary data", temporaryData},
	{"Pattern/fixed window limit", fixedWindow},
	{"Pattern/lock only its holder releases", lockHolder},
}

var ctx = context.Background()

// must takes a call's two results and returns a function that fails the test
// on the error or gives the value: must(s.Has(ctx, k))(t).
func must[T any](v T, err error) func(*testing.T) T {
	return func(t *testing.T) T {
		t.Helper()
		if err != nil {
			t.Fatalf("unexpected error: %v", err)
		}
		return v
	}
}

func mustNil(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("unexpected error: %v", err)
	}
}

func wantValue(t *testing.T, s store.Store, key, want string) {
	t.Helper()
	v, ok, err := s.Get(ctx, key)
	mustNil(t, err)
	if !ok || string(v) != want {
		t.Fatalf("Get(%s) = %q, %v; want %q, true", key, v, ok, want)
	}
}

func wantMissing(t *testing.T, s store.Store, key string) {
	t.Helper()
	if ok := must(s.Has(ctx, key))(t); ok {
		t.Fatalf("Has(%s) = true; want false", key)
	}
	if _, ok, err := s.Get(ctx, key); err != nil || ok {
		t.Fatalf("Get(%s) found = %v, err = %v; want missing", key, ok, err)
	}
	if _, ok, err := s.TTL(ctx, key); err != nil || ok {
		t.Fatalf("TTL(%s) found = %v, err = %v; want missing", key, ok, err)
	}
}

// wantUntimed checks that key has the TTL of a key written without one:
// none, or the backend's bound on every key (Redis: store.MaxTTL).
func wantUntimed(t *testing.T, s store.Store, key string) {
	t.Helper()
	b, bounded := s.(interface{ KeyTTLBound() time.Duration })
	if !bounded {
		if ttl := must(ttlOf(s, key))(t); ttl != store.Persistent {
			t.Fatalf("TTL(%s) = %v; want Persistent", key, ttl)
		}
		return
	}
	wantTTL(t, s, key, b.KeyTTLBound()-time.Minute, b.KeyTTLBound())
}

// wantTTL checks that key expires within (min, max].
func wantTTL(t *testing.T, s store.Store, key string, minTTL, maxTTL time.Duration) {
	t.Helper()
	ttl, ok, err := s.TTL(ctx, key)
	mustNil(t, err)
	if !ok || ttl <= minTTL || ttl > maxTTL {
		t.Fatalf("TTL(%s) = %v, %v; want in (%v, %v]", key, ttl, ok, minTTL, maxTTL)
	}
}

func wantErr(t *testing.T, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("error = %v; want %v", err, target)
	}
}

func incrementMissing(t *testing.T, s store.Store, key keyFunc) {
	k := key("n")
	for _, step := range []struct{ by, want int64 }{{1, 1}, {5, 6}, {-10, -4}, {0, -4}} {
		if got := must(s.Increment(ctx, k, step.by))(t); got != step.want {
			t.Fatalf("Increment(%d) = %d; want %d", step.by, got, step.want)
		}
	}
	wantValue(t, s, k, "-4")
	wantUntimed(t, s, k)
}

func ttlOf(s store.Store, k string) (time.Duration, error) {
	ttl, _, err := s.TTL(ctx, k)
	return ttl, err
}

func incrementNonInteger(t *testing.T, s store.Store, key keyFunc) {
	for _, v := range []string{"abc", "", " 12", "12 ", "012", "+1", "-0", "1.5", "1e3", "99999999999999999999", "\x00\xff"} {
		t.Run(strconv.Quote(v), func(t *testing.T) {
			k := key("v" + strconv.Quote(v))
			mustNil(t, s.Set(ctx, k, []byte(v), 0))
			_, err := s.Increment(ctx, k, 1)
			wantErr(t, err, store.ErrNotInteger)
			_, err = s.IncrementWithTTL(ctx, k, 1, time.Minute)
			wantErr(t, err, store.ErrNotInteger)
			wantValue(t, s, k, v)
			wantUntimed(t, s, k) // the failed IncrementWithTTL set none
		})
	}
}

func incrementOverflow(t *testing.T, s store.Store, key keyFunc) {
	for _, c := range []struct {
		start string
		by    int64
	}{{strconv.FormatInt(math.MaxInt64, 10), 1}, {strconv.FormatInt(math.MinInt64, 10), -1}, {"10", math.MaxInt64}} {
		k := key(c.start)
		mustNil(t, s.Set(ctx, k, []byte(c.start), 0))
		_, err := s.Increment(ctx, k, c.by)
		wantErr(t, err, store.ErrOverflow)
		wantValue(t, s, k, c.start)
	}
}

func incrementKeepsTTL(t *testing.T, s store.Store, key keyFunc) {
	k := key("n")
	mustNil(t, s.Set(ctx, k, []byte("41"), 10*time.Second))
	if got := must(s.Increment(ctx, k, 1))(t); got != 42 {
		t.Fatalf("Increment = %d; want 42", got)
	}
	wantTTL(t, s, k, 9*time.Second, 10*time.Second)
}

func expireBasics(t *testing.T, s store.Store, key keyFunc) {
	k := key("k")
	if ok := must(s.Expire(ctx, k, time.Second))(t); ok {
		t.Fatal("Expire on a missing key reported true")
	}
	wantMissing(t, s, k)
	mustNil(t, s.Set(ctx, k, []byte("v"), 0))
	if ok := must(s.Expire(ctx, k, 10*time.Second))(t); !ok {
		t.Fatal("Expire on an existing key reported false")
	}
	wantTTL(t, s, k, 9*time.Second, 10*time.Second)
	must(s.Expire(ctx, k, time.Hour))(t)
	wantTTL(t, s, k, 59*time.Minute, time.Hour)
	must(s.Expire(ctx, k, 400*time.Millisecond))(t)
	wantValue(t, s, k, "v")
	time.Sleep(600 * time.Millisecond)
	wantMissing(t, s, k)
}

func expireInvalid(t *testing.T, s store.Store, key keyFunc) {
	k := key("k")
	mustNil(t, s.Set(ctx, k, []byte("v"), 0))
	for _, ttl := range []time.Duration{-time.Second, -1, 0} {
		_, err := s.Expire(ctx, k, ttl)
		wantErr(t, err, store.ErrInvalidTTL)
	}
	wantValue(t, s, k, "v")
	wantUntimed(t, s, k) // the refused Expire changed nothing
}

func getSetRoundTrip(t *testing.T, s store.Store, key keyFunc) {
	all := make([]byte, 256)
	for i := range all {
		all[i] = byte(i)
	}
	for name, v := range map[string][]byte{"every byte": all, "empty": {}, "json": []byte(`{"user":"u1"}`)} {
		k := key(name)
		mustNil(t, s.Set(ctx, k, v, 0))
		wantValue(t, s, k, string(v))
		if ok := must(s.Has(ctx, k))(t); !ok {
			t.Fatalf("Has(%s) = false after Set", name)
		}
	}
	if _, ok, err := s.Get(ctx, key("never-set")); err != nil || ok {
		t.Fatalf("Get(missing) = %v, %v; want not found", ok, err)
	}
}

func setDiscardsTTL(t *testing.T, s store.Store, key keyFunc) {
	k := key("k")
	mustNil(t, s.Set(ctx, k, []byte("a"), time.Minute))
	wantTTL(t, s, k, 59*time.Second, time.Minute)
	mustNil(t, s.Set(ctx, k, []byte("b"), 0))
	wantUntimed(t, s, k)
	wantValue(t, s, k, "b")
}

func setInvalidTTL(t *testing.T, s store.Store, key keyFunc) {
	k := key("k")
	wantErr(t, s.Set(ctx, k, []byte("v"), -time.Millisecond), store.ErrInvalidTTL)
	wantMissing(t, s, k)
}

func hasDelete(t *testing.T, s store.Store, key keyFunc) {
	k := key("k")
	if ok := must(s.Delete(ctx, k))(t); ok {
		t.Fatal("Delete of a missing key reported true")
	}
	mustNil(t, s.Set(ctx, k, []byte("v"), 0))
	if ok := must(s.Has(ctx, k))(t); !ok {
		t.Fatal("Has = false after Set")
	}
	if ok := must(s.Delete(ctx, k))(t); !ok {
		t.Fatal("Delete of an existing key reported false")
	}
	wantMissing(t, s, k)
	if ok := must(s.Delete(ctx, k))(t); ok {
		t.Fatal("second Delete reported true")
	}
}

func ttlResolution(t *testing.T, s store.Store, key keyFunc) {
	k := key("k")
	// 1500.3ms rounds up to 1501ms: a key never expires early.
	mustNil(t, s.Set(ctx, k, []byte("v"), 1500*time.Millisecond+300*time.Microsecond))
	wantTTL(t, s, k, time.Second, 1501*time.Millisecond)
	short := key("short")
	mustNil(t, s.Set(ctx, short, []byte("v"), time.Nanosecond))
	time.Sleep(20 * time.Millisecond)
	wantMissing(t, s, short)
}

func incrementWithTTLOnce(t *testing.T, s store.Store, key keyFunc) {
	k := key("n")
	if n := must(s.IncrementWithTTL(ctx, k, 3, 10*time.Second))(t); n != 3 {
		t.Fatalf("first IncrementWithTTL = %d; want 3", n)
	}
	wantTTL(t, s, k, 9*time.Second, 10*time.Second)
	if n := must(s.IncrementWithTTL(ctx, k, 2, time.Hour))(t); n != 5 {
		t.Fatalf("second IncrementWithTTL = %d; want 5", n)
	}
	wantTTL(t, s, k, 9*time.Second, 10*time.Second)
}

// incrementWithTTLRepairs: a key without a TTL gets one. A backend that
// bounds every key has no such key to repair (its own test makes one
// behind its back): the bound is kept, as any TTL is.
func incrementWithTTLRepairs(t *testing.T, s store.Store, key keyFunc) {
	k := key("n")
	mustNil(t, s.Set(ctx, k, []byte("5"), 0))
	if n := must(s.IncrementWithTTL(ctx, k, 1, time.Minute))(t); n != 6 {
		t.Fatalf("IncrementWithTTL = %d; want 6", n)
	}
	if _, bounded := s.(interface{ KeyTTLBound() time.Duration }); bounded {
		wantUntimed(t, s, k)
		return
	}
	wantTTL(t, s, k, 59*time.Second, time.Minute)
}

func incrementWithTTLInvalid(t *testing.T, s store.Store, key keyFunc) {
	k := key("n")
	for _, ttl := range []time.Duration{0, -time.Second} {
		_, err := s.IncrementWithTTL(ctx, k, 1, ttl)
		wantErr(t, err, store.ErrInvalidTTL)
	}
	wantMissing(t, s, k)
}

func setIfAbsent(t *testing.T, s store.Store, key keyFunc) {
	k := key("k")
	if ok := must(s.SetIfAbsent(ctx, k, []byte("first"), time.Minute))(t); !ok {
		t.Fatal("SetIfAbsent on a missing key reported false")
	}
	if ok := must(s.SetIfAbsent(ctx, k, []byte("second"), time.Hour))(t); ok {
		t.Fatal("SetIfAbsent on an existing key reported true")
	}
	wantValue(t, s, k, "first")
	wantTTL(t, s, k, 59*time.Second, time.Minute)
	_, err := s.SetIfAbsent(ctx, key("no-ttl"), []byte("v"), 0)
	wantErr(t, err, store.ErrInvalidTTL)
	wantMissing(t, s, key("no-ttl"))
}

func compareOps(t *testing.T, s store.Store, key keyFunc) {
	k := key("k")
	if ok := must(s.CompareAndExpire(ctx, k, []byte("a"), time.Minute))(t); ok {
		t.Fatal("CompareAndExpire on a missing key reported true")
	}
	if ok := must(s.CompareAndDelete(ctx, k, []byte("a")))(t); ok {
		t.Fatal("CompareAndDelete on a missing key reported true")
	}
	mustNil(t, s.Set(ctx, k, []byte("a"), 10*time.Second))
	if ok := must(s.CompareAndExpire(ctx, k, []byte("b"), time.Hour))(t); ok {
		t.Fatal("CompareAndExpire with the wrong value reported true")
	}
	wantTTL(t, s, k, 9*time.Second, 10*time.Second)
	if ok := must(s.CompareAndExpire(ctx, k, []byte("a"), time.Hour))(t); !ok {
		t.Fatal("CompareAndExpire with the right value reported false")
	}
	wantTTL(t, s, k, 59*time.Minute, time.Hour)
	_, err := s.CompareAndExpire(ctx, k, []byte("a"), -time.Second)
	wantErr(t, err, store.ErrInvalidTTL)
	if ok := must(s.CompareAndDelete(ctx, k, []byte("b")))(t); ok {
		t.Fatal("CompareAndDelete with the wrong value reported true")
	}
	wantValue(t, s, k, "a")
	if ok := must(s.CompareAndDelete(ctx, k, []byte("a")))(t); !ok {
		t.Fatal("CompareAndDelete with the right value reported false")
	}
	wantMissing(t, s, k)
}

func cancelledContext(t *testing.T, s store.Store, key keyFunc) {
	k := key("n")
	mustNil(t, s.Set(ctx, k, []byte("7"), 0))
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := s.Increment(cctx, k, 1); err == nil {
		t.Fatal("Increment with a cancelled context succeeded")
	}
	wantValue(t, s, k, "7")
}

func pageViews(t *testing.T, s store.Store, key keyFunc) {
	k := key("page:home:views:" + time.Now().UTC().Format(time.DateOnly))
	for i := 1; i <= 10; i++ {
		if n := must(s.IncrementWithTTL(ctx, k, 1, 24*time.Hour))(t); n != int64(i) {
			t.Fatalf("view %d counted as %d", i, n)
		}
	}
	wantTTL(t, s, k, 24*time.Hour-time.Minute, 24*time.Hour)
}

func userActivity(t *testing.T, s store.Store, key keyFunc) {
	today := time.Now().UTC().Format(time.DateOnly)
	want := map[string]int64{"alice": 3, "bob": 5, "carol": 1}
	for user, n := range want {
		for range n {
			must(s.IncrementWithTTL(ctx, key("user:"+user+":activity:"+today), 1, 24*time.Hour))(t)
		}
	}
	for user, n := range want {
		k := key("user:" + user + ":activity:" + today)
		wantValue(t, s, k, strconv.FormatInt(n, 10))
		wantTTL(t, s, k, 23*time.Hour, 24*time.Hour)
	}
}

func globalCounter(t *testing.T, s store.Store, key keyFunc) {
	const workers, each = 64, 1000
	k := key("counter:total-requests")
	var wg sync.WaitGroup
	var failures atomic.Int64
	for range workers {
		wg.Go(func() {
			for range each {
				if _, err := s.Increment(ctx, k, 1); err != nil {
					failures.Add(1)
				}
			}
		})
	}
	wg.Wait()
	if f := failures.Load(); f != 0 {
		t.Fatalf("%d increments failed", f)
	}
	wantValue(t, s, k, strconv.Itoa(workers*each))
}

func sessionRefresh(t *testing.T, s store.Store, key keyFunc) {
	k := key("session:s1")
	const ttl = time.Second
	mustNil(t, s.Set(ctx, k, []byte(`{"userId":"u1"}`), ttl))
	// Three accesses 400ms apart keep the session alive past its original
	// second, because each access refreshes the TTL.
	for range 3 {
		time.Sleep(ttl * 2 / 5)
		v, ok, err := s.Get(ctx, k)
		mustNil(t, err)
		if !ok {
			t.Fatal("session expired although it was refreshed on access")
		}
		if ok := must(s.Expire(ctx, k, ttl))(t); !ok {
			t.Fatal("refresh found no session")
		}
		if string(v) != `{"userId":"u1"}` {
			t.Fatalf("session value = %q", v)
		}
	}
	time.Sleep(ttl + 300*time.Millisecond)
	wantMissing(t, s, k)
}

func temporaryData(t *testing.T, s store.Store, key keyFunc) {
	k := key("tmp:upload:42")
	mustNil(t, s.Set(ctx, k, []byte("chunk"), 500*time.Millisecond))
	wantValue(t, s, k, "chunk")
	time.Sleep(800 * time.Millisecond)
	wantMissing(t, s, k)
}

// fixedWindow is the store-level fixed window: the window start is part of
// the key and the TTL is set in the same step as the increment.
func fixedWindow(t *testing.T, s store.Store, key keyFunc) {
	const limit, window = 10, 2 * time.Second
	// attempt runs in many goroutines, so it reports errors without Fatal.
	attempt := func(start int64) bool {
		n, err := s.IncrementWithTTL(ctx, key(fmt.Sprintf("rate:client-1:%d", start)), 1, 2*window)
		if err != nil {
			t.Error(err)
		}
		return err == nil && n <= limit
	}
	start := time.Now().UnixMilli() / window.Milliseconds()
	var allowed atomic.Int64
	var wg sync.WaitGroup
	for range 64 {
		wg.Go(func() {
			for range 5 {
				if attempt(start) {
					allowed.Add(1)
				}
			}
		})
	}
	wg.Wait()
	if got := allowed.Load(); got != limit {
		t.Fatalf("allowed %d of 320 in one window; want exactly %d", got, limit)
	}
	wantTTL(t, s, key(fmt.Sprintf("rate:client-1:%d", start)), 0, 2*window)
	if !attempt(start + 1) {
		t.Fatal("first request of the next window was denied")
	}
}

func lockHolder(t *testing.T, s store.Store, key keyFunc) {
	k := key("lock:nightly-report")
	var winners atomic.Int64
	var winner atomic.Value
	var wg sync.WaitGroup
	for i := range 16 {
		wg.Go(func() {
			token := []byte(fmt.Sprintf("token-%d", i))
			ok, err := s.SetIfAbsent(ctx, k, token, time.Minute)
			if err != nil {
				t.Error(err)
			}
			if ok {
				winners.Add(1)
				winner.Store(token)
			}
		})
	}
	wg.Wait()
	if n := winners.Load(); n != 1 {
		t.Fatalf("%d goroutines acquired the lock; want 1", n)
	}
	holder := winner.Load().([]byte)
	if ok := must(s.CompareAndDelete(ctx, k, []byte("token-intruder")))(t); ok {
		t.Fatal("a non-holder released the lock")
	}
	wantValue(t, s, k, string(holder))
	if ok := must(s.CompareAndDelete(ctx, k, holder))(t); !ok {
		t.Fatal("the holder could not release the lock")
	}
	if ok := must(s.SetIfAbsent(ctx, k, []byte("next"), 150*time.Millisecond))(t); !ok {
		t.Fatal("lock not free after release")
	}
	// The next holder "crashes": the lock frees itself at its TTL.
	time.Sleep(300 * time.Millisecond)
	if ok := must(s.SetIfAbsent(ctx, k, []byte("after-crash"), time.Minute))(t); !ok {
		t.Fatal("lock of a crashed holder did not free at its TTL")
	}
}
