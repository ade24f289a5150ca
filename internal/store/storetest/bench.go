package storetest

import (
	"fmt"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quotaops/quota-operator/internal/store"
)

// Bench measures each operation on s, one caller at a time (latency), and
// Increment from parallel callers (throughput).
func Bench(b *testing.B, s store.Store) {
	prefix := fmt.Sprintf("storebench:%d:", time.Now().UnixNano())
	value := []byte("0123456789abcdef")
	key := func(name string) string { return prefix + name }
	ops := []struct {
		name  string
		setup func(b *testing.B, k string)
		op    func(k string) error
	}{
		{"Increment", nil, func(k string) error { _, err := s.Increment(ctx, k, 1); return err }},
		{"IncrementWithTTL", nil, func(k string) error { _, err := s.IncrementWithTTL(ctx, k, 1, time.Minute); return err }},
		{"Expire", set(s, value), func(k string) error { _, err := s.Expire(ctx, k, time.Minute); return err }},
		{"Get", set(s, value), func(k string) error { _, _, err := s.Get(ctx, k); return err }},
		{"Set", nil, func(k string) error { return s.Set(ctx, k, value, 0) }},
		{"SetWithTTL", nil, func(k string) error { return s.Set(ctx, k, value, time.Minute) }},
		{"Has", set(s, value), func(k string) error { _, err := s.Has(ctx, k); return err }},
		{"TTL", set(s, value), func(k string) error { _, _, err := s.TTL(ctx, k); return err }},
		{"Delete", nil, func(k string) error { _, err := s.Delete(ctx, k); return err }},
		{"SetIfAbsent", set(s, value), func(k string) error { _, err := s.SetIfAbsent(ctx, k, value, time.Minute); return err }},
		{"CompareAndDelete", set(s, value), func(k string) error {
			_, err := s.CompareAndDelete(ctx, k, []byte("other"))
			return err
		}},
		{"CompareAndExpire", set(s, value), func(k string) error {
			_, err := s.CompareAndExpire(ctx, k, value, time.Minute)
			return err
		}},
	}
	for _, o := range ops {
		b.Run(o.name, func(b *testing.B) {
			k := key(o.name)
			if o.setup != nil {
				o.setup(b, k)
			}
			for b.Loop() {
				if err := o.op(k); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	b.Run("Increment/parallel-distinct-keys", func(b *testing.B) {
		var n atomic.Int64
		b.RunParallel(func(pb *testing.PB) {
			k := key("parallel:" + strconv.FormatInt(n.Add(1), 10))
			for pb.Next() {
				if _, err := s.Increment(ctx, k, 1); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}

func set(s store.Store, value []byte) func(*testing.B, string) {
	return func(b *testing.B, k string) {
		if err := s.Set(ctx, k, value, 0); err != nil {
			b.Fatal(err)
		}
	}
}
