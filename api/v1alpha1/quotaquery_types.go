package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// QuotaQuerySpec asks the operator one question about counters, read from
// the store when it answers. It is asked once: it cannot be edited.
// +kubebuilder:validation:XValidation:rule="has(self.usage) != has(self.check)",message="ask one question: set usage or check, not both and not neither"
// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="a QuotaQuery is answered once and cannot be changed; create another"
type QuotaQuerySpec struct {
	// usage asks for a UsageQuota's usage in its current period, or for
	// the subjects with counters of one RateLimitPolicy limit.
	// +optional
	Usage *UsageQuestion `json:"usage,omitempty"`
	// check asks what a request would get now from the limits it names,
	// decided together as one request, consuming nothing.
	// +optional
	Check *CheckQuestion `json:"check,omitempty"`
}

// UsageQuestion names a quota, or a rate limit, and how many subjects to
// list.
type UsageQuestion struct {
	// target is the UsageQuota, or the RateLimitPolicy limit.
	// +required
	Target AdjustmentTarget `json:"target"`
	// top is how many subjects to list: those that used most of a quota,
	// or those with the least remaining of a rate limit.
	// +optional
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=100
	// +kubebuilder:default=10
	Top *int32 `json:"top,omitempty"`
}

// CheckQuestion names the limits a request would meet.
type CheckQuestion struct {
	// limits, each with its subject and cost.
	// +required
	// +listType=atomic
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=16
	Limits []CheckLimit `json:"limits"`
}

// CheckLimit is one limit a checked request meets, and as whom.
type CheckLimit struct {
	// target is the UsageQuota, or the RateLimitPolicy limit.
	// +required
	Target AdjustmentTarget `json:"target"`
	// subjectHash is the subject's hash (kubectl quota hashes values on
	// the client, so raw keys never reach the cluster).
	// +required
	// +kubebuilder:validation:Pattern=`^[0-9a-f]{32}$`
	SubjectHash string `json:"subjectHash"`
	// cost is what the request would consume.
	// +optional
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=9007199254740991
	// +kubebuilder:default=1
	Cost int64 `json:"cost,omitempty"`
}

// QuotaUsageAnswer is a UsageQuota's usage this period.
type QuotaUsageAnswer struct {
	// limit is the quota's limit per subject (an override may differ).
	// +required
	// +kubebuilder:validation:Minimum=0
	Limit int64 `json:"limit"`
	// period is the current period.
	// +required
	Period QuotaPeriod `json:"period"`
	// subjects is how many subjects consumed in the period.
	// +required
	// +kubebuilder:validation:Minimum=0
	Subjects int64 `json:"subjects"`
	// consumed is the units all subjects consumed.
	// +required
	// +kubebuilder:validation:Minimum=0
	Consumed int64 `json:"consumed"`
	// top is the subjects that consumed most, most first.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=100
	Top []Consumer `json:"top,omitempty"`
}

// RateUsage is one rate: its limit and window and, for a subject, what is
// used and remaining in the current window.
type RateUsage struct {
	// +required
	// +kubebuilder:validation:Minimum=0
	Limit int64 `json:"limit"`
	// window of the rate, such as 1m0s; empty for a quota.
	// +optional
	// +kubebuilder:validation:MaxLength=32
	Window string `json:"window,omitempty"`
	// +required
	// +kubebuilder:validation:Minimum=0
	Used int64 `json:"used"`
	// +required
	// +kubebuilder:validation:Minimum=0
	Remaining int64 `json:"remaining"`
}

// SubjectUsage is one subject's state under its tightest rate.
type SubjectUsage struct {
	// subject is the subject's hash.
	// +required
	// +kubebuilder:validation:MaxLength=256
	Subject string `json:"subject"`
	// +required
	Rate RateUsage `json:"rate"`
}

// LimitUsageAnswer is the subjects with counters of one RateLimitPolicy
// limit, found by scanning the store (a rate limit keeps no index).
type LimitUsageAnswer struct {
	// rates of the limit.
	// +required
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=4
	Rates []RateUsage `json:"rates"`
	// subjects is how many subjects have counters in a current window.
	// +required
	// +kubebuilder:validation:Minimum=0
	Subjects int64 `json:"subjects"`
	// complete is false when the scan stopped at its bound: subjects and
	// top then cover part of the keyspace.
	// +required
	Complete bool `json:"complete"`
	// top is the subjects with the least remaining.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=100
	Top []SubjectUsage `json:"top,omitempty"`
}

// CheckAnswer is what the checked request would get now.
type CheckAnswer struct {
	// allowed: the request would pass now.
	// +required
	Allowed bool `json:"allowed"`
	// results, one per rate of each limit.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=64
	Results []CheckResult `json:"results,omitempty"`
}

// CheckResult is one rate of one limit.
type CheckResult struct {
	// limit indexes spec.check.limits.
	// +required
	// +kubebuilder:validation:Minimum=0
	Limit int32 `json:"limit"`
	// +required
	Allowed bool `json:"allowed"`
	// dryRun: the limit only reports; it would not deny.
	// +optional
	DryRun bool `json:"dryRun,omitempty"`
	// +required
	Rate RateUsage `json:"rate"`
	// resetAt is when the rate is back to its full limit, by the
	// manager's clock, to the second: a fixed window's end, a quota
	// period's end, a token bucket full again.
	// +required
	ResetAt metav1.Time `json:"resetAt"`
	// retryAfter is when a denied request could pass, such as 1m0s;
	// absent when it is allowed or never can pass (its cost is above the
	// limit).
	// +optional
	// +kubebuilder:validation:MaxLength=32
	RetryAfter string `json:"retryAfter,omitempty"`
}

// Condition type and reasons of a QuotaQuery.
const (
	// ConditionAnswered: the answer is in status (True), or why there is
	// none (False). Either way the query is done.
	ConditionAnswered = "Answered"

	ReasonAnswered       = "Answered"
	ReasonNotFound       = "NotFound"
	ReasonTooManyQueries = "TooManyQueries"
)

// QuotaQueryStatus is the one answer.
type QuotaQueryStatus struct {
	// observedGeneration is the generation the conditions describe.
	// +optional
	// +kubebuilder:validation:Minimum=0
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// conditions: Answered.
	// +optional
	// +listType=map
	// +listMapKey=type
	// +kubebuilder:validation:MaxItems=4
	Conditions []metav1.Condition `json:"conditions,omitempty"`
	// answeredAt is when the store was read, by the manager's clock.
	// +optional
	AnsweredAt *metav1.Time `json:"answeredAt,omitempty"`
	// quota answers spec.usage for a UsageQuota.
	// +optional
	Quota *QuotaUsageAnswer `json:"quota,omitempty"`
	// limit answers spec.usage for a RateLimitPolicy limit.
	// +optional
	Limit *LimitUsageAnswer `json:"limit,omitempty"`
	// check answers spec.check.
	// +optional
	Check *CheckAnswer `json:"check,omitempty"`
}

// QuotaQuery asks the operator what counters hold now: a quota's usage, a
// rate limit's subjects, or what a request would get, consuming nothing.
// `kubectl quota usage` and `kubectl quota check` create one, wait for
// its answer and delete it; the operator deletes any left 10 minutes
// after it answered. Kubernetes RBAC decides who may ask, per namespace.
// Subjects appear only as hashes.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=qq,categories=quotaops
// +kubebuilder:printcolumn:name="Kind",type=string,JSONPath=`.spec.usage.target.kind`
// +kubebuilder:printcolumn:name="Target",type=string,JSONPath=`.spec.usage.target.name`
// +kubebuilder:printcolumn:name="Answered",type=string,JSONPath=`.status.conditions[?(@.type=="Answered")].status`
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.conditions[?(@.type=="Answered")].reason`
// +kubebuilder:printcolumn:name="Message",type=string,priority=1,JSONPath=`.status.conditions[?(@.type=="Answered")].message`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type QuotaQuery struct {
	metav1.TypeMeta `json:",inline"`
	// +optional
	metav1.ObjectMeta `json:"metadata,omitempty"`
	// +required
	Spec QuotaQuerySpec `json:"spec"`
	// +optional
	Status QuotaQueryStatus `json:"status,omitempty"`
}

// QuotaQueryList is a list of QuotaQuery.
// +kubebuilder:object:root=true
type QuotaQueryList struct {
	metav1.TypeMeta `json:",inline"`
	// +optional
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []QuotaQuery `json:"items"`
}

func init() {
	knownTypes = append(knownTypes, &QuotaQuery{}, &QuotaQueryList{})
}
