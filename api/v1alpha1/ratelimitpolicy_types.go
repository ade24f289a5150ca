package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Algorithm is how a limit counts.
// +kubebuilder:validation:Enum=FixedWindow;SlidingWindow;TokenBucket
type Algorithm string

const (
	FixedWindow   Algorithm = "FixedWindow"
	SlidingWindow Algorithm = "SlidingWindow"
	TokenBucket   Algorithm = "TokenBucket"
)

// KeySource is one part of a limit's key: each distinct value gets its own
// counter.
// +kubebuilder:validation:XValidation:rule="(self.source in ['Header', 'Query']) == has(self.name)",message="name is required when source is Header or Query, and only then"
// +kubebuilder:validation:XValidation:rule="!has(self.ipv6PrefixLength) || self.source == 'ClientIP'",message="ipv6PrefixLength applies to source ClientIP only"
type KeySource struct {
	// source of the value.
	// +required
	Source Source `json:"source"`
	// name of the header or query parameter.
	// +optional
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=256
	// +kubebuilder:validation:Pattern=`^[A-Za-z0-9!#$%&'*+.^_|~-]+$`
	Name string `json:"name,omitempty"`
	// ipv6PrefixLength: for ClientIP, how much of an IPv6 address one
	// counter covers, in bits (default 64). A client usually holds a whole
	// /64, so keying on the full address would give it 2^64 counters.
	// IPv4 addresses are always whole.
	// +optional
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=128
	IPv6PrefixLength int32 `json:"ipv6PrefixLength,omitempty"`
}

// KeyMissing is what a limit does with a request that lacks a header or
// query parameter its key names.
// +kubebuilder:validation:Enum=Skip;Deny
type KeyMissing string

const (
	// KeyMissingSkip: the limit does not apply; the request is not
	// counted by it (as Envoy skips a descriptor whose header is absent).
	KeyMissingSkip KeyMissing = "Skip"
	// KeyMissingDeny: the request is denied (429), as over the limit.
	KeyMissingDeny KeyMissing = "Deny"
)

// Rate is a limit per window. For a TokenBucket, limit is the burst and
// window the time to refill it.
// +kubebuilder:validation:XValidation:rule="duration(self.window) >= duration('1s')",message="window must be at least 1s"
// +kubebuilder:validation:XValidation:rule="duration(self.window) <= duration('168h')",message="window must be at most 168h"
type Rate struct {
	// limit is the number of units per window.
	// +required
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=9007199254740991
	Limit int64 `json:"limit"`
	// window is a duration such as 1s, 1m, 1h30m or 1500ms.
	// +required
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:Pattern=`^([0-9]{1,6}(ms|s|m|h))+$`
	Window string `json:"window"`
}

// Limit is one named limit of a policy.
// +kubebuilder:validation:XValidation:rule="self.rates.all(r, self.rates.exists_one(s, duration(s.window) == duration(r.window)))",message="rates may appear only once per window"
// +kubebuilder:validation:XValidation:rule="self.rates.all(r, r.limit >= self.cost)",message="cost must not be above any rate's limit: such a request could never pass"
// +kubebuilder:validation:XValidation:rule="!has(self.costFrom) || self.cost == 1",message="cost and costFrom are exclusive: with costFrom the response says the cost, and costFrom.reserve is what admission takes"
// +kubebuilder:validation:XValidation:rule="!has(self.costFrom) || self.rates.all(r, r.limit >= self.costFrom.reserve)",message="costFrom.reserve must not be above any rate's limit: such a request could never pass"
// +kubebuilder:validation:XValidation:rule="self.algorithm != 'TokenBucket' || self.rates.all(r, duration(r.window).getMilliseconds() * 1000 >= r.limit)",message="a token bucket refills at most one token per microsecond: lower the limit or lengthen the window"
type Limit struct {
	// name identifies the limit in its policy, in headers, metrics and the
	// Envoy rate-limit descriptors.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	Name string `json:"name"`
	// match selects the requests this limit counts; empty matches all.
	// +optional
	Match *Match `json:"match,omitempty"`
	// key lists where the counter's identity comes from; empty keeps one
	// counter for the whole limit.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=8
	Key []KeySource `json:"key,omitempty"`
	// algorithm: FixedWindow, SlidingWindow or TokenBucket.
	// +optional
	// +kubebuilder:default=FixedWindow
	Algorithm Algorithm `json:"algorithm,omitempty"`
	// rates all apply together: a request passes only if every one allows.
	// +required
	// +listType=atomic
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=4
	Rates []Rate `json:"rates"`
	// cost is what one request takes.
	// +optional
	// +kubebuilder:default=1
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=1000000000
	Cost int64 `json:"cost,omitempty"`
	// costFrom charges what the response says the request cost, instead
	// of a fixed cost.
	// +optional
	CostFrom *CostFrom `json:"costFrom,omitempty"`
	// whenKeyMissing is what a request that lacks a header or query
	// parameter of key gets: Skip (the default) passes it uncounted by
	// this limit; Deny denies it, so no request escapes the limit by
	// leaving its key out.
	// +optional
	// +kubebuilder:default=Skip
	WhenKeyMissing KeyMissing `json:"whenKeyMissing,omitempty"`
}

// RateLimitPolicySpec is the desired limits.
type RateLimitPolicySpec struct {
	// selector picks the pods whose sidecars enforce this policy.
	// +required
	Selector metav1.LabelSelector `json:"selector"`
	// enforcement: Enforce denies; DryRun only counts and reports.
	// +optional
	// +kubebuilder:default=Enforce
	Enforcement Enforcement `json:"enforcement,omitempty"`
	// failurePolicy: what to answer when the store is unreachable.
	// +optional
	// +kubebuilder:default=Open
	FailurePolicy FailurePolicy `json:"failurePolicy,omitempty"`
	// limits each request is checked against; all that match are decided
	// together.
	// +required
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=32
	Limits []Limit `json:"limits"`
}

// RateLimitPolicyStatus is what the operator observed.
type RateLimitPolicyStatus struct {
	PolicyStatus `json:",inline"`
}

// RateLimitPolicy limits the request rate of the selected pods.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=rlp,categories=quotaops
// +kubebuilder:printcolumn:name="Enforcement",type=string,JSONPath=`.spec.enforcement`
// +kubebuilder:printcolumn:name="Limits",type=string,JSONPath=`.spec.limits[*].name`
// +kubebuilder:printcolumn:name="Programmed",type=string,JSONPath=`.status.conditions[?(@.type=="Programmed")].status`
// +kubebuilder:printcolumn:name="Enforced",type=string,JSONPath=`.status.conditions[?(@.type=="Enforced")].status`
// +kubebuilder:printcolumn:name="Pods",type=string,JSONPath=`.status.enforcedPods`
// +kubebuilder:printcolumn:name="Enforcement Status",type=string,priority=1,JSONPath=`.status.conditions[?(@.type=="Enforced")].message`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type RateLimitPolicy struct {
	metav1.TypeMeta `json:",inline"`
	// +optional
	metav1.ObjectMeta `json:"metadata,omitempty"`
	// +required
	Spec RateLimitPolicySpec `json:"spec"`
	// +optional
	Status RateLimitPolicyStatus `json:"status,omitempty"`
}

// RateLimitPolicyList is a list of RateLimitPolicy.
// +kubebuilder:object:root=true
type RateLimitPolicyList struct {
	metav1.TypeMeta `json:",inline"`
	// +optional
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []RateLimitPolicy `json:"items"`
}

func init() {
	knownTypes = append(knownTypes, &RateLimitPolicy{}, &RateLimitPolicyList{})
}
