package limiter

import (
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestCounterKey(t *testing.T) {
	tests := []struct {
		name string
		key  CounterKey
		sfx  string
		want string
	}{
		{"empty subject", CounterKey{Namespace: "team-a", Policy: "api", Limit: "per-ip", Subject: nil}, "w1764158400",
			"qo:v1:{team-a/api/per-ip/b613679a0814d9ec772f95d778c35fc5}:w1764158400"},
		{"names are escaped", CounterKey{Namespace: "ns", Policy: "p}{", Limit: "a/b:c", Subject: nil}, "x:y",
			"qo:v1:{ns/p%7D%7B/a%2Fb%3Ac/b613679a0814d9ec772f95d778c35fc5}:x%3Ay"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.key.Key(tt.sfx); got != tt.want {
				t.Fatalf("Key = %q; want %q", got, tt.want)
			}
		})
	}
}

func TestSubjectHash(t *testing.T) {
	if SubjectHash([]string{"ab", "c"}) == SubjectHash([]string{"a", "bc"}) {
		t.Fatal("length prefixes missing: (ab,c) and (a,bc) hash alike")
	}
	if SubjectHash([]string{""}) == SubjectHash(nil) {
		t.Fatal("one empty value and no value hash alike")
	}
	k := CounterKey{Namespace: "ns", Policy: "api", Limit: "per-key", Subject: []string{"sk_live_SECRET123"}}
	if key := k.Key("w1"); strings.Contains(key, "SECRET") {
		t.Fatalf("raw subject in key %q", key)
	}
}

// hashTag is what Redis Cluster hashes: the text between the first '{' and
// the first '}' after it, when that is not empty.
func hashTag(key string) string {
	open := strings.IndexByte(key, '{')
	if open < 0 {
		return key
	}
	end := strings.IndexByte(key[open+1:], '}')
	if end <= 0 {
		return key
	}
	return key[open+1 : open+1+end]
}

func FuzzCounterKey(f *testing.F) {
	f.Add("team-a", "api", "per-ip", "10.0.0.1", "w1")
	f.Add("n}s", "{p", "l/x", "", ":")
	f.Fuzz(func(t *testing.T, ns, policy, limit, subject, suffix string) {
		k := CounterKey{Namespace: ns, Policy: policy, Limit: limit, Subject: []string{subject}}
		a, b := k.Key(suffix), k.Key(suffix+"x")
		if !strings.HasPrefix(a, keyPrefix+"{") {
			t.Fatalf("key %q lacks the prefix", a)
		}
		// Every counter of one limit and subject shares one slot.
		if hashTag(a) != hashTag(b) || "{"+hashTag(a)+"}" != k.Tag() {
			t.Fatalf("keys %q and %q do not share the tag %q", a, b, k.Tag())
		}
		if strings.Count(a, "{") != 1 || strings.Count(a, "}") != 1 {
			t.Fatalf("key %q has a forged brace", a)
		}
		// The subject reaches the key only through its hash: with the hash
		// masked, another subject gives the same key.
		other := CounterKey{Namespace: ns, Policy: policy, Limit: limit, Subject: []string{subject + "-other"}}
		masked := strings.Replace(a, SubjectHash(k.Subject), "H", 1)
		if masked != strings.Replace(other.Key(suffix), SubjectHash(other.Subject), "H", 1) {
			t.Fatalf("subject %q shapes key %q beyond its hash", subject, a)
		}
		// Names are escaped, never merged: other parts give another tag.
		merged := CounterKey{Namespace: ns + "/" + policy, Limit: limit, Subject: []string{subject}}
		if policy != "" && merged.Tag() == k.Tag() {
			t.Fatalf("%+v and %+v share tag %q", k, merged, k.Tag())
		}
	})
}

// windowKey is an allocation-lean TaggedKey: the store keys must stay
// byte for byte what they were, or an upgrade would restart every window.
func FuzzWindowKey(f *testing.F) {
	f.Add("team-a", "api", "per-ip", "10.0.0.1", int64(3_600_000), int64(1_764_158_400_000))
	f.Add("n}s", "{p", "l/x", "", int64(1), int64(-5))
	f.Fuzz(func(t *testing.T, ns, policy, limit, subject string, window, start int64) {
		tag := CounterKey{Namespace: ns, Policy: policy, Limit: limit, Subject: []string{subject}}.Tag()
		w, s := strconv.FormatInt(window, 10), strconv.FormatInt(start, 10)
		for _, tt := range []struct{ got, want string }{
			{windowKey(tag, "fw", window, start), TaggedKey(tag, "fw", w, s)},
			{windowKey(tag, "sw", window, start), TaggedKey(tag, "sw", w, s)},
			{windowKey(tag, "tb", window), TaggedKey(tag, "tb", w)},
		} {
			if tt.got != tt.want {
				t.Fatalf("windowKey = %q; TaggedKey = %q", tt.got, tt.want)
			}
		}
	})
}

func TestQuotaAndLockKeys(t *testing.T) {
	k := CounterKey{Namespace: "team-a", Policy: "monthly", Limit: "export", Subject: []string{"sk_live_1"}}
	if got, want := quotaKeys(k.QuotaTag(), time.Unix(1793505600, 0)), []string{
		"qo:v1:{team-a/monthly/export}:q:1793505600:use", "qo:v1:{team-a/monthly/export}:q:1793505600:sum",
	}; !slices.Equal(got, want) {
		t.Fatalf("quota keys %q; want %q", got, want)
	}
	lock, fence := lockKeys("team-a", "nightly/report")
	if lock != "qo:v1:{team-a/nightly%2Freport}:lock" || fence != "qo:v1:{team-a/nightly%2Freport}:fence" {
		t.Fatalf("lock keys %q, %q", lock, fence)
	}
}

// Lock keys share one slot, never forge a brace, and never merge a
// namespace into a name.
func FuzzLockKeys(f *testing.F) {
	f.Add("team-a", "job")
	f.Add("a/b", "}{")
	f.Fuzz(func(t *testing.T, ns, name string) {
		lock, fence := lockKeys(ns, name)
		if hashTag(lock) != hashTag(fence) {
			t.Fatalf("%q and %q in different slots", lock, fence)
		}
		if strings.Count(lock, "{") != 1 || strings.Count(lock, "}") != 1 {
			t.Fatalf("lock key %q has a forged brace", lock)
		}
		if other, _ := lockKeys(ns+"/"+name, ""); other == lock {
			t.Fatalf("(%q, %q) and (%q, \"\") share key %q", ns, name, ns+"/"+name, lock)
		}
		// Counter and quota tags have three or four parts, lock tags two.
		if strings.Count(hashTag(lock), "/") != 1 {
			t.Fatalf("lock tag %q does not have exactly two parts", hashTag(lock))
		}
	})
}

// App keys of different namespaces never meet, whatever the key.
func FuzzAppKey(f *testing.F) {
	f.Add("team-a", "sessions/42")
	f.Add("team-a", "x}{team-b/")
	f.Fuzz(func(t *testing.T, ns, key string) {
		k := AppKey(ns, key)
		if strings.Count(k, "{") != 1 || strings.Count(k, "}") != 1 || !strings.HasSuffix(k, "}") {
			t.Fatalf("key %q has a forged brace", k)
		}
		if AppKey(ns+"x", key) == k || AppKey(ns+"/"+key, "") == k {
			t.Fatalf("namespaces share key %q", k)
		}
	})
}
