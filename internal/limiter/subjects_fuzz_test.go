package limiter

import (
	"testing"
)

// Any limit's counter key gives back its subject's hash, and a key of a
// limit whose name only starts the same, or a quota's, gives none.
func FuzzSubjectOf(f *testing.F) {
	f.Add("team-a", "api", "per-user", "alice", "w1764158400")
	f.Add("n/s", "p}{", "a/b:c", "", "x:y")
	f.Fuzz(func(t *testing.T, ns, policy, limit, subject, part string) {
		k := CounterKey{Namespace: ns, Policy: policy, Limit: limit, Subject: []string{subject}}
		prefix := keyPrefix + k.tag("")
		got, ok := subjectOf(k.Key(part), len(prefix)-1)
		if !ok || got != k.SubjectHash() {
			t.Fatalf("subjectOf(%q) = %q, %v; want %q", k.Key(part), got, ok, k.SubjectHash())
		}
		longer := CounterKey{Namespace: ns, Policy: policy, Limit: limit + "x", Subject: []string{subject}}
		if h, ok := subjectOf(longer.Key(part), len(prefix)-1); ok {
			t.Fatalf("a key of limit %q read as a subject of %q: %q", longer.Limit, limit, h)
		}
		if h, ok := subjectOf(TaggedKey(k.QuotaTag(), "q", part), len(prefix)-1); ok {
			t.Fatalf("a quota key read as a subject: %q", h)
		}
	})
}
