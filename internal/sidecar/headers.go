package sidecar

import (
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/quotaops/quota-operator/internal/limiter"
)

// setHeaders writes the rate-limit headers of a decision: the IETF draft's
// RateLimit-Policy (every enforced rate) and RateLimit (the deciding one),
// X-RateLimit-Limit/Remaining/Reset for older clients, and Retry-After on a
// denial. DryRun limits add no headers: they must not change what clients
// see.
func setHeaders(h http.Header, applied []Applied, d limiter.Decision) bool {
	var policies []string
	for _, r := range d.Results {
		if !r.DryRun {
			policies = append(policies, policyItem(applied, r))
		}
	}
	if len(policies) == 0 {
		return false
	}
	by := d.By()
	reset := seconds(by.ResetAfter)
	setExact(h, "RateLimit-Policy", strings.Join(policies, ", "))
	setExact(h, "RateLimit", rateItemName(applied, by)+";r="+strconv.FormatInt(by.Remaining, 10)+";t="+reset)
	h.Set("X-RateLimit-Limit", strconv.FormatInt(by.Max, 10))
	h.Set("X-RateLimit-Remaining", strconv.FormatInt(by.Remaining, 10))
	h.Set("X-RateLimit-Reset", reset)
	if !d.Allowed {
		wait := by.RetryAfter
		if wait == limiter.Never {
			wait = by.ResetAfter
		}
		h.Set("Retry-After", seconds(max(wait, time.Second)))
	}
	return true
}

// limitHeaders are the names setHeaders sets on an allowed request's
// response. An upstream's arrive in Go's canonical spelling, which Del
// finds whatever spelling it is given.
var limitHeaders = []string{"RateLimit-Policy", "RateLimit", "X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset"}

// headersSet marks a request whose response already carries the sidecar's
// rate-limit headers.
type headersSet struct{}

// dropUpstreamLimitHeaders removes the upstream's own rate-limit headers
// from resp when the sidecar set its own on the request's response: the
// reverse proxy adds the upstream's to those already set, and a client
// would see two of each. Without a limit of the sidecar's, the app's
// headers pass.
func dropUpstreamLimitHeaders(resp *http.Response) error {
	if resp.Request == nil || resp.Request.Context().Value(headersSet{}) == nil {
		return nil
	}
	for _, name := range limitHeaders {
		resp.Header.Del(name)
	}
	return nil
}

// readResponse is the proxy's look at each response before it goes out:
// it drops the upstream's rate-limit headers where the sidecar set its own,
// and reads the cost of a request whose limits take it from the response.
func readResponse(resp *http.Response) error {
	if err := dropUpstreamLimitHeaders(resp); err != nil {
		return err
	}
	if resp.Request != nil {
		if pc, ok := resp.Request.Context().Value(costKey{}).(*pendingCost); ok {
			pc.readResponse(resp)
		}
	}
	return nil
}

// setExact sets a header spelled as the IETF draft spells it
// ("RateLimit"), not in Go's canonical form ("Ratelimit"), replacing any
// spelling of it the upstream sent. HTTP/2 sends every name in lower case
// anyway. Go code reading the header must then index the map with that
// spelling: Header.Get canonicalizes. The older X-RateLimit-* headers,
// which no specification spells, stay canonical.
func setExact(h http.Header, name, value string) {
	h.Del(name)
	h[name] = []string{value}
}

// policyItem is `"name";q=limit;w=window-seconds` (no w for a calendar
// quota, whose periods differ in length).
func policyItem(applied []Applied, r limiter.Result) string {
	item := rateItemName(applied, r) + ";q=" + strconv.FormatInt(r.Max, 10)
	lim := applied[r.Limit].Limit
	if lim.Algorithm != limiter.Quota {
		item += ";w=" + seconds(lim.Rates[r.Rate].Window)
	}
	return item
}

// rateItemName names a rate: the limit's name, with its window when the
// limit has several rates ("per-ip-1s"); a quota without a feature goes by
// its object's name.
func rateItemName(applied []Applied, r limiter.Result) string {
	a := applied[r.Limit]
	name := a.Name
	if name == "" {
		name = a.Policy
	}
	if len(a.Limit.Rates) > 1 {
		name += "-" + windowText(a.Limit.Rates[r.Rate].Window)
	}
	return strconv.Quote(name)
}

// windowText writes a window as a person would: in the largest unit of
// h, m and s that divides it ("1h", "90m", "45s"), not as Go's "1h0m0s".
func windowText(d time.Duration) string {
	for _, u := range []struct {
		unit time.Duration
		name string
	}{{time.Hour, "h"}, {time.Minute, "m"}, {time.Second, "s"}} {
		if d >= u.unit && d%u.unit == 0 {
			return strconv.FormatInt(int64(d/u.unit), 10) + u.name
		}
	}
	return d.String()
}

// seconds is d in whole seconds, rounded up.
func seconds(d time.Duration) string {
	return strconv.FormatInt(int64((d+time.Second-1)/time.Second), 10)
}
