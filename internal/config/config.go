// Package config compiles RateLimitPolicy and UsageQuota objects into the
// enforcement config that sidecars run: plain, versioned JSON with windows
// in milliseconds and quota override subjects hashed. It is pure: no
// Kubernetes client and no store. The controllers publish what it returns;
// a sidecar with --policy-file compiles objects itself.
package config

import (
	"encoding/json"
	"fmt"
	"net/netip"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// Schema is the version of the Policy layout. A sidecar refuses documents
// of a schema it does not know, and keeps its last good config.
const Schema = 1

// Kinds of a Policy.
const (
	KindRateLimitPolicy = "RateLimitPolicy"
	KindUsageQuota      = "UsageQuota"
)

// Policy is one compiled object.
type Policy struct {
	Schema     int    `json:"schema"`
	Kind       string `json:"kind"`
	Namespace  string `json:"namespace"`
	Name       string `json:"name"`
	Generation int64  `json:"generation"`
	// Selector picks the pods whose sidecars enforce the policy.
	Selector   metav1.LabelSelector `json:"selector"`
	DryRun     bool                 `json:"dryRun,omitempty"`
	FailClosed bool                 `json:"failClosed,omitempty"`
	// Limits is set for a RateLimitPolicy, Quota for a UsageQuota.
	Limits []Limit `json:"limits,omitempty"`
	Quota  *Quota  `json:"quota,omitempty"`
}

// Match selects requests; empty fields match everything.
type Match struct {
	Methods    []string      `json:"methods,omitempty"`
	PathPrefix string        `json:"pathPrefix,omitempty"`
	Headers    []HeaderMatch `json:"headers,omitempty"`
}

// Empty reports whether m matches every request.
func (m Match) Empty() bool {
	return len(m.Methods) == 0 && m.PathPrefix == "" && len(m.Headers) == 0
}

// HeaderMatch requires a header; Value, when set, exactly. Name is in
// canonical form (X-Api-Key).
type HeaderMatch struct {
	Name  string `json:"name"`
	Value string `json:"value,omitempty"`
}

// KeySource is one part of a counter's identity.
type KeySource struct {
	Source string `json:"source"`
	Name   string `json:"name,omitempty"`
	// IPv6Prefix is the prefix length of an IPv6 ClientIP's key; 0 (a
	// document written before the field existed): DefaultIPv6Prefix.
	IPv6Prefix int `json:"ipv6Prefix,omitempty"`
}

// DefaultIPv6Prefix is how much of an IPv6 client address one counter
// covers: a /64, what one client usually holds.
const DefaultIPv6Prefix = 64

// ClientKey is the key value of a client address for this source: an
// IPv4 address whole (an IPv4-mapped IPv6 one as IPv4), an IPv6 one as
// its prefix ("2001:db8:1:2::/64").
func (k KeySource) ClientKey(a netip.Addr) string {
	a = a.Unmap()
	if !a.Is6() {
		return a.String()
	}
	bits := k.IPv6Prefix
	if bits <= 0 || bits > 128 {
		bits = DefaultIPv6Prefix
	}
	p, err := a.WithZone("").Prefix(bits)
	if err != nil {
		return a.String()
	}
	return p.String()
}

// Rate is Limit per WindowMs milliseconds.
type Rate struct {
	Limit    int64 `json:"limit"`
	WindowMs int64 `json:"windowMs"`
}

// Limit is one limit of a RateLimitPolicy.
type Limit struct {
	Name      string      `json:"name"`
	Match     Match       `json:"match"`
	Key       []KeySource `json:"key,omitempty"`
	Algorithm string      `json:"algorithm"`
	Rates     []Rate      `json:"rates"`
	// Cost is what a request takes at admission: with CostFrom, its
	// reserve.
	Cost int64 `json:"cost"`
	// CostFrom, when set, says where the response gives the real cost.
	CostFrom *CostFrom `json:"costFrom,omitempty"`
	// DenyMissingKey: a request that lacks a header or query parameter of
	// Key is denied rather than skipped (whenKeyMissing: Deny).
	DenyMissingKey bool `json:"denyMissingKey,omitempty"`
}

// Quota is a UsageQuota.
type Quota struct {
	Subject  KeySource `json:"subject"`
	Match    Match     `json:"match"`
	Feature  string    `json:"feature,omitempty"`
	Limit    int64     `json:"limit"`
	Period   string    `json:"period"`
	TimeZone string    `json:"timeZone"`
	// MaxSubjects bounds the subjects tracked per period; 0 (a document
	// written before the field existed) means DefaultMaxSubjects.
	MaxSubjects int64 `json:"maxSubjects,omitempty"`
	// Overrides are keyed by the subject's hash; raw subjects never leave
	// the API object.
	Overrides []Override `json:"overrides,omitempty"`
	// CostFrom, when set, says where the response gives the real cost;
	// admission takes its Reserve. Without it a request costs 1.
	CostFrom *CostFrom `json:"costFrom,omitempty"`
}

// Cost is what a request takes from the quota at admission.
func (q *Quota) Cost() int64 {
	if q.CostFrom != nil {
		return q.CostFrom.Reserve
	}
	return 1
}

// CostFrom is where a response says what its request cost: exactly one of
// Header (canonical form) and JSONPointer (RFC 6901). Reserve is what
// admission took.
type CostFrom struct {
	Header      string `json:"header,omitempty"`
	JSONPointer string `json:"jsonPointer,omitempty"`
	Reserve     int64  `json:"reserve"`
}

// DefaultMaxSubjects is UsageQuota's spec.maxSubjects default: about 10 MB
// of Redis memory per quota and period (a sorted-set member of a 22-byte
// hash and its score).
const DefaultMaxSubjects = 100_000

// Bound is MaxSubjects, with its default.
func (q *Quota) Bound() int64 {
	if q.MaxSubjects <= 0 {
		return DefaultMaxSubjects
	}
	return q.MaxSubjects
}

// Override is one subject's own limit.
type Override struct {
	SubjectHash string `json:"subjectHash"`
	Limit       int64  `json:"limit"`
}

// ID names the policy inside its namespace's config: Kind/name.
func (p *Policy) ID() string { return p.Kind + "/" + p.Name }

// Encode returns the document the store holds.
func (p *Policy) Encode() ([]byte, error) { return json.Marshal(p) }

// Decode reads a stored document, refusing a schema this build does not
// know.
func Decode(doc []byte) (*Policy, error) {
	var p Policy
	if err := json.Unmarshal(doc, &p); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	if p.Schema != Schema {
		return nil, fmt.Errorf("config: %s has schema %d; this build reads %d", p.ID(), p.Schema, Schema)
	}
	if (p.Kind == KindRateLimitPolicy) == (p.Quota != nil) || p.Kind != KindRateLimitPolicy && p.Kind != KindUsageQuota {
		return nil, fmt.Errorf("config: %s is neither a rate limit policy nor a quota", p.ID())
	}
	if err := p.checkCosts(); err != nil {
		return nil, fmt.Errorf("config: %s: %w", p.ID(), err)
	}
	return &p, nil
}

// checkCosts refuses a costFrom the sidecar could not read, so that one
// document is refused rather than the namespace's whole config.
func (p *Policy) checkCosts() error {
	if p.Quota != nil && p.Quota.CostFrom != nil {
		if err := p.Quota.CostFrom.validate(field.NewPath("costFrom")); err != nil {
			return err
		}
	}
	for _, l := range p.Limits {
		if l.CostFrom == nil {
			continue
		}
		if err := l.CostFrom.validate(field.NewPath("limits").Key(l.Name).Child("costFrom")); err != nil {
			return err
		}
	}
	return nil
}
