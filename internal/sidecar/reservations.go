package sidecar

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/quotaops/quota-operator/internal/limiter"
)

// Reservations of the local API: an app reserves units of a limit or quota
// before work whose cost it learns only at the end (POST .../reserve), and
// settles them once with what it cost (POST .../settle). A reservation is
// kept in the sidecar's memory until its TTL ends; one never settled stays
// charged, as does one a restart of the sidecar forgot.
const (
	reservationTTL    = 10 * time.Minute
	maxReservationTTL = 24 * time.Hour
	// maxReservations bounds the open and settled reservations a sidecar
	// remembers, so an app cannot grow its memory without end.
	maxReservations = 100_000
)

type reservation struct {
	// route is the policy and limit (or quota) its path named: a settle
	// must name the same.
	route   string
	d       limiter.Decision
	applied Applied
	expires time.Time
	// settled is set once it was settled, with the units it was settled
	// at: a replay changes nothing and says so.
	settled bool
	units   int64
}

// reservations are a sidecar's open and settled reservations by id.
type reservations struct {
	mu  sync.Mutex
	all map[string]*reservation
}

// add keeps r under a new id; false when the table is full.
func (rs *reservations) add(r *reservation, now time.Time) (string, bool) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if rs.all == nil {
		rs.all = map[string]*reservation{}
	}
	if len(rs.all) >= maxReservations {
		for id, old := range rs.all {
			if !now.Before(old.expires) {
				delete(rs.all, id)
			}
		}
		if len(rs.all) >= maxReservations {
			return "", false
		}
	}
	var b [16]byte
	_, _ = rand.Read(b[:])
	id := hex.EncodeToString(b[:])
	rs.all[id] = r
	return id, true
}

// take returns the reservation id names, of policy's limit name, while it
// is open, and marks it settled at units; a settled one is returned with
// ok false, an unknown or expired one as nil.
func (rs *reservations) take(id, policy, name string, units int64, now time.Time) (r *reservation, ok bool) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	r = rs.all[id]
	switch {
	case r == nil || r.route != policy+"/"+name:
		return nil, false
	case !now.Before(r.expires):
		delete(rs.all, id)
		return nil, false
	case r.settled:
		return r, false
	}
	r.settled, r.units = true, units
	return r, true
}

// reopen undoes take when the store did not take the settle.
func (rs *reservations) reopen(r *reservation) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	r.settled, r.units = false, 0
}

type reserveRequest struct {
	Key   []string `json:"key"`
	Units int64    `json:"units"`
	TTL   string   `json:"ttl"`
}

type settleRequest struct {
	Reservation string `json:"reservation"`
	Units       *int64 `json:"units"`
}

// ReserveAnswer is the local API's answer to reserve: LimitAnswer, and
// the reservation to settle when allowed.
type ReserveAnswer struct {
	LimitAnswer
	Reservation string    `json:"reservation,omitempty"`
	Expires     time.Time `json:"expires,omitzero"`
}

// reserve takes units of a limit or quota now (429 when it has not that
// many left), to settle later.
func (a *localAPI) reserve(w http.ResponseWriter, r *http.Request, rule *limitRule, route string) {
	var req reserveRequest
	if err := readJSON(r, &req); err != nil {
		fail(w, http.StatusBadRequest, err.Error())
		return
	}
	ttl := reservationTTL
	if req.TTL != "" {
		var err error
		if ttl, err = time.ParseDuration(req.TTL); err != nil || ttl < time.Second || ttl > maxReservationTTL {
			fail(w, http.StatusBadRequest, `ttl must be a duration from 1s to 24h, such as "10m"`)
			return
		}
	}
	applied, ok := bindRequest(w, rule, req.Key, req.Units)
	if !ok {
		return
	}
	v := a.enforcer.Reserve(r.Context(), []Applied{applied})
	if v.Invalid != nil || v.StoreFailed || !v.Decision.Allowed {
		if v.Invalid == nil && !v.StoreFailed {
			writeJSON(w, http.StatusTooManyRequests, ReserveAnswer{LimitAnswer: limitAnswer(v)})
			return
		}
		writeVerdict(w, v) // a store that failed open reserves nothing to settle
		return
	}
	now := time.Now()
	id, ok := a.reservations.add(&reservation{route: route, d: v.Decision, applied: applied, expires: now.Add(ttl)}, now)
	if !ok {
		fail(w, http.StatusServiceUnavailable, "too many open reservations in this sidecar: settle some first")
		return
	}
	writeJSON(w, http.StatusOK, ReserveAnswer{LimitAnswer: limitAnswer(v), Reservation: id, Expires: now.Add(ttl).UTC()})
}

// settle charges a reservation of policy's limit (or quota) name what the
// work cost, once.
func (a *localAPI) settle(w http.ResponseWriter, r *http.Request, policy, name string) {
	var req settleRequest
	if err := readJSON(r, &req); err != nil {
		fail(w, http.StatusBadRequest, err.Error())
		return
	}
	if req.Units == nil || *req.Units < 0 || *req.Units > limiter.MaxValue {
		fail(w, http.StatusBadRequest, "units must be the work's cost: an integer from 0")
		return
	}
	res, ok := a.reservations.take(req.Reservation, policy, name, *req.Units, time.Now())
	switch {
	case res == nil:
		fail(w, http.StatusNotFound, "no such open reservation: it expired (its reserve stays charged) or never existed")
		return
	case !ok:
		writeJSON(w, http.StatusConflict, map[string]any{"settled": false,
			"error": "settled already at " + strconv.FormatInt(res.units, 10) + " units; nothing changed"})
		return
	}
	s, _ := a.enforcer.Limiter.(settler)
	var err error
	if s != nil {
		ctx, cancel := context.WithTimeout(r.Context(), a.enforcer.timeout())
		err = s.Settle(ctx, res.d, []limiter.Charge{{Units: *req.Units}})
		cancel()
	}
	if err != nil && !errors.Is(err, limiter.ErrNothingToSettle) {
		a.reservations.reopen(res)
		storeFailed(w, err)
		return
	}
	a.enforcer.Metrics.costSettled(res.applied, *req.Units)
	writeJSON(w, http.StatusOK, map[string]any{"settled": true, "units": *req.Units})
}

// bindRequest binds rule to an app's key values and cost (0: the rule's
// own), answering 400 itself when they do not fit.
func bindRequest(w http.ResponseWriter, rule *limitRule, key []string, cost int64) (Applied, bool) {
	if len(key) != len(rule.key) {
		fail(w, http.StatusBadRequest, "key needs "+strconv.Itoa(len(rule.key))+" values, one per key source")
		return Applied{}, false
	}
	applied := rule.bind(key)
	if cost != 0 {
		applied.Limit.Cost = cost
	}
	if applied.Limit.Cost < 1 || applied.Limit.Cost > limiter.MaxValue {
		fail(w, http.StatusBadRequest, "cost must be at least 1")
		return Applied{}, false
	}
	return applied, true
}
