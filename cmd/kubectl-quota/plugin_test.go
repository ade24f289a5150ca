package main

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/quotaops/quota-operator/api/v1alpha1"
	"github.com/quotaops/quota-operator/internal/config"
	"github.com/quotaops/quota-operator/internal/limiter"
	"github.com/quotaops/quota-operator/internal/limits"
	"github.com/quotaops/quota-operator/internal/store"
	"github.com/quotaops/quota-operator/internal/subject"
	"github.com/quotaops/quota-operator/internal/testutil/bintest"
	"github.com/quotaops/quota-operator/internal/testutil/kubeenv"
	"github.com/quotaops/quota-operator/internal/testutil/localtest"
	"github.com/quotaops/quota-operator/internal/testutil/redistest"
	"sigs.k8s.io/yaml"
)

// world is what every test of the plugin shares: an API server, a Redis,
// and the manager, run as its binary, answering QuotaQueries and applying
// QuotaAdjustments.
type world struct {
	env        *kubeenv.Env
	kubeconfig string
	store      *store.Redis
	lim        *limiter.Limiter
}

var w world

func TestMain(m *testing.M) {
	code, err := runWorld(m)
	if err != nil {
		fmt.Fprintf(os.Stderr, "kubectl-quota tests: %v\n", err)
		code = 1
	}
	os.Exit(code)
}

func runWorld(m *testing.M) (int, error) {
	r, err := redistest.Start()
	if err != nil {
		return 0, err
	}
	defer func() { _ = r.Close() }()
	root := kubeenv.ModuleRoot()
	env, err := kubeenv.Start(kubeenv.Options{CRDDirectoryPaths: []string{filepath.Join(root, "config", "crd", "bases")}})
	if err != nil {
		return 0, err
	}
	defer func() { _ = env.Stop() }()
	w.env = env
	if w.kubeconfig, err = env.Kubeconfig(); err != nil {
		return 0, err
	}
	s, err := store.Open(r.URL)
	if err != nil {
		return 0, err
	}
	defer func() { _ = s.Close() }()
	w.store = s.(*store.Redis)
	if w.lim, err = limiter.New(s); err != nil {
		return 0, err
	}
	// The install's subject key, which the manager, this test's limiter
	// and the plugin (QUOTA_SUBJECT_KEY_FILE) hash subjects with.
	keyFile, err := writeSubjectKey("the install's subject key")
	if err != nil {
		return 0, err
	}
	defer func() { _ = os.Remove(keyFile) }()
	if err := applyObjects(); err != nil {
		return 0, err
	}
	stop, err := startManager(r.URL, keyFile)
	if err != nil {
		return 0, err
	}
	defer stop()
	return m.Run(), nil
}

func writeSubjectKey(key string) (string, error) {
	f, err := os.CreateTemp("", "subject-key-")
	if err != nil {
		return "", err
	}
	defer func() { _ = f.Close() }()
	if _, err := f.WriteString(key); err != nil {
		return "", err
	}
	subject.UseKey([]byte(key))
	return f.Name(), os.Setenv("QUOTA_SUBJECT_KEY_FILE", f.Name())
}

// startManager runs `quota-operator manager` and waits until it is ready.
func startManager(redisURL, keyFile string) (func(), error) {
	bin, err := bintest.Build()
	if err != nil {
		return nil, err
	}
	probe, err := localtest.FreePort(0)
	if err != nil {
		return nil, err
	}
	var logs bytes.Buffer
	cmd := exec.Command(bin, "manager", "--kubeconfig", w.kubeconfig, "--store", redisURL, "--subject-key-file", keyFile, "--namespace", "quota-operator-system",
		"--metrics-bind-address", "0", "--health-probe-bind-address", fmt.Sprintf("127.0.0.1:%d", probe))
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	stop := func() {
		_ = cmd.Process.Signal(os.Interrupt)
		_ = cmd.Wait()
	}
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(100 * time.Millisecond) {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/readyz", probe))
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return stop, nil
			}
		}
		if time.Now().After(deadline) {
			stop()
			return nil, fmt.Errorf("the manager is not ready within a minute:\n%s", logs.String())
		}
	}
}

// legacyAPIService is what releases before QuotaQuery registered: the
// manager deletes it (TestLegacyAPIServiceRemoved).
const legacyAPIService = `apiVersion: apiregistration.k8s.io/v1
kind: APIService
metadata: {name: v1alpha1.usage.quotaops.dev}
spec:
  group: usage.quotaops.dev
  version: v1alpha1
  groupPriorityMinimum: 1000
  versionPriority: 15
  insecureSkipTLSVerify: true
  service: {name: quota-operator-webhook-service, namespace: quota-operator-system, port: 443}
`

// applyObjects creates the operator's namespace, from config/ as shipped
// the usage viewer role, and the APIService an earlier release left.
func applyObjects() error {
	built, err := w.env.Kubectl("kustomize", filepath.Join(kubeenv.ModuleRoot(), "config", "base"))
	if err != nil {
		return fmt.Errorf("kustomize: %w\n%s", err, built)
	}
	var docs []string
	for _, doc := range strings.Split(built, "\n---\n") {
		if strings.Contains(doc, "name: quota-operator-usage-viewer") || strings.Contains(doc, "kind: Namespace") {
			docs = append(docs, doc)
		}
	}
	docs = append(docs, legacyAPIService)
	file := filepath.Join(os.TempDir(), fmt.Sprintf("kubectl-quota-objects-%d.yaml", os.Getpid()))
	defer func() { _ = os.Remove(file) }()
	if err := os.WriteFile(file, []byte(strings.Join(docs, "\n---\n")), 0o600); err != nil {
		return err
	}
	if out, err := w.env.Kubectl("apply", "-f", file); err != nil {
		return fmt.Errorf("apply: %w\n%s", err, out)
	}
	return nil
}

// quota runs the plugin as `kubectl quota` would, with args, and returns
// what it printed and its exit code.
func quota(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errOut bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	code = run(ctx, append([]string{"--kubeconfig", w.kubeconfig}, args...), &out, &errOut)
	return out.String(), errOut.String(), code
}

// apply creates an object from YAML.
func apply(t *testing.T, yamlText string) {
	t.Helper()
	file := filepath.Join(t.TempDir(), "object.yaml")
	if err := os.WriteFile(file, []byte(yamlText), 0o600); err != nil {
		t.Fatal(err)
	}
	w.env.MustKubectl(t, "apply", "-f", file)
}

// consume makes n decisions for subject, as a sidecar would, on limit
// (compiled from obj as the operator does).
func consume(t *testing.T, lim limiter.Limit, subject string, n int) {
	t.Helper()
	lim.Key.Subject = []string{subject}
	for range n {
		d, err := w.lim.Decide(context.Background(), limiter.Request{Limits: []limiter.Limit{lim}})
		if err != nil || !d.Allowed {
			t.Fatalf("decision for %s: %+v, %v", subject, d, err)
		}
	}
}

func quotaLimit(t *testing.T, yamlText string) limiter.Limit {
	t.Helper()
	var q v1alpha1.UsageQuota
	if err := yaml.Unmarshal([]byte(yamlText), &q); err != nil {
		t.Fatal(err)
	}
	doc, err := config.CompileUsageQuota(&q)
	if err != nil {
		t.Fatal(err)
	}
	lim, err := limits.ForQuota(q.Namespace, doc)
	if err != nil {
		t.Fatal(err)
	}
	return lim
}

func policyLimit(t *testing.T, yamlText string) limiter.Limit {
	t.Helper()
	var p v1alpha1.RateLimitPolicy
	if err := yaml.Unmarshal([]byte(yamlText), &p); err != nil {
		t.Fatal(err)
	}
	doc, err := config.CompileRateLimitPolicy(&p)
	if err != nil {
		t.Fatal(err)
	}
	lim, err := limits.ForLimit(p.Namespace, doc, doc.Limits[0])
	if err != nil {
		t.Fatal(err)
	}
	return lim
}

// table lines up rows as the plugin's tabwriter does.
func table(rows ...[]string) string {
	widths := make([]int, len(rows[0]))
	for _, r := range rows {
		for i, c := range r {
			widths[i] = max(widths[i], len(c))
		}
	}
	var b strings.Builder
	for _, r := range rows {
		for i, c := range r {
			if i == len(r)-1 {
				b.WriteString(c)
				break
			}
			b.WriteString(c + strings.Repeat(" ", widths[i]-len(c)+2))
		}
		b.WriteString("\n")
	}
	return b.String()
}

func hash(v string) string { return limiter.SubjectHash([]string{v}) }
