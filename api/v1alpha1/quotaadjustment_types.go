package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// AdjustmentAction is what an adjustment does.
// +kubebuilder:validation:Enum=Reset;Grant
type AdjustmentAction string

const (
	// ActionReset brings the subject's current window or period back to
	// the full limit.
	ActionReset AdjustmentAction = "Reset"
	// ActionGrant gives the subject extra units for the current period.
	ActionGrant AdjustmentAction = "Grant"
)

// TargetKind is the kind an adjustment targets.
// +kubebuilder:validation:Enum=UsageQuota;RateLimitPolicy
type TargetKind string

const (
	TargetUsageQuota      TargetKind = "UsageQuota"
	TargetRateLimitPolicy TargetKind = "RateLimitPolicy"
)

// AdjustmentTarget names the counters to change, in the adjustment's
// namespace.
// +kubebuilder:validation:XValidation:rule="(self.kind == 'RateLimitPolicy') == has(self.limit)",message="target.limit names the RateLimitPolicy's limit: it is required for a RateLimitPolicy, and only for it"
type AdjustmentTarget struct {
	// kind: UsageQuota or RateLimitPolicy.
	// +required
	Kind TargetKind `json:"kind"`
	// name of the UsageQuota or RateLimitPolicy.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`
	// limit is the name of the RateLimitPolicy's limit (all its rates).
	// +optional
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	Limit string `json:"limit,omitempty"`
}

// AdjustmentSubject is whose counters change: given by the values the
// sidecar keys them by, or by their hash alone.
// +kubebuilder:validation:XValidation:rule="!(has(self.values) && has(self.hash))",message="give the subject as values or as hash, not both"
type AdjustmentSubject struct {
	// values are the request's values for the limit's key sources, in
	// order (a quota has one: its subject, such as an API key). They are
	// kept in this object, readable by whoever may read it: for secrets,
	// give hash instead (kubectl quota computes it).
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=8
	// +kubebuilder:validation:items:MaxLength=1024
	Values []string `json:"values,omitempty"`
	// hash is the subject's hash as the store keys it and status shows
	// it: 32 lowercase hex digits.
	// +optional
	// +kubebuilder:validation:Pattern=`^[0-9a-f]{32}$`
	Hash string `json:"hash,omitempty"`
}

// QuotaAdjustmentSpec is one change to one subject's counters. It is
// applied once; it cannot be edited afterwards, only deleted.
// +kubebuilder:validation:XValidation:rule="(self.action == 'Grant') == has(self.units)",message="units is required for a Grant, and only for a Grant"
// +kubebuilder:validation:XValidation:rule="self.action != 'Grant' || self.target.kind == 'UsageQuota'",message="only a UsageQuota takes a Grant; a RateLimitPolicy limit can be Reset"
// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="a QuotaAdjustment cannot be changed once created; create another"
type QuotaAdjustmentSpec struct {
	// target is the UsageQuota, or the RateLimitPolicy limit, whose
	// counters change.
	// +required
	Target AdjustmentTarget `json:"target"`
	// subject whose counters change. Omitted: the one counter of a limit
	// that has no key.
	// +optional
	Subject AdjustmentSubject `json:"subject,omitempty"`
	// action: Reset brings the current window or period back to the full
	// limit; Grant adds units to what remains in the current period.
	// +required
	Action AdjustmentAction `json:"action"`
	// units a Grant adds, for the current period only.
	// +optional
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=9007199254740991
	Units int64 `json:"units,omitempty"`
	// reason is for the audit trail: a ticket, a note.
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	Reason string `json:"reason,omitempty"`
}

// AdjustedRate is one rate of the target before and after the
// adjustment. Used counts against limit; a grant is a credit, so used may
// go below 0 and remaining above the limit.
type AdjustedRate struct {
	// limit of the rate (the subject's override, for a quota).
	// +required
	// +kubebuilder:validation:Minimum=1
	Limit int64 `json:"limit"`
	// window of the rate, such as 1m; empty for a quota.
	// +optional
	// +kubebuilder:validation:MaxLength=32
	Window string `json:"window,omitempty"`
	// +required
	UsedBefore int64 `json:"usedBefore"`
	// +required
	UsedAfter int64 `json:"usedAfter"`
	// +required
	RemainingBefore int64 `json:"remainingBefore"`
	// +required
	RemainingAfter int64 `json:"remainingAfter"`
}

// Condition type and reasons of a QuotaAdjustment.
const (
	// ConditionApplied: the adjustment changed the counters (True), or why
	// it did not (False).
	ConditionApplied = "Applied"

	ReasonApplied        = "Applied"
	ReasonTargetNotFound = "TargetNotFound"
)

// QuotaAdjustmentStatus records the one application.
type QuotaAdjustmentStatus struct {
	// observedGeneration is the generation the conditions describe.
	// +optional
	// +kubebuilder:validation:Minimum=0
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// conditions: Applied.
	// +optional
	// +listType=map
	// +listMapKey=type
	// +kubebuilder:validation:MaxItems=4
	Conditions []metav1.Condition `json:"conditions,omitempty"`
	// appliedAt is when the store applied it, by the store's clock.
	// +optional
	AppliedAt *metav1.Time `json:"appliedAt,omitempty"`
	// subjectHash is the hash of the subject it applied to.
	// +optional
	// +kubebuilder:validation:MaxLength=32
	SubjectHash string `json:"subjectHash,omitempty"`
	// period is the quota period it applied to.
	// +optional
	Period *QuotaPeriod `json:"period,omitempty"`
	// rates are the target's rates before and after.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=4
	Rates []AdjustedRate `json:"rates,omitempty"`
}

// QuotaAdjustment resets a subject's counters, or grants it extra quota
// for the current period, exactly once. The object and its events are the
// audit trail; Kubernetes RBAC decides who may create one.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=qadj,categories=quotaops
// +kubebuilder:printcolumn:name="Action",type=string,JSONPath=`.spec.action`
// +kubebuilder:printcolumn:name="Kind",type=string,JSONPath=`.spec.target.kind`
// +kubebuilder:printcolumn:name="Target",type=string,JSONPath=`.spec.target.name`
// +kubebuilder:printcolumn:name="Units",type=integer,JSONPath=`.spec.units`
// +kubebuilder:printcolumn:name="Applied",type=string,JSONPath=`.status.conditions[?(@.type=="Applied")].status`
// +kubebuilder:printcolumn:name="Remaining",type=integer,JSONPath=`.status.rates[0].remainingAfter`
// +kubebuilder:printcolumn:name="Applied At",type=date,JSONPath=`.status.appliedAt`
// +kubebuilder:printcolumn:name="Message",type=string,priority=1,JSONPath=`.status.conditions[?(@.type=="Applied")].message`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type QuotaAdjustment struct {
	metav1.TypeMeta `json:",inline"`
	// +optional
	metav1.ObjectMeta `json:"metadata,omitempty"`
	// +required
	Spec QuotaAdjustmentSpec `json:"spec"`
	// +optional
	Status QuotaAdjustmentStatus `json:"status,omitempty"`
}

// QuotaAdjustmentList is a list of QuotaAdjustment.
// +kubebuilder:object:root=true
type QuotaAdjustmentList struct {
	metav1.TypeMeta `json:",inline"`
	// +optional
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []QuotaAdjustment `json:"items"`
}

func init() {
	knownTypes = append(knownTypes, &QuotaAdjustment{}, &QuotaAdjustmentList{})
}
