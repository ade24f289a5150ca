package limiter

import (
	"strconv"
	"strings"

	"github.com/quotaops/quota-operator/internal/subject"
)

// keyPrefix starts every limiter key; the version lets a new layout live
// beside an old one during an upgrade.
const keyPrefix = "qo:v1:"

// CounterKey names the counters of one limit for one subject. Every key
// built from it shares one Redis Cluster hash tag, so all the windows of
// that limit (current and previous, every rate) sit in one slot and one
// script can decide them together.
type CounterKey struct {
	Namespace string
	Policy    string
	Limit     string
	// Subject is the request's values for the limit's key sources, in
	// order. Only a hash of them reaches the store.
	Subject []string
	// Hashed, when set, is the subject's hash and Subject is unused: an
	// operator may name a subject by its hash alone, never seeing the raw
	// value (an API key).
	Hashed string
}

// Tag returns the hash tag: {namespace/policy/limit/subject-hash}.
func (k CounterKey) Tag() string {
	return k.tag(k.SubjectHash())
}

// SubjectHash is the hash of the subject, the only form of it the store
// sees.
func (k CounterKey) SubjectHash() string {
	if k.Hashed != "" {
		return k.Hashed
	}
	return SubjectHash(k.Subject)
}

// QuotaTag returns the hash tag of a quota's period data, shared by all its
// subjects: {namespace/policy/limit}. One sorted set per period holds every
// subject's usage, so status reads it without scanning keys.
func (k CounterKey) QuotaTag() string {
	return k.tag("")
}

func (k CounterKey) tag(subject string) string {
	if subject == "" {
		return braceTag(k.Namespace, k.Policy, k.Limit)
	}
	return braceTag(k.Namespace, k.Policy, k.Limit, subject)
}

// braceTag is a Redis Cluster hash tag of escaped parts: {a/b/c}. Escaping
// keeps any part from forging a '/', '{' or '}'; the number of parts tells
// counter, quota, lock and app tags apart.
func braceTag(parts ...string) string {
	var b strings.Builder
	b.Grow(partsLen(parts) + 2)
	b.WriteByte('{')
	for i, part := range parts {
		if i > 0 {
			b.WriteByte('/')
		}
		escapeKeyPart(&b, part)
	}
	b.WriteByte('}')
	return b.String()
}

// Key returns the store key for one counter of this limit and subject, such
// as the window starting at a given instant: qo:v1:{tag}:part:part.
func (k CounterKey) Key(parts ...string) string {
	return TaggedKey(k.Tag(), parts...)
}

// TaggedKey returns qo:v1:tag:part:part with every part escaped.
func TaggedKey(tag string, parts ...string) string {
	var b strings.Builder
	b.Grow(len(keyPrefix) + len(tag) + partsLen(parts))
	b.WriteString(keyPrefix)
	b.WriteString(tag)
	for _, p := range parts {
		b.WriteByte(':')
		escapeKeyPart(&b, p)
	}
	return b.String()
}

// windowKey is TaggedKey(tag, kind, window, start) for the numbers of a
// window, built in one allocation: it runs for every rate of every
// decision. Numbers need no escaping.
func windowKey(tag, kind string, window int64, start ...int64) string {
	b := make([]byte, 0, len(keyPrefix)+len(tag)+len(kind)+2+20*(1+len(start)))
	b = append(append(append(append(b, keyPrefix...), tag...), ':'), kind...)
	b = strconv.AppendInt(append(b, ':'), window, 10)
	for _, n := range start {
		b = strconv.AppendInt(append(b, ':'), n, 10)
	}
	return string(b)
}

// partsLen is the length of parts joined by one-byte separators, before
// escaping: enough to build most keys in one allocation, on every decision.
func partsLen(parts []string) int {
	n := len(parts)
	for _, p := range parts {
		n += len(p)
	}
	return n
}

// AppKey is the store key of an app's own key (the sidecar's store API),
// scoped to its namespace: qo:v1:app:{<namespace>/<key>}. Both parts are
// escaped, so no key can close the tag or reach another namespace's keys.
func AppKey(namespace, key string) string {
	return keyPrefix + "app:" + braceTag(namespace, key)
}

// SubjectHash is subject.Hash: the only form of a subject that reaches the
// store.
func SubjectHash(values []string) string {
	return subject.Hash(values...)
}

// QuotaKey is the CounterKey of a UsageQuota's counters: the sidecar
// decides with it and the operator reads usage with it.
func QuotaKey(namespace, quota, feature string, subjectValues ...string) CounterKey {
	return CounterKey{Namespace: namespace, Policy: quota, Limit: feature, Subject: subjectValues}
}

// escapeKeyPart writes s with every byte outside [A-Za-z0-9._-] as %XX, so
// names cannot forge a separator or a hash-tag brace.
func escapeKeyPart(b *strings.Builder, s string) {
	const hexDigits = "0123456789ABCDEF"
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-' {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hexDigits[c>>4])
		b.WriteByte(hexDigits[c&15])
	}
}
