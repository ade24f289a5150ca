package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/quotaops/quota-operator/internal/cli"
	"github.com/quotaops/quota-operator/internal/config"
	"github.com/quotaops/quota-operator/internal/store"
	"github.com/quotaops/quota-operator/internal/testutil/kubeenv"
	"github.com/quotaops/quota-operator/internal/testutil/localtest"
	"github.com/quotaops/quota-operator/internal/testutil/redistest"
)

func TestManagerFlags(t *testing.T) {
	tests := []struct {
		args []string
		want string // error text; empty: accepted
	}{
		{[]string{"--store", "redis://localhost:6379/0", "--leader-elect", "--usage-interval", "5s"}, ""},
		{[]string{"--usage-interval", "0s"}, "--usage-interval and --store-check-interval must be positive"},
		{[]string{"--frobnicate"}, "flag provided but not defined: -frobnicate"},
		{[]string{"extra"}, `unexpected arguments: ["extra"]`},
		{[]string{"--webhook-cert-secret", "webhook-cert", "--namespace", ""}, "--webhook-cert-secret needs --namespace (or POD_NAMESPACE)"},
		{[]string{"--sidecar-memory", "lots"}, `--sidecar-memory: "lots" is not a positive quantity`},
		{[]string{"--sidecar-cpu", "0"}, `--sidecar-cpu: "0" is not a positive quantity`},
		{[]string{"--sidecar-failure-policy", "open"}, `--sidecar-failure-policy: "open" is neither Open nor Closed`},
		{[]string{"--store-tenancy", "none"}, `invalid value "none" for flag -store-tenancy: "none" is not managed, provided or shared`},
		{[]string{"--store-tenancy", "provided", "--namespace", ""}, "--store-tenancy provided and shared need --namespace (or POD_NAMESPACE) and --store-users-secret"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			c, err := parseManagerFlags(tt.args, io.Discard)
			if tt.want == "" {
				if err != nil || !c.leaderElect || c.usageInterval != 5*time.Second || c.metricsAddr != ":8443" || !c.metricsSecure || c.probeAddr != ":8081" {
					t.Fatalf("%+v, %v", c, err)
				}
				return
			}
			if err == nil || err.Error() != tt.want {
				t.Fatalf("error %v; want %q", err, tt.want)
			}
		})
	}
}

// Sidecars get the store URL without the manager's credentials, and the
// files it names as copies in their namespace's Secret, mounted where the
// URL they get names them. They log in to the Sentinels as the Sentinel
// user: the Sentinels' own password reaches no namespace.
func TestInjectionConfigSharesStoreFiles(t *testing.T) {
	sn, err := redistest.StartSentinel("main", "requirepass sentinel-pa55")
	if err != nil {
		redistest.SkipIfMissing(t, err)
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sn.Close() })
	dir := t.TempDir()
	for name, body := range map[string]string{"ca.crt": "the CA", "sentinel": "sentinel-pa55"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	loc, err := store.ParseLocation("redis+sentinel://" + sn.Sentinel.Addr + "/main?sentinel_password_file=" + filepath.Join(dir, "sentinel"))
	if err != nil {
		t.Fatal(err)
	}
	cfg := injectionConfig(&managerConfig{sidecarImage: "img", storeSecretName: "quota-operator-store"}, loc)
	want := "redis+sentinel://" + sn.Sentinel.Addr + "/main/0?sentinel_password_file=%2Fetc%2Fquota-store%2Fsentinel-password&sentinel_username=quota-sentinel"
	if cfg.Store != want || !slices.Equal(cfg.CredentialsFiles, []string{"sentinel-password"}) || cfg.CredentialsSecret != "quota-operator-store" {
		t.Fatalf("store %q, files %q, secret %q; want %q", cfg.Store, cfg.CredentialsFiles, cfg.CredentialsSecret, want)
	}
	users, err := tenantUsers(loc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = users.Close() })
	shared, err := sharedStoreFiles(loc, users, []byte("the subject key"))(context.Background())
	if err != nil || len(shared) != 2 || string(shared["subject-key"]) != "the subject key" {
		t.Fatalf("shared %d files (subject key %q), %v", len(shared), shared["subject-key"], err)
	}
	expectSentinelUserPassword(t, sn.Sentinel.Addr, string(shared["sentinel-password"]))
}

// expectSentinelUserPassword: what a namespace gets is not the Sentinels'
// own password, but the Sentinel user's, which finds the master.
func expectSentinelUserPassword(t *testing.T, addr, password string) {
	t.Helper()
	if password == "" || strings.Contains(password, "sentinel-pa55") {
		t.Fatalf("a namespace gets %q as its Sentinel password", password)
	}
	c := redis.NewSentinelClient(&redis.Options{Addr: addr, Username: store.SentinelUserName, Password: password})
	defer func() { _ = c.Close() }()
	if master, err := c.GetMasterAddrByName(context.Background(), "main").Result(); err != nil || len(master) != 2 {
		t.Fatalf("the Sentinel user finds %v, %v", master, err)
	}
}

// The manager subcommand, as the binary runs it, reconciles a policy
// applied with kubectl into Redis, with the password read from a file,
// serves its health probes and, with --sidecar-image, the injection
// webhook. It elects itself leader in --namespace, though it runs outside a
// cluster. (One manager per test process: controller names are global.)
func TestManagerEndToEnd(t *testing.T) {
	r := redistest.StartOrSkip(t)
	if err := r.Client().ConfigSet(context.Background(), "requirepass", "pa55word").Err(); err != nil {
		t.Fatal(err)
	}
	root := kubeenv.ModuleRoot()
	env, err := kubeenv.Start(kubeenv.Options{CRDDirectoryPaths: []string{filepath.Join(root, "config", "crd", "bases")},
		WebhookPaths: []string{filepath.Join(root, "config", "webhook", "manifests.yaml")}})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = env.Stop() }()
	kubeconfig, err := env.Kubeconfig()
	if err != nil {
		t.Fatal(err)
	}
	passwordFile := filepath.Join(t.TempDir(), "password")
	if err := os.WriteFile(passwordFile, []byte("pa55word"), 0o600); err != nil {
		t.Fatal(err)
	}
	const leaseNS = "quota-manager-test"
	if out, err := env.Kubectl("create", "namespace", leaseNS); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	expectGeneratedPassword(t, env, kubeconfig, leaseNS)
	probe := localtest.FreeAddr(t)
	wo := env.WebhookInstallOptions
	c, err := parseManagerFlags([]string{"--kubeconfig", kubeconfig, "--leader-elect", "--namespace", leaseNS, "--store", r.URL, "--store-password-file", passwordFile,
		"--metrics-bind-address", "0", "--health-probe-bind-address", probe, "--store-check-interval", "200ms",
		"--sidecar-image", "quota-operator:test", "--webhook-port", fmt.Sprint(wo.LocalServingPort), "--webhook-cert-dir", wo.LocalServingCertDir}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var logs lockedBuffer
	done := make(chan error, 1)
	go func() { done <- startManager(ctx, c, &logs, func(string) string { return "" }) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("manager: %v", err)
		}
		if strings.Contains(logs.String(), "pa55word") {
			t.Error("the store password reached the logs")
		}
	}()
	if out, err := env.Kubectl("apply", "-f", filepath.Join(kubeenv.ModuleRoot(), "config", "samples", "policy_v1alpha1_ratelimitpolicy_per_ip.yaml"), "-n", "default"); err != nil {
		t.Fatalf("kubectl apply: %v\n%s", err, out)
	}
	s, _, err := cli.OpenStore(cli.StoreFlags{URL: r.URL, PasswordFile: passwordFile}, func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = s.Close() }()
	localtest.WaitFor(t, 15*time.Second, "config in Redis", func() error {
		_, docs, err := s.(*store.Redis).Configs(ctx, "default")
		if err != nil {
			return err
		}
		p, err := config.Decode(docs["RateLimitPolicy/per-ip"])
		if err != nil {
			return err
		}
		if p.Limits[0].Rates[0] != (config.Rate{Limit: 100, WindowMs: 60000}) {
			return fmt.Errorf("stored %+v", p)
		}
		return nil
	})
	expectLeaderServing(t, env, probe, leaseNS)
	expectInjection(t, env, r.URL)
}

// expectGeneratedPassword: --store-password-secret creates the Secret
// with a random password once and reads it after; an empty one is an
// error that names it.
func expectGeneratedPassword(t *testing.T, env *kubeenv.Env, kubeconfig, ns string) {
	t.Helper()
	c := &managerConfig{kubeconfig: kubeconfig, namespace: ns, storePasswordSecret: "redis-password"}
	first, err := storePasswordFromSecret(context.Background(), c)
	if err != nil || len(first) != 64 {
		t.Fatalf("generated %d characters, %v; want 64", len(first), err)
	}
	again, err := storePasswordFromSecret(context.Background(), c)
	if err != nil || again != first {
		t.Fatalf("read again: a different password, %v", err)
	}
	if out, err := env.Kubectl("create", "secret", "generic", "empty", "-n", ns); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	c.storePasswordSecret = "empty"
	_, err = storePasswordFromSecret(context.Background(), c)
	if want := `--store-password-secret ` + ns + `/empty: its key "password" is empty`; err == nil || err.Error() != want {
		t.Fatalf("an empty Secret: %v; want %q", err, want)
	}
}

// expectLeaderServing: the probes answer and the manager holds the lease.
func expectLeaderServing(t *testing.T, env *kubeenv.Env, probe, leaseNS string) {
	t.Helper()
	for _, path := range []string{"/healthz", "/readyz"} {
		expectOK(t, "http://"+probe+path)
	}
	out, err := env.Kubectl("get", "lease", "quota-operator.quotaops.dev", "-n", leaseNS, "-o", "jsonpath={.spec.holderIdentity}")
	if err != nil || out == "" {
		t.Fatalf("leader lease in %s: %q, %v", leaseNS, out, err)
	}
}

// expectInjection creates an annotated pod with kubectl and checks that it
// comes back with the sidecar, the store URL without its password, and a
// secretKeyRef to the Secret the manager keeps in the namespace.
func expectInjection(t *testing.T, env *kubeenv.Env, storeURL string) {
	t.Helper()
	pod := `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"api","namespace":"default","annotations":{"quotaops.dev/inject":"true"}},
		"spec":{"containers":[{"name":"app","image":"app:1","ports":[{"name":"http","containerPort":8080}]}]}}`
	podFile := filepath.Join(t.TempDir(), "pod.json")
	if err := os.WriteFile(podFile, []byte(pod), 0o644); err != nil {
		t.Fatal(err)
	}
	var out string
	localtest.WaitFor(t, 20*time.Second, "an injected pod", func() error {
		_, _ = env.Kubectl("delete", "pod", "api", "-n", "default", "--ignore-not-found", "--wait=false")
		var err error
		if out, err = env.Kubectl("create", "-f", podFile, "-o", "json"); err != nil {
			return fmt.Errorf("%w: %s", err, out)
		}
		if !strings.Contains(out, `"name": "quota-sidecar"`) {
			return errors.New("no sidecar yet")
		}
		return nil
	})
	for _, want := range []string{`"--store=` + storeURL + `"`, `"--upstream=http://127.0.0.1:8080"`, `"secretName": "quota-operator-store"`} {
		if !strings.Contains(out, want) {
			t.Errorf("mutated pod lacks %s:\n%s", want, out)
		}
	}
	if strings.Contains(out, "pa55word") {
		t.Fatal("the store password is in the pod spec")
	}
	// The namespace's own user, never the admin password.
	localtest.WaitFor(t, 10*time.Second, "the store Secret", func() error {
		got, err := env.Kubectl("get", "secret", "quota-operator-store", "-n", "default", "-o", "jsonpath={.data.username} {.data.password}")
		user, password, _ := strings.Cut(got, " ")
		if err != nil || user != base64.StdEncoding.EncodeToString([]byte("quota-ns-default")) || password == "" ||
			password == base64.StdEncoding.EncodeToString([]byte("pa55word")) {
			return fmt.Errorf("%q: %w", got, err)
		}
		return nil
	})
}

// lockedBuffer collects a manager's log. controller-runtime may still log
// after Start returns (with leader election, "leader election lost" as it
// stops), so reads and writes are locked.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func expectOK(t *testing.T, url string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%s: %s", url, resp.Status)
	}
}

// --store-sentinel-password-secret's password (QUOTA_STORE_SENTINEL_PASSWORD)
// logs the manager in to Sentinels that ask for one, as the URL's
// sentinel_password_file would; it is refused for any other store.
func TestSentinelPasswordFromTheEnvironment(t *testing.T) {
	sn, err := redistest.StartSentinel("main", "requirepass sentinel-pa55")
	if err != nil {
		redistest.SkipIfMissing(t, err)
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sn.Close() })
	url := "redis+sentinel://" + sn.Sentinel.Addr + "/main?dial_timeout=1s&max_retries=0"
	for _, c := range []struct {
		name, password, want string
	}{
		{"with the password, the master is found", "sentinel-pa55", ""},
		{"without it, the Sentinel refuses", "", "NOAUTH"},
	} {
		t.Run(c.name, func(t *testing.T) {
			getenv := cli.WithEnv(func(string) string { return "" }, cli.SentinelPasswordEnv, c.password)
			s, _, err := cli.OpenStore(cli.StoreFlags{URL: url}, getenv)
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = s.Close() }()
			_, err = s.Has(context.Background(), "qo:test:sentinel-password")
			if (c.want == "" && err != nil) || (c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want))) {
				t.Fatalf("a read through the Sentinel: %v, want %q", err, c.want)
			}
		})
	}
	getenv := cli.WithEnv(func(string) string { return "" }, cli.SentinelPasswordEnv, "sentinel-pa55")
	if _, _, err := cli.OpenStore(cli.StoreFlags{URL: sn.Master.URL}, getenv); err == nil || !strings.Contains(err.Error(), "not redis+sentinel://") {
		t.Fatalf("a Sentinel password for redis://: %v, want refused", err)
	}
}
