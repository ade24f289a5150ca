//go:build cluster

package cluster

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/quotaops/quota-operator/internal/testutil/localtest"
)

const (
	sentinelSts = "quota-operator-redis-sentinel"
	// haLoad is the steady load of the failover: one request every
	// haEvery, haRequests of them.
	haEvery    = 20 * time.Millisecond
	haRequests = 2000
)

// A quota no load of the test reaches: every request is decided by the
// store, and refused (Closed) only while there is no primary.
const haQuota = `
apiVersion: policy.quotaops.dev/v1alpha1
kind: UsageQuota
metadata: {name: metered, namespace: %s}
spec:
  selector: {matchLabels: {app: demo-api}}
  subject: {source: Header, name: X-Api-Key}
  match: {pathPrefix: /metered}
  failurePolicy: Closed
  limit: 100000
  period: Month
  timeZone: Europe/Berlin
`

// expectRedisHAFailover installs config/overlays/redis-ha (three Redis
// pods, three Sentinels) and, while a client sends a steady load through
// the workload's sidecars, deletes the primary's pod. The Sentinels
// promote a replica within 30 s; every request is answered, 200 when the
// store counted it and 503 with Retry-After (the quota is Closed) while
// there is no primary; afterwards the store counts what was admitted (the
// test logs any difference: what the failover lost).
func expectRedisHAFailover(t *testing.T) {
	deployRedisHA(t)
	deployWorkload(t)
	applyYAML(t, fmt.Sprintf(haQuota, appNS))
	localtest.WaitFor(t, 60*time.Second, "a request of the quota decided by the store", func() error {
		if got := meteredGet(t, "sk-probe"); got.Header["X-RateLimit-Limit"] != "100000" {
			return fmt.Errorf("%+v", got)
		}
		return nil
	})
	expectTenantUserOnEveryNode(t)

	primary := sentinelPrimary(t)
	type result struct {
		answers []answer
		err     error
	}
	done := make(chan result, 1)
	go func() {
		a, err := clientRunHeader(workloadURL+"metered", "X-Api-Key=sk-ha", haRequests, false, "--every="+haEvery.String())
		done <- result{a, err}
	}()
	time.Sleep(8 * time.Second)
	uid := kubectl(t, "-n", operatorNS, "get", "pod", primary, "-o", "jsonpath={.metadata.uid}")
	kubectl(t, "-n", operatorNS, "delete", "pod", primary, "--wait=false")
	deleted := time.Now()
	var promoted string
	localtest.WaitFor(t, 30*time.Second, "the Sentinels promoting a replica", func() error {
		if promoted = sentinelPrimary(t); promoted == primary {
			return fmt.Errorf("the primary is still %s", primary)
		}
		return nil
	})
	t.Logf("%s promoted %v after %s's pod was deleted", promoted, time.Since(deleted).Round(100*time.Millisecond), primary)
	r := <-done
	if r.err != nil {
		t.Fatal(r.err)
	}
	admitted := expectAnsweredByPolicy(t, r.answers)
	newRedisPodReady(t, uid)

	// The next request's headers say what the store holds for the key.
	var next answer
	localtest.WaitFor(t, 60*time.Second, "a decided request after the failover", func() error {
		if next = meteredGet(t, "sk-ha"); next.Status != 200 || next.Header["X-RateLimit-Remaining"] == "" {
			return fmt.Errorf("%+v", next)
		}
		return nil
	})
	remaining, err := strconv.Atoi(next.Header["X-RateLimit-Remaining"])
	if err != nil {
		t.Fatal(err)
	}
	counted := 100000 - remaining - 1
	t.Logf("replication loss: %d admitted, %d counted: %d admitted beyond what the counter holds", admitted, counted, admitted-counted)
	if counted != admitted {
		t.Errorf("the store counts %d of the load after the failover, want the %d admitted", counted, admitted)
	}
}

// deployRedisHA installs config/overlays/redis-ha with make deploy, as
// deployOperator does config/default, and waits for all of it.
func deployRedisHA(t *testing.T) {
	cleanup(t)
	if out, err := makeTarget("deploy", "DEPLOY=overlays/redis-ha", "IMG="+env.img, "REDIS_IMG="+env.redisImg); err != nil {
		t.Fatalf("make deploy DEPLOY=overlays/redis-ha: %v\n%s", err, out)
	}
	for _, w := range []string{"statefulset/" + redisSts, "statefulset/" + sentinelSts, "deployment/" + managerDeploy} {
		kubectl(t, "-n", operatorNS, "rollout", "status", w, "--timeout="+rolloutTimeout)
	}
	localtest.WaitFor(t, 60*time.Second, "a primary with two replicas", func() error {
		out, err := redisCLI(t, sentinelPrimary(t), "INFO", "replication")
		if err != nil || !strings.Contains(out, "connected_slaves:2") {
			return fmt.Errorf("%v: %s", err, out)
		}
		return nil
	})
}

// sentinelPrimary is the pod the Sentinels name the primary, asked of the
// first Sentinel that answers.
func sentinelPrimary(t *testing.T) string {
	t.Helper()
	var errs []error
	for i := range 3 {
		pod := fmt.Sprintf("%s-%d", sentinelSts, i)
		out, err := sentinelCLI(t, pod, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", "quota")
		if host, _, ok := strings.Cut(out, "\n"); err == nil && ok {
			name, _, _ := strings.Cut(host, ".")
			return name
		}
		errs = append(errs, fmt.Errorf("%s: %q: %w", pod, out, err))
	}
	t.Fatalf("no Sentinel names the primary: %v", errors.Join(errs...))
	return ""
}

// sentinelCLI runs redis-cli in a Sentinel's container, logged in with the
// group's password.
func sentinelCLI(t *testing.T, pod string, args ...string) (string, error) {
	t.Helper()
	return run(append([]string{"-n", operatorNS, "exec", pod, "-c", "sentinel", "--", "/usr/local/bin/redis-cli",
		"--no-auth-warning", "-p", "26379", "--pass", redisPassword(t)}, args...)...)
}

// expectTenantUserOnEveryNode: the namespace's user is on each of the
// three Redis nodes, so a replica that is promoted lets the sidecars in.
func expectTenantUserOnEveryNode(t *testing.T) {
	for i := range 3 {
		pod := fmt.Sprintf("%s-%d", redisSts, i)
		localtest.WaitFor(t, 30*time.Second, "the tenant user on "+pod, func() error {
			out, err := redisCLI(t, pod, "ACL", "USERS")
			if err != nil || !strings.Contains(out, "quota-ns-"+appNS) {
				return fmt.Errorf("ACL USERS: %v: %q", err, out)
			}
			return nil
		})
	}
}

// expectAnsweredByPolicy: every request got an answer, 200 with the
// quota's headers or, while there was no primary, 503 with Retry-After.
// It returns how many were admitted and logs the gap.
func expectAnsweredByPolicy(t *testing.T, answers []answer) int {
	t.Helper()
	admitted, refused := 0, 0
	var first, last int64 = -1, -1
	for i, a := range answers {
		switch {
		case a.Status == 200 && a.Header["X-RateLimit-Limit"] == "100000":
			admitted++
		case a.Status == 503 && a.Header["Retry-After"] != "":
			refused++
			if first < 0 {
				first = a.Millis
			}
			last = a.Millis
		default:
			t.Fatalf("request %d at %d ms: %+v; want 200 decided by the store, or 503 with Retry-After", i, a.Millis, a)
		}
	}
	t.Logf("%d requests at one per %v: %d admitted, %d refused (Closed) from %d ms to %d ms",
		len(answers), haEvery, admitted, refused, first, last)
	return admitted
}
