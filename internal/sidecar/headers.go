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
func setHeaders(h http.Header, applied []Applied, d limiter.Decision) {
	var policies []string
	for _, r := range d.Results {
		if !r.DryRun {
			policies = append(policies, policyItem(applied, r))
		}
	}
	if len(policies) == 0 {
		return
	}
	by := d.By()
	reset := seconds(by.ResetAfter)
	h.Set("RateLimit-Policy", strings.Join(policies, ", "))
	h.Set("RateLimit", rateItemName(applied, by)+";r="+strconv.FormatInt(by.Remaining, 10)+";t="+reset)
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
		name += "-" + a.Limit.Rates[r.Rate].Window.String()
	}
	return strconv.Quote(name)
}

// seconds is d in whole seconds, rounded up.
func seconds(d time.Duration) string {
	return strconv.FormatInt(int64((d+time.Second-1)/time.Second), 10)
}
