// Package sidecar enforces RateLimitPolicies and UsageQuotas in front of an
// app: it matches each request against the compiled config of its
// namespace, builds the limits that apply and asks the limiter for one
// decision.
package sidecar

import (
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"path"
	"slices"
	"sort"
	"strconv"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/quotaops/quota-operator/internal/config"
	"github.com/quotaops/quota-operator/internal/limiter"
	"github.com/quotaops/quota-operator/internal/limits"
)

// Policies is the config a sidecar enforces: the policies of its namespace
// whose selector matches its pod's labels, ready to match requests. It is
// immutable; a new config builds a new Policies.
type Policies struct {
	namespace string
	list      []*policy
	// Revision is the store's config revision it was built from (0 for a
	// policy file).
	Revision int64
}

type policy struct {
	doc    *config.Policy
	limits []*limitRule
}

// limitRule is one limit (or a quota) as the sidecar applies it.
type limitRule struct {
	policy, name string // the policy and the limit (or the quota's feature)
	kind         string // config.KindRateLimitPolicy or config.KindUsageQuota
	match        config.Match
	key          []config.KeySource
	template     limiter.Limit
	overrides    map[string]int64 // quota: subject hash → limit
	failClosed   bool
	// localOnly: a feature quota without a match counts what the app
	// consumes through the local API ("5 exports a day"), not every
	// request through the proxy.
	localOnly bool
	// denyMissing: whenKeyMissing Deny.
	denyMissing bool
	// cost, when set, says where the response gives the real cost;
	// template.Cost is the reserve.
	cost *costSpec
}

// NewPolicies selects and prepares docs for a pod with podLabels.
func NewPolicies(namespace string, podLabels map[string]string, revision int64, docs []*config.Policy) (*Policies, error) {
	return newPolicies(namespace, revision, docs, func(d *config.Policy) (bool, error) {
		sel, err := metav1.LabelSelectorAsSelector(&d.Selector)
		if err != nil {
			return false, fmt.Errorf("%s: selector: %w", d.ID(), err)
		}
		return sel.Matches(labels.Set(podLabels)), nil
	})
}

// AllPolicies prepares every policy of docs, whatever its selector: a
// gateway has no pod, and its domains name their policy.
func AllPolicies(namespace string, revision int64, docs []*config.Policy) (*Policies, error) {
	return newPolicies(namespace, revision, docs, everyPolicy)
}

func everyPolicy(*config.Policy) (bool, error) { return true, nil }

func newPolicies(namespace string, revision int64, docs []*config.Policy, keep func(*config.Policy) (bool, error)) (*Policies, error) {
	out := &Policies{namespace: namespace, Revision: revision}
	sort.Slice(docs, func(i, j int) bool { return docs[i].ID() < docs[j].ID() })
	for _, d := range docs {
		if ok, err := keep(d); err != nil || !ok {
			if err != nil {
				return nil, err
			}
			continue
		}
		p, err := newPolicy(namespace, d)
		if err != nil {
			return nil, err
		}
		out.list = append(out.list, p)
	}
	return out, nil
}

// eachCost calls fn with every limit (or quota) that reads its cost from
// the response.
func (ps *Policies) eachCost(fn func(policy, limit string)) {
	for _, p := range ps.list {
		for _, l := range p.limits {
			if l.cost != nil {
				fn(l.policy, l.name)
			}
		}
	}
}

// Len is the number of policies that apply to this pod.
func (ps *Policies) Len() int { return len(ps.list) }

func newPolicy(namespace string, d *config.Policy) (*policy, error) {
	p := &policy{doc: d}
	if d.Quota != nil {
		r, err := quotaRule(namespace, d)
		if err != nil {
			return nil, err
		}
		p.limits = append(p.limits, r)
		return p, nil
	}
	for _, l := range d.Limits {
		lim, err := limits.ForLimit(namespace, d, l)
		if err != nil {
			return nil, err
		}
		cost, err := newCostSpec(l.CostFrom)
		if err != nil {
			return nil, fmt.Errorf("%s: limit %s: costFrom: %w", d.ID(), l.Name, err)
		}
		p.limits = append(p.limits, &limitRule{policy: d.Name, name: l.Name, kind: d.Kind, match: l.Match, key: l.Key, failClosed: d.FailClosed,
			denyMissing: l.DenyMissingKey, template: lim, cost: cost})
	}
	return p, nil
}

func quotaRule(namespace string, d *config.Policy) (*limitRule, error) {
	lim, err := limits.ForQuota(namespace, d)
	if err != nil {
		return nil, err
	}
	q := d.Quota
	cost, err := newCostSpec(q.CostFrom)
	if err != nil {
		return nil, fmt.Errorf("%s: costFrom: %w", d.ID(), err)
	}
	r := &limitRule{policy: d.Name, name: q.Feature, kind: d.Kind, match: q.Match, key: []config.KeySource{q.Subject}, failClosed: d.FailClosed,
		overrides: make(map[string]int64, len(q.Overrides)), localOnly: q.Feature != "" && q.Match.Empty(), template: lim, cost: cost}
	for _, o := range q.Overrides {
		r.overrides[o.SubjectHash] = o.Limit
	}
	return r, nil
}

// Applied is one limit that a request matched, bound to its subject.
type Applied struct {
	Policy, Name, Kind string
	FailClosed         bool
	Limit              limiter.Limit
	// cost, when set, says where the response gives the real cost.
	cost *costSpec
}

// Match returns the limits that apply to r, each bound to the request's
// values for its key. A limit whose key names a header or query parameter
// the request lacks does not apply (as Envoy skips such a descriptor),
// unless it says whenKeyMissing: Deny. A key the request gives more than
// one value for, or hides in a query Go cannot parse, is a *KeyError
// (400): the sidecar and the app could read different subjects. DryRun
// limits, which never deny, skip such a request instead.
func (ps *Policies) Match(r *http.Request, client netip.Addr) ([]Applied, error) {
	var out []Applied
	for _, p := range ps.list {
		for _, l := range p.limits {
			if l.localOnly || !matches(l.match, r) {
				continue
			}
			values, problem := keyValues(l.key, r, client)
			switch {
			case problem == nil:
				out = append(out, l.bind(values))
			case l.template.DryRun:
			case problem.missing && !l.denyMissing:
			default:
				problem.Policy, problem.Kind, problem.Limit = l.policy, l.kind, l.name
				return nil, problem
			}
		}
	}
	return out, nil
}

// KeyError is a request whose key a limit cannot read: Status 400 when it
// is ambiguous, 429 when it is missing and the limit denies such requests.
type KeyError struct {
	Policy, Kind, Limit string
	Status              int
	// what is the source, as "header X-Api-Key"; why, what is wrong.
	what, why string
	missing   bool
}

func (e *KeyError) Error() string {
	if e.missing {
		return fmt.Sprintf("%s is missing: limit %s of %s %s denies requests without it", e.what, e.Limit, e.Kind, e.Policy)
	}
	return fmt.Sprintf("%s %s: limit %s of %s %s counts by it, and the app could read another value", e.what, e.why, e.Limit, e.Kind, e.Policy)
}

// bind fills the rule's limit with the subject and, for a quota, the
// subject's override.
func (l *limitRule) bind(values []string) Applied {
	lim := l.template
	lim.Key.Subject = values
	if l.overrides != nil {
		if o, ok := l.overrides[limiter.SubjectHash(values)]; ok {
			lim.Rates = []limiter.Rate{{Limit: o}}
		}
	}
	return Applied{Policy: l.policy, Name: l.name, Kind: l.kind, FailClosed: l.failClosed, Limit: lim, cost: l.cost}
}

func matches(m config.Match, r *http.Request) bool {
	if len(m.Methods) > 0 && !slices.Contains(m.Methods, r.Method) {
		return false
	}
	if m.PathPrefix != "" && !strings.HasPrefix(cleanPath(r.URL.Path), m.PathPrefix) {
		return false
	}
	for _, h := range m.Headers {
		v, ok := r.Header[h.Name]
		if !ok || h.Value != "" && (len(v) == 0 || v[0] != h.Value) {
			return false
		}
	}
	return true
}

// cleanPath is the path as the app will most likely read it: doubled
// slashes collapsed, "." and ".." resolved, a trailing slash kept. Matching
// the raw path let //api/login, /./api/login and /x/../api/login pass a
// limit on /api/. The request goes on to the app as it came.
func cleanPath(p string) string {
	if p == "" {
		return "/"
	}
	c := path.Clean(p)
	if strings.HasSuffix(p, "/") && c != "/" {
		c += "/"
	}
	return c
}

// keyValues reads the request's values for a limit's key sources, or why
// it cannot.
func keyValues(key []config.KeySource, r *http.Request, client netip.Addr) ([]string, *KeyError) {
	values := make([]string, 0, len(key))
	for _, k := range key {
		var v string
		switch k.Source {
		case "ClientIP":
			v = k.ClientKey(client)
		case "Method":
			v = r.Method
		case "Path":
			v = cleanPath(r.URL.Path)
		case "Header":
			var err *KeyError
			if v, err = oneValue("header "+k.Name, r.Header.Values(k.Name)); err != nil {
				return nil, err
			}
		case "Query":
			what := "query parameter " + k.Name
			q, perr := url.ParseQuery(r.URL.RawQuery)
			if perr != nil {
				return nil, &KeyError{Status: http.StatusBadRequest, what: what, why: "is in a query that cannot be parsed (" + perr.Error() + ")"}
			}
			var err *KeyError
			if v, err = oneValue(what, q[k.Name]); err != nil {
				return nil, err
			}
		default:
			return nil, &KeyError{Status: http.StatusBadRequest, what: "source " + k.Source, why: "is unknown"}
		}
		values = append(values, v)
	}
	return values, nil
}

// oneValue is the one value a request gave for the source what, or why
// there is not one.
func oneValue(what string, values []string) (string, *KeyError) {
	switch len(values) {
	case 0:
		return "", &KeyError{Status: http.StatusTooManyRequests, what: what, missing: true}
	case 1:
		return values[0], nil
	}
	return "", &KeyError{Status: http.StatusBadRequest, what: what, why: "appears " + strconv.Itoa(len(values)) + " times"}
}

// Named finds a limit of a RateLimitPolicy by policy and limit name, or a
// UsageQuota by its name or feature (limit empty), for the local API.
func (ps *Policies) Named(policy, limit string) (*limitRule, bool) {
	for _, p := range ps.list {
		for _, l := range p.limits {
			switch {
			case l.kind == config.KindRateLimitPolicy && l.policy == policy && l.name == limit && limit != "":
				return l, true
			case l.kind == config.KindUsageQuota && limit == "" && (l.policy == policy || l.name == policy && l.name != ""):
				return l, true
			}
		}
	}
	return nil, false
}
