package main

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

const quotaYAML = `apiVersion: policy.quotaops.dev/v1alpha1
kind: UsageQuota
metadata: {name: api-calls, namespace: team-a}
spec:
  selector: {}
  subject: {source: Header, name: X-Customer}
  limit: 10
  period: Month
  timeZone: UTC
`

const policyYAML = `apiVersion: policy.quotaops.dev/v1alpha1
kind: RateLimitPolicy
metadata: {name: api, namespace: team-a}
spec:
  selector: {}
  limits:
    - name: per-user
      key: [{source: Header, name: X-User}]
      rates: [{limit: 3, window: 1h}]
`

// step is one plugin command and exactly what it prints.
type step struct {
	name           string
	args           []string
	stdout, stderr string
	code           int
}

func (s step) run(t *testing.T) {
	t.Run(s.name, func(t *testing.T) {
		out, errOut, code := quota(t, s.args...)
		if out != s.stdout || errOut != s.stderr || code != s.code {
			t.Errorf("kubectl quota %s\n got (exit %d):\n%s%s\nwant (exit %d):\n%s%s", strings.Join(s.args, " "), code, out, errOut, s.code, s.stdout, s.stderr)
		}
	})
}

// The plugin, against a real API server and the manager answering its
// QuotaQueries:
// usage of a quota and of a rate limit, checks of subjects and of a request
// that consume nothing, then a reset and a grant that the manager applies,
// each with exactly what it prints.
func TestUsageCheckResetGrant(t *testing.T) {
	w.env.MustKubectl(t, "create", "namespace", "team-a")
	apply(t, quotaYAML)
	apply(t, policyYAML)
	uq, rlp := quotaLimit(t, quotaYAML), policyLimit(t, policyYAML)
	consume(t, uq, "acme", 7)
	consume(t, uq, "globex", 2)
	consume(t, rlp, "alice", 3)
	consume(t, rlp, "bob", 1)

	now := time.Now().UTC()
	monthStart, monthEnd := monthBounds()
	hourEnd := now.Truncate(time.Hour).Add(time.Hour).Format(time.RFC3339)
	quotaUsage := "UsageQuota team-a/api-calls: 10 per subject, period " + monthStart + " to " + monthEnd + "\n" +
		"2 subjects consumed 9\n" + table([]string{"SUBJECT", "USED", "REMAINING"}, []string{hash("acme"), "7", "3"}, []string{hash("globex"), "2", "8"})
	header := []string{"LIMIT", "WINDOW", "USED", "REMAINING", "ALLOWED", "RESETS AT"}
	allowed := "Allowed: a request now would pass (nothing was consumed)\n"
	for _, s := range []step{
		{name: "usage of a quota", args: []string{"usage", "usagequota/api-calls", "-n", "team-a"}, stdout: quotaUsage},
		{name: "usage of a limit", args: []string{"usage", "rlp/api", "--limit", "per-user", "-n", "team-a"},
			stdout: "RateLimitPolicy team-a/api, limit per-user: 3 per 1h\n2 subjects have used it in their current window (every key scanned)\n" +
				table([]string{"SUBJECT", "WINDOW", "USED", "REMAINING"}, []string{hash("alice"), "1h", "3", "0"}, []string{hash("bob"), "1h", "1", "2"})},
		{name: "top 1", args: []string{"usage", "uq/api-calls", "-n", "team-a", "--top", "1"},
			stdout: "UsageQuota team-a/api-calls: 10 per subject, period " + monthStart + " to " + monthEnd + "\n" +
				"2 subjects consumed 9\n" + table([]string{"SUBJECT", "USED", "REMAINING"}, []string{hash("acme"), "7", "3"})},
		{name: "check a subject over its limit", args: []string{"check", "ratelimitpolicy/api", "--limit", "per-user", "--subject", "alice", "-n", "team-a"},
			stdout: "Denied: a request now would get 429 Too Many Requests (nothing was consumed)\n" +
				table(header, []string{"ratelimitpolicy/api per-user", "1h", "3/3", "0", "false", hourEnd})},
		{name: "check a cost that fits exactly", args: []string{"check", "usagequota/api-calls", "--subject", "acme", "--cost", "3", "-n", "team-a"},
			stdout: allowed + table(header, []string{"usagequota/api-calls", "period", "7/10", "3", "true", monthEnd})},
		{name: "check a request", args: []string{"check", "--request", "GET /v1/items", "-H", "X-User: bob", "-H", "X-Customer: globex", "-n", "team-a"},
			stdout: allowed + table(header, []string{"ratelimitpolicy/api per-user", "1h", "1/3", "2", "true", hourEnd},
				[]string{"usagequota/api-calls", "period", "2/10", "8", "true", monthEnd})},
		{name: "check a request no limit meets", args: []string{"check", "--request", "GET /v1/items", "-n", "team-a"},
			stdout: "No limit of namespace team-a applies to this request: it would pass\n"},
		{name: "checks consumed nothing", args: []string{"usage", "usagequota/api-calls", "-n", "team-a"}, stdout: quotaUsage},
		{name: "reset", args: []string{"reset", "ratelimitpolicy/api", "--limit", "per-user", "--subject", "alice", "--name", "reset-alice", "--reason", "ticket 4711", "-n", "team-a"},
			stdout: "quotaadjustment.policy.quotaops.dev/reset-alice created\n" +
				"Reset of RateLimitPolicy api limit per-user of subject " + hash("alice") + " applied: remaining 0 -> 3 of 3\n"},
		{name: "after the reset", args: []string{"check", "rlp/api", "--limit", "per-user", "--subject", "alice", "-n", "team-a"},
			stdout: allowed + table(header, []string{"ratelimitpolicy/api per-user", "1h", "0/3", "3", "true", hourEnd})},
		{name: "grant", args: []string{"grant", "usagequota/api-calls", "--subject", "acme", "--units", "5", "--name", "grant-acme", "-n", "team-a"},
			stdout: "quotaadjustment.policy.quotaops.dev/grant-acme created\n" +
				"Grant of 5 units on UsageQuota api-calls of subject " + hash("acme") + " applied: remaining 3 -> 8 of 10\n"},
		{name: "after the grant", args: []string{"usage", "usagequota/api-calls", "-n", "team-a"},
			stdout: "UsageQuota team-a/api-calls: 10 per subject, period " + monthStart + " to " + monthEnd + "\n" +
				"2 subjects consumed 9\n" + table(append([][]string{{"SUBJECT", "USED", "REMAINING"}}, byHash([]string{hash("globex"), "2", "8"}, []string{hash("acme"), "2", "8"})...)...)},
		{name: "grant on a rate limit", args: []string{"grant", "ratelimitpolicy/api", "--limit", "per-user", "--subject", "alice", "--units", "5", "--name", "grant-alice", "-n", "team-a"},
			stderr: "Error from server (Invalid): QuotaAdjustment.policy.quotaops.dev \"grant-alice\" is invalid: spec: Invalid value: only a UsageQuota takes a Grant; a RateLimitPolicy limit can be Reset\n", code: 1},
		{name: "missing quota", args: []string{"usage", "usagequota/nope", "-n", "team-a"},
			stderr: "error: Not answered: UsageQuota nope does not exist\n", code: 1},
		{name: "missing limit", args: []string{"check", "rlp/api", "--limit", "nope", "--subject", "alice", "-n", "team-a"},
			stderr: "error: Not answered: RateLimitPolicy api has no limit \"nope\"\n", code: 1},
		{name: "not a target", args: []string{"usage", "deployment/web", "-n", "team-a"},
			stderr: "error: \"deployment/web\": name a usagequota/NAME or a ratelimitpolicy/NAME\n", code: 1},
		{name: "no subject", args: []string{"reset", "usagequota/api-calls", "-n", "team-a"},
			stderr: "error: name the subject with --subject (or --subject-hash)\n", code: 1},
		// Without the install's key, a hash would name no counter: refused.
		{name: "no subject key", args: []string{"check", "uq/api-calls", "--subject", "acme", "--subject-key-file", "", "-n", "team-a"},
			stderr: "error: hashing a subject needs the install's subject key, from the Secret team-a/quota-operator-store (secrets \"quota-operator-store\" not found): give --subject-key-file, or name the subject by --subject-hash\n", code: 1},
	} {
		s.run(t)
	}
}

// Kubernetes RBAC decides who reads usage, per namespace: a user bound to
// the shipped usage viewer role in team-b reads usage and checks requests
// there and nowhere else, and may not reset anything; the queries it made
// are gone when it is done.
func TestUsageNeedsRBAC(t *testing.T) {
	w.env.MustKubectl(t, "create", "namespace", "team-b")
	apply(t, strings.ReplaceAll(quotaYAML, "team-a", "team-b"))
	w.env.MustKubectl(t, "create", "rolebinding", "viewer", "-n", "team-b", "--clusterrole", "quota-operator-usage-viewer", "--user", "dev-dana")
	start, end := monthBounds()
	for _, s := range []step{
		{name: "bound", args: []string{"usage", "uq/api-calls", "-n", "team-b", "--as", "dev-dana"},
			stdout: fmt.Sprintf("UsageQuota team-b/api-calls: 10 per subject, period %s to %s\n0 subjects consumed 0\n", start, end)},
		{name: "a request", args: []string{"check", "--request", "GET /", "-H", "X-Customer: acme", "-n", "team-b", "--as", "dev-dana"},
			stdout: "Allowed: a request now would pass (nothing was consumed)\n" + table([]string{"LIMIT", "WINDOW", "USED", "REMAINING", "ALLOWED", "RESETS AT"},
				[]string{"usagequota/api-calls", "period", "0/10", "10", "true", end})},
		{name: "another namespace", args: []string{"usage", "uq/api-calls", "-n", "team-a", "--as", "dev-dana"},
			stderr: "Error from server (Forbidden): quotaqueries.policy.quotaops.dev is forbidden: User \"dev-dana\" cannot create resource \"quotaqueries\" in API group \"policy.quotaops.dev\" in the namespace \"team-a\"\n", code: 1},
		{name: "check", args: []string{"check", "uq/api-calls", "--subject-hash", hash("x"), "-n", "team-a", "--as", "dev-dana"},
			stderr: "Error from server (Forbidden): quotaqueries.policy.quotaops.dev is forbidden: User \"dev-dana\" cannot create resource \"quotaqueries\" in API group \"policy.quotaops.dev\" in the namespace \"team-a\"\n", code: 1},
		{name: "reset", args: []string{"reset", "uq/api-calls", "--subject", "x", "-n", "team-b", "--as", "dev-dana"},
			stderr: "Error from server (Forbidden): quotaadjustments.policy.quotaops.dev is forbidden: User \"dev-dana\" cannot create resource \"quotaadjustments\" in API group \"policy.quotaops.dev\" in the namespace \"team-b\"\n", code: 1},
	} {
		s.run(t)
	}
	t.Run("no query left behind", func(t *testing.T) {
		if out := w.env.MustKubectl(t, "get", "quotaqueries", "-n", "team-b", "-o", "name"); out != "" {
			t.Fatalf("QuotaQueries left in team-b: %q; want the plugin to have deleted its own", out)
		}
	})
}

// byHash orders rows of equal use as the operator does: by subject hash.
func byHash(rows ...[]string) [][]string {
	slices.SortFunc(rows, func(a, b []string) int { return strings.Compare(a[0], b[0]) })
	return rows
}

func monthBounds() (string, string) {
	now := time.Now().UTC()
	month := time.Date(now.Year(), now.Month(), 1, 0, 0, 0, 0, time.UTC)
	return month.Format(time.RFC3339), month.AddDate(0, 1, 0).Format(time.RFC3339)
}

// kubectl quota hash prints what sidecars key a subject by, under the
// install's key: an override that names acme by that hash alone gives
// acme its own limit, and usage shows acme's hash with 3 - 1 remaining.
// Without the key it is refused, as check is.
func TestHashNamesAnOverride(t *testing.T) {
	out, errOut, code := quota(t, "hash", "acme")
	if code != 0 || errOut != "" || out != hash("acme")+"\n" {
		t.Fatalf("kubectl quota hash acme: exit %d, %q %q; want %s", code, out, errOut, hash("acme"))
	}
	w.env.MustKubectl(t, "create", "namespace", "team-h")
	quota := strings.ReplaceAll(quotaYAML, "team-a", "team-h") + "  overrides: [{subjectHash: " + strings.TrimSpace(out) + ", limit: 3}]\n"
	apply(t, quota)
	consume(t, quotaLimit(t, quota), "acme", 1)
	monthStart, monthEnd := monthBounds()
	for _, s := range []step{
		{name: "usage under the override", args: []string{"usage", "uq/api-calls", "-n", "team-h"},
			stdout: "UsageQuota team-h/api-calls: 10 per subject, period " + monthStart + " to " + monthEnd + "\n" +
				"1 subjects consumed 1\n" + table([]string{"SUBJECT", "USED", "REMAINING"}, []string{hash("acme"), "1", "2"})},
		{name: "no subject key", args: []string{"hash", "acme", "--subject-key-file", "", "-n", "team-h"},
			stderr: "error: hashing a subject needs the install's subject key, from the Secret team-h/quota-operator-store (secrets \"quota-operator-store\" not found): give --subject-key-file, or name the subject by --subject-hash\n", code: 1},
		{name: "no value", args: []string{"hash"}, stderr: "error: accepts 1 arg(s), received 0\n", code: 1},
	} {
		s.run(t)
	}
}

// "-" reads the value from the first line of standard input, so it stays
// out of the shell's history.
func TestHashInput(t *testing.T) {
	for _, c := range []struct {
		arg, stdin, want, err string
	}{
		{"acme", "", "acme", ""},
		{"-", "sk-live-1\n", "sk-live-1", ""},
		{"-", "sk-live-2\r\nignored\n", "sk-live-2", ""},
		{"-", "sk-no-newline", "sk-no-newline", ""},
		{"-", "", "", "no value on standard input"},
	} {
		got, err := hashInput(c.arg, strings.NewReader(c.stdin))
		if got != c.want || (err == nil) != (c.err == "") || (err != nil && err.Error() != c.err) {
			t.Errorf("hashInput(%q, %q) = %q, %v; want %q, %q", c.arg, c.stdin, got, err, c.want, c.err)
		}
	}
}

// The APIService an earlier release served kubectl quota's reads through
// is gone once the manager runs: nothing serves it any more, and while it
// stayed unavailable no namespace in the cluster could finish deleting.
func TestLegacyAPIServiceRemoved(t *testing.T) {
	deadline := time.Now().Add(30 * time.Second)
	for {
		out, err := w.env.Kubectl("get", "apiservice", "v1alpha1.usage.quotaops.dev", "-o", "name")
		if err != nil && strings.Contains(out, "NotFound") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the legacy APIService is still there after 30s: %v %s", err, out)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// kubectl quota version prints the plugin's version and commit, as
// quota-operator version does (make build sets both).
func TestVersion(t *testing.T) {
	version, commit = "v9.8.7", "0123abcd"
	t.Cleanup(func() { version, commit = "dev", "" })
	out, errOut, code := quota(t, "version")
	if code != 0 || errOut != "" || !strings.HasPrefix(out, "v9.8.7 (commit 0123abcd, go") {
		t.Fatalf("kubectl quota version: exit %d, %q %q; want v9.8.7 (commit 0123abcd, go...)", code, out, errOut)
	}
}
