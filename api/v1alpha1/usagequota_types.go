package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Period is the calendar period a quota resets on.
// +kubebuilder:validation:Enum=Hour;Day;Week;Month
type Period string

// SubjectSource is where a quota's consumer identity comes from.
// +kubebuilder:validation:Enum=Header;Query;ClientIP
type SubjectSource string

// Subject says where the consumer's identity comes from.
// +kubebuilder:validation:XValidation:rule="(self.source in ['Header', 'Query']) == has(self.name)",message="subject.name is required when source is Header or Query, and only then"
// +kubebuilder:validation:XValidation:rule="!has(self.ipv6PrefixLength) || self.source == 'ClientIP'",message="subject.ipv6PrefixLength applies to source ClientIP only"
type Subject struct {
	// source of the identity.
	// +required
	Source SubjectSource `json:"source"`
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

// Override gives one subject its own limit.
// +kubebuilder:validation:XValidation:rule="has(self.subject) != has(self.subjectHash)",message="set exactly one of subject (the raw identity) and subjectHash (its hash, from kubectl quota hash)"
type Override struct {
	// subject is the raw identity (an API key, a user name). The store and
	// metrics only ever see its hash; status shows it because it is listed
	// here. To keep a secret identity out of Git, give subjectHash instead.
	// +optional
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=256
	Subject string `json:"subject,omitempty"`
	// subjectHash is the subject's hash under the install's subject key, as
	// `kubectl quota hash VALUE` prints it: the override without the raw
	// identity. Status shows the hash.
	// +optional
	// +kubebuilder:validation:Pattern=`^[0-9a-f]{32}$`
	// +kubebuilder:validation:MaxLength=32
	SubjectHash string `json:"subjectHash,omitempty"`
	// limit for this subject per period.
	// +required
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=9007199254740991
	Limit int64 `json:"limit"`
}

// UsageQuotaSpec is the desired quota.
// +kubebuilder:validation:XValidation:rule="!has(self.costFrom) || self.costFrom.reserve <= self.limit && (!has(self.overrides) || self.overrides.all(o, o.limit >= self.costFrom.reserve))",message="costFrom.reserve must not be above the limit or any override's: such a request could never pass"
type UsageQuotaSpec struct {
	// selector picks the pods whose sidecars enforce this quota.
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
	// subject is the consumer the quota counts for.
	// +required
	Subject Subject `json:"subject"`
	// match selects the requests that count; empty matches all.
	// +optional
	Match *Match `json:"match,omitempty"`
	// feature names the quota for the sidecar's local API ("exports"), so
	// an app can consume it for actions that are not requests.
	// +optional
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	Feature string `json:"feature,omitempty"`
	// limit per subject per period.
	// +required
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=9007199254740991
	Limit int64 `json:"limit"`
	// costFrom charges what the response says a request cost, instead of
	// 1 unit a request.
	// +optional
	CostFrom *CostFrom `json:"costFrom,omitempty"`
	// period: Hour, Day, Week (ISO, from Monday) or Month, on the calendar
	// of timeZone.
	// +required
	Period Period `json:"period"`
	// timeZone is an IANA zone name such as Europe/Berlin.
	// +optional
	// +kubebuilder:default=UTC
	// +kubebuilder:validation:MaxLength=64
	// +kubebuilder:validation:Pattern=`^[A-Za-z][A-Za-z0-9_+-]*(/[A-Za-z0-9_+-]+)*$`
	TimeZone string `json:"timeZone,omitempty"`
	// maxSubjects bounds the subjects the quota tracks per period, so that
	// a flood of made-up identities cannot grow the store without end. A
	// new subject beyond the bound is denied (429), and not recorded, until
	// the next period; subjects already counted are not affected. The
	// SubjectsWithinBound condition turns False at 90%.
	// +optional
	// +kubebuilder:default=100000
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=10000000
	MaxSubjects int32 `json:"maxSubjects,omitempty"`
	// overrides give single subjects their own limit, each named once.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:XValidation:rule="self.all(a, self.exists_one(b, (has(a.subject) && has(b.subject) && a.subject == b.subject) || (has(a.subjectHash) && has(b.subjectHash) && a.subjectHash == b.subjectHash)))",message="each subject (and each subjectHash) may have one override only"
	Overrides []Override `json:"overrides,omitempty"`
}

// QuotaPeriod is the calendar period being counted: [start, end).
type QuotaPeriod struct {
	// +required
	Start metav1.Time `json:"start"`
	// +required
	End metav1.Time `json:"end"`
}

// Consumer is one subject's consumption in the period.
type Consumer struct {
	// subject is the SubjectHash of the identity, or the identity itself
	// when it is listed in overrides.
	// +required
	// +kubebuilder:validation:MaxLength=256
	Subject string `json:"subject"`
	// +required
	// +kubebuilder:validation:Minimum=0
	Used int64 `json:"used"`
	// +required
	// +kubebuilder:validation:Minimum=0
	Remaining int64 `json:"remaining"`
}

// Usage is the current period's consumption.
type Usage struct {
	// subjects is how many subjects consumed in the period.
	// +required
	// +kubebuilder:validation:Minimum=0
	Subjects int64 `json:"subjects"`
	// consumed is the units consumed by all subjects.
	// +required
	// +kubebuilder:validation:Minimum=0
	Consumed int64 `json:"consumed"`
	// top is the heaviest consumers, most first.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=10
	Top []Consumer `json:"top,omitempty"`
}

// UsageQuotaStatus is what the operator observed.
type UsageQuotaStatus struct {
	PolicyStatus `json:",inline"`
	// period is the calendar period being counted.
	// +optional
	Period *QuotaPeriod `json:"period,omitempty"`
	// usage is the period's consumption, refreshed on an interval.
	// +optional
	Usage *Usage `json:"usage,omitempty"`
}

// UsageQuota limits each subject's consumption per calendar period.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=uq,categories=quotaops
// +kubebuilder:printcolumn:name="Limit",type=integer,JSONPath=`.spec.limit`
// +kubebuilder:printcolumn:name="Period",type=string,JSONPath=`.spec.period`
// +kubebuilder:printcolumn:name="Used",type=integer,JSONPath=`.status.usage.consumed`
// +kubebuilder:printcolumn:name="Subjects",type=integer,JSONPath=`.status.usage.subjects`
// +kubebuilder:printcolumn:name="Programmed",type=string,JSONPath=`.status.conditions[?(@.type=="Programmed")].status`
// +kubebuilder:printcolumn:name="Enforced",type=string,JSONPath=`.status.conditions[?(@.type=="Enforced")].status`
// +kubebuilder:printcolumn:name="Pods",type=string,JSONPath=`.status.enforcedPods`
// +kubebuilder:printcolumn:name="Enforcement Status",type=string,priority=1,JSONPath=`.status.conditions[?(@.type=="Enforced")].message`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type UsageQuota struct {
	metav1.TypeMeta `json:",inline"`
	// +optional
	metav1.ObjectMeta `json:"metadata,omitempty"`
	// +required
	Spec UsageQuotaSpec `json:"spec"`
	// +optional
	Status UsageQuotaStatus `json:"status,omitempty"`
}

// UsageQuotaList is a list of UsageQuota.
// +kubebuilder:object:root=true
type UsageQuotaList struct {
	metav1.TypeMeta `json:",inline"`
	// +optional
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []UsageQuota `json:"items"`
}

func init() {
	knownTypes = append(knownTypes, &UsageQuota{}, &UsageQuotaList{})
}
