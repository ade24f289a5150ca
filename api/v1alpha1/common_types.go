package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Enforcement says whether a policy denies.
// +kubebuilder:validation:Enum=Enforce;DryRun
type Enforcement string

const (
	// Enforce denies requests over the limit.
	Enforce Enforcement = "Enforce"
	// DryRun counts and reports would-be denials but never denies.
	DryRun Enforcement = "DryRun"
)

// FailurePolicy is what the sidecar answers when the store cannot be reached
// within its timeout.
// +kubebuilder:validation:Enum=Open;Closed
type FailurePolicy string

const (
	// FailOpen lets requests through.
	FailOpen FailurePolicy = "Open"
	// FailClosed answers 503 with Retry-After.
	FailClosed FailurePolicy = "Closed"
)

// Source is where a request's value comes from.
// +kubebuilder:validation:Enum=ClientIP;Header;Query;Path;Method
type Source string

const (
	SourceClientIP Source = "ClientIP"
	SourceHeader   Source = "Header"
	SourceQuery    Source = "Query"
	SourcePath     Source = "Path"
	SourceMethod   Source = "Method"
)

// Method is an HTTP method.
// +kubebuilder:validation:Enum=GET;HEAD;POST;PUT;PATCH;DELETE;OPTIONS;CONNECT;TRACE
type Method string

// HeaderMatch matches a request header by name and, optionally, exact value.
type HeaderMatch struct {
	// name is the header name, matched case-insensitively.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=256
	// +kubebuilder:validation:Pattern=`^[A-Za-z0-9!#$%&'*+.^_|~-]+$`
	Name string `json:"name"`
	// value is the exact value the header must have; when empty the header
	// only has to be present.
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	Value string `json:"value,omitempty"`
}

// Match selects the requests a limit or quota applies to. An empty match
// selects every request; every field given must match.
type Match struct {
	// methods the request's method must be one of.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=9
	Methods []Method `json:"methods,omitempty"`
	// pathPrefix the request's path must start with.
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	// +kubebuilder:validation:Pattern=`^/`
	PathPrefix string `json:"pathPrefix,omitempty"`
	// headers the request must carry.
	// +optional
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=16
	Headers []HeaderMatch `json:"headers,omitempty"`
}

// ConditionType names a condition in status.conditions.
const (
	// ConditionAccepted: the spec is valid and compiled.
	ConditionAccepted = "Accepted"
	// ConditionProgrammed: the compiled config is in the store.
	ConditionProgrammed = "Programmed"
	// ConditionSubjectsWithinBound (UsageQuota): the period's subjects are
	// below 90% of spec.maxSubjects.
	ConditionSubjectsWithinBound = "SubjectsWithinBound"
	// ConditionStoreHeadroom: Redis uses less than 90% of its maxmemory.
	ConditionStoreHeadroom = "StoreHeadroom"
	// ConditionUsageReported (UsageQuota): status.usage is known.
	ConditionUsageReported = "UsageReported"
	// ConditionEnforced: the selected pods' sidecars enforce the current
	// generation.
	ConditionEnforced = "Enforced"
)

// Condition reasons.
const (
	ReasonAccepted = "Accepted"
	ReasonInvalid  = "Invalid"
	// ReasonTooManyLimits: the object would take its namespace past the
	// rates one request may be decided against; it is not enforced.
	ReasonTooManyLimits    = "TooManyLimits"
	ReasonProgrammed       = "Programmed"
	ReasonStoreUnavailable = "StoreUnavailable"
	ReasonWithinBound      = "WithinBound"
	ReasonNearBound        = "NearBound"
	ReasonBoundReached     = "BoundReached"
	ReasonEnoughMemory     = "EnoughMemory"
	ReasonLowMemory        = "LowMemory"
	ReasonNoMaxmemory      = "NoMaxmemory"
	ReasonPerPodCounters   = "PerPodCounters"
	ReasonFromStore        = "FromStore"
	// ReasonCountersLost (UsageReported False): the store lost the
	// namespace's counters during the current period, so status.usage
	// counts it only from then on.
	ReasonCountersLost = "CountersLost"
	ReasonEnforced     = "Enforced"
	ReasonLagging      = "Lagging"
	ReasonUnprotected  = "Unprotected"
	ReasonNoPods       = "NoPods"
	ReasonCannotReport = "CannotReport"
	// ReasonStoreUserRefused (Enforced False): the store refuses the
	// operator ACL commands, so with store tenancy managed the
	// namespace's sidecars have no user.
	ReasonStoreUserRefused = "StoreUserRefused"
	// ReasonStoreUserMissing (Enforced False): with store tenancy provided
	// or shared, the users Secret has no credentials for the namespace.
	ReasonStoreUserMissing = "StoreUserMissing"
)

// PolicyStatus is what both kinds report.
type PolicyStatus struct {
	// observedGeneration is the generation the conditions describe.
	// +optional
	// +kubebuilder:validation:Minimum=0
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// conditions: Accepted, Programmed, Enforced, StoreHeadroom and, for
	// a UsageQuota, UsageReported and SubjectsWithinBound.
	// +optional
	// +listType=map
	// +listMapKey=type
	// +kubebuilder:validation:MaxItems=8
	Conditions []metav1.Condition `json:"conditions,omitempty"`
	// enforcedPods is how many of the running pods that spec.selector
	// matches enforce the current generation, such as "3/3"; empty when
	// sidecars cannot report (no Redis).
	// +optional
	// +kubebuilder:validation:MaxLength=32
	EnforcedPods string `json:"enforcedPods,omitempty"`
}

// CostFrom charges a request what its response says it cost, in units the
// app learns while it answers (rows exported, LLM tokens). Admission takes
// reserve units at once, so concurrent requests cannot all slip under the
// limit; when the response says the cost, the difference is charged (or
// given back). A response that does not say charges the reserve.
// +kubebuilder:validation:XValidation:rule="has(self.responseHeader) != has(self.responseJSONPointer)",message="set exactly one of responseHeader and responseJSONPointer"
type CostFrom struct {
	// responseHeader names the response header holding the cost, a
	// non-negative integer. It is read from the trailers when the app
	// declares it in Trailer. The client never sees it.
	// +optional
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=256
	// +kubebuilder:validation:Pattern=`^[A-Za-z0-9!#$%&'*+.^_|~-]+$`
	ResponseHeader string `json:"responseHeader,omitempty"`
	// responseJSONPointer is an RFC 6901 pointer, such as
	// /usage/total_tokens, to the cost in an application/json body (up to
	// 1 MiB), or in the last event of a text/event-stream whose data holds
	// it (as OpenAI-compatible servers send with include_usage).
	// +optional
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=256
	// +kubebuilder:validation:Pattern=`^(/([^~/]|~[01])*)+$`
	ResponseJSONPointer string `json:"responseJSONPointer,omitempty"`
	// reserve is the units a request needs left to be admitted, charged at
	// admission and settled when the cost is known.
	// +optional
	// +kubebuilder:default=1
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=1000000000
	Reserve int64 `json:"reserve,omitempty"`
}
