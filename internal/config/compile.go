package config

import (
	"errors"
	"net/textproto"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/quotaops/quota-operator/api/v1alpha1"
	"github.com/quotaops/quota-operator/internal/subject"
)

// CompileRateLimitPolicy checks what the schema cannot and compiles p.
// Errors name the field at fault.
func CompileRateLimitPolicy(p *v1alpha1.RateLimitPolicy) (*Policy, error) {
	spec := field.NewPath("spec")
	errs := checkSelector(&p.Spec.Selector, spec.Child("selector"))
	out := header(KindRateLimitPolicy, p.ObjectMeta, p.Spec.Selector, p.Spec.Enforcement, p.Spec.FailurePolicy)
	for i, l := range p.Spec.Limits {
		limit, lerrs := compileLimit(l, spec.Child("limits").Index(i))
		errs = append(errs, lerrs...)
		out.Limits = append(out.Limits, limit)
	}
	if len(errs) > 0 {
		return nil, errs.ToAggregate()
	}
	return out, nil
}

// CompileUsageQuota checks what the schema cannot (the time zone) and
// compiles q, hashing override subjects.
func CompileUsageQuota(q *v1alpha1.UsageQuota) (*Policy, error) {
	spec := field.NewPath("spec")
	errs := checkSelector(&q.Spec.Selector, spec.Child("selector"))
	zone := q.Spec.TimeZone
	if zone == "" {
		zone = "UTC"
	}
	if _, err := time.LoadLocation(zone); err != nil {
		errs = append(errs, field.Invalid(spec.Child("timeZone"), zone, "not an IANA time zone"))
	}
	if !validPeriod(q.Spec.Period) {
		errs = append(errs, field.NotSupported(spec.Child("period"), q.Spec.Period, []string{"Hour", "Day", "Week", "Month"}))
	}
	var costFrom *CostFrom
	if q.Spec.CostFrom != nil {
		var cerrs field.ErrorList
		costFrom, cerrs = compileCostFrom(q.Spec.CostFrom, spec.Child("costFrom"))
		errs = append(errs, cerrs...)
	}
	if len(errs) > 0 {
		return nil, errs.ToAggregate()
	}
	out := header(KindUsageQuota, q.ObjectMeta, q.Spec.Selector, q.Spec.Enforcement, q.Spec.FailurePolicy)
	out.Quota = &Quota{
		Subject:  KeySource{Source: string(q.Spec.Subject.Source), Name: q.Spec.Subject.Name, IPv6Prefix: int(q.Spec.Subject.IPv6PrefixLength)},
		Match:    compileMatch(q.Spec.Match),
		Feature:  q.Spec.Feature,
		Limit:    q.Spec.Limit,
		Period:   string(q.Spec.Period),
		TimeZone: zone,
		// The schema defaults it; objects stored before the field existed
		// get the same default from Bound.
		MaxSubjects: int64(q.Spec.MaxSubjects),
		CostFrom:    costFrom,
	}
	for _, o := range q.Spec.Overrides {
		out.Quota.Overrides = append(out.Quota.Overrides, Override{SubjectHash: OverrideHash(o), Limit: o.Limit})
	}
	return out, nil
}

// OverrideHash is the hash an override names its subject by: the one it
// gives, or its raw subject's.
func OverrideHash(o v1alpha1.Override) string {
	if o.SubjectHash != "" {
		return o.SubjectHash
	}
	return subject.Hash(o.Subject)
}

func header(kind string, meta metav1.ObjectMeta, sel metav1.LabelSelector, e v1alpha1.Enforcement, f v1alpha1.FailurePolicy) *Policy {
	return &Policy{
		Schema: Schema, Kind: kind, Namespace: meta.Namespace, Name: meta.Name, Generation: meta.Generation,
		Selector: *sel.DeepCopy(), DryRun: e == v1alpha1.DryRun, FailClosed: f == v1alpha1.FailClosed,
	}
}

func checkSelector(sel *metav1.LabelSelector, path *field.Path) field.ErrorList {
	if _, err := metav1.LabelSelectorAsSelector(sel); err != nil {
		return field.ErrorList{field.Invalid(path, sel, err.Error())}
	}
	return nil
}

func validPeriod(p v1alpha1.Period) bool {
	switch p {
	case "Hour", "Day", "Week", "Month":
		return true
	}
	return false
}

func compileLimit(l v1alpha1.Limit, path *field.Path) (Limit, field.ErrorList) {
	out := Limit{Name: l.Name, Match: compileMatch(l.Match), Algorithm: string(l.Algorithm), Cost: l.Cost,
		DenyMissingKey: l.WhenKeyMissing == v1alpha1.KeyMissingDeny}
	if out.Algorithm == "" {
		out.Algorithm = string(v1alpha1.FixedWindow)
	}
	if out.Cost == 0 {
		out.Cost = 1
	}
	var errs field.ErrorList
	if l.CostFrom != nil {
		cpath := path.Child("costFrom")
		if l.Cost > 1 {
			errs = append(errs, field.Invalid(path.Child("cost"), l.Cost, "cost and costFrom are exclusive: with costFrom the response says the cost"))
		}
		var cerrs field.ErrorList
		out.CostFrom, cerrs = compileCostFrom(l.CostFrom, cpath)
		errs = append(errs, cerrs...)
		if out.CostFrom != nil {
			out.Cost = out.CostFrom.Reserve
		}
	}
	for _, k := range l.Key {
		out.Key = append(out.Key, KeySource{Source: string(k.Source), Name: k.Name, IPv6Prefix: int(k.IPv6PrefixLength)})
	}
	for i, r := range l.Rates {
		ms, err := windowMillis(r.Window)
		if err != nil {
			errs = append(errs, field.Invalid(path.Child("rates").Index(i).Child("window"), r.Window, err.Error()))
		}
		out.Rates = append(out.Rates, Rate{Limit: r.Limit, WindowMs: ms})
	}
	return out, errs
}

// compileCostFrom checks what the schema checks too (objects from
// --policy-file never met it).
func compileCostFrom(c *v1alpha1.CostFrom, path *field.Path) (*CostFrom, field.ErrorList) {
	out := &CostFrom{Header: textproto.CanonicalMIMEHeaderKey(c.ResponseHeader), JSONPointer: c.ResponseJSONPointer, Reserve: c.Reserve}
	if out.Reserve == 0 {
		out.Reserve = 1
	}
	if err := out.validate(path); err != nil {
		return out, field.ErrorList{err}
	}
	return out, nil
}

// validate refuses a costFrom the sidecar could not read: compiling a
// CR and decoding a document (Decode) check the same rules. path is the
// costFrom's, so messages name the CR's fields.
func (c *CostFrom) validate(path *field.Path) *field.Error {
	switch {
	case (c.Header == "") == (c.JSONPointer == ""):
		return field.Required(path, "set exactly one of responseHeader and responseJSONPointer")
	case c.Header != "" && !validHeaderName(c.Header):
		return field.Invalid(path.Child("responseHeader"), c.Header, "not a header name")
	case c.Reserve < 1 || c.Reserve > maxCost:
		return field.Invalid(path.Child("reserve"), c.Reserve, "must be between 1 and 1000000000")
	case c.JSONPointer != "":
		if _, err := ParsePointer(c.JSONPointer); err != nil {
			return field.Invalid(path.Child("responseJSONPointer"), c.JSONPointer, err.Error())
		}
	}
	return nil
}

// maxCost bounds a cost and a reserve, as the schema does.
const maxCost = 1_000_000_000

// validHeaderName: an RFC 9110 token.
func validHeaderName(s string) bool {
	if s == "" || len(s) > 256 {
		return false
	}
	for _, r := range s {
		if !tokenChar(r) {
			return false
		}
	}
	return true
}

// tokenChar: a character of a header name, as the schema's pattern allows.
func tokenChar(r rune) bool {
	switch {
	case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
		return true
	}
	return strings.ContainsRune("!#$%&'*+-.^_|~", r)
}

// windowMillis reads a window, which must be a whole number of
// milliseconds between 1s and 168h (the schema says so too; objects from
// --policy-file never met the schema).
func windowMillis(s string) (int64, error) {
	d, err := time.ParseDuration(s)
	switch {
	case err != nil:
		return 0, errors.New("not a duration such as 1s, 1m or 1h30m")
	case d < time.Second || d > 168*time.Hour:
		return 0, errors.New("must be between 1s and 168h")
	case d%time.Millisecond != 0:
		return 0, errors.New("must be a whole number of milliseconds")
	}
	return d.Milliseconds(), nil
}

func compileMatch(m *v1alpha1.Match) Match {
	if m == nil {
		return Match{}
	}
	out := Match{PathPrefix: m.PathPrefix}
	for _, method := range m.Methods {
		out.Methods = append(out.Methods, strings.ToUpper(string(method)))
	}
	for _, h := range m.Headers {
		out.Headers = append(out.Headers, HeaderMatch{Name: textproto.CanonicalMIMEHeaderKey(h.Name), Value: h.Value})
	}
	return out
}
