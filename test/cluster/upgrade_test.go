//go:build cluster

package cluster

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/quotaops/quota-operator/internal/testutil/localtest"
)

// Run by `make test-upgrade`, which builds both releases (hack/upgrade.sh)
// and imports their images; it reads, besides TestMain's:
//
//	QUOTA_PREVIOUS_VERSION, QUOTA_PREVIOUS_DIST    the release upgraded from
//	QUOTA_CANDIDATE_VERSION, QUOTA_CANDIDATE_DIST  this commit's release

// The load each upgrade runs under: a request of the policy and one of the
// quota every loadEvery, for loadRequests each.
const (
	loadRequests = 1200
	loadEvery    = 100 * time.Millisecond
	// loadTenants share the policy's load: each sends loadRequests/loadTenants.
	loadTenants = 4
	// steadyLimit is each tenant's limit: its 121st request, 48 s in (one
	// every loadEvery*loadTenants), is the first denied, while the manager
	// rolls (45 s to 51–61 s in, on the build machine).
	steadyLimit = 120
	// quotaLimit is meteredQuota's; quotaSeed of it is used before the load,
	// which then uses the rest 50 s in.
	quotaLimit = 1000
	quotaSeed  = 500
	// upgradeAfter is when the upgrade starts, from the load's start.
	upgradeAfter = 45 * time.Second
	// idleUsed is what an idle tenant and an idle key use before the
	// upgrade; nothing uses them during it.
	idleUsed = 5
	// afterLimit is the policy's limit once upgraded.
	afterLimit = 7
)

// ship is one release as make release wrote it, and its image.
type ship struct{ version, dist, image string }

func (r ship) file(name string) string { return filepath.Join(r.dist, name) }

func (r ship) chart() string {
	return r.file("quota-operator-" + strings.TrimPrefix(r.version, "v") + ".tgz")
}

// shipFromEnv is the release hack/upgrade.sh built as which (PREVIOUS or
// CANDIDATE), for the registry quotaops.local/previous or /candidate.
func shipFromEnv(t *testing.T, which string) ship {
	r := ship{version: os.Getenv("QUOTA_" + which + "_VERSION"), dist: os.Getenv("QUOTA_" + which + "_DIST")}
	if r.version == "" || r.dist == "" {
		t.Fatalf("QUOTA_%s_VERSION and _DIST are not set: run this test with `make test-upgrade`", which)
	}
	r.image = "quotaops.local/" + strings.ToLower(which) + "/quota-operator:" + r.version
	return r
}

// way is how a platform team installs and upgrades the operator.
type way struct {
	install, upgrade func(t *testing.T, r ship)
	remove           func(t *testing.T)
}

// TestUpgrade installs the previous release as its users have it, gives it
// a RateLimitPolicy and a monthly UsageQuota with counters in use, and
// upgrades it to this commit's release while a client pod sends a steady
// load through the workload's Service: with Helm, the CRDs applied first
// as docs/versioning.md says, then with kubectl apply --server-side of
// install.yaml. No request may fail, none pass over a limit, no usage be
// lost; the old sidecars then enforce exactly under the new manager, and
// so do the new ones after a rollout.
func TestUpgrade(t *testing.T) {
	from, to := shipFromEnv(t, "PREVIOUS"), shipFromEnv(t, "CANDIDATE")
	t.Logf("upgrading %s to %s", from.version, to.version)
	helm := way{
		install: func(t *testing.T, r ship) {
			if err := helmInstallChart(operatorNS, r.chart(), helmValuesBundledRedis()); err != nil {
				t.Fatalf("helm install %s: %v", r.chart(), err)
			}
		},
		upgrade: func(t *testing.T, r ship) {
			kubectl(t, "apply", "--server-side", "-f", r.file("crds.yaml"))
			if err := helmUpgradeChart(operatorNS, r.chart(), helmValuesBundledRedis()); err != nil {
				t.Fatalf("helm upgrade to %s: %v", r.chart(), err)
			}
		},
		remove: func(t *testing.T) {
			if err := helmUninstall(operatorNS); err != nil {
				t.Logf("helm uninstall: %v", err)
			}
		},
	}
	apply := way{
		install: func(t *testing.T, r ship) { applyInstaller(t, r) },
		upgrade: func(t *testing.T, r ship) { applyInstaller(t, r) },
		remove:  func(*testing.T) {}, // cleanup's make undeploy deletes the same objects
	}
	t.Run("helm upgrade with the CRDs applied first", func(t *testing.T) { upgradeUnderLoad(t, from, to, helm) })
	t.Run("kubectl apply --server-side -f install.yaml", func(t *testing.T) { upgradeUnderLoad(t, from, to, apply) })
}

func helmValuesBundledRedis() map[string]any {
	return map[string]any{"redis": map[string]any{"image": env.redisImg}}
}

// applyInstaller applies the release's install.yaml server-side, with the
// bundled Redis's image from the node (a team with a registry mirror
// rewrites it the same way), and waits for the rollout.
func applyInstaller(t *testing.T, r ship) {
	t.Helper()
	manifest, err := os.ReadFile(r.file("install.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	const redisImage = "image: redis:7.4-alpine"
	if !strings.Contains(string(manifest), redisImage) {
		t.Fatalf("%s runs no %s", r.file("install.yaml"), redisImage)
	}
	path := filepath.Join(t.TempDir(), "install.yaml")
	writeFile(t, path, strings.ReplaceAll(string(manifest), redisImage, "image: "+env.redisImg))
	kubectl(t, "apply", "--server-side", "-f", path)
	kubectl(t, "-n", operatorNS, "rollout", "status", "statefulset/"+redisSts, "--timeout="+rolloutTimeout)
	kubectl(t, "-n", operatorNS, "rollout", "status", "deployment/"+managerDeploy, "--timeout="+rolloutTimeout)
}

func upgradeUnderLoad(t *testing.T, from, to ship, w way) {
	cleanup(t)
	w.install(t, from)
	t.Cleanup(func() {
		removeWorkload(t)
		w.remove(t)
		cleanup(t)
	})
	expectManagerImage(t, from.image)
	deployWorkload(t)
	expectSidecarImage(t, from.image)
	applyPolicy(t, steadyLimit)
	applyYAML(t, fmt.Sprintf(meteredQuota, appNS, quotaLimit))
	meteredAnswer(t, "probe-0", strconv.Itoa(quotaLimit-1))
	useIdle(t)
	seeded, err := clientRunHeader(workloadURL+"metered", "X-Api-Key=sk-load", quotaSeed, false)
	if err != nil {
		t.Fatal(err)
	}
	for i, a := range seeded {
		if a.Status != 200 || a.Header["X-RateLimit-Remaining"] != strconv.Itoa(quotaLimit-1-i) {
			t.Fatalf("seeding the quota, request %d: %+v", i+1, a)
		}
	}
	usedBefore := 1 + idleUsed + quotaSeed
	expectUsed(t, usedBefore)

	steady, metered := startLoad("", tenantHeader+"=steady", loadRequests, loadEvery, "--vary="+strconv.Itoa(loadTenants)),
		startLoad("metered", "X-Api-Key=sk-load", loadRequests, loadEvery)
	loadStart := time.Now()
	time.Sleep(upgradeAfter)
	upgradeStart := time.Since(loadStart)
	w.upgrade(t, to)
	expectManagerImage(t, to.image)
	upgradeEnd := time.Since(loadStart)
	steadyAnswers, meteredAnswers := steady.wait(t), metered.wait(t)
	if last := loadEvery * (loadRequests - 1); upgradeEnd > last {
		t.Fatalf("the upgrade took until %v, after the load's last request at %v: raise loadRequests", upgradeEnd, last)
	}
	t.Logf("upgraded from %v to %v into the load", upgradeStart.Round(time.Millisecond), upgradeEnd.Round(time.Millisecond))
	during := func(ms int64) string {
		if at := time.Duration(ms) * time.Millisecond; at >= upgradeStart && at <= upgradeEnd {
			return "during the upgrade"
		}
		return "not during the upgrade"
	}

	perTenant := map[string][]answer{}
	for i, a := range steadyAnswers {
		tenant := fmt.Sprintf("steady-%d", i%loadTenants)
		perTenant[tenant] = append(perTenant[tenant], a)
	}
	for tenant, answers := range perTenant {
		expectCountedDown(t, tenant, answers, steadyLimit, steadyLimit, during)
	}
	expectCountedDown(t, "sk-load", meteredAnswers, quotaLimit-quotaSeed, quotaLimit, during)
	expectUsed(t, usedBefore+quotaLimit-quotaSeed)

	t.Run("the old sidecars enforce exactly under the new manager", func(t *testing.T) {
		expectSidecarImage(t, from.image)
		if got := clientGet(t, "idle", 1)[0]; got.Status != 200 || got.Header["X-RateLimit-Remaining"] != strconv.Itoa(steadyLimit-idleUsed-1) {
			t.Fatalf("the idle tenant after the upgrade: %+v, want %d remaining", got, steadyLimit-idleUsed-1)
		}
		expectIdleKept(t, 0)
		applyPolicy(t, afterLimit)
		expectExactly(t, "after-upgrade", afterLimit)
	})
	t.Run("a rollout gives the workload the new sidecar which is exact and keeps the counters", func(t *testing.T) {
		if got := restartWorkload(t, "after-upgrade"); got.Status != 429 || got.Header["X-RateLimit-Remaining"] != "0" {
			t.Fatalf("after-upgrade after the rollout: %+v, want 429 with nothing remaining", got)
		}
		expectSidecarImage(t, to.image)
		expectIdleKept(t, 1)
		expectExactly(t, "after-rollout", afterLimit)
	})
}

// useIdle spends idleUsed of the policy as tenant idle and of the quota as
// key sk-idle.
func useIdle(t *testing.T) {
	t.Helper()
	for i, a := range clientGet(t, "idle", idleUsed) {
		if a.Status != 200 || a.Header["X-RateLimit-Remaining"] != strconv.Itoa(steadyLimit-1-i) {
			t.Fatalf("idle, request %d: %+v", i+1, a)
		}
	}
	for i := range idleUsed {
		if got := meteredGet(t, "sk-idle"); got.Status != 200 || got.Header["X-RateLimit-Remaining"] != strconv.Itoa(quotaLimit-1-i) {
			t.Fatalf("sk-idle, request %d: %+v", i+1, got)
		}
	}
}

// expectIdleKept: the idle key's next request, after checked more
// requests since the upgrade, counts on from what it used before.
func expectIdleKept(t *testing.T, checked int) {
	t.Helper()
	meteredAnswer(t, "sk-idle", strconv.Itoa(quotaLimit-idleUsed-checked-1))
}

// load is a steady load the client pod sends (as TestUpgrade and the
// Redis failover test run it).
type load struct {
	done chan loadResult
}

type loadResult struct {
	answers []answer
	err     error
}

// startLoad sends n requests to the workload's path with header (K=V),
// one every every, with more of testapp get's flags.
func startLoad(path, header string, n int, every time.Duration, flags ...string) load {
	l := load{done: make(chan loadResult, 1)}
	flags = append(flags, "--every="+every.String())
	go func() {
		a, err := clientRunHeader(workloadURL+path, header, n, false, flags...)
		l.done <- loadResult{a, err}
	}()
	return l
}

func (l load) wait(t *testing.T) []answer {
	t.Helper()
	r := <-l.done
	if r.err != nil {
		t.Fatal(r.err)
	}
	return r.answers
}

// expectCountedDown: of a subject's answers in the order sent, the first
// admitted are 200 with the remaining counting down to 0 from limit, every
// one after is 429 with nothing remaining, and none failed or was dropped.
// It shows the first few answers that are not so, and how many.
func expectCountedDown(t *testing.T, subject string, answers []answer, admitted, limit int, during func(ms int64) string) {
	t.Helper()
	count := map[string]int{}
	var wrong []string
	for i, a := range answers {
		kind, problem := judgeAnswer(a, i, admitted, limit)
		count[kind]++
		if problem != "" {
			wrong = append(wrong, fmt.Sprintf("request %d (at %d ms, %s): %s: %+v", i+1, a.Millis, during(a.Millis), problem, a))
		}
	}
	crossed := "none denied"
	if admitted < len(answers) {
		crossed = fmt.Sprintf("the first at %d ms, %s", answers[admitted].Millis, during(answers[admitted].Millis))
	}
	t.Logf("%s: %d requests, %d admitted, %d denied (%s), %d failed, %d admitted beyond the limit",
		subject, len(answers), count["admitted"], count["denied"], crossed, count["failed"], count["over"])
	if len(wrong) > 0 {
		t.Errorf("%s: %d answers are not as counted, the first:\n%s", subject, len(wrong), strings.Join(wrong[:min(len(wrong), 5)], "\n"))
	}
	if count["admitted"] != admitted {
		t.Errorf("%s: %d admitted, want exactly %d", subject, count["admitted"], admitted)
	}
}

// judgeAnswer is the i-th answer's kind (admitted, denied, failed, or over
// for admitted beyond the limit) and what is wrong with it, if anything.
func judgeAnswer(a answer, i, admitted, limit int) (kind, problem string) {
	switch {
	case a.Error != "" || a.Status != 200 && a.Status != 429:
		return "failed", "failed"
	case a.Status == 200 && i >= admitted:
		return "over", "admitted beyond the limit"
	case a.Status == 200:
		if want := strconv.Itoa(admitted - 1 - i); a.Header["X-RateLimit-Remaining"] != want || a.Header["X-RateLimit-Limit"] != strconv.Itoa(limit) {
			return "admitted", fmt.Sprintf("want %s remaining of %d", want, limit)
		}
		return "admitted", ""
	case i < admitted:
		return "denied", "denied within the limit"
	case a.Header["X-RateLimit-Remaining"] != "0" || a.Header["Retry-After"] == "":
		return "denied", "want nothing remaining and Retry-After"
	}
	return "denied", ""
}

// expectManagerImage waits until every manager pod runs image and one
// holds the lease.
func expectManagerImage(t *testing.T, image string) {
	t.Helper()
	localtest.WaitFor(t, 120*time.Second, "every manager pod on "+image, func() error {
		out := kubectl(t, "-n", operatorNS, "get", "pods", "-l", "control-plane=controller-manager",
			"-o", `jsonpath={range .items[*]}{.spec.containers[0].image} {.status.containerStatuses[0].ready}{"\n"}{end}`)
		lines := strings.Split(out, "\n")
		for _, line := range lines {
			if line != image+" true" {
				return fmt.Errorf("manager pods: %q", out)
			}
		}
		if len(lines) != 2 {
			return fmt.Errorf("%d manager pods, want 2", len(lines))
		}
		if leader(t) == "" {
			return fmt.Errorf("lease %s has no holder", leaseName)
		}
		return nil
	})
}

// expectSidecarImage: every running pod of the workload has the sidecar
// of image.
func expectSidecarImage(t *testing.T, image string) {
	t.Helper()
	out := kubectl(t, "-n", appNS, "get", "pods", "-l", "app=demo-api", "--field-selector=status.phase=Running",
		"-o", `jsonpath={range .items[*]}{.spec.initContainers[0].image}{"\n"}{end}`)
	for _, line := range strings.Split(out, "\n") {
		if line != image {
			t.Fatalf("the workload's sidecars: %q, want %s", out, image)
		}
	}
}
