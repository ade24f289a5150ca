package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/go-logr/logr"
	"go.uber.org/zap/zapcore"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/quotaops/quota-operator/internal/cli"
	"github.com/quotaops/quota-operator/internal/sidecar"
	"github.com/quotaops/quota-operator/internal/store"
)

// demoConfig is the demo's command line.
type demoConfig struct {
	kubeconfig, kubectl, samples, store, namespace, logFile string
	// linger is how long to keep serving after the summary; negative:
	// until interrupted.
	linger time.Duration
}

func parseDemoFlags(args []string, stderr io.Writer) (*demoConfig, error) {
	c := &demoConfig{linger: -1}
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.kubeconfig, "kubeconfig", "", "kubeconfig of the cluster to use (its API server only: nothing runs in it)")
	fs.StringVar(&c.kubectl, "kubectl", "kubectl", "the kubectl to apply the samples with")
	fs.StringVar(&c.samples, "samples", filepath.Join("config", "samples"), "kustomize folder of the sample policies")
	fs.StringVar(&c.store, "store", "memory://", "store URL shared by the manager and the sidecar")
	fs.StringVar(&c.namespace, "namespace", "demo", "namespace for the samples")
	fs.StringVar(&c.logFile, "log-file", filepath.Join(os.TempDir(), "quota-operator-demo.log"), "where the manager and sidecar log")
	fs.Func("duration", "how long to keep running after the summary (e.g. 0s, 5m); default: until Ctrl-C", func(v string) error {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 {
			return fmt.Errorf("%q is not a duration of 0s or more", v)
		}
		c.linger = d
		return nil
	})
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	return c, nil
}

func runDemo(args []string, stdout, stderr io.Writer) int {
	return cli.RunService("quota-operator demo", stderr, func() (*demoConfig, error) { return parseDemoFlags(args, stderr) },
		func(ctx context.Context, c *demoConfig) error { return demo(ctx, c, stdout) })
}

// demo runs the manager and a sidecar in front of a small app, in this
// process and on one store, applies the samples with kubectl, sends some
// traffic and prints what each policy allowed and denied.
func demo(ctx context.Context, c *demoConfig, out io.Writer) error {
	logs, err := os.Create(c.logFile)
	if err != nil {
		return err
	}
	defer func() { _ = logs.Close() }()
	log := zap.New(zap.WriteTo(zapcore.Lock(zapcore.AddSync(logs))))
	s, loc, err := cli.OpenStore(cli.StoreFlags{URL: c.store}, os.Getenv)
	if err != nil {
		return err
	}
	defer func() { _ = s.Close() }()
	k := kubectlRunner{bin: c.kubectl, kubeconfig: c.kubeconfig}
	say(out, "1/5", "Starting the manager and a sidecar in front of a demo app (store %s; logs in %s)", loc, c.logFile)
	if msg, err := k.run("create", "namespace", c.namespace); err != nil && !strings.Contains(msg, "AlreadyExists") {
		return fmt.Errorf("kubectl create namespace: %w: %s", err, msg)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 2)
	go func() {
		done <- runManagerOn(ctx, &managerConfig{kubeconfig: c.kubeconfig, metricsAddr: "0", probeAddr: "0",
			usageInterval: time.Second, storeCheckInterval: 2 * time.Second}, log.WithName("manager"), s, loc)
	}()
	sc, err := startDemoSidecar(ctx, c.namespace, log.WithName("sidecar"), s, done)
	if err != nil {
		return err
	}
	stop := func(err error) error {
		cancel()
		for range 2 {
			if e := <-done; e != nil && !errors.Is(e, context.Canceled) && err == nil {
				err = e
			}
		}
		return err
	}
	if err := showSamples(ctx, c, k, sc, out); err != nil {
		return stop(err)
	}
	linger(ctx, c.linger, sc, out)
	// Deleted while the manager still runs, so its finalizers take the
	// samples' config out of the store: a shared Redis keeps nothing
	// without a TTL. Counters expire on their own.
	if msg, err := k.run("delete", "-n", c.namespace, "-k", c.samples, "--timeout=30s"); err != nil {
		return stop(fmt.Errorf("kubectl delete: %w: %s", err, msg))
	}
	return stop(nil)
}

func showSamples(ctx context.Context, c *demoConfig, k kubectlRunner, sc *demoSidecar, out io.Writer) error {
	say(out, "2/5", "Applying the samples: kubectl apply -n %s -k %s", c.namespace, c.samples)
	applied, err := k.run("apply", "-n", c.namespace, "-k", c.samples)
	if err != nil {
		return fmt.Errorf("kubectl apply: %w: %s", err, applied)
	}
	fmt.Fprint(out, indent(applied))
	if msg, err := k.run("wait", "-n", c.namespace, "--for=condition=Programmed", "--timeout=60s", "ratelimitpolicies,usagequotas", "--all"); err != nil {
		return fmt.Errorf("waiting for the samples to be Programmed: %w: %s", err, msg)
	}
	if err := sc.waitConfig(ctx, strings.Count(applied, "\n")); err != nil {
		return err
	}
	say(out, "3/5", "Sending traffic through the sidecar at %s", sc.proxy)
	for _, s := range demoScenarios(sc) {
		allowed, denied, err := s.run()
		if err != nil {
			return fmt.Errorf("%s: %w", s.title, err)
		}
		fmt.Fprintf(out, "    %-66s %3d allowed %3d denied\n", s.title, allowed, denied)
	}
	say(out, "4/5", "Decisions per policy and limit (the sidecar's quota_decisions_total)")
	if err := sc.printDecisions(out); err != nil {
		return err
	}
	say(out, "5/5", "Quota usage: kubectl get usagequotas -n %s", c.namespace)
	return printUsage(ctx, k, c.namespace, out)
}

// printUsage waits for the usage the traffic left to reach status (it is
// refreshed every second here), then shows it as kubectl does.
func printUsage(ctx context.Context, k kubectlRunner, ns string, out io.Writer) error {
	err := poll(ctx, 30*time.Second, func() error {
		used, err := k.run("get", "usagequota", "daily-exports", "-n", ns, "-o", "jsonpath={.status.usage.consumed}")
		if err != nil {
			return fmt.Errorf("kubectl get: %w: %s", err, used)
		}
		if used != "5" {
			return fmt.Errorf("daily-exports shows %q used, not yet 5", used)
		}
		return nil
	})
	if err != nil {
		return err
	}
	table, err := k.run("get", "usagequotas", "-n", ns)
	if err != nil {
		return fmt.Errorf("kubectl get: %w: %s", err, table)
	}
	fmt.Fprint(out, indent(table))
	return nil
}

func linger(ctx context.Context, d time.Duration, sc *demoSidecar, out io.Writer) {
	if d == 0 {
		fmt.Fprintln(out, "\nDone.")
		return
	}
	fmt.Fprintf(out, "\nTry it yourself while the demo runs:\n"+
		"    curl -i %s/v1/items -H 'X-Forwarded-For: 10.1.1.1'\n"+
		"    curl -s -XPOST %s/v1/quotas/exports/consume -d '{\"key\":[\"carol\"]}'\n", sc.proxy, sc.admin)
	var wait <-chan time.Time
	if d >= 0 {
		fmt.Fprintf(out, "The demo stops in %v.\n", d)
		wait = time.After(d)
	} else {
		fmt.Fprintln(out, "Press Ctrl-C to stop.")
	}
	select {
	case <-ctx.Done():
	case <-wait:
	}
}

// demoSidecar is a sidecar, its app and where they listen.
type demoSidecar struct {
	proxy, admin, ns string
	configs          sidecar.ConfigReader
	client           *http.Client
}

func startDemoSidecar(ctx context.Context, ns string, log logr.Logger, s store.Store, done chan<- error) (*demoSidecar, error) {
	configs, ok := s.(sidecar.ConfigReader)
	if !ok {
		return nil, errors.New("the store cannot hold config")
	}
	dir, err := os.MkdirTemp("", "quota-operator-demo-")
	if err != nil {
		return nil, err
	}
	labels := filepath.Join(dir, "labels")
	if err := os.WriteFile(labels, []byte("app=\"demo-api\"\n"), 0o600); err != nil {
		return nil, err
	}
	app, err := startDemoApp(ctx)
	if err != nil {
		return nil, err
	}
	var lns [2]net.Listener
	for i := range lns {
		if lns[i], err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			return nil, err
		}
	}
	go func() {
		// X-Forwarded-For from this machine is believed: the demo's clients
		// are told apart by it.
		done <- sidecar.Serve(ctx, sidecar.Options{Upstream: app, Namespace: ns, LabelsFile: labels,
			Trusted: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}, Timeout: 50 * time.Millisecond,
			Resync: 10 * time.Second, DrainTimeout: time.Second, Log: log}, s, sidecar.Listeners{Proxy: lns[0], Admin: lns[1]})
	}()
	return &demoSidecar{proxy: "http://" + lns[0].Addr().String(), admin: "http://" + lns[1].Addr().String(),
		ns: ns, configs: configs, client: &http.Client{Timeout: 5 * time.Second}}, nil
}

// startDemoApp serves the app behind the sidecar: it answers every request.
func startDemoApp(ctx context.Context) (*url.URL, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, "{\"app\":\"demo-api\",\"path\":%q}\n", r.URL.Path)
	})}
	go func() { _ = srv.Serve(l) }()
	go func() { <-ctx.Done(); _ = srv.Close() }()
	return &url.URL{Scheme: "http", Host: l.Addr().String()}, nil
}

var configRevision = regexp.MustCompile(`(?m)^quota_config_revision\{[^}]*\} (\d+)$`)

// waitConfig waits until the store holds docs documents for the namespace
// and the sidecar enforces that revision.
func (sc *demoSidecar) waitConfig(ctx context.Context, docs int) error {
	return poll(ctx, 30*time.Second, func() error {
		rev, stored, err := sc.configs.Configs(ctx, sc.ns)
		if err != nil {
			return err
		}
		if len(stored) < docs {
			return fmt.Errorf("the store holds %d of %d samples", len(stored), docs)
		}
		resp, err := sc.client.Get(sc.admin + "/metrics")
		if err != nil {
			return err
		}
		body, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if m := configRevision.FindSubmatch(body); m == nil || string(m[1]) != strconv.FormatInt(rev, 10) {
			return fmt.Errorf("the sidecar does not enforce revision %d yet", rev)
		}
		return nil
	})
}

type demoScenario struct {
	title string
	run   func() (allowed, denied int, err error)
}

func demoScenarios(sc *demoSidecar) []demoScenario {
	return []demoScenario{
		{"25 GET /v1/items from one client, X-Api-Key demo-key", sc.burst(25, func(int) (string, string, http.Header) {
			return http.MethodGet, "/v1/items", http.Header{"X-Forwarded-For": {"10.0.0.1"}, "X-Api-Key": {"demo-key"}}
		})},
		{"12 GET /search from 12 clients, X-Api-Key search-key", sc.burst(12, func(i int) (string, string, http.Header) {
			return http.MethodGet, "/search?q=redis", http.Header{"X-Forwarded-For": {"10.0.1." + strconv.Itoa(i)}, "X-Api-Key": {"search-key"}}
		})},
		{"25 POST /upload from 25 clients, all as X-User alice", sc.burst(25, func(i int) (string, string, http.Header) {
			return http.MethodPost, "/upload", http.Header{"X-Forwarded-For": {"10.0.2." + strconv.Itoa(i)}, "X-User": {"alice"}}
		})},
		{"7 exports by bob through the local API (feature quota exports)", sc.exports(7, "bob")},
	}
}

// burst sends n requests through the proxy, one after the other, from
// the start of a second: a burst that straddled two one-second windows
// would show twice the per-second limit.
func (sc *demoSidecar) burst(n int, req func(i int) (method, path string, h http.Header)) func() (int, int, error) {
	return func() (allowed, denied int, err error) {
		time.Sleep(time.Until(time.Now().Truncate(time.Second).Add(time.Second + 10*time.Millisecond)))
		for i := range n {
			method, path, h := req(i)
			r, err := http.NewRequest(method, sc.proxy+path, nil)
			if err != nil {
				return 0, 0, err
			}
			r.Header = h
			code, err := sc.status(r)
			if err != nil {
				return 0, 0, err
			}
			switch code {
			case http.StatusOK:
				allowed++
			case http.StatusTooManyRequests:
				denied++
			default:
				return 0, 0, fmt.Errorf("answered %d", code)
			}
		}
		return allowed, denied, nil
	}
}

// exports consumes the feature quota n times through the local API.
func (sc *demoSidecar) exports(n int, user string) func() (int, int, error) {
	return func() (allowed, denied int, err error) {
		for range n {
			r, err := http.NewRequest(http.MethodPost, sc.admin+"/v1/quotas/exports/consume", strings.NewReader(`{"key":["`+user+`"]}`))
			if err != nil {
				return 0, 0, err
			}
			resp, err := sc.client.Do(r)
			if err != nil {
				return 0, 0, err
			}
			body, _ := io.ReadAll(resp.Body)
			_ = resp.Body.Close()
			switch {
			case resp.StatusCode != http.StatusOK:
				return 0, 0, fmt.Errorf("local API: %s: %s", resp.Status, body)
			case strings.Contains(string(body), `"allowed":true`):
				allowed++
			default:
				denied++
			}
		}
		return allowed, denied, nil
	}
}

func (sc *demoSidecar) status(r *http.Request) (int, error) {
	resp, err := sc.client.Do(r)
	if err != nil {
		return 0, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	return resp.StatusCode, nil
}

var decisionLine = regexp.MustCompile(`(?m)^quota_decisions_total\{limit="([^"]*)",namespace="[^"]*",policy="([^"]*)",result="([^"]*)"\} (\d+)$`)

// printDecisions tabulates the sidecar's decision counters.
func (sc *demoSidecar) printDecisions(out io.Writer) error {
	resp, err := sc.client.Get(sc.admin + "/metrics")
	if err != nil {
		return err
	}
	body, err := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if err != nil {
		return err
	}
	type row struct{ policy, limit string }
	counts := map[row]map[string]string{}
	for _, m := range decisionLine.FindAllStringSubmatch(string(body), -1) {
		r := row{m[2], m[1]}
		if counts[r] == nil {
			counts[r] = map[string]string{}
		}
		counts[r][m[3]] = m[4]
	}
	rows := make([]row, 0, len(counts))
	for r := range counts {
		rows = append(rows, r)
	}
	sort.Slice(rows, func(i, j int) bool { return rows[i].policy+"/"+rows[i].limit < rows[j].policy+"/"+rows[j].limit })
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "    POLICY\tLIMIT\tALLOWED\tDENIED\tWOULD DENY (DRY RUN)")
	for _, r := range rows {
		c := counts[r]
		fmt.Fprintf(tw, "    %s\t%s\t%s\t%s\t%s\n", r.policy, zeroAs(r.limit, "-"), zeroAs(c[sidecar.ResultAllowed], "0"),
			zeroAs(c[sidecar.ResultDenied], "0"), zeroAs(c[sidecar.ResultWouldDeny], "0"))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(out, "    (A request is answered 429 by the limit that denied it; it consumes nothing from the others.)")
	return nil
}

func zeroAs(s, empty string) string {
	if s == "" {
		return empty
	}
	return s
}

type kubectlRunner struct{ bin, kubeconfig string }

func (k kubectlRunner) run(args ...string) (string, error) {
	if k.kubeconfig != "" {
		args = append([]string{"--kubeconfig", k.kubeconfig}, args...)
	}
	out, err := exec.Command(k.bin, args...).CombinedOutput()
	return string(out), err
}

func say(out io.Writer, step, format string, args ...any) {
	fmt.Fprintf(out, "\n[%s] %s\n", step, fmt.Sprintf(format, args...))
}

func indent(s string) string {
	s = strings.TrimRight(s, "\n")
	return "    " + strings.ReplaceAll(s, "\n", "\n    ") + "\n"
}

func poll(ctx context.Context, within time.Duration, check func() error) error {
	deadline := time.Now().Add(within)
	for {
		err := check()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not within %v: %w", within, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}
