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
	haRequests = 1500
)

// haLimit is a quota no load of the test reaches: every request is
// decided by the store, and refused (Closed) only while there is no
// primary.
const haLimit = 100000

// expectRedisHAFailover installs config/overlays/redis-ha (three Redis
// pods, three Sentinels) and, while a client sends a steady load through
// the workload's sidecars, deletes the primary's pod. The Sentinels
// promote a replica within 30 s; every request is answered, 200 when the
// store counted it and 503 with Retry-After (the quota is Closed) while
// there is no primary; afterwards the store counts exactly what was
// admitted, and the deleted primary is back as a replica. Then, under the
// same load, redis-server of the new primary is killed (SIGKILL): it
// restarts in its pod from its append-only file before the Sentinels
// would fail over, so at most a second of increments may be lost. The
// test logs both losses.
func expectRedisHAFailover(t *testing.T) {
	deployRedisHA(t)
	deployWorkload(t)
	applyYAML(t, fmt.Sprintf(meteredQuota, appNS, haLimit))
	localtest.WaitFor(t, 60*time.Second, "a request of the quota decided by the store", func() error {
		if got := meteredGet(t, "sk-probe"); got.Header["X-RateLimit-Limit"] != strconv.Itoa(haLimit) {
			return fmt.Errorf("%+v", got)
		}
		return nil
	})
	expectTenantUserOnEveryNode(t)

	primary := sentinelPrimary(t)
	uid := kubectl(t, "-n", operatorNS, "get", "pod", primary, "-o", "jsonpath={.metadata.uid}")
	var promoted string
	admitted := underLoad(t, "sk-ha", func() {
		kubectl(t, "-n", operatorNS, "delete", "pod", primary, "--wait=false")
		deleted := time.Now()
		localtest.WaitFor(t, 30*time.Second, "the Sentinels promoting a replica", func() error {
			if promoted = sentinelPrimary(t); promoted == primary {
				return fmt.Errorf("the primary is still %s", primary)
			}
			return nil
		})
		t.Logf("%s promoted %v after %s's pod was deleted", promoted, time.Since(deleted).Round(100*time.Millisecond), primary)
	})
	if lost := admitted - countedFor(t, "sk-ha"); lost != 0 {
		t.Errorf("deleting the primary's pod lost %d of %d admitted increments, want none", lost, admitted)
	}
	expectReplicaAgain(t, primary, uid)
	// The new pod started without users; the manager gives it them.
	expectTenantUserOnEveryNode(t)

	restarts := redisRestarts(t, promoted)
	admitted = underLoad(t, "sk-ha-kill", func() {
		killOnNode(t, promoted, "redis-server")
	})
	lost := admitted - countedFor(t, "sk-ha-kill")
	t.Logf("killing redis-server of the primary %s (restarts %d -> %d; the primary is now %s) lost %d of %d admitted increments",
		promoted, restarts, redisRestarts(t, promoted), sentinelPrimary(t), lost, admitted)
	if oneSecond := int(time.Second / haEvery); lost < 0 || lost > oneSecond {
		t.Errorf("killing the primary's redis-server lost %d increments, want 0 to a second's worth (%d)", lost, oneSecond)
	}
}

// underLoad sends haRequests requests of the quota as key, one every
// haEvery, disrupts the store after 8 s, and checks that every request was
// answered as the quota's failure policy says. It returns how many were
// admitted.
func underLoad(t *testing.T, key string, disrupt func()) int {
	t.Helper()
	l := startLoad("metered", "X-Api-Key="+key, haRequests, haEvery)
	time.Sleep(8 * time.Second)
	disrupt()
	return expectAnsweredByPolicy(t, l.wait(t))
}

// countedFor is what the store holds for key, as the headers of the next
// request decided tell it (less that request).
func countedFor(t *testing.T, key string) int {
	t.Helper()
	var next answer
	localtest.WaitFor(t, 60*time.Second, "a decided request", func() error {
		if next = meteredGet(t, key); next.Status != 200 || next.Header["X-RateLimit-Remaining"] == "" {
			return fmt.Errorf("%+v", next)
		}
		return nil
	})
	remaining, err := strconv.Atoi(next.Header["X-RateLimit-Remaining"])
	if err != nil {
		t.Fatal(err)
	}
	return haLimit - remaining - 1
}

// expectReplicaAgain: the deleted primary's pod (a new UID, its name) is
// Ready and replicates the new primary, which has two replicas again.
func expectReplicaAgain(t *testing.T, pod, oldUID string) {
	t.Helper()
	localtest.WaitFor(t, 120*time.Second, pod+" back as a replica", func() error {
		out, err := run("-n", operatorNS, "get", "pod", pod, "-o", `jsonpath={.metadata.uid} {.status.conditions[?(@.type=="Ready")].status}`)
		if err != nil || out == oldUID+" True" || !strings.HasSuffix(out, " True") {
			return fmt.Errorf("%s: %q: %w", pod, out, err)
		}
		info, err := redisCLI(t, pod, "INFO", "replication")
		if err != nil || !strings.Contains(info, "role:slave") || !strings.Contains(info, "master_link_status:up") {
			return fmt.Errorf("%s: %w: %s", pod, err, info)
		}
		info, err = redisCLI(t, sentinelPrimary(t), "INFO", "replication")
		if err != nil || !strings.Contains(info, "connected_slaves:2") {
			return fmt.Errorf("the primary: %w: %s", err, info)
		}
		return nil
	})
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
			return fmt.Errorf("%w: %s", err, out)
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
				return fmt.Errorf("ACL USERS: %w: %q", err, out)
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
		case a.Status == 200 && a.Header["X-RateLimit-Limit"] == strconv.Itoa(haLimit):
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
