package sidecar

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	extv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"github.com/go-logr/logr"
	"google.golang.org/protobuf/proto"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/quotaops/quota-operator/api/v1alpha1"
	"github.com/quotaops/quota-operator/internal/config"
	"github.com/quotaops/quota-operator/internal/limiter"
	"github.com/quotaops/quota-operator/internal/rls"
	"github.com/quotaops/quota-operator/internal/store"
)

// fuzzSidecar is a sidecar's request handlers on a memory store, with a
// policy "api" (limit "per-user", keyed by a header) and a quota "exports".
type fuzzSidecar struct {
	mux *http.ServeMux
	rls *rateLimitService
}

func newFuzzSidecar(f *testing.F) fuzzSidecar {
	f.Helper()
	mem := store.NewMemory(store.WithMaxEntries(10_000))
	f.Cleanup(func() { _ = mem.Close() })
	lim, err := limiter.New(mem)
	if err != nil {
		f.Fatal(err)
	}
	const ns = "fuzz"
	rlp, err := config.CompileRateLimitPolicy(&v1alpha1.RateLimitPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "api"},
		Spec: v1alpha1.RateLimitPolicySpec{Limits: []v1alpha1.Limit{{Name: "per-user",
			Key:   []v1alpha1.KeySource{{Source: v1alpha1.SourceHeader, Name: "X-User"}},
			Rates: []v1alpha1.Rate{{Limit: 5, Window: "1m"}}}}}})
	if err != nil {
		f.Fatal(err)
	}
	uq, err := config.CompileUsageQuota(&v1alpha1.UsageQuota{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "exports"},
		Spec: v1alpha1.UsageQuotaSpec{Subject: v1alpha1.Subject{Source: "Header", Name: "X-User"}, Feature: "exports", Limit: 3, Period: "Day", MaxSubjects: 50}})
	if err != nil {
		f.Fatal(err)
	}
	src := &Source{Namespace: ns, Log: logr.Discard()}
	if err := src.install(1, map[string]*config.Policy{rlp.ID(): rlp, uq.ID(): uq}); err != nil {
		f.Fatal(err)
	}
	e := &Enforcer{Limiter: lim, Timeout: time.Second, Breaker: NewBreaker()}
	mux := http.NewServeMux()
	(&localAPI{namespace: ns, source: src, enforcer: e, store: guardedStore{mem, e}, locks: guardedLocks{lim, e}}).register(mux)
	return fuzzSidecar{mux: mux, rls: &rateLimitService{resolve: ownNamespace(src, e)}}
}

// Any request to the local API gets an answer below 500 (503 when the
// bounded store is full), in JSON when it has a body; nothing panics.
func FuzzLocalAPI(f *testing.F) {
	sc := newFuzzSidecar(f)
	for _, seed := range []struct{ method, path, body string }{
		{"POST", "/v1/limits/api/per-user/consume", `{"key":["alice"],"cost":2}`},
		{"POST", "/v1/quotas/exports/check", `{"key":["bob"]}`},
		{"PUT", "/v1/kv/greeting?ttl=1m", "hello"},
		{"GET", "/v1/kv/greeting", ""},
		{"POST", "/v1/kv/n/increment?by=3&ttl=1h", ""},
		{"POST", "/v1/locks/nightly", `{"ttl":"30s"}`},
		{"DELETE", "/v1/locks/nightly", `{"token":"x"}`},
		{"POST", "/v1/limits/api/per-user/consume", `{"key":["a"],"cost":9007199254740993}`},
	} {
		f.Add(seed.method, seed.path, []byte(seed.body))
	}
	f.Fuzz(func(t *testing.T, method, path string, body []byte) {
		req, err := http.NewRequest(method, "http://127.0.0.1:9901"+path, bytes.NewReader(body))
		if err != nil || req.URL.Path == "" || req.URL.Path[0] != '/' {
			return
		}
		rec := httptest.NewRecorder()
		sc.mux.ServeHTTP(rec, req)
		if rec.Code >= 500 && rec.Code != http.StatusServiceUnavailable {
			t.Fatalf("%s %q: %d %s", method, path, rec.Code, rec.Body)
		}
		if rec.Header().Get("Content-Type") == "application/json" && !json.Valid(rec.Body.Bytes()) {
			t.Fatalf("%s %q: %d, not JSON: %q", method, path, rec.Code, rec.Body)
		}
	})
}

// Any message a client can send the Envoy service is answered with one
// status per descriptor, or refused as INVALID_ARGUMENT; nothing panics.
func FuzzRLSRequest(f *testing.F) {
	sc := newFuzzSidecar(f)
	for _, req := range []*rlsv3.RateLimitRequest{
		rlsRequest("api", [][2]string{{"per-user", "alice"}}),
		rlsRequest("api", [][2]string{{"per-user", "alice"}, {"nope", "x"}}),
		rlsRequest("other", [][2]string{{"per-user", "bob"}}),
	} {
		raw, err := proto.Marshal(req)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(raw)
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		var req rls.Request
		if req.Unmarshal(raw) != nil {
			return // the server refuses it before the service sees it
		}
		resp, err := sc.rls.ShouldRateLimit(context.Background(), &req)
		if err != nil {
			var st *rls.Status
			if !errors.As(err, &st) || st.Code != rls.CodeInvalidArgument {
				t.Fatalf("error %v; want INVALID_ARGUMENT", err)
			}
			return
		}
		if len(resp.Statuses) != len(req.Descriptors) {
			t.Fatalf("%d statuses for %d descriptors", len(resp.Statuses), len(req.Descriptors))
		}
	})
}

// rlsRequest asks domain about descriptors of one entry each.
func rlsRequest(domain string, entries [][2]string) *rlsv3.RateLimitRequest {
	req := &rlsv3.RateLimitRequest{Domain: domain}
	for _, e := range entries {
		req.Descriptors = append(req.Descriptors, &extv3.RateLimitDescriptor{Entries: []*extv3.RateLimitDescriptor_Entry{{Key: e[0], Value: e[1]}}})
	}
	return req
}
