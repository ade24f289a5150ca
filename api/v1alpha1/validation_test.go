package v1alpha1_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/quotaops/quota-operator/internal/testutil/kubeenv"
)

// One API server with the CRDs serves the whole package.
var c client.Client

const namespace = "validation"

func TestMain(m *testing.M) {
	root := kubeenv.ModuleRoot()
	env, err := kubeenv.Start(kubeenv.Options{CRDDirectoryPaths: []string{filepath.Join(root, "config", "crd", "bases")}})
	if err != nil {
		fmt.Fprintf(os.Stderr, "control plane: %v\n", err)
		os.Exit(1)
	}
	code := func() int {
		defer func() { _ = env.Stop() }()
		if c, err = client.New(env.Config, client.Options{}); err == nil {
			err = c.Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}})
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "set-up: %v\n", err)
			return 1
		}
		return m.Run()
	}()
	os.Exit(code)
}

// object reads YAML into an unstructured object in the test namespace, so
// a test can send what typed Go structs could not express.
func object(t *testing.T, text string) *unstructured.Unstructured {
	t.Helper()
	u := &unstructured.Unstructured{}
	if err := yaml.Unmarshal([]byte(text), &u.Object); err != nil {
		t.Fatalf("bad YAML in the test: %v\n%s", err, text)
	}
	u.SetNamespace(namespace)
	return u
}

const (
	rlpHead  = "apiVersion: policy.quotaops.dev/v1alpha1\nkind: RateLimitPolicy\nmetadata: {name: %s}\n"
	uqHead   = "apiVersion: policy.quotaops.dev/v1alpha1\nkind: UsageQuota\nmetadata: {name: %s}\n"
	qadjHead = "apiVersion: policy.quotaops.dev/v1alpha1\nkind: QuotaAdjustment\nmetadata: {name: %s}\n"
	qqHead   = "apiVersion: policy.quotaops.dev/v1alpha1\nkind: QuotaQuery\nmetadata: {name: %s}\n"
	aHash    = "0123456789abcdef0123456789abcdef"
	toQuota  = "  target: {kind: UsageQuota, name: api-calls}\n"
	toLimit  = "  target: {kind: RateLimitPolicy, name: api, limit: per-user}\n"
	sel      = "  selector: {matchLabels: {app: a}}\n"
	// okLimit is a valid limit the RateLimitPolicy cases vary.
	okLimit = "  limits:\n  - name: l\n    rates: [{limit: 100, window: 1m}]\n"
	okQuota = "  subject: {source: Header, name: X-Api-Key}\n  limit: 10\n  period: Day\n"
)

func limitWith(fields string) string {
	return "spec:\n" + sel + "  limits:\n  - name: l\n" + fields
}

func repeat(n int, f func(i int) string) string {
	var b strings.Builder
	for i := range n {
		b.WriteString(f(i))
	}
	return b.String()
}

// Every invalid object is rejected by the API server with the path of the
// field at fault and a reason a person can act on.
func TestInvalidObjectsAreRejected(t *testing.T) {
	tests := []struct {
		name, head, body string
		want             []string
	}{
		{"rlp without selector", rlpHead, "spec:\n" + okLimit, []string{"spec.selector: Required value"}},
		{"rlp without limits", rlpHead, "spec:\n" + sel, []string{"spec.limits: Required value"}},
		{"rlp with no limit", rlpHead, "spec:\n" + sel + "  limits: []\n", []string{"spec.limits: Invalid value", "should have at least 1 items"}},
		{"rlp with 33 limits", rlpHead, "spec:\n" + sel + "  limits:\n" + repeat(33, func(i int) string {
			return fmt.Sprintf("  - {name: l%d, rates: [{limit: 1, window: 1s}]}\n", i)
		}), []string{"spec.limits: Too many: 33: must have at most 32 items"}},
		{"limit names repeat", rlpHead, "spec:\n" + sel + "  limits:\n  - {name: l, rates: [{limit: 1, window: 1s}]}\n  - {name: l, rates: [{limit: 2, window: 1s}]}\n", []string{`spec.limits[1]: Duplicate value: {"name":"l"}`}},
		{"limit name not a DNS label", rlpHead, "spec:\n" + sel + "  limits:\n  - {name: Per_IP, rates: [{limit: 1, window: 1s}]}\n", []string{`spec.limits[0].name: Invalid value: "Per_IP"`}},
		{"unknown enforcement", rlpHead, "spec:\n" + sel + "  enforcement: Maybe\n" + okLimit, []string{`spec.enforcement: Unsupported value: "Maybe": supported values: "Enforce", "DryRun"`}},
		{"unknown failure policy", rlpHead, "spec:\n" + sel + "  failurePolicy: Sometimes\n" + okLimit, []string{`spec.failurePolicy: Unsupported value: "Sometimes": supported values: "Open", "Closed"`}},
		{"unknown algorithm", rlpHead, limitWith("    algorithm: LeakyBucket\n    rates: [{limit: 1, window: 1s}]\n"), []string{`spec.limits[0].algorithm: Unsupported value: "LeakyBucket"`}},
		{"limit without rates", rlpHead, limitWith("    cost: 1\n"), []string{"spec.limits[0].rates: Required value"}},
		{"five rates", rlpHead, limitWith("    rates: [{limit: 1, window: 1s}, {limit: 2, window: 2s}, {limit: 3, window: 3s}, {limit: 4, window: 4s}, {limit: 5, window: 5s}]\n"), []string{"spec.limits[0].rates: Too many: 5: must have at most 4 items"}},
		{"rate limit 0", rlpHead, limitWith("    rates: [{limit: 0, window: 1s}]\n"), []string{"spec.limits[0].rates[0].limit: Invalid value: 0", "greater than or equal to 1"}},
		{"rate limit above 2^53", rlpHead, limitWith("    rates: [{limit: 9007199254740993, window: 1s}]\n"), []string{"spec.limits[0].rates[0].limit: Invalid value", "less than or equal to 9007199254740991"}},
		{"window in words", rlpHead, limitWith("    rates: [{limit: 1, window: 1 minute}]\n"), []string{`spec.limits[0].rates[0].window: Invalid value: "1 minute"`}},
		{"window under 1s", rlpHead, limitWith("    rates: [{limit: 1, window: 500ms}]\n"), []string{"spec.limits[0].rates[0]: Invalid value", "window must be at least 1s"}},
		{"window over a week", rlpHead, limitWith("    rates: [{limit: 1, window: 200h}]\n"), []string{"spec.limits[0].rates[0]: Invalid value", "window must be at most 168h"}},
		{"one window twice", rlpHead, limitWith("    rates: [{limit: 10, window: 1m}, {limit: 20, window: 60s}]\n"), []string{"spec.limits[0]: Invalid value", "rates may appear only once per window"}},
		{"header key without name", rlpHead, limitWith("    key: [{source: Header}]\n    rates: [{limit: 1, window: 1s}]\n"), []string{"spec.limits[0].key[0]: Invalid value", "name is required when source is Header or Query, and only then"}},
		{"client IP key with a name", rlpHead, limitWith("    key: [{source: ClientIP, name: X-Real-IP}]\n    rates: [{limit: 1, window: 1s}]\n"), []string{"spec.limits[0].key[0]: Invalid value", "name is required when source is Header or Query, and only then"}},
		{"unknown whenKeyMissing", rlpHead, limitWith("    key: [{source: Header, name: X-Api-Key}]\n    whenKeyMissing: Allow\n    rates: [{limit: 1, window: 1s}]\n"),
			[]string{`spec.limits[0].whenKeyMissing: Unsupported value: "Allow": supported values: "Skip", "Deny"`}},
		{"ipv6PrefixLength off ClientIP", rlpHead, limitWith("    key: [{source: Header, name: X-Api-Key, ipv6PrefixLength: 64}]\n    rates: [{limit: 1, window: 1s}]\n"),
			[]string{"spec.limits[0].key[0]: Invalid value", "ipv6PrefixLength applies to source ClientIP only"}},
		{"ipv6PrefixLength above 128", rlpHead, limitWith("    key: [{source: ClientIP, ipv6PrefixLength: 129}]\n    rates: [{limit: 1, window: 1s}]\n"),
			[]string{"spec.limits[0].key[0].ipv6PrefixLength: Invalid value: 129: spec.limits[0].key[0].ipv6PrefixLength in body should be less than or equal to 128"}},
		{"unknown key source", rlpHead, limitWith("    key: [{source: Cookie, name: session}]\n    rates: [{limit: 1, window: 1s}]\n"), []string{`spec.limits[0].key[0].source: Unsupported value: "Cookie"`}},
		{"nine key parts", rlpHead, limitWith("    key: [" + strings.Repeat("{source: Method}, ", 8) + "{source: Path}]\n    rates: [{limit: 1, window: 1s}]\n"), []string{"spec.limits[0].key: Too many: 9: must have at most 8 items"}},
		{"cost 0", rlpHead, limitWith("    cost: 0\n    rates: [{limit: 1, window: 1s}]\n"), []string{"spec.limits[0].cost: Invalid value: 0", "greater than or equal to 1"}},
		{"cost above the limit", rlpHead, limitWith("    cost: 200\n    rates: [{limit: 100, window: 1m}]\n"), []string{"spec.limits[0]: Invalid value", "cost must not be above any rate's limit: such a request could never pass"}},
		{"costFrom with both sources", rlpHead, limitWith("    costFrom: {responseHeader: X-Units, responseJSONPointer: /usage/total_tokens}\n    rates: [{limit: 100, window: 1m}]\n"), []string{"spec.limits[0].costFrom: Invalid value", "set exactly one of responseHeader and responseJSONPointer"}},
		{"costFrom with no source", rlpHead, limitWith("    costFrom: {reserve: 5}\n    rates: [{limit: 100, window: 1m}]\n"), []string{"spec.limits[0].costFrom: Invalid value", "set exactly one of responseHeader and responseJSONPointer"}},
		{"costFrom beside a cost", rlpHead, limitWith("    cost: 5\n    costFrom: {responseHeader: X-Units}\n    rates: [{limit: 100, window: 1m}]\n"), []string{"spec.limits[0]: Invalid value", "cost and costFrom are exclusive"}},
		{"costFrom reserve above the limit", rlpHead, limitWith("    costFrom: {responseHeader: X-Units, reserve: 200}\n    rates: [{limit: 100, window: 1m}]\n"), []string{"spec.limits[0]: Invalid value", "costFrom.reserve must not be above any rate's limit"}},
		{"costFrom pointer without a slash", rlpHead, limitWith("    costFrom: {responseJSONPointer: usage.total_tokens}\n    rates: [{limit: 100, window: 1m}]\n"), []string{`spec.limits[0].costFrom.responseJSONPointer: Invalid value: "usage.total_tokens"`}},
		{"costFrom pointer with a bare tilde", rlpHead, limitWith("    costFrom: {responseJSONPointer: /a~2b}\n    rates: [{limit: 100, window: 1m}]\n"), []string{`spec.limits[0].costFrom.responseJSONPointer: Invalid value: "/a~2b"`}},
		{"costFrom header not a token", rlpHead, limitWith("    costFrom: {responseHeader: X Units}\n    rates: [{limit: 100, window: 1m}]\n"), []string{`spec.limits[0].costFrom.responseHeader: Invalid value: "X Units"`}},
		{"costFrom reserve 0", rlpHead, limitWith("    costFrom: {responseHeader: X-Units, reserve: 0}\n    rates: [{limit: 100, window: 1m}]\n"), []string{"spec.limits[0].costFrom.reserve: Invalid value: 0", "greater than or equal to 1"}},
		{"token bucket too fast", rlpHead, limitWith("    algorithm: TokenBucket\n    rates: [{limit: 2000000, window: 1s}]\n"), []string{"spec.limits[0]: Invalid value", "a token bucket refills at most one token per microsecond"}},
		{"unknown method", rlpHead, limitWith("    match: {methods: [FETCH]}\n    rates: [{limit: 1, window: 1s}]\n"), []string{`spec.limits[0].match.methods[0]: Unsupported value: "FETCH"`}},
		{"relative path prefix", rlpHead, limitWith("    match: {pathPrefix: api/}\n    rates: [{limit: 1, window: 1s}]\n"), []string{`spec.limits[0].match.pathPrefix: Invalid value: "api/"`, "should match '^/'"}},
		{"header name with a space", rlpHead, limitWith("    match: {headers: [{name: X Api}]}\n    rates: [{limit: 1, window: 1s}]\n"), []string{`spec.limits[0].match.headers[0].name: Invalid value: "X Api"`}},
		{"uq without subject", uqHead, "spec:\n" + sel + "  limit: 10\n  period: Day\n", []string{"spec.subject: Required value"}},
		{"uq header subject without name", uqHead, "spec:\n" + sel + "  subject: {source: Header}\n  limit: 10\n  period: Day\n", []string{"spec.subject: Invalid value", "subject.name is required when source is Header or Query, and only then"}},
		{"uq subject from the path", uqHead, "spec:\n" + sel + "  subject: {source: Path}\n  limit: 10\n  period: Day\n", []string{`spec.subject.source: Unsupported value: "Path": supported values: "Header", "Query", "ClientIP"`}},
		{"uq limit 0", uqHead, "spec:\n" + sel + "  subject: {source: ClientIP}\n  limit: 0\n  period: Day\n", []string{"spec.limit: Invalid value: 0", "greater than or equal to 1"}},
		{"uq without period", uqHead, "spec:\n" + sel + "  subject: {source: ClientIP}\n  limit: 10\n", []string{"spec.period: Required value"}},
		{"uq yearly", uqHead, "spec:\n" + sel + "  subject: {source: ClientIP}\n  limit: 10\n  period: Year\n", []string{`spec.period: Unsupported value: "Year": supported values: "Hour", "Day", "Week", "Month"`}},
		{"uq time zone in words", uqHead, "spec:\n" + sel + okQuota + "  timeZone: Berlin Time\n", []string{`spec.timeZone: Invalid value: "Berlin Time"`}},
		{"uq feature not a name", uqHead, "spec:\n" + sel + okQuota + "  feature: Exports!\n", []string{`spec.feature: Invalid value: "Exports!"`}},
		{"uq costFrom reserve above the limit", uqHead, "spec:\n" + sel + okQuota + "  costFrom: {responseJSONPointer: /usage/total_tokens, reserve: 11}\n", []string{"spec: Invalid value", "costFrom.reserve must not be above the limit or any override's"}},
		{"uq costFrom reserve above an override", uqHead, "spec:\n" + sel + okQuota + "  costFrom: {responseHeader: X-Units, reserve: 5}\n  overrides: [{subject: small, limit: 4}]\n", []string{"spec: Invalid value", "costFrom.reserve must not be above the limit or any override's"}},
		{"uq costFrom with both sources", uqHead, "spec:\n" + sel + okQuota + "  costFrom: {responseHeader: X-Units, responseJSONPointer: /n}\n", []string{"spec.costFrom: Invalid value", "set exactly one of responseHeader and responseJSONPointer"}},
		{"uq max subjects 0", uqHead, "spec:\n" + sel + okQuota + "  maxSubjects: 0\n", []string{"spec.maxSubjects: Invalid value: 0", "greater than or equal to 1"}},
		{"uq max subjects above 10 million", uqHead, "spec:\n" + sel + okQuota + "  maxSubjects: 10000001\n", []string{"spec.maxSubjects: Invalid value: 10000001", "less than or equal to 10000000"}},
		{"uq override twice", uqHead, "spec:\n" + sel + okQuota + "  overrides: [{subject: k1, limit: 5}, {subject: k1, limit: 6}]\n", []string{"spec.overrides: Invalid value", "each subject (and each subjectHash) may have one override only"}},
		{"uq override hash twice", uqHead, "spec:\n" + sel + okQuota + "  overrides: [{subjectHash: " + strings.Repeat("ab", 16) + ", limit: 5}, {subjectHash: " + strings.Repeat("ab", 16) + ", limit: 6}]\n",
			[]string{"spec.overrides: Invalid value", "each subject (and each subjectHash) may have one override only"}},
		{"uq override with subject and hash", uqHead, "spec:\n" + sel + okQuota + "  overrides: [{subject: k1, subjectHash: " + strings.Repeat("ab", 16) + ", limit: 5}]\n",
			[]string{"spec.overrides[0]: Invalid value", "set exactly one of subject (the raw identity) and subjectHash (its hash, from kubectl quota hash)"}},
		{"uq override naming nobody", uqHead, "spec:\n" + sel + okQuota + "  overrides: [{limit: 5}]\n",
			[]string{"spec.overrides[0]: Invalid value", "set exactly one of subject (the raw identity) and subjectHash"}},
		{"uq override hash not a hash", uqHead, "spec:\n" + sel + okQuota + "  overrides: [{subjectHash: ACME, limit: 5}]\n",
			[]string{`spec.overrides[0].subjectHash: Invalid value: "ACME"`, "should match '^[0-9a-f]{32}$'"}},
		{"uq override limit 0", uqHead, "spec:\n" + sel + okQuota + "  overrides: [{subject: k1, limit: 0}]\n", []string{"spec.overrides[0].limit: Invalid value: 0"}},
		{"uq 65 overrides", uqHead, "spec:\n" + sel + okQuota + "  overrides:\n" + repeat(65, func(i int) string {
			return fmt.Sprintf("  - {subject: k%d, limit: 1}\n", i)
		}), []string{"spec.overrides: Too many: 65: must have at most 64 items"}},
		{"qadj without action", qadjHead, "spec:\n" + toQuota, []string{"spec.action: Required value"}},
		{"qadj unknown action", qadjHead, "spec:\n" + toQuota + "  action: Refund\n", []string{`spec.action: Unsupported value: "Refund": supported values: "Reset", "Grant"`}},
		{"qadj grant without units", qadjHead, "spec:\n" + toQuota + "  action: Grant\n", []string{"spec: Invalid value", "units is required for a Grant, and only for a Grant"}},
		{"qadj reset with units", qadjHead, "spec:\n" + toQuota + "  action: Reset\n  units: 5\n", []string{"spec: Invalid value", "units is required for a Grant, and only for a Grant"}},
		{"qadj grant of 0", qadjHead, "spec:\n" + toQuota + "  action: Grant\n  units: 0\n", []string{"spec.units: Invalid value: 0", "greater than or equal to 1"}},
		{"qadj grant to a rate limit", qadjHead, "spec:\n" + toLimit + "  action: Grant\n  units: 5\n", []string{"spec: Invalid value", "only a UsageQuota takes a Grant; a RateLimitPolicy limit can be Reset"}},
		{"qadj policy without limit", qadjHead, "spec:\n  target: {kind: RateLimitPolicy, name: api}\n  action: Reset\n", []string{"spec.target: Invalid value", "target.limit names the RateLimitPolicy's limit: it is required for a RateLimitPolicy, and only for it"}},
		{"qadj quota with limit", qadjHead, "spec:\n  target: {kind: UsageQuota, name: q, limit: l}\n  action: Reset\n", []string{"spec.target: Invalid value", "required for a RateLimitPolicy, and only for it"}},
		{"qadj unknown kind", qadjHead, "spec:\n  target: {kind: Pod, name: p}\n  action: Reset\n", []string{`spec.target.kind: Unsupported value: "Pod": supported values: "UsageQuota", "RateLimitPolicy"`}},
		{"qadj subject twice", qadjHead, "spec:\n" + toQuota + "  action: Reset\n  subject: {values: [alice], hash: 0123456789abcdef0123456789abcdef}\n", []string{"spec.subject: Invalid value", "give the subject as values or as hash, not both"}},
		{"qadj hash not hex", qadjHead, "spec:\n" + toQuota + "  action: Reset\n  subject: {hash: alice}\n", []string{`spec.subject.hash: Invalid value: "alice"`}},
		{"qadj nine values", qadjHead, "spec:\n" + toLimit + "  action: Reset\n  subject: {values: [a, b, c, d, e, f, g, h, i]}\n", []string{"spec.subject.values: Too many: 9: must have at most 8 items"}},
		{"qq asking nothing", qqHead, "spec: {}\n", []string{"spec: Invalid value", "ask one question: set usage or check, not both and not neither"}},
		{"qq asking twice", qqHead, "spec:\n  usage: {target: {kind: UsageQuota, name: q}}\n  check: {limits: [{target: {kind: UsageQuota, name: q}, subjectHash: " + aHash + "}]}\n",
			[]string{"spec: Invalid value", "ask one question: set usage or check, not both and not neither"}},
		{"qq top over 100", qqHead, "spec:\n  usage: {target: {kind: UsageQuota, name: q}, top: 101}\n", []string{"spec.usage.top: Invalid value: 101", "less than or equal to 100"}},
		{"qq usage of a policy without limit", qqHead, "spec:\n  usage: {target: {kind: RateLimitPolicy, name: api}}\n", []string{"spec.usage.target: Invalid value", "required for a RateLimitPolicy, and only for it"}},
		{"qq check of nothing", qqHead, "spec:\n  check: {limits: []}\n", []string{"spec.check.limits: Invalid value", "should have at least 1 items"}},
		{"qq check of 17 limits", qqHead, "spec:\n  check:\n    limits:\n" + repeat(17, func(int) string {
			return "    - {target: {kind: UsageQuota, name: q}, subjectHash: " + aHash + "}\n"
		}), []string{"spec.check.limits: Too many: 17: must have at most 16 items"}},
		{"qq check of a raw subject", qqHead, "spec:\n  check: {limits: [{target: {kind: UsageQuota, name: q}, subjectHash: acme}]}\n",
			[]string{`spec.check.limits[0].subjectHash: Invalid value: "acme"`, "should match '^[0-9a-f]{32}$'"}},
		{"qq check of cost 0", qqHead, "spec:\n  check: {limits: [{target: {kind: UsageQuota, name: q}, subjectHash: " + aHash + ", cost: 0}]}\n",
			[]string{"spec.check.limits[0].cost: Invalid value: 0", "greater than or equal to 1"}},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			obj := object(t, fmt.Sprintf(tt.head, fmt.Sprintf("invalid-%d", i))+tt.body)
			err := c.Create(context.Background(), obj)
			if err == nil {
				t.Fatalf("accepted:\n%s", tt.body)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q:\n%v", w, err)
				}
			}
		})
	}
}

// Every sample is accepted as written, and the defaults are filled in.
func TestSamplesAreAccepted(t *testing.T) {
	paths, err := filepath.Glob(filepath.Join(kubeenv.ModuleRoot(), "config", "samples", "policy_*.yaml"))
	if err != nil || len(paths) < 9 {
		t.Fatalf("samples: %v, %v; want at least 9", paths, err)
	}
	for _, p := range paths {
		t.Run(filepath.Base(p), func(t *testing.T) {
			raw, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			obj := object(t, string(raw))
			if err := c.Create(context.Background(), obj); err != nil {
				t.Fatalf("rejected: %v", err)
			}
			if obj.GetKind() == "QuotaAdjustment" {
				return // it has no defaults
			}
			enforcement, _, _ := unstructured.NestedString(obj.Object, "spec", "enforcement")
			failure, _, _ := unstructured.NestedString(obj.Object, "spec", "failurePolicy")
			if enforcement == "" || failure == "" {
				t.Fatalf("defaults not applied: enforcement %q, failurePolicy %q", enforcement, failure)
			}
		})
	}
}

// A QuotaAdjustment is applied once: editing it would rewrite the audit
// trail, so the API server refuses any change to its spec.
func TestQuotaAdjustmentIsImmutable(t *testing.T) {
	obj := object(t, fmt.Sprintf(qadjHead, "immutable")+"spec:\n"+toQuota+"  action: Grant\n  units: 5\n  subject: {values: [alice]}\n")
	if err := c.Create(context.Background(), obj); err != nil {
		t.Fatalf("create: %v", err)
	}
	if err := unstructured.SetNestedField(obj.Object, int64(500), "spec", "units"); err != nil {
		t.Fatal(err)
	}
	err := c.Update(context.Background(), obj)
	want := "a QuotaAdjustment cannot be changed once created; create another"
	if err == nil || !strings.Contains(err.Error(), "spec: Invalid value") || !strings.Contains(err.Error(), want) {
		t.Fatalf("update: %v; want spec: Invalid value ... %q", err, want)
	}
}

// A QuotaQuery is asked once: the API server refuses a change of its
// question, so an answer in status always belongs to the spec beside it.
func TestQuotaQueryIsImmutable(t *testing.T) {
	obj := object(t, fmt.Sprintf(qqHead, "immutable")+"spec:\n  usage: {target: {kind: UsageQuota, name: q}}\n")
	if err := c.Create(context.Background(), obj); err != nil {
		t.Fatalf("create: %v", err)
	}
	if top, _, _ := unstructured.NestedInt64(obj.Object, "spec", "usage", "top"); top != 10 {
		t.Errorf("spec.usage.top defaulted to %d; want 10", top)
	}
	if err := unstructured.SetNestedField(obj.Object, "other", "spec", "usage", "target", "name"); err != nil {
		t.Fatal(err)
	}
	err := c.Update(context.Background(), obj)
	want := "a QuotaQuery is answered once and cannot be changed; create another"
	if err == nil || !strings.Contains(err.Error(), "spec: Invalid value") || !strings.Contains(err.Error(), want) {
		t.Fatalf("update: %v; want spec: Invalid value ... %q", err, want)
	}
}
