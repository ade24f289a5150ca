// Package usageapi serves usage.quotaops.dev/v1alpha1, an API the
// manager adds to the API server (an APIService) so that kubectl, and
// `kubectl quota`, read counters through it: the API server authenticates
// the caller and authorises the request with Kubernetes RBAC, per
// namespace, before forwarding it; the manager admits only what the API
// server forwards. Nobody outside needs the store's address or password.
//
// Resources, all namespaced:
//   - usagequotas (get): a UsageQuota's current period, read now.
//   - ratelimitpolicies (get, ?limit=): one limit's subjects, read now.
//   - checks (create): what named subjects would get now, consuming
//     nothing. Nothing is stored, as with a SubjectAccessReview.
//
// These are no CRDs: the manager serves them itself.
//
// +kubebuilder:skip
package usageapi

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/quotaops/quota-operator/api/v1alpha1"
)

// The API's group and version.
const (
	Group   = "usage.quotaops.dev"
	Version = "v1alpha1"
)

// QuotaUsage is a UsageQuota's usage this period, read from the store.
type QuotaUsage struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	// Limit is the quota's limit per subject (an override may differ).
	Limit  int64                `json:"limit"`
	Period v1alpha1.QuotaPeriod `json:"period"`
	Usage  v1alpha1.Usage       `json:"usage"`
}

// LimitUsage is the subjects with counters of one RateLimitPolicy limit,
// found by scanning the store (a rate limit keeps no index of them).
type LimitUsage struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Limit             string      `json:"limit"`
	Rates             []RateUsage `json:"rates"`
	// Subjects is how many subjects have counters in a current window.
	Subjects int64 `json:"subjects"`
	// Complete is false when the scan stopped at its bound: Subjects and
	// Top then cover part of the keyspace.
	Complete bool `json:"complete"`
	// Top is the subjects with the least remaining, by hash.
	Top []SubjectUsage `json:"top,omitempty"`
}

// SubjectUsage is one subject's state under its tightest rate.
type SubjectUsage struct {
	Subject string    `json:"subject"`
	Rate    RateUsage `json:"rate"`
}

// RateUsage is one rate: its limit and window and, for a subject, what is
// used and remaining in the current window.
type RateUsage struct {
	Limit     int64  `json:"limit"`
	Window    string `json:"window,omitempty"`
	Used      int64  `json:"used"`
	Remaining int64  `json:"remaining"`
}

// Check asks what subjects would get now without consuming.
type Check struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              CheckSpec   `json:"spec"`
	Status            CheckStatus `json:"status,omitempty"`
}

// MaxCheckLimits bounds one check, as a policy's limits are bounded.
const MaxCheckLimits = 16

// CheckSpec names the limits a request would meet, each with its subject
// by hash (kubectl quota hashes values on the client: raw keys never leave
// it) and cost. They are decided together, as one request.
type CheckSpec struct {
	Limits []CheckLimit `json:"limits"`
}

// CheckLimit is one limit and subject.
type CheckLimit struct {
	Target v1alpha1.AdjustmentTarget `json:"target"`
	// SubjectHash is the subject's hash (32 hex digits).
	SubjectHash string `json:"subjectHash"`
	// Cost is what the request would consume (default 1).
	Cost int64 `json:"cost,omitempty"`
}

// CheckStatus is the answer.
type CheckStatus struct {
	// Allowed: the request would pass now.
	Allowed bool          `json:"allowed"`
	Results []CheckResult `json:"results,omitempty"`
}

// CheckResult is one rate of one limit.
type CheckResult struct {
	// Limit indexes spec.limits.
	Limit   int       `json:"limit"`
	Allowed bool      `json:"allowed"`
	DryRun  bool      `json:"dryRun,omitempty"`
	Rate    RateUsage `json:"rate"`
	// ResetAfter is when the rate is back to its full limit, and ResetAt
	// that instant by the manager's clock, to the second (a fixed window's
	// end, a quota period's end).
	ResetAfter metav1.Duration `json:"resetAfter"`
	ResetAt    metav1.Time     `json:"resetAt"`
	// RetryAfter is when a denied request could pass; absent when it
	// never can (its cost is above the limit) or is allowed.
	RetryAfter *metav1.Duration `json:"retryAfter,omitempty"`
}
