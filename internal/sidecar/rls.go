package sidecar

import (
	"context"
	"math"
	"net/netip"
	"slices"
	"time"

	"github.com/quotaops/quota-operator/internal/config"
	"github.com/quotaops/quota-operator/internal/limiter"
	"github.com/quotaops/quota-operator/internal/rls"
)

// rateLimitService answers Envoy's rate-limit protocol (DESIGN §5): the
// domain names a RateLimitPolicy (in a sidecar, of its namespace; in the
// gateway, "namespace/policy"); a descriptor's first entry's key names one
// of its limits, and the entries' values, in order, stand for that limit's
// key sources (a limit without a key takes one entry whose value is
// ignored). hits_addend is the cost. All the request's descriptors are
// decided together, as one request.
type rateLimitService struct {
	resolve Resolver
}

// Domain is what an RLS domain stands for: the config that holds its
// policy, the policy's name, and the enforcer that decides for it.
type Domain struct {
	Policies *Policies
	Policy   string
	Enforcer *Enforcer
}

// Resolver finds a domain. Its error, an rls.Status, answers the call: a
// domain the server may not serve is the caller's mistake, which Envoy's
// error stats and failure_mode_deny then show, not an unlimited OK.
type Resolver func(domain string) (Domain, error)

// NewRateLimitService is Envoy's rate-limit service over the domains
// resolve finds. A policy or limit its config lacks is answered OK, as
// Envoy skips a descriptor no rule matches.
func NewRateLimitService(resolve Resolver) rls.Handler {
	return (&rateLimitService{resolve: resolve}).ShouldRateLimit
}

// ownNamespace resolves a sidecar's domains: its namespace's policies.
func ownNamespace(src *Source, e *Enforcer) Resolver {
	return func(domain string) (Domain, error) {
		return Domain{Policies: src.Current(), Policy: domain, Enforcer: e}, nil
	}
}

// Bounds on one request, far above what Envoy sends (a few descriptors, of
// a few entries): a policy has at most 32 limits, each keyed by at most 8
// sources. Without them, one call with 200,000 descriptors stalled the
// sidecar and the shared Redis.
const (
	maxDescriptors = 64
	maxEntries     = 8
)

func checkBounds(req *rls.Request) error {
	if n := len(req.Descriptors); n > maxDescriptors {
		return rls.Errorf(rls.CodeInvalidArgument, "%d descriptors: at most %d per request", n, maxDescriptors)
	}
	for i, d := range req.Descriptors {
		if n := len(d.Entries); n > maxEntries {
			return rls.Errorf(rls.CodeInvalidArgument, "descriptor %d has %d entries: at most %d", i, n, maxEntries)
		}
	}
	return nil
}

func (s *rateLimitService) ShouldRateLimit(ctx context.Context, req *rls.Request) (*rls.Response, error) {
	if err := checkBounds(req); err != nil {
		return nil, err
	}
	statuses := make([]rls.DescriptorStatus, len(req.Descriptors))
	dom, err := s.resolve(req.Domain)
	if err != nil {
		return nil, err
	}
	applied, owners := bindDescriptors(dom, req, statuses)
	resp := &rls.Response{OverallCode: rls.OK, Statuses: statuses}
	if len(applied) == 0 {
		return resp, nil
	}
	v := dom.Enforcer.Check(ctx, applied)
	if v.Invalid != nil {
		// The caller's request, not the store: never the failure policy.
		return nil, &rls.Status{Code: rls.CodeInvalidArgument, Message: v.Invalid.Error()}
	}
	if v.StoreFailed {
		if v.Status != 0 {
			resp.OverallCode = rls.OverLimit
		}
		return resp, nil
	}
	if !v.Decision.Allowed {
		resp.OverallCode = rls.OverLimit
	}
	for _, r := range tightest(v.Decision) {
		for _, i := range owners[r.Limit] {
			statuses[i] = descriptorStatus(applied[r.Limit], r)
		}
	}
	return resp, nil
}

// bindDescriptors binds each descriptor to its limit, and sets its status
// to OK until decided. Descriptors that name one counter (the same limit
// and subject, which Envoy sends when two routes' actions match one
// request) become one limit whose cost is their hits added: each would
// count the request again, and a request must not name one counter twice.
// owners[i] are the descriptors applied[i] answers.
func bindDescriptors(dom Domain, req *rls.Request, statuses []rls.DescriptorStatus) (applied []Applied, owners [][]int) {
	for i, d := range req.Descriptors {
		statuses[i] = rls.DescriptorStatus{Code: rls.OK}
		a, ok := descriptorLimit(dom.Policies, dom.Policy, d.Entries, hits(req, d))
		if !ok {
			continue
		}
		// One domain is one policy: its limit and values name the counter.
		j := slices.IndexFunc(applied, func(b Applied) bool {
			return b.Name == a.Name && slices.Equal(b.Limit.Key.Subject, a.Limit.Key.Subject)
		})
		if j >= 0 {
			applied[j].Limit.Cost = min(applied[j].Limit.Cost+a.Limit.Cost, limiter.MaxValue)
			owners[j] = append(owners[j], i)
			continue
		}
		applied, owners = append(applied, a), append(owners, []int{i})
	}
	return applied, owners
}

// descriptorLimit binds a descriptor to its limit, if the policy and the
// descriptor name one that ps holds.
func descriptorLimit(ps *Policies, policy string, entries []rls.Entry, cost int64) (Applied, bool) {
	if ps == nil || len(entries) == 0 {
		return Applied{}, false
	}
	rule, ok := ps.Named(policy, entries[0].Key)
	if !ok || rule.kind != config.KindRateLimitPolicy {
		return Applied{}, false
	}
	var values []string
	if len(rule.key) > 0 {
		values = make([]string, 0, len(entries))
		if len(entries) != len(rule.key) {
			return Applied{}, false
		}
		for i, e := range entries {
			v := e.Value
			// An address from Envoy (remote_address) is keyed as the
			// proxy keys it: an IPv6 one by its prefix.
			if k := rule.key[i]; k.Source == "ClientIP" {
				if a, err := netip.ParseAddr(v); err == nil {
					v = k.ClientKey(a)
				}
			}
			values = append(values, v)
		}
	}
	a := rule.bind(values)
	if cost > 0 {
		a.Limit.Cost = cost
	}
	return a, true
}

func hits(req *rls.Request, d rls.Descriptor) int64 {
	n := uint64(req.HitsAddend)
	if d.HasHitsAddend {
		n = d.HitsAddend
	}
	return int64(min(n, limiter.MaxValue))
}

// tightest keeps, per limit, the rate that explains its answer: a denying
// enforced rate, else the one with the least remaining. A request names a
// few limits, so a scan beats a map.
func tightest(d limiter.Decision) []limiter.Result {
	out := make([]limiter.Result, 0, len(d.Results))
	for _, r := range d.Results {
		i := slices.IndexFunc(out, func(o limiter.Result) bool { return o.Limit == r.Limit })
		if i < 0 {
			out = append(out, r)
			continue
		}
		cur := out[i]
		if !r.Allowed && !r.DryRun && cur.Allowed || r.Allowed == cur.Allowed && r.Remaining < cur.Remaining {
			out[i] = r
		}
	}
	return out
}

func descriptorStatus(a Applied, r limiter.Result) rls.DescriptorStatus {
	st := rls.DescriptorStatus{
		Code:               rls.OK,
		CurrentLimit:       currentLimit(a.Name, r.Max, a.Limit.Rates[r.Rate].Window),
		LimitRemaining:     uint32(min(r.Remaining, math.MaxUint32)),
		DurationUntilReset: r.ResetAfter,
	}
	if !r.Allowed && !r.DryRun {
		st.Code = rls.OverLimit
	}
	return st
}

// currentLimit expresses a window in Envoy's units: the largest unit that
// divides it, with a multiplier.
func currentLimit(name string, max int64, window time.Duration) *rls.RateLimit {
	rl := &rls.RateLimit{Name: name, RequestsPerUnit: uint32(min(max, math.MaxUint32))}
	for _, u := range []struct {
		d    time.Duration
		unit rls.Unit
	}{{24 * time.Hour, rls.Day}, {time.Hour, rls.Hour}, {time.Minute, rls.Minute}, {time.Second, rls.Second}} {
		if window >= u.d && window%u.d == 0 {
			rl.Unit = u.unit
			if n := window / u.d; n > 1 {
				rl.UnitMultiplier = uint32(n)
			}
			return rl
		}
	}
	return rl
}
