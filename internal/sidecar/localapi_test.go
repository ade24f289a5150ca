package sidecar_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/quotaops/quota-operator/api/v1alpha1"
	"github.com/quotaops/quota-operator/internal/config"
	"github.com/quotaops/quota-operator/internal/sidecar"
	"github.com/quotaops/quota-operator/internal/store"
	"github.com/quotaops/quota-operator/internal/store/storetest"
	"github.com/quotaops/quota-operator/internal/testutil/localtest"
	"github.com/quotaops/quota-operator/internal/testutil/redistest"
)

// call sends method path body to the admin listener and returns the status
// and the body.
func call(t *testing.T, base, method, path, body string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, base+path, strings.NewReader(body))
	return roundTrip(t, req)
}

// roundTrip sends req and returns the status and the body, trimmed.
func roundTrip(t *testing.T, req *http.Request) (int, string) {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	raw, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(raw))
}

func (r running) publishQuota(t *testing.T, q *v1alpha1.UsageQuota) {
	t.Helper()
	doc, err := config.CompileUsageQuota(q)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := doc.Encode()
	if _, err := storetest.PutConfig(context.Background(), r.store, q.Namespace, doc.ID(), raw); err != nil {
		t.Fatal(err)
	}
}

func TestLocalAPILimitsAndQuotas(t *testing.T) {
	ns := namespace(t)
	sc := start(t, ns)
	sc.publish(t, perIP(ns, 3, "1h", func(p *v1alpha1.RateLimitPolicy) {
		p.Spec.Limits[0].Key = []v1alpha1.KeySource{{Source: v1alpha1.SourceHeader, Name: "X-User"}}
	}))
	sc.publishQuota(t, &v1alpha1.UsageQuota{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "daily-exports"},
		Spec: v1alpha1.UsageQuotaSpec{Subject: v1alpha1.Subject{Source: "Header", Name: "X-User"}, Feature: "exports", Limit: 2, Period: "Day"}})
	waitMetric(t, sc.admin, revisionLine(ns, 2))
	steps := []struct {
		path, body string
		status     int
		want       string // a prefix of the JSON answer
	}{
		{"/v1/limits/api/per-ip/check", `{"key":["alice"]}`, 200, `{"allowed":true,"limit":3,"remaining":2,`},
		{"/v1/limits/api/per-ip/consume", `{"key":["alice"],"cost":2}`, 200, `{"allowed":true,"limit":3,"remaining":1,`},
		{"/v1/limits/api/per-ip/consume", `{"key":["alice"],"cost":2}`, 200, `{"allowed":false,"limit":3,"remaining":1,`},
		{"/v1/limits/api/per-ip/consume", `{"key":["bob"]}`, 200, `{"allowed":true,"limit":3,"remaining":2,`},
		{"/v1/quotas/exports/consume", `{"key":["alice"]}`, 200, `{"allowed":true,"limit":2,"remaining":1,`},
		{"/v1/quotas/daily-exports/consume", `{"key":["alice"]}`, 200, `{"allowed":true,"limit":2,"remaining":0,`},
		{"/v1/quotas/exports/check", `{"key":["alice"]}`, 200, `{"allowed":false,"limit":2,"remaining":0,`},
		{"/v1/limits/api/nope/check", `{"key":["alice"]}`, 404, `{"error":"no such limit or quota applies to this pod"}`},
		{"/v1/limits/api/per-ip/check", `{"key":[]}`, 400, `{"error":"key needs 1 values, one per key source"}`},
		{"/v1/limits/api/per-ip/check", `{"key":["a"],"cost":-1}`, 400, `{"error":"cost must be at least 1"}`},
		{"/v1/limits/api/per-ip/check", `{"key":`, 400, `{"error":"the body is not the JSON this endpoint takes`},
		{"/v1/limits/api/per-ip/check", `{"keys":["a"]}`, 400, `{"error":"the body is not the JSON this endpoint takes: json: unknown field \"keys\""}`},
		{"/v1/limits/api/per-ip/frob", `{}`, 404, `{"error":"the action is check, consume, reserve or settle"}`},
	}
	for i, s := range steps {
		status, body := call(t, sc.admin, http.MethodPost, s.path, s.body)
		if status != s.status || !strings.HasPrefix(body, s.want) {
			t.Fatalf("step %d %s %s: %d %s; want %d %s…", i, s.path, s.body, status, body, s.status, s.want)
		}
	}
}

// The store API: every operation, scoped to the pod's namespace.
func TestLocalAPIStore(t *testing.T) {
	ns := namespace(t)
	a, b := start(t, ns), start(t, ns+"-other")
	steps := []struct {
		base, method, path, body string
		status                   int
		want                     string
	}{
		{a.admin, "PUT", "/v1/kv/session-1?ttl=1m", "hello", 204, ""},
		{a.admin, "GET", "/v1/kv/session-1", "", 200, "hello"},
		{b.admin, "GET", "/v1/kv/session-1", "", 404, `{"error":"no such key"}`},
		{a.admin, "HEAD", "/v1/kv/session-1", "", 204, ""},
		{a.admin, "POST", "/v1/kv/views/increment?by=5&ttl=1h", "", 200, `{"value":5}`},
		{a.admin, "POST", "/v1/kv/views/increment", "", 200, `{"value":6}`},
		{a.admin, "POST", "/v1/kv/session-1/increment", "", 409, `{"error":"value is not an integer"}`},
		{a.admin, "POST", "/v1/kv/session-1/expire?ttl=10s", "", 200, `{"updated":true}`},
		{a.admin, "POST", "/v1/kv/missing/expire?ttl=10s", "", 200, `{"updated":false}`},
		{a.admin, "POST", "/v1/kv/views/expire?ttl=-1s", "", 400, `{"error":"ttl must be a duration from 1ms to 720h, such as 30s"}`},
		{a.admin, "POST", "/v1/kv/views/increment?by=x", "", 400, `{"error":"by must be an integer"}`},
		{a.admin, "DELETE", "/v1/kv/session-1", "", 200, `{"deleted":true}`},
		{a.admin, "DELETE", "/v1/kv/session-1", "", 200, `{"deleted":false}`},
		{a.admin, "HEAD", "/v1/kv/session-1", "", 404, ""},
	}
	for i, s := range steps {
		status, body := call(t, s.base, s.method, s.path, s.body)
		if status != s.status || body != s.want {
			t.Fatalf("step %d %s %s: %d %q; want %d %q", i, s.method, s.path, status, body, s.status, s.want)
		}
	}
	ttl := a.store.Client().PTTL(context.Background(), store.SealedKey(redisS.Seal(), "qo:v1:app:{"+ns+"/views}")).Val()
	if ttl <= 0 {
		t.Fatalf("views has no TTL (%v)", ttl)
	}
}

func TestLocalAPILocks(t *testing.T) {
	ns := namespace(t)
	sc := start(t, ns)
	status, body := call(t, sc.admin, "POST", "/v1/locks/nightly", `{"ttl":"30s"}`)
	var got struct {
		Acquired bool   `json:"acquired"`
		Token    string `json:"token"`
		Fence    int64  `json:"fence"`
	}
	if err := json.Unmarshal([]byte(body), &got); status != 200 || err != nil || !got.Acquired || len(got.Token) != 32 || got.Fence <= 0 {
		t.Fatalf("acquire: %d %s", status, body)
	}
	token := got.Token
	steps := []struct {
		method, path, body string
		status             int
		want               string
	}{
		{"POST", "/v1/locks/nightly", `{"ttl":"30s"}`, 409, `{"acquired":false,"retryAfter":`},
		{"POST", "/v1/locks/nightly/extend", `{"ttl":"1m","token":"wrong"}`, 409, `{"extended":false}`},
		{"POST", "/v1/locks/nightly/extend", `{"ttl":"1m","token":"` + token + `"}`, 200, `{"extended":true}`},
		{"DELETE", "/v1/locks/nightly", `{"token":"wrong"}`, 409, `{"released":false}`},
		{"DELETE", "/v1/locks/nightly", `{"token":"` + token + `"}`, 200, `{"released":true}`},
		{"POST", "/v1/locks/nightly", `{"ttl":"soon"}`, 400, `{"error":"ttl must be a duration from 1ms to 720h, such as \"30s\""}`},
	}
	for i, s := range steps {
		status, body := call(t, sc.admin, s.method, s.path, s.body)
		if status != s.status || !strings.HasPrefix(body, s.want) {
			t.Fatalf("step %d %s %s: %d %s; want %d %s…", i, s.method, s.path, status, body, s.status, s.want)
		}
	}
}

// A feature quota counts what the app consumes through the local API, not
// every request through the proxy; given a match, it counts the matching
// requests too.
func TestFeatureQuotaCountsLocalConsumption(t *testing.T) {
	ns := namespace(t)
	sc := start(t, ns)
	user := v1alpha1.Subject{Source: "Header", Name: "X-User"}
	sc.publishQuota(t, &v1alpha1.UsageQuota{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "daily-exports"},
		Spec: v1alpha1.UsageQuotaSpec{Subject: user, Feature: "exports", Limit: 2, Period: "Day"}})
	sc.publishQuota(t, &v1alpha1.UsageQuota{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "daily-searches"},
		Spec: v1alpha1.UsageQuotaSpec{Subject: user, Feature: "searches", Limit: 1, Period: "Day", Match: &v1alpha1.Match{PathPrefix: "/search"}}})
	waitMetric(t, sc.admin, revisionLine(ns, 2))
	proxied := func(path string) int {
		req, _ := http.NewRequest(http.MethodGet, sc.proxy+path, nil)
		req.Header.Set("X-User", "alice")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		return resp.StatusCode
	}
	for i := range 3 {
		if code := proxied("/v1/items"); code != http.StatusOK {
			t.Fatalf("request %d through the proxy: %d", i, code)
		}
	}
	// check answers as if it consumed: 2 - 1 left.
	if _, body := call(t, sc.admin, http.MethodPost, "/v1/quotas/exports/check", `{"key":["alice"]}`); !strings.HasPrefix(body, `{"allowed":true,"limit":2,"remaining":1,`) {
		t.Fatalf("proxy requests consumed the feature quota: %s", body)
	}
	if a, b := proxied("/search"), proxied("/search"); a != http.StatusOK || b != http.StatusTooManyRequests {
		t.Fatalf("a feature quota with a match: %d then %d; want 200 then 429", a, b)
	}
}

// What an app writes is bounded: values up to 64 KiB, and every key
// expires, in a day when the app names no TTL and in 30 days at the most.
// Before, 1 MiB values without expiry filled the shared Redis.
func TestLocalAPIBoundsWhatAppsWrite(t *testing.T) {
	ns := namespace(t)
	a := start(t, ns)
	big := strings.Repeat("x", 64<<10)
	steps := []struct {
		method, path, body string
		status             int
		want               string
	}{
		{"PUT", "/v1/kv/big", big, 204, ""},
		{"PUT", "/v1/kv/bigger", big + "x", 413, `{"error":"values are at most 64 KiB"}`},
		{"PUT", "/v1/kv/forever", "v", 204, ""},
		{"POST", "/v1/kv/count/increment", "", 200, `{"value":1}`},
		{"PUT", "/v1/kv/too-long?ttl=721h", "v", 400, `{"error":"ttl must be a duration from 1ms to 720h, such as 30s"}`},
		{"POST", "/v1/locks/too-long", `{"ttl":"721h"}`, 400, `{"error":"ttl must be a duration from 1ms to 720h, such as \"30s\""}`},
	}
	for i, s := range steps {
		if status, body := call(t, a.admin, s.method, s.path, s.body); status != s.status || body != s.want {
			t.Fatalf("step %d %s %s: %d %.80q; want %d %q", i, s.method, s.path, status, body, s.status, s.want)
		}
	}
	for _, key := range []string{"forever", "count"} {
		ttl := a.store.Client().PTTL(context.Background(), store.SealedKey(redisS.Seal(), "qo:v1:app:{"+ns+"/"+key+"}")).Val()
		if ttl <= 23*time.Hour || ttl > 24*time.Hour {
			t.Fatalf("%s written without a TTL expires in %v, want a day", key, ttl)
		}
	}
	if n := a.store.Client().Exists(context.Background(), store.SealedKey(redisS.Seal(), "qo:v1:app:{"+ns+"/bigger}")).Val(); n != 0 {
		t.Fatal("the refused value was stored")
	}
}

// A hung store (a Redis stopped with SIGSTOP) fails the local API's calls
// within the store timeout, and after five the breaker opens and keeps
// them off the store, as it does for decisions. Before, each call waited
// for the client's read timeout and the breaker never heard of them.
func TestLocalAPIOnAHungStore(t *testing.T) {
	redistest.SkipIfMissing(t, startError)
	r, err := redistest.Start()
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = r.Close() }()
	ns := namespace(t)
	_, admin, health := startListening(t, r.URL, sidecar.Options{Namespace: ns})
	localtest.WaitOK(t, 5*time.Second, health+"/readyz")
	if err := r.Pause(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = r.Resume() }()
	for i, path := range []string{"/v1/kv/a", "/v1/kv/b", "/v1/kv/c", "/v1/kv/d", "/v1/kv/e", "/v1/kv/f"} {
		if status, body := call(t, admin, "GET", path, ""); status != 503 || body != `{"error":"the store is unavailable"}` {
			t.Fatalf("call %d on a hung store: %d %s", i, status, body)
		}
	}
	expectStatus(t, health+"/metrics", 200, `quota_store_breaker_open{namespace="`+ns+`"} 1`+"\n")
}

// A quota that tracks its bound of subjects denies a new one, and the
// metric names why; subjects it knows go on.
func TestQuotaSubjectBoundInTheSidecar(t *testing.T) {
	ns := namespace(t)
	sc := start(t, ns)
	sc.publishQuota(t, &v1alpha1.UsageQuota{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "bounded"},
		Spec: v1alpha1.UsageQuotaSpec{Subject: v1alpha1.Subject{Source: "Header", Name: "X-User"}, Feature: "exports", Limit: 5, Period: "Day", MaxSubjects: 2}})
	waitMetric(t, sc.admin, revisionLine(ns, 1))
	for i, s := range []struct{ user, want string }{
		{"alice", `{"allowed":true,"limit":5,"remaining":4,`},
		{"bob", `{"allowed":true,"limit":5,"remaining":4,`},
		{"carol", `{"allowed":false,"limit":5,"remaining":0,`},
		{"alice", `{"allowed":true,"limit":5,"remaining":3,`},
	} {
		status, body := call(t, sc.admin, http.MethodPost, "/v1/quotas/exports/consume", `{"key":["`+s.user+`"]}`)
		if status != http.StatusOK || !strings.HasPrefix(body, s.want) {
			t.Fatalf("step %d, %s: %d %s; want %s…", i, s.user, status, body, s.want)
		}
	}
	waitMetric(t, sc.admin, `quota_decisions_total{limit="exports",namespace="`+ns+`",policy="bounded",result="subject_bound"} 1`)
}
