package sidecar

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/quotaops/quota-operator/internal/limiter"
	"github.com/quotaops/quota-operator/internal/store"
)

// The local API, on the admin listener, lets apps in the pod (any
// language) use limits, quotas, the store and locks; docs/sidecar.md has a
// curl example for each endpoint. Everything is scoped to the sidecar's
// namespace: an app cannot name another namespace's keys.

// maxBody bounds request bodies of the local API (values, JSON): the
// store is shared by every namespace, and one app filling it with large
// values would stop decisions everywhere.
const maxBody = 64 << 10

// Every key an app writes expires: kvTTL when it names no TTL, and never
// later than maxKVTTL, so nothing an app forgets stays in the shared store.
const (
	kvTTL    = 24 * time.Hour
	maxKVTTL = 30 * 24 * time.Hour
)

// LocalStore is the store as the local API uses it.
type LocalStore interface {
	IncrementWithTTL(ctx context.Context, key string, by int64, ttl time.Duration) (int64, error)
	Expire(ctx context.Context, key string, ttl time.Duration) (bool, error)
	Get(ctx context.Context, key string) ([]byte, bool, error)
	Set(ctx context.Context, key string, value []byte, ttl time.Duration) error
	Has(ctx context.Context, key string) (bool, error)
	Delete(ctx context.Context, key string) (bool, error)
}

// Locker is the limiter's lock API.
type Locker interface {
	Acquire(ctx context.Context, namespace, name string, ttl time.Duration) (limiter.Lock, bool, time.Duration, error)
	Extend(ctx context.Context, namespace, name, token string, ttl time.Duration) (bool, error)
	Release(ctx context.Context, namespace, name, token string) (bool, error)
}

type localAPI struct {
	namespace    string
	source       *Source
	enforcer     *Enforcer
	store        LocalStore
	locks        Locker
	reservations reservations
}

func (a *localAPI) register(mux *http.ServeMux) {
	mux.HandleFunc("POST /v1/limits/{policy}/{limit}/{action}", a.limit)
	mux.HandleFunc("POST /v1/quotas/{name}/{action}", a.limit)
	mux.HandleFunc("GET /v1/kv/{key}", a.get)
	mux.HandleFunc("HEAD /v1/kv/{key}", a.has)
	mux.HandleFunc("PUT /v1/kv/{key}", a.set)
	mux.HandleFunc("DELETE /v1/kv/{key}", a.del)
	mux.HandleFunc("POST /v1/kv/{key}/increment", a.increment)
	mux.HandleFunc("POST /v1/kv/{key}/expire", a.expire)
	mux.HandleFunc("POST /v1/locks/{name}", a.acquire)
	mux.HandleFunc("POST /v1/locks/{name}/extend", a.extend)
	mux.HandleFunc("DELETE /v1/locks/{name}", a.release)
}

type limitRequest struct {
	// Key holds the values of the limit's key sources, in order; a quota
	// takes one value, the subject.
	Key  []string `json:"key"`
	Cost int64    `json:"cost"`
}

// LimitAnswer is the local API's answer to check and consume.
type LimitAnswer struct {
	Allowed     bool    `json:"allowed"`
	Limit       int64   `json:"limit"`
	Remaining   int64   `json:"remaining"`
	ResetAfter  float64 `json:"resetAfter"`
	RetryAfter  float64 `json:"retryAfter,omitempty"`
	StoreFailed bool    `json:"storeFailed,omitempty"`
}

func (a *localAPI) limit(w http.ResponseWriter, r *http.Request) {
	action := r.PathValue("action")
	switch action {
	case "check", "consume", "reserve", "settle":
	default:
		fail(w, http.StatusNotFound, "the action is check, consume, reserve or settle")
		return
	}
	policy, name := r.PathValue("policy"), r.PathValue("limit")
	if policy == "" {
		policy = r.PathValue("name")
	}
	if action == "settle" {
		a.settle(w, r, policy, name)
		return
	}
	ps := a.source.Current()
	if ps == nil {
		fail(w, http.StatusServiceUnavailable, "config not loaded yet")
		return
	}
	rule, ok := ps.Named(policy, name)
	if !ok {
		fail(w, http.StatusNotFound, "no such limit or quota applies to this pod")
		return
	}
	if action == "reserve" {
		a.reserve(w, r, rule, policy+"/"+name)
		return
	}
	var req limitRequest
	if err := readJSON(r, &req); err != nil {
		fail(w, http.StatusBadRequest, err.Error())
		return
	}
	applied, ok := bindRequest(w, rule, req.Key, req.Cost)
	if !ok {
		return
	}
	var v Verdict
	if action == "check" {
		v = a.enforcer.Peek(r.Context(), []Applied{applied})
	} else {
		v = a.enforcer.Check(r.Context(), []Applied{applied})
	}
	writeVerdict(w, v)
}

func writeVerdict(w http.ResponseWriter, v Verdict) {
	if v.Invalid != nil {
		fail(w, v.Status, v.Invalid.Error())
		return
	}
	if v.StoreFailed {
		if v.Status != 0 {
			fail(w, v.Status, "the store is unavailable and the policy fails closed")
			return
		}
		writeJSON(w, http.StatusOK, LimitAnswer{Allowed: true, StoreFailed: true})
		return
	}
	writeJSON(w, http.StatusOK, limitAnswer(v))
}

// limitAnswer is a decided verdict as the local API answers it.
func limitAnswer(v Verdict) LimitAnswer {
	by := v.Decision.By()
	ans := LimitAnswer{Allowed: v.Decision.Allowed, Limit: by.Max, Remaining: by.Remaining, ResetAfter: by.ResetAfter.Seconds()}
	if !ans.Allowed && by.RetryAfter != limiter.Never {
		ans.RetryAfter = by.RetryAfter.Seconds()
	}
	return ans
}

// appKey is the store key of an app's key in this namespace.
func (a *localAPI) appKey(w http.ResponseWriter, r *http.Request) (string, bool) {
	key := r.PathValue("key")
	if key == "" || len(key) > 512 {
		fail(w, http.StatusBadRequest, "a key is 1 to 512 bytes")
		return "", false
	}
	return limiter.AppKey(a.namespace, key), true
}

func (a *localAPI) get(w http.ResponseWriter, r *http.Request) {
	key, ok := a.appKey(w, r)
	if !ok {
		return
	}
	v, found, err := a.store.Get(r.Context(), key)
	switch {
	case err != nil:
		storeFailed(w, err)
	case !found:
		fail(w, http.StatusNotFound, "no such key")
	default:
		w.Header().Set("Content-Type", "application/octet-stream")
		_, _ = w.Write(v)
	}
}

func (a *localAPI) has(w http.ResponseWriter, r *http.Request) {
	key, ok := a.appKey(w, r)
	if !ok {
		return
	}
	found, err := a.store.Has(r.Context(), key)
	switch {
	case err != nil:
		storeFailed(w, err)
	case !found:
		w.WriteHeader(http.StatusNotFound)
	default:
		w.WriteHeader(http.StatusNoContent)
	}
}

func (a *localAPI) set(w http.ResponseWriter, r *http.Request) {
	key, ok := a.appKey(w, r)
	if !ok {
		return
	}
	ttl, err := queryTTL(r, kvTTL)
	if err != nil {
		fail(w, http.StatusBadRequest, err.Error())
		return
	}
	value, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		fail(w, http.StatusRequestEntityTooLarge, "values are at most 64 KiB")
		return
	}
	if err := a.store.Set(r.Context(), key, value, ttl); err != nil {
		storeFailed(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// badRequest is a malformed parameter: 400 with its message.
type badRequest string

func (e badRequest) Error() string { return string(e) }

// withKey runs op on the request's app key and answers its result as JSON.
func (a *localAPI) withKey(w http.ResponseWriter, r *http.Request, op func(ctx context.Context, key string) (any, error)) {
	key, ok := a.appKey(w, r)
	if !ok {
		return
	}
	out, err := op(r.Context(), key)
	var bad badRequest
	switch {
	case errors.As(err, &bad):
		fail(w, http.StatusBadRequest, bad.Error())
	case err != nil:
		storeFailed(w, err)
	default:
		writeJSON(w, http.StatusOK, out)
	}
}

func (a *localAPI) del(w http.ResponseWriter, r *http.Request) {
	a.withKey(w, r, func(ctx context.Context, key string) (any, error) {
		found, err := a.store.Delete(ctx, key)
		return map[string]bool{"deleted": found}, err
	})
}

func (a *localAPI) increment(w http.ResponseWriter, r *http.Request) {
	a.withKey(w, r, func(ctx context.Context, key string) (any, error) {
		by := int64(1)
		if s := r.URL.Query().Get("by"); s != "" {
			n, err := strconv.ParseInt(s, 10, 64)
			if err != nil {
				return nil, badRequest("by must be an integer")
			}
			by = n
		}
		ttl, err := queryTTL(r, kvTTL)
		if err != nil {
			return nil, err
		}
		n, err := a.store.IncrementWithTTL(ctx, key, by, ttl)
		return map[string]int64{"value": n}, err
	})
}

func (a *localAPI) expire(w http.ResponseWriter, r *http.Request) {
	a.withKey(w, r, func(ctx context.Context, key string) (any, error) {
		ttl, err := queryTTL(r, 0)
		if err != nil {
			return nil, err
		}
		found, err := a.store.Expire(ctx, key, ttl)
		return map[string]bool{"updated": found}, err
	})
}

type lockRequest struct {
	TTL   string `json:"ttl"`
	Token string `json:"token"`
}

func (a *localAPI) acquire(w http.ResponseWriter, r *http.Request) {
	var req lockRequest
	ttl, ok := lockTTL(w, r, &req)
	if !ok {
		return
	}
	lock, got, wait, err := a.locks.Acquire(r.Context(), a.namespace, r.PathValue("name"), ttl)
	switch {
	case err != nil:
		storeFailed(w, err)
	case !got:
		writeJSON(w, http.StatusConflict, map[string]any{"acquired": false, "retryAfter": wait.Seconds()})
	default:
		writeJSON(w, http.StatusOK, map[string]any{"acquired": true, "token": lock.Token, "fence": lock.Fence})
	}
}

func (a *localAPI) extend(w http.ResponseWriter, r *http.Request) {
	var req lockRequest
	ttl, ok := lockTTL(w, r, &req)
	if !ok {
		return
	}
	done, err := a.locks.Extend(r.Context(), a.namespace, r.PathValue("name"), req.Token, ttl)
	lockAnswer(w, done, err, "extended")
}

func (a *localAPI) release(w http.ResponseWriter, r *http.Request) {
	var req lockRequest
	if err := readJSON(r, &req); err != nil {
		fail(w, http.StatusBadRequest, err.Error())
		return
	}
	done, err := a.locks.Release(r.Context(), a.namespace, r.PathValue("name"), req.Token)
	lockAnswer(w, done, err, "released")
}

func lockAnswer(w http.ResponseWriter, done bool, err error, what string) {
	switch {
	case err != nil:
		storeFailed(w, err)
	case !done:
		writeJSON(w, http.StatusConflict, map[string]bool{what: false})
	default:
		writeJSON(w, http.StatusOK, map[string]bool{what: true})
	}
}

func lockTTL(w http.ResponseWriter, r *http.Request, req *lockRequest) (time.Duration, bool) {
	if err := readJSON(r, req); err != nil {
		fail(w, http.StatusBadRequest, err.Error())
		return 0, false
	}
	ttl, err := time.ParseDuration(req.TTL)
	if err != nil || ttl < time.Millisecond || ttl > maxKVTTL {
		fail(w, http.StatusBadRequest, `ttl must be a duration from 1ms to 720h, such as "30s"`)
		return 0, false
	}
	return ttl, true
}

// queryTTL reads ?ttl=, def when it is missing (0: required), at most
// maxKVTTL.
func queryTTL(r *http.Request, def time.Duration) (time.Duration, error) {
	s := r.URL.Query().Get("ttl")
	if s == "" && def > 0 {
		return def, nil
	}
	ttl, err := time.ParseDuration(s)
	if err != nil || ttl < time.Millisecond || ttl > maxKVTTL {
		return 0, badRequest("ttl must be a duration from 1ms to 720h, such as 30s")
	}
	return ttl, nil
}

func readJSON(r *http.Request, v any) error {
	dec := json.NewDecoder(io.LimitReader(r.Body, maxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil && !errors.Is(err, io.EOF) {
		return errors.New("the body is not the JSON this endpoint takes: " + err.Error())
	}
	return nil
}

func storeFailed(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, store.ErrNotInteger), errors.Is(err, store.ErrOverflow), errors.Is(err, store.ErrWrongType):
		fail(w, http.StatusConflict, err.Error())
	default:
		fail(w, http.StatusServiceUnavailable, "the store is unavailable")
	}
}

func fail(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"error": msg})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
