// Package targets finds what an operator names by kind, object and limit
// (a UsageQuota, or one limit of a RateLimitPolicy) and one subject, as
// the limiter's Limit: the counters a QuotaAdjustment changes and the usage
// API reads are the ones the sidecars decide on.
package targets

import (
	"cmp"
	"context"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/quotaops/quota-operator/api/v1alpha1"
	"github.com/quotaops/quota-operator/internal/config"
	"github.com/quotaops/quota-operator/internal/limiter"
	"github.com/quotaops/quota-operator/internal/limits"
)

// Target is a named limit as the limiter sees it.
type Target struct {
	Limit limiter.Limit
	// Quota is set for a UsageQuota, and UsageQuota is the object it was
	// compiled from (its overrides name subjects in the usage shown).
	Quota      *config.Quota
	UsageQuota *v1alpha1.UsageQuota
	// Sources is how many values key the limit.
	Sources int
}

// MissingError is a target object that does not exist.
type MissingError struct{ Kind, Name string }

func (e *MissingError) Error() string { return fmt.Sprintf("%s %s does not exist", e.Kind, e.Name) }

// Resolve reads the target object from r and compiles it, with no subject.
func Resolve(ctx context.Context, r client.Reader, namespace string, t v1alpha1.AdjustmentTarget) (Target, error) {
	key := types.NamespacedName{Namespace: namespace, Name: t.Name}
	if t.Kind == v1alpha1.TargetUsageQuota {
		return quota(ctx, r, key)
	}
	return limit(ctx, r, key, t.Limit)
}

// Bind names the subject: its key values, or their hash. A quota subject
// with an override gets its own limit. field names the subject in errors.
func (t Target) Bind(s v1alpha1.AdjustmentSubject, field string) (Target, error) {
	if s.Hash == "" && len(s.Values) != t.Sources {
		return Target{}, fmt.Errorf("the target is keyed by %d values and %s gives %d", t.Sources, field, len(s.Values))
	}
	t.Limit.Key.Subject, t.Limit.Key.Hashed = s.Values, s.Hash
	if t.Quota != nil {
		if o, ok := limits.Override(t.Quota, t.Limit.Key.SubjectHash()); ok {
			t.Limit.Rates = []limiter.Rate{{Limit: o}}
		}
	}
	return t, nil
}

func quota(ctx context.Context, r client.Reader, key types.NamespacedName) (Target, error) {
	var q v1alpha1.UsageQuota
	if err := r.Get(ctx, key, &q); err != nil {
		return Target{}, notFound(err, "UsageQuota", key.Name)
	}
	doc, err := config.CompileUsageQuota(&q)
	if err != nil {
		return Target{}, fmt.Errorf("UsageQuota %s is invalid: %w", key.Name, err)
	}
	lim, err := limits.ForQuota(q.Namespace, doc)
	return Target{Limit: lim, Quota: doc.Quota, UsageQuota: &q, Sources: 1}, err
}

func limit(ctx context.Context, r client.Reader, key types.NamespacedName, name string) (Target, error) {
	var p v1alpha1.RateLimitPolicy
	if err := r.Get(ctx, key, &p); err != nil {
		return Target{}, notFound(err, "RateLimitPolicy", key.Name)
	}
	doc, err := config.CompileRateLimitPolicy(&p)
	if err != nil {
		return Target{}, fmt.Errorf("RateLimitPolicy %s is invalid: %w", key.Name, err)
	}
	for _, l := range doc.Limits {
		if l.Name != name {
			continue
		}
		lim, err := limits.ForLimit(p.Namespace, doc, l)
		return Target{Limit: lim, Sources: len(l.Key)}, err
	}
	return Target{}, fmt.Errorf("RateLimitPolicy %s has no limit %q", key.Name, name)
}

func notFound(err error, kind, name string) error {
	if apierrors.IsNotFound(err) {
		return &MissingError{Kind: kind, Name: name}
	}
	return err
}

// UsageStatus is a quota's usage as its status and QuotaQueries show
// it: subjects by hash, except those the spec names in overrides (they are
// no secret there), each with the units remaining under its own limit.
func UsageStatus(spec v1alpha1.UsageQuotaSpec, u limiter.Usage) *v1alpha1.Usage {
	named := make(map[string]v1alpha1.Override, len(spec.Overrides))
	for _, o := range spec.Overrides {
		named[config.OverrideHash(o)] = o
	}
	out := &v1alpha1.Usage{Subjects: u.Subjects, Consumed: u.Total}
	for _, c := range u.Top {
		shown, limit := c.Subject, spec.Limit
		if o, ok := named[c.Subject]; ok {
			shown, limit = cmp.Or(o.Subject, c.Subject), o.Limit
		}
		// A grant (QuotaAdjustment) is a credit: what counts against the
		// limit may be below 0, and what remains above the limit.
		out.Top = append(out.Top, v1alpha1.Consumer{Subject: shown, Used: max(0, c.Used), Remaining: max(0, limit-c.Used)})
	}
	return out
}
