package main

import (
	"context"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

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
	values  []string
	hash    string
	keyFile string
}

// storeSecret is the Secret the operator keeps in each namespace with
// sidecars; it holds the install's subject key, under
// subject.SecretKey.
const storeSecret = "quota-operator-store"

func (s *subjectFlags) bind(cmd *cobra.Command) {
	cmd.Flags().StringVar(&s.keyFile, "subject-key-file", os.Getenv("QUOTA_SUBJECT_KEY_FILE"), "file holding the install's subject key, to hash --subject values as sidecars do (default: read from the namespace's Secret "+storeSecret+")")
	cmd.Flags().StringArrayVar(&s.values, "subject", nil, "the subject's key value; repeat it, in the limit's key order, for a key of several sources. Hashed here: the value never leaves this machine")
	cmd.Flags().StringVar(&s.hash, "subject-hash", "", "the subject's hash, as status, metrics and `kubectl quota usage` show it")
}

// useKey keys this process's subject hashes with the install's key, from
// --subject-key-file or else the namespace's store Secret, which the
// sidecars there mount. A hash under any other key names no counter.
func (s *subjectFlags) useKey(ctx context.Context, cl client.Reader, ns string) error {
	if s.keyFile != "" {
		raw, err := os.ReadFile(s.keyFile)
		if err != nil {
			return fmt.Errorf("--subject-key-file: %w", err)
		}
		subject.UseKey([]byte(strings.TrimRight(string(raw), "\r\n")))
		return nil
	}
	var sec corev1.Secret
	err := cl.Get(ctx, client.ObjectKey{Namespace: ns, Name: storeSecret}, &sec)
	if err == nil && len(sec.Data[subject.SecretKey]) == 0 {
		err = fmt.Errorf("it has no key %q", subject.SecretKey)
	}
	if err != nil {
		// Not wrapped: the API's error would be printed in place of this
		// one, which says what to do.
		return fmt.Errorf("hashing a subject needs the install's subject key, from the Secret %s/%s (%s): give --subject-key-file, or name the subject by --subject-hash", ns, storeSecret, err.Error())
	}
	subject.UseKey(sec.Data[subject.SecretKey])
	return nil
}

// subjectHash is the hash the store keys the subject by.
func (s *subjectFlags) subjectHash(ctx context.Context, cl client.Reader, ns string) (string, error) {
	switch {
	case len(s.values) > 0 && s.hash != "":
		return "", fmt.Errorf("give --subject or --subject-hash, not both")
	case s.hash != "":
		if !subject.IsHash(s.hash) {
			return "", fmt.Errorf("--subject-hash %q: 32 lowercase hex digits", s.hash)
		}
		return s.hash, nil
	case len(s.values) > 0:
		if err := s.useKey(ctx, cl, ns); err != nil {
			return "", err
		}
		return limiter.SubjectHash(s.values), nil
	}
	return "", fmt.Errorf("name the subject with --subject (or --subject-hash)")
}
