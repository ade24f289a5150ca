package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/quotaops/quota-operator/api/v1alpha1"
	"github.com/quotaops/quota-operator/internal/limiter"
	"github.com/quotaops/quota-operator/internal/subject"
)

// kinds are the names a target's kind may go by, as kubectl accepts them.
var kinds = map[string]v1alpha1.TargetKind{
	"usagequota": v1alpha1.TargetUsageQuota, "usagequotas": v1alpha1.TargetUsageQuota, "uq": v1alpha1.TargetUsageQuota,
	"ratelimitpolicy": v1alpha1.TargetRateLimitPolicy, "ratelimitpolicies": v1alpha1.TargetRateLimitPolicy, "rlp": v1alpha1.TargetRateLimitPolicy,
}

// parseTarget reads "usagequota/NAME" or "ratelimitpolicy/NAME" (or their
// plurals and short names), with --limit for a policy.
func parseTarget(arg, limit string) (v1alpha1.AdjustmentTarget, error) {
	kindName, name, ok := strings.Cut(arg, "/")
	kind, known := kinds[strings.ToLower(strings.TrimSuffix(kindName, ".policy.quotaops.dev"))]
	if !ok || !known || name == "" {
		return v1alpha1.AdjustmentTarget{}, fmt.Errorf("%q: name a usagequota/NAME or a ratelimitpolicy/NAME", arg)
	}
	t := v1alpha1.AdjustmentTarget{Kind: kind, Name: name, Limit: limit}
	switch {
	case kind == v1alpha1.TargetRateLimitPolicy && limit == "":
		return t, fmt.Errorf("ratelimitpolicy/%s: name one of its limits with --limit", name)
	case kind == v1alpha1.TargetUsageQuota && limit != "":
		return t, fmt.Errorf("usagequota/%s has no limits to name: drop --limit", name)
	}
	return t, nil
}

// subjectFlags name a subject by its values (hashed here) or its hash.
type subjectFlags struct {
	values []string
	hash   string
}

func (s *subjectFlags) bind(cmd *cobra.Command) {
	cmd.Flags().StringArrayVar(&s.values, "subject", nil, "the subject's key value; repeat it, in the limit's key order, for a key of several sources. Hashed here: the value never leaves this machine")
	cmd.Flags().StringVar(&s.hash, "subject-hash", "", "the subject's hash, as status, metrics and `kubectl quota usage` show it")
}

// subjectHash is the hash the store keys the subject by.
func (s *subjectFlags) subjectHash() (string, error) {
	switch {
	case len(s.values) > 0 && s.hash != "":
		return "", fmt.Errorf("give --subject or --subject-hash, not both")
	case s.hash != "":
		if !subject.IsHash(s.hash) {
			return "", fmt.Errorf("--subject-hash %q: 32 lowercase hex digits", s.hash)
		}
		return s.hash, nil
	case len(s.values) > 0:
		return limiter.SubjectHash(s.values), nil
	}
	return "", fmt.Errorf("name the subject with --subject (or --subject-hash)")
}
