package config

import (
	"encoding/json"
	"net/netip"
	"reflect"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/quotaops/quota-operator/api/v1alpha1"
	"github.com/quotaops/quota-operator/internal/subject"
)

var (
	meta = metav1.ObjectMeta{Namespace: "team-a", Name: "api", Generation: 3}
	sel  = metav1.LabelSelector{MatchLabels: map[string]string{"app": "api"}}
)

func TestCompileRateLimitPolicy(t *testing.T) {
	p := &v1alpha1.RateLimitPolicy{ObjectMeta: meta, Spec: v1alpha1.RateLimitPolicySpec{
		Selector: sel, Enforcement: v1alpha1.DryRun, FailurePolicy: v1alpha1.FailClosed,
		Limits: []v1alpha1.Limit{
			{Name: "per-ip", Key: []v1alpha1.KeySource{{Source: v1alpha1.SourceClientIP}},
				Rates: []v1alpha1.Rate{{Limit: 10, Window: "1s"}, {Limit: 1000, Window: "24h"}}},
			{Name: "uploads", Algorithm: v1alpha1.TokenBucket, Cost: 2,
				Match: &v1alpha1.Match{Methods: []v1alpha1.Method{"POST"}, PathPrefix: "/upload", Headers: []v1alpha1.HeaderMatch{{Name: "x-tenant", Value: "acme"}}},
				Key:   []v1alpha1.KeySource{{Source: v1alpha1.SourceHeader, Name: "X-User"}},
				Rates: []v1alpha1.Rate{{Limit: 20, Window: "4s"}}},
		},
	}}
	got, err := CompileRateLimitPolicy(p)
	if err != nil {
		t.Fatal(err)
	}
	want := &Policy{Schema: 1, Kind: "RateLimitPolicy", Namespace: "team-a", Name: "api", Generation: 3, Selector: sel, DryRun: true, FailClosed: true,
		Limits: []Limit{
			{Name: "per-ip", Key: []KeySource{{Source: "ClientIP"}}, Algorithm: "FixedWindow", Cost: 1,
				Rates: []Rate{{Limit: 10, WindowMs: 1000}, {Limit: 1000, WindowMs: 86400000}}},
			{Name: "uploads", Algorithm: "TokenBucket", Cost: 2,
				Match: Match{Methods: []string{"POST"}, PathPrefix: "/upload", Headers: []HeaderMatch{{Name: "X-Tenant", Value: "acme"}}},
				Key:   []KeySource{{Source: "Header", Name: "X-User"}},
				Rates: []Rate{{Limit: 20, WindowMs: 4000}}},
		}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got  %+v\nwant %+v", got, want)
	}
}

func TestCompileUsageQuota(t *testing.T) {
	q := &v1alpha1.UsageQuota{ObjectMeta: meta, Spec: v1alpha1.UsageQuotaSpec{
		Selector: sel, Subject: v1alpha1.Subject{Source: "Header", Name: "X-Api-Key"},
		Feature: "exports", Limit: 5, Period: "Day", TimeZone: "America/New_York",
		Overrides: []v1alpha1.Override{{Subject: "sk_live_partner", Limit: 500}},
	}}
	got, err := CompileUsageQuota(q)
	if err != nil {
		t.Fatal(err)
	}
	want := &Policy{Schema: 1, Kind: "UsageQuota", Namespace: "team-a", Name: "api", Generation: 3, Selector: sel,
		Quota: &Quota{Subject: KeySource{Source: "Header", Name: "X-Api-Key"}, Feature: "exports", Limit: 5, Period: "Day",
			TimeZone: "America/New_York", Overrides: []Override{{SubjectHash: subject.Hash("sk_live_partner"), Limit: 500}}}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got  %+v\nwant %+v", got, want)
	}
	doc, err := got.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(doc), "sk_live_partner") {
		t.Fatalf("raw override subject in the document: %s", doc)
	}
}

// What the schema cannot say, or what a --policy-file object never met the
// schema for, is refused with the field's path.
func TestCompileErrors(t *testing.T) {
	badSelector := metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "app", Operator: "Near"}}}
	rlp := func(window string, s metav1.LabelSelector) error {
		_, err := CompileRateLimitPolicy(&v1alpha1.RateLimitPolicy{ObjectMeta: meta, Spec: v1alpha1.RateLimitPolicySpec{
			Selector: s, Limits: []v1alpha1.Limit{{Name: "l", Rates: []v1alpha1.Rate{{Limit: 1, Window: window}}}}}})
		return err
	}
	uq := func(zone string, period v1alpha1.Period) error {
		_, err := CompileUsageQuota(&v1alpha1.UsageQuota{ObjectMeta: meta, Spec: v1alpha1.UsageQuotaSpec{
			Selector: sel, Subject: v1alpha1.Subject{Source: "ClientIP"}, Limit: 1, Period: period, TimeZone: zone}})
		return err
	}
	tests := []struct {
		name string
		err  error
		want string
	}{
		{"unknown zone", uq("Mars/Olympus_Mons", "Day"), `spec.timeZone: Invalid value: "Mars/Olympus_Mons": not an IANA time zone`},
		{"unknown period", uq("UTC", "Year"), `spec.period: Unsupported value: "Year": supported values: "Hour", "Day", "Week", "Month"`},
		{"window not a duration", rlp("1 minute", sel), `spec.limits[0].rates[0].window: Invalid value: "1 minute": not a duration such as 1s, 1m or 1h30m`},
		{"window too short", rlp("10ms", sel), `spec.limits[0].rates[0].window: Invalid value: "10ms": must be between 1s and 168h`},
		{"window with microseconds", rlp("1.0005s", sel), `spec.limits[0].rates[0].window: Invalid value: "1.0005s": must be a whole number of milliseconds`},
		{"selector operator", rlp("1s", badSelector), `spec.selector: Invalid value`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.err == nil || !strings.Contains(tt.err.Error(), tt.want) {
				t.Fatalf("error %v; want one containing %q", tt.err, tt.want)
			}
		})
	}
	if err := uq("", "Month"); err != nil {
		t.Fatalf("an empty zone is UTC: %v", err)
	}
}

func TestDecode(t *testing.T) {
	p, err := CompileUsageQuota(&v1alpha1.UsageQuota{ObjectMeta: meta, Spec: v1alpha1.UsageQuotaSpec{
		Selector: sel, Subject: v1alpha1.Subject{Source: "ClientIP"}, Limit: 1, Period: "Hour"}})
	if err != nil {
		t.Fatal(err)
	}
	doc, _ := p.Encode()
	back, err := Decode(doc)
	if err != nil || !reflect.DeepEqual(back, p) {
		t.Fatalf("round trip: %+v, %v", back, err)
	}
	for name, doc := range map[string]string{
		"not JSON":            `{"schema":`,
		"future schema":       `{"schema":2,"kind":"UsageQuota","quota":{}}`,
		"quota without body":  `{"schema":1,"kind":"UsageQuota"}`,
		"limits with quota":   `{"schema":1,"kind":"RateLimitPolicy","quota":{}}`,
		"unknown kind":        `{"schema":1,"kind":"Secret"}`,
		"costFrom, both":      `{"schema":1,"kind":"RateLimitPolicy","limits":[{"name":"l","costFrom":{"header":"X-U","jsonPointer":"/u","reserve":1}}]}`,
		"costFrom, reserve 0": `{"schema":1,"kind":"UsageQuota","quota":{"costFrom":{"header":"X-U"}}}`,
		"costFrom, pointer":   `{"schema":1,"kind":"UsageQuota","quota":{"costFrom":{"jsonPointer":"usage","reserve":1}}}`,
	} {
		if _, err := Decode([]byte(doc)); err == nil {
			t.Errorf("%s: decoded %s", name, doc)
		}
	}
}

// Decode never panics, and what it accepts encodes back to a document it
// accepts again, unchanged.
func FuzzDecode(f *testing.F) {
	f.Add([]byte(`{"schema":1,"kind":"RateLimitPolicy","name":"a","limits":[{"name":"l","rates":[{"limit":1,"windowMs":1000}]}]}`))
	f.Add([]byte(`{"schema":1,"kind":"UsageQuota","quota":{"limit":5,"period":"Day"}}`))
	f.Add([]byte(`{"schema":1,"kind":"UsageQuota","quota":{"limit":5,"period":"Day","costFrom":{"jsonPointer":"/usage/total_tokens","reserve":5}}}`))
	f.Fuzz(func(t *testing.T, doc []byte) {
		p, err := Decode(doc)
		if err != nil {
			return
		}
		again, err := p.Encode()
		if err != nil {
			t.Fatal(err)
		}
		q, err := Decode(again)
		if err != nil {
			t.Fatalf("re-encoded document refused: %v", err)
		}
		a, _ := json.Marshal(p)
		b, _ := json.Marshal(q)
		if string(a) != string(b) {
			t.Fatalf("round trip changed the policy:\n%s\n%s", a, b)
		}
	})
}

// An IPv6 client is keyed by its prefix (default /64), so one client,
// which usually holds a whole /64, is one subject and not 2^64 of them;
// IPv4 addresses, IPv4-mapped ones included, stay whole.
func TestClientKey(t *testing.T) {
	for _, tt := range []struct {
		addr   string
		prefix int
		want   string
	}{
		{"2001:db8:1:2::a", 0, "2001:db8:1:2::/64"},
		{"2001:db8:1:2:ffff:ffff:ffff:ffff", 0, "2001:db8:1:2::/64"},
		{"2001:db8:1:3::a", 0, "2001:db8:1:3::/64"},
		{"2001:db8:1:2::a", 48, "2001:db8:1::/48"},
		{"2001:db8:1:2::a", 128, "2001:db8:1:2::a/128"},
		{"fe80::1%eth0", 0, "fe80::/64"},
		{"192.0.2.7", 0, "192.0.2.7"},
		{"::ffff:192.0.2.7", 0, "192.0.2.7"},
	} {
		got := KeySource{Source: "ClientIP", IPv6Prefix: tt.prefix}.ClientKey(netip.MustParseAddr(tt.addr))
		if got != tt.want {
			t.Errorf("ClientKey(%s, /%d) = %s; want %s", tt.addr, tt.prefix, got, tt.want)
		}
	}
}

// costFrom compiles to where the response gives the cost, admission takes
// the reserve, and what the schema also refuses is refused with its field.
func TestCompileCostFrom(t *testing.T) {
	limit := func(c *v1alpha1.CostFrom, cost int64) (*Policy, error) {
		return CompileRateLimitPolicy(&v1alpha1.RateLimitPolicy{ObjectMeta: meta, Spec: v1alpha1.RateLimitPolicySpec{
			Selector: sel, Limits: []v1alpha1.Limit{{Name: "tokens", Cost: cost, CostFrom: c, Rates: []v1alpha1.Rate{{Limit: 100, Window: "1m"}}}}}})
	}
	p, err := limit(&v1alpha1.CostFrom{ResponseHeader: "x-usage-units", Reserve: 7}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if l := p.Limits[0]; l.Cost != 7 || *l.CostFrom != (CostFrom{Header: "X-Usage-Units", Reserve: 7}) {
		t.Fatalf("compiled %+v %+v; want cost 7 (the reserve) from header X-Usage-Units", l, l.CostFrom)
	}
	p, err = limit(&v1alpha1.CostFrom{ResponseJSONPointer: "/usage/total_tokens"}, 1)
	if err != nil || p.Limits[0].Cost != 1 || p.Limits[0].CostFrom.JSONPointer != "/usage/total_tokens" {
		t.Fatalf("compiled %+v, %v; want the pointer and the default reserve 1", p, err)
	}
	q, err := CompileUsageQuota(&v1alpha1.UsageQuota{ObjectMeta: meta, Spec: v1alpha1.UsageQuotaSpec{Selector: sel,
		Subject: v1alpha1.Subject{Source: "ClientIP"}, Limit: 1000, Period: "Month", CostFrom: &v1alpha1.CostFrom{ResponseJSONPointer: "/n", Reserve: 50}}})
	if err != nil || q.Quota.Cost() != 50 {
		t.Fatalf("quota: %+v, %v; want cost 50", q, err)
	}
	for name, tt := range map[string]struct {
		c    *v1alpha1.CostFrom
		cost int64
		want string
	}{
		"both":        {&v1alpha1.CostFrom{ResponseHeader: "X-U", ResponseJSONPointer: "/u"}, 0, "spec.limits[0].costFrom: Required value: set exactly one"},
		"neither":     {&v1alpha1.CostFrom{}, 0, "spec.limits[0].costFrom: Required value: set exactly one"},
		"with a cost": {&v1alpha1.CostFrom{ResponseHeader: "X-U"}, 5, "spec.limits[0].cost: Invalid value: 5: cost and costFrom are exclusive"},
		"bad pointer": {&v1alpha1.CostFrom{ResponseJSONPointer: "/a~"}, 0, `spec.limits[0].costFrom.responseJSONPointer: Invalid value: "/a~"`},
		"bad header":  {&v1alpha1.CostFrom{ResponseHeader: "X U"}, 0, `spec.limits[0].costFrom.responseHeader: Invalid value: "X U": not a header name`},
		"big reserve": {&v1alpha1.CostFrom{ResponseHeader: "X-U", Reserve: 2_000_000_000}, 0, "spec.limits[0].costFrom.reserve: Invalid value: 2000000000"},
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := limit(tt.c, tt.cost); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v; want one containing %q", err, tt.want)
			}
		})
	}
}

func TestParsePointer(t *testing.T) {
	for in, want := range map[string][]string{
		"/usage/total_tokens": {"usage", "total_tokens"},
		"/a~1b/~0c/~01":       {"a/b", "~c", "~1"},
		"/":                   {""},
		"/choices/0":          {"choices", "0"},
	} {
		got, err := ParsePointer(in)
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("ParsePointer(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"", "usage", "/a~", "/a~2"} {
		if got, err := ParsePointer(in); err == nil {
			t.Errorf("ParsePointer(%q) = %q; want an error", in, got)
		}
	}
}

// ParsePointer never panics, and a pointer it reads is written back (~0
// and ~1 escaped again) as it was given.
func FuzzParsePointer(f *testing.F) {
	for _, s := range []string{"/usage/total_tokens", "/a~1b/~0c", "/", "x", "/~"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tokens, err := ParsePointer(s)
		if err != nil {
			return
		}
		var b strings.Builder
		for _, tok := range tokens {
			b.WriteString("/" + strings.ReplaceAll(strings.ReplaceAll(tok, "~", "~0"), "/", "~1"))
		}
		if b.String() != s {
			t.Fatalf("ParsePointer(%q) = %q, which writes back as %q", s, tokens, b.String())
		}
	})
}
