package limiter_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/quotaops/quota-operator/internal/limiter"
	"github.com/quotaops/quota-operator/internal/store"
	"github.com/quotaops/quota-operator/internal/store/storetest"
	"github.com/quotaops/quota-operator/internal/testutil/redistest"
)

const (
	adminPassword    = "admin-pa55"
	sentinelPassword = "sentinel-admin-pa55" // the Sentinels' own, the manager's alone
	nsA, nsB         = "team-a", "team-b"
)

var tenantPasswords = map[string]string{nsA: "a-secret", nsB: "b-secret"}

func digest(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

// deployment is one Redis deployment: the admin's store URL (host part and
// path; credentials are added per user, and the query the admin's and the
// tenants' URLs end in) and every node's address.
type deployment struct {
	name, scheme, hostsAndPath string
	adminQuery, tenantQuery    string
	nodes                      []string
	sentinels                  []string
	restart                    func(t *testing.T)
}

func (d deployment) url(user, password, query string) string {
	return d.scheme + "://" + url.PathEscape(user) + ":" + url.PathEscape(password) + "@" + d.hostsAndPath + query
}

func (d deployment) admin() string { return d.url("", adminPassword, d.adminQuery) }

// adminNode is a client of node i as the admin.
func (d deployment) adminNode(i int) *redis.Client {
	return redis.NewClient(&redis.Options{Addr: d.nodes[i], Password: adminPassword, Protocol: 2})
}

func (d deployment) tenant(ns string) string {
	return d.url(limiter.TenantUserName(ns), tenantPasswords[ns], d.tenantQuery)
}

// tenantDeployments starts a single server, a Sentinel group (master and
// replica, and a Sentinel with a password of its own) and a Cluster of
// three masters with a replica each, all asking for the admin password.
func tenantDeployments(t *testing.T) []deployment {
	redistest.SkipIfMissing(t, startError)
	single, err := redistest.StartWith("--requirepass", adminPassword)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = single.Close() })
	sentinelFile := writeFile(t, "sentinel-admin", sentinelPassword)
	sn, err := redistest.StartSentinel("tenants", "requirepass "+sentinelPassword)
	if err == nil {
		t.Cleanup(func() { _ = sn.Close() })
		err = sn.RequirePassword(adminPassword)
	}
	if err != nil {
		t.Fatal(err)
	}
	c, err := redistest.StartCluster(3, 1)
	if err == nil {
		t.Cleanup(func() { _ = c.Close() })
		err = redistest.RequirePassword(adminPassword, c.Addrs()...)
	}
	if err != nil {
		t.Fatal(err)
	}
	restart := func(t *testing.T) {
		if err := single.Stop(); err != nil {
			t.Fatal(err)
		}
		if err := single.Start(); err != nil {
			t.Fatal(err)
		}
	}
	return []deployment{
		{name: "single", scheme: "redis", hostsAndPath: single.Addr + "/0", nodes: []string{single.Addr}, restart: restart},
		{name: "sentinel", scheme: "redis+sentinel", hostsAndPath: sn.Sentinel.Addr + "/" + sn.MasterName,
			adminQuery: "?sentinel_password_file=" + url.QueryEscape(sentinelFile),
			nodes:      []string{sn.Master.Addr, sn.Replica.Addr}, sentinels: []string{sn.Sentinel.Addr}},
		{name: "cluster", scheme: "redis+cluster", hostsAndPath: strings.Join(c.Addrs(), ","), nodes: c.Addrs()},
	}
}

// Each namespace's Redis user reaches its own keys and channel only:
// Redis itself answers NOPERM to anything on another namespace's keys,
// and to FLUSHALL, CONFIG, KEYS, DEBUG and SCRIPT FLUSH, on every node of
// a single server, a Sentinel group and a Cluster. The limiter, locks,
// app keys and config reads all work with the namespace's own user.
func TestTenantUsersAreIsolated(t *testing.T) {
	for _, d := range tenantDeployments(t) {
		t.Run(d.name, func(t *testing.T) {
			ctx := context.Background()
			admin := putTenantUsers(t, d)
			for _, addr := range d.nodes {
				expectNodeRefuses(t, addr)
			}
			if len(d.sentinels) > 0 {
				d.tenantQuery = expectSentinelUserFindsOnly(t, d, admin)
			}
			adminStore := openStore(t, d.admin()).(*store.Redis)
			for _, ns := range []string{nsA, nsB} {
				if _, err := storetest.PutConfig(ctx, adminStore, ns, "RateLimitPolicy/api", []byte(`{"ns":"`+ns+`"}`)); err != nil {
					t.Fatal(err)
				}
			}
			a := openStore(t, d.tenant(nsA)).(*store.Redis)
			expectOwnKeysWork(t, a, adminStore)
			expectBoundedWork(t, a.Client())
			expectOtherTenantRefused(t, a)
			expectWatchSurvivesPut(t, a, admin, adminStore)
			if d.restart != nil {
				expectUsersBackAfterRestart(t, d, admin)
			}
		})
	}
}

func putTenantUsers(t *testing.T, d deployment) *store.ACLAdmin {
	t.Helper()
	loc, err := store.ParseLocation(d.admin())
	if err != nil {
		t.Fatal(err)
	}
	admin, err := store.NewACLAdmin(loc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = admin.Close() })
	admin.KeepLibrary(limiter.Library) // as the manager does
	for _, ns := range []string{nsA, nsB} {
		if err := admin.Put(context.Background(), limiter.TenantUser(ns, digest(tenantPasswords[ns]))); err != nil {
			t.Fatalf("put %s's user: %v", ns, err)
		}
	}
	return admin
}

func openStore(t *testing.T, raw string) store.Store {
	t.Helper()
	s, err := store.Open(raw)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// expectNodeRefuses: the user exists on this node, master or replica, and
// may not run the commands that reach every tenant.
func expectNodeRefuses(t *testing.T, addr string) {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: addr, Username: limiter.TenantUserName(nsA), Password: tenantPasswords[nsA], Protocol: 2})
	defer func() { _ = c.Close() }()
	ctx := context.Background()
	if err := c.Ping(ctx).Err(); err != nil {
		t.Fatalf("node %s: %s cannot log in: %v", addr, limiter.TenantUserName(nsA), err)
	}
	for _, cmd := range [][]any{{"flushall"}, {"flushdb"}, {"config", "get", "*"}, {"config", "set", "maxmemory", "1"},
		{"keys", "*"}, {"scan", "0"}, {"debug", "sleep", "0"}, {"script", "flush"}, {"acl", "list"}, {"info"},
		{"client", "list"}, {"monitor"}, {"replicaof", "no", "one"}} {
		expectNoPerm(t, "node "+addr, c.Do(ctx, cmd...).Err(), cmd...)
	}
	expectNoCodeOfItsOwn(t, c, addr)
}

// expectSentinelUserFindsOnly: tenants log in to the Sentinels as the
// Sentinel user, whose password is not the Sentinels' own, and which may
// find the master and hear of failovers but not change a Sentinel. It
// returns the query of a tenant's URL, as the manager injects it.
func expectSentinelUserFindsOnly(t *testing.T, d deployment, admin *store.ACLAdmin) string {
	t.Helper()
	ctx := context.Background()
	password, err := admin.SentinelPassword(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if password == "" || password == sentinelPassword || password == adminPassword {
		t.Fatalf("the Sentinel user's password is %q", password)
	}
	for _, addr := range d.sentinels {
		c := redis.NewClient(&redis.Options{Addr: addr, Username: store.SentinelUserName, Password: password, Protocol: 2})
		defer func() { _ = c.Close() }()
		master, err := c.Do(ctx, "sentinel", "get-master-addr-by-name", "tenants").StringSlice()
		if err != nil || len(master) != 2 || net.JoinHostPort(master[0], master[1]) != d.nodes[0] {
			t.Fatalf("sentinel %s: the Sentinel user finds %v, %v; want %s", addr, master, err, d.nodes[0])
		}
		for _, cmd := range [][]any{{"sentinel", "failover", "tenants"}, {"sentinel", "set", "tenants", "quorum", "5"},
			{"sentinel", "remove", "tenants"}, {"sentinel", "monitor", "other", "127.0.0.1", "1", "1"},
			{"sentinel", "reset", "*"}, {"sentinel", "config", "set", "resolve-hostnames", "yes"},
			{"sentinel", "debug"}, {"acl", "list"}, {"client", "kill", "type", "normal"}, {"shutdown"}} {
			expectNoPerm(t, "sentinel "+addr, c.Do(ctx, cmd...).Err(), cmd...)
		}
	}
	return "?sentinel_username=" + store.SentinelUserName + "&sentinel_password_file=" +
		url.QueryEscape(writeFile(t, "sentinel-password", password))
}

func writeFile(t *testing.T, name, body string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// expectBoundedWork: what a namespace's user sends the library directly is
// bounded there: no window of ten years (its key would live that long), no
// decision of a billion entries (a loop that would stall Redis).
func expectBoundedWork(t *testing.T, c redis.UniversalClient) {
	t.Helper()
	ctx := context.Background()
	own := limiter.CounterKey{Namespace: nsA, Policy: "api", Limit: "hostile"}.Key("fw")
	tenYears := strconv.FormatInt((10 * 365 * 24 * time.Hour).Milliseconds(), 10)
	for _, tt := range []struct {
		args []any
		want string
	}{
		{[]any{"fcall", "qo1_decide", "1", own, "0", "2", "f", "10", tenYears, "1", "0", "0"}, "a window is not within 1 ms and 8 days"},
		{[]any{"fcall", "qo1_decide", "1", own, "0", "2000000000", "f"}, "a decision of more than 4096 entries"},
	} {
		v, err := c.Do(ctx, tt.args...).Slice()
		got := fmt.Sprint(v, err)
		if !strings.Contains(got, tt.want) {
			t.Errorf("%v: %s; want %q", tt.args[:4], got, tt.want)
		}
	}
}

// loopingScript is the review's: it writes, so SCRIPT KILL cannot stop it,
// and Redis answers every client BUSY until SHUTDOWN NOSAVE.
const loopingScript = "redis.call('SET','qo:v1:{team-a/x}','1') while true do end"

// expectNoCodeOfItsOwn: a namespace's user runs no code but the library's
// (no EVAL, EVALSHA, SCRIPT LOAD, FUNCTION LOAD: the looping script cannot
// run), calls none of the library's functions it does not need, and
// writes no key itself, its own included: plain SET, DEL, INCRBY and
// PEXPIRE are refused on every name it may pass to the library, and it
// cannot read the seal that names what the library writes.
func expectNoCodeOfItsOwn(t *testing.T, c *redis.Client, addr string) {
	t.Helper()
	ctx := context.Background()
	own := limiter.CounterKey{Namespace: nsA, Policy: "api", Limit: "per-user", Subject: []string{"alice"}}.Key("0")
	ownApp := limiter.AppKey(nsA, "greeting")
	sha := "e0e1f9fabfc9d4800c877a703b823ac0578ff8db"
	lib := "#!lua name=mine\nredis.register_function('spin', function() " + loopingScript + " end)"
	for _, cmd := range [][]any{
		{"eval", loopingScript, "0"}, {"eval", loopingScript, "1", own}, {"eval_ro", "return 1", "0"},
		{"evalsha", sha, "0"}, {"evalsha_ro", sha, "0"}, {"script", "load", loopingScript}, {"script", "kill"},
		{"function", "load", lib}, {"function", "load", "replace", lib}, {"function", "delete", store.LibraryName},
		{"function", "flush"}, {"function", "list", "withcode"}, {"function", "dump"}, {"function", "kill"},
		{"fcall", "qo1_adjust", "1", own}, {"fcall_ro", "qo1_scan", "0", "0", "*", "10"},
		{"set", own, "1"}, {"set", ownApp, "x"}, {"del", own}, {"del", ownApp}, {"incrby", own, "1"},
		{"pexpire", own, "1"}, {"hincrby", own, "0", "1"}, {"zadd", own, "1", "m"},
		{"get", "qo:seal"}, {"set", "qo:seal", "x"},
	} {
		expectNoPerm(t, "node "+addr, c.Do(ctx, cmd...).Err(), cmd...)
	}
}

func expectNoPerm(t *testing.T, where string, err error, cmd ...any) {
	t.Helper()
	if err == nil || !strings.HasPrefix(err.Error(), "NOPERM") {
		t.Errorf("%s: %v answered %v; want NOPERM", where, cmd, err)
	}
}

// expectOwnKeysWork runs what a sidecar of namespace A runs, as A.
func expectOwnKeysWork(t *testing.T, a, adminStore *store.Redis) {
	t.Helper()
	ctx := context.Background()
	l, err := limiter.New(a)
	if err != nil {
		t.Fatal(err)
	}
	perMinute := limiter.Limit{Key: limiter.CounterKey{Namespace: nsA, Policy: "api", Limit: "per-user", Subject: []string{"alice"}},
		Algorithm: limiter.SlidingWindow, Rates: rate(3, time.Minute), Cost: 1}
	monthly := limiter.Limit{Key: limiter.QuotaKey(nsA, "plan", "calls", "alice"), Algorithm: limiter.Quota,
		Rates: rate(5, 0), Period: limiter.Month, Location: time.UTC, Cost: 2}
	var allowed []bool
	for range 4 {
		allowed = append(allowed, decide(t, l, perMinute, monthly).Allowed)
	}
	if want := []bool{true, true, false, false}; !slices.Equal(allowed, want) {
		t.Fatalf("as %s: allowed %v; want %v", nsA, allowed, want)
	}
	u, err := l.Usage(ctx, limiter.QuotaKey(nsA, "plan", "calls"), monthStart(t), 1)
	if err != nil || u.Total != 4 {
		t.Fatalf("usage as %s: %+v, %v; want total 4", nsA, u, err)
	}
	expectSettleWorks(t, l)
	if _, ok, _, err := l.Acquire(ctx, nsA, "nightly", time.Minute); !ok || err != nil {
		t.Fatalf("lock as %s: %v, %v", nsA, ok, err)
	}
	appKey := limiter.AppKey(nsA, "greeting")
	if err := a.Set(ctx, appKey, []byte("hi"), time.Minute); err != nil {
		t.Fatal(err)
	}
	if v, ok, err := a.Get(ctx, appKey); string(v) != "hi" || !ok || err != nil {
		t.Fatalf("app key as %s: %q, %v, %v", nsA, v, ok, err)
	}
	if _, docs, err := a.Configs(ctx, nsA); err != nil || string(docs["RateLimitPolicy/api"]) != `{"ns":"team-a"}` {
		t.Fatalf("config as %s: %q, %v", nsA, docs, err)
	}
	expectAdjustmentReaches(t, adminStore, l, perMinute)
}

// expectSettleWorks: the namespace's user settles a cost (qo1_settle):
// a reserve of 10 settled at 7 leaves 7 used.
func expectSettleWorks(t *testing.T, l *limiter.Limiter) {
	t.Helper()
	ctx := context.Background()
	tokens := limiter.Limit{Key: limiter.QuotaKey(nsA, "plan", "tokens", "alice"), Algorithm: limiter.Quota,
		Rates: rate(100, 0), Period: limiter.Month, Location: time.UTC, Cost: 10}
	d, err := l.Decide(ctx, limiter.Request{Limits: []limiter.Limit{tokens}, Settleable: true})
	if err != nil || !d.Allowed {
		t.Fatalf("reserve as %s: %+v, %v", nsA, d, err)
	}
	if err := l.Settle(ctx, d, []limiter.Charge{{Units: 7}}); err != nil {
		t.Fatalf("settle as %s: %v", nsA, err)
	}
	if u, err := l.Usage(ctx, limiter.QuotaKey(nsA, "plan", "tokens"), monthStart(t), 1); err != nil || u.Total != 7 {
		t.Fatalf("usage as %s after a settle: %+v, %v; want total 7", nsA, u, err)
	}
}

// expectAdjustmentReaches: a reset the manager makes (as admin) is what
// the namespace's user then sees: its limit passes again.
func expectAdjustmentReaches(t *testing.T, adminStore *store.Redis, tenant *limiter.Limiter, lim limiter.Limit) {
	t.Helper()
	admin, err := limiter.New(adminStore)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Adjust(context.Background(), lim, limiter.Adjustment{ID: "reset-" + nsA}); err != nil {
		t.Fatalf("reset as admin: %v", err)
	}
	tenant.ForgetKnown()
	if d := decide(t, tenant, lim); !d.Allowed || d.By().Remaining != 2 {
		t.Fatalf("as %s after a reset: %+v; want allowed with 2 remaining", nsA, d.By())
	}
}

// expectWatchSurvivesPut: writing a user again (the manager does, every
// resync) keeps its subscriptions, and A hears its config change.
func expectWatchSurvivesPut(t *testing.T, a *store.Redis, admin *store.ACLAdmin, adminStore *store.Redis) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	changes, err := a.WatchConfigs(ctx, nsA)
	if err != nil {
		t.Fatalf("watching %s's config as %s: %v", nsA, nsA, err)
	}
	if err := admin.Put(ctx, limiter.TenantUser(nsA, digest(tenantPasswords[nsA]))); err != nil {
		t.Fatal(err)
	}
	rev, err := adminStore.PutConfig(ctx, nsA, "RateLimitPolicy/api", []byte(`{"v":2}`))
	if err != nil {
		t.Fatal(err)
	}
	select {
	case got := <-changes:
		if got != rev {
			t.Fatalf("heard revision %d; want %d", got, rev)
		}
	case <-ctx.Done():
		t.Fatal("no announcement after the user was written again")
	}
}

// expectOtherTenantRefused: as A, every read, write, script, subscribe
// and publish on B's keys or channel is refused by Redis, and so are
// writes to A's own config and announcements on its channel.
func expectOtherTenantRefused(t *testing.T, a *store.Redis) {
	t.Helper()
	ctx := context.Background()
	c := a.Client()
	counterB := limiter.CounterKey{Namespace: nsB, Policy: "api", Limit: "per-user", Subject: []string{"alice"}}.Key("0")
	appB := limiter.AppKey(nsB, "greeting")
	readB := "return redis.call('GET', KEYS[1])"
	for _, cmd := range [][]any{
		{"get", counterB}, {"set", counterB, "0"}, {"incrby", counterB, "-100"}, {"del", counterB}, {"pexpire", counterB, "1"},
		{"get", appB}, {"set", appB, "x"}, {"exists", appB},
		{"eval", readB, "1", counterB}, {"eval", readB, "1", appB},
		{"hgetall", "qo:v1:config:{" + nsB + "}:docs"}, {"get", "qo:v1:config:{" + nsB + "}:rev"},
		{"hset", "qo:v1:config:{" + nsA + "}:docs", "RateLimitPolicy/api", "{}"}, {"incr", "qo:v1:config:{" + nsA + "}:rev"},
		{"publish", store.ConfigChannel(nsB), "99"}, {"publish", store.ConfigChannel(nsA), "99"},
		{"flushall"}, {"config", "get", "requirepass"}, {"keys", "*"},
	} {
		expectNoPerm(t, "as "+nsA, c.Do(ctx, cmd...).Err(), cmd...)
	}
	if _, err := a.WatchConfigs(ctx, nsB); err == nil || !strings.HasPrefix(err.Error(), "NOPERM") {
		t.Errorf("as %s, subscribing to %s's channel: %v; want NOPERM", nsA, nsB, err)
	}
	if _, _, err := a.Configs(ctx, nsB); err == nil || !strings.Contains(err.Error(), "NOPERM") {
		t.Errorf("as %s, reading %s's config: %v; want NOPERM", nsA, nsB, err)
	}
	l, err := limiter.New(a)
	if err != nil {
		t.Fatal(err)
	}
	_, err = l.Decide(ctx, limiter.Request{Limits: []limiter.Limit{{Key: limiter.CounterKey{Namespace: nsB, Policy: "api", Limit: "per-user"},
		Algorithm: limiter.FixedWindow, Rates: rate(3, time.Minute), Cost: 1}}})
	if err == nil || !strings.Contains(err.Error(), "NOPERM") {
		t.Errorf("as %s, deciding on %s's counters: %v; want NOPERM", nsA, nsB, err)
	}
	if _, _, _, err := l.Acquire(ctx, nsB, "nightly", time.Minute); err == nil || !strings.Contains(err.Error(), "NOPERM") {
		t.Errorf("as %s, taking %s's lock: %v; want NOPERM", nsA, nsB, err)
	}
}

// expectUsersBackAfterRestart: a restarted server has lost its users
// (Redis keeps them neither in its data nor in a replica); Resync writes
// them back.
func expectUsersBackAfterRestart(t *testing.T, d deployment, admin *store.ACLAdmin) {
	t.Helper()
	ctx := context.Background()
	if err := admin.Resync(ctx); err != nil {
		t.Fatal(err)
	}
	d.restart(t)
	c := redis.NewClient(&redis.Options{Addr: d.nodes[0], Username: limiter.TenantUserName(nsA), Password: tenantPasswords[nsA], Protocol: 2})
	defer func() { _ = c.Close() }()
	if err := c.Ping(ctx).Err(); err == nil || !strings.HasPrefix(err.Error(), "WRONGPASS") {
		t.Fatalf("after a restart, before Resync: %v; want WRONGPASS", err)
	}
	node := d.adminNode(0)
	defer func() { _ = node.Close() }()
	if lib, err := store.LibraryDigest(ctx, node); err != nil || lib != "" {
		t.Fatalf("after a restart, before Resync: library %q, %v; want none (no persistence here)", lib, err)
	}
	if err := admin.Resync(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.Ping(ctx).Err(); err != nil {
		t.Fatalf("after Resync: %v", err)
	}
	// One store check brought the library back: A decides again.
	l, err := limiter.New(store.NewRedis(c))
	if err != nil {
		t.Fatal(err)
	}
	lim := limiter.Limit{Key: limiter.CounterKey{Namespace: nsA, Policy: "api", Limit: "after-restart"},
		Algorithm: limiter.FixedWindow, Rates: rate(3, time.Minute), Cost: 1}
	if got := decide(t, l, lim); !got.Allowed || got.By().Remaining != 2 {
		t.Fatalf("as %s after one Resync: %+v; want allowed, 2 remaining", nsA, got.By())
	}
}

func monthStart(t *testing.T) time.Time {
	start, _, err := limiter.Month.Bounds(time.Now(), time.UTC)
	if err != nil {
		t.Fatal(err)
	}
	return start
}
