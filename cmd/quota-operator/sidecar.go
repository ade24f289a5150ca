package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"runtime/debug"
	"strings"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/quotaops/quota-operator/internal/sidecar"
	"github.com/quotaops/quota-operator/internal/store"
)

// sidecarConfig is the sidecar's command line (DESIGN §5). Every flag can
// also come from QUOTA_<FLAG>, dashes as underscores; a flag given on the
// command line wins.
type sidecarConfig struct {
	listen, upstream, adminListen, grpcListen string
	healthListen                              string
	store                                     storeFlags
	namespace, podName, podLabelsFile         string
	policyFile, fallbackPolicyFile            string
	trustedProxies                            string
	deciding
	zap zap.Options
}

// deciding is what the sidecar and the gateway service share: how they
// decide when the store fails, and their bounds in time.
type deciding struct {
	failurePolicy                      string
	storeTimeout, resync, drainTimeout time.Duration
}

// bind adds deciding's flags; scope says whose failure policies the
// override covers.
func (d *deciding) bind(fs *flag.FlagSet, scope string) {
	fs.StringVar(&d.failurePolicy, "failure-policy", "", "Open or Closed: overrides every policy's failurePolicy"+scope+"; empty: each policy's own")
	fs.DurationVar(&d.storeTimeout, "store-timeout", 50*time.Millisecond, "bound on each store call")
	fs.DurationVar(&d.resync, "resync-interval", 10*time.Second, "how often config is re-read besides change announcements")
	fs.DurationVar(&d.drainTimeout, "drain-timeout", 10*time.Second, "how long shutdown waits for requests in flight")
}

func (d *deciding) check() error {
	if d.storeTimeout <= 0 || d.resync <= 0 {
		return errors.New("--store-timeout and --resync-interval must be positive")
	}
	if d.failurePolicy != "" && d.failurePolicy != sidecar.FailOpen && d.failurePolicy != sidecar.FailClosed {
		return fmt.Errorf("--failure-policy %q is neither Open nor Closed", d.failurePolicy)
	}
	return nil
}

// parse reads args, then QUOTA_<FLAG> for each flag not among them.
func parse(fs *flag.FlagSet, args []string, getenv func(string) string) error {
	if err := fs.Parse(args); err != nil {
		return err
	}
	return flagsFromEnv(fs, getenv)
}

func parseSidecarFlags(args []string, stderr io.Writer, getenv func(string) string) (*sidecarConfig, error) {
	c := &sidecarConfig{}
	fs := flag.NewFlagSet("sidecar", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.listen, "listen", ":8000", "proxy address")
	fs.StringVar(&c.upstream, "upstream", "", "URL of the app, e.g. http://127.0.0.1:8080")
	fs.StringVar(&c.adminListen, "admin-listen", "127.0.0.1:9901", "address of /healthz, /readyz, /metrics and the local API")
	fs.StringVar(&c.healthListen, "health-listen", ":9902", "address of /healthz, /readyz and /metrics for the kubelet and Prometheus; off when empty")
	fs.StringVar(&c.grpcListen, "grpc-listen", "", "address of the Envoy rate-limit service; off when empty")
	bindStoreFlags(fs, &c.store)
	fs.StringVar(&c.namespace, "namespace", "", "the pod's namespace: whose config to enforce")
	fs.StringVar(&c.podName, "pod-name", "", "the pod's name, reported with the config revision it enforces (Redis only)")
	fs.StringVar(&c.podLabelsFile, "pod-labels-file", "", "downward API file of the pod's labels")
	fs.StringVar(&c.policyFile, "policy-file", "", "YAML file or folder of RateLimitPolicy/UsageQuota objects: run without the operator")
	fs.StringVar(&c.fallbackPolicyFile, "fallback-policy-file", "", "folder of the manager's compiled policies (its ConfigMap), enforced when the store cannot be read at start, each policy's failurePolicy answering, until it can")
	fs.StringVar(&c.trustedProxies, "trusted-proxies", "", "comma-separated CIDRs whose X-Forwarded-For is believed")
	c.bind(fs, " in this pod")
	c.zap.BindFlags(fs)
	if err := parse(fs, args, getenv); err != nil {
		return nil, err
	}
	return c, c.check(fs)
}

// flagsFromEnv sets each flag not given on the command line from
// QUOTA_<FLAG>.
func flagsFromEnv(fs *flag.FlagSet, getenv func(string) string) error {
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	var errs []error
	fs.VisitAll(func(f *flag.Flag) {
		env := "QUOTA_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v := getenv(env); v != "" && !given[f.Name] {
			if err := f.Value.Set(v); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", env, err))
			}
		}
	})
	return errors.Join(errs...)
}

func (c *sidecarConfig) check(fs *flag.FlagSet) error {
	switch {
	case fs.NArg() > 0:
		return fmt.Errorf("unexpected arguments: %q", fs.Args())
	case c.upstream == "":
		return errors.New("--upstream is required")
	case c.listen == "" || c.adminListen == "":
		return errors.New("--listen and --admin-listen are required")
	case c.namespace == "" && c.policyFile == "":
		return errors.New("--namespace is required (or --policy-file)")
	}
	if err := c.deciding.check(); err != nil {
		return err
	}
	return c.checkValues()
}

// checkValues checks the flags whose values have a form.
func (c *sidecarConfig) checkValues() error {
	if u, err := url.Parse(c.upstream); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("--upstream %q is not an http:// or https:// URL", c.upstream)
	}
	_, err := sidecar.ParseTrusted(c.trustedProxies)
	if err != nil {
		return fmt.Errorf("--trusted-proxies: %w", err)
	}
	return nil
}

func runSidecar(args []string, _, stderr io.Writer) int {
	return runService("sidecar", stderr, func() (*sidecarConfig, error) { return parseSidecarFlags(args, stderr, os.Getenv) },
		func(ctx context.Context, c *sidecarConfig) error { return startSidecar(ctx, c, stderr, os.Getenv) })
}

// sidecarGCPercent is the GOGC of the sidecar and of the gateway service
// unless the environment sets one. The sidecar's live heap is a few MiB,
// so at Go's default of 100 it collects every few hundred requests and
// spends a fifth of its CPU on it (make bench); at 400 the heap stays in
// the tens of MiB. The injected container also gets GOMEMLIMIT below its
// memory limit, so the heap never outgrows it.
const sidecarGCPercent = 400

// setDecisionGC gives a process that decides requests sidecarGCPercent.
func setDecisionGC(getenv func(string) string) {
	if getenv("GOGC") == "" {
		debug.SetGCPercent(sidecarGCPercent)
	}
}

func startSidecar(ctx context.Context, c *sidecarConfig, stderr io.Writer, getenv func(string) string) error {
	log := newLog(&c.zap, stderr)
	setDecisionGC(getenv)
	s, loc, err := openStore(c.store, getenv, store.WithFullHook(func() {
		log.Info("Memory store full: requests that need a new counter get their policy's failurePolicy until counters expire; raise memory://?max_entries with the memory limit, or use Redis")
	}))
	if err != nil {
		return err
	}
	defer func() { _ = s.Close() }()
	upstream, _ := url.Parse(c.upstream)
	trusted, _ := sidecar.ParseTrusted(c.trustedProxies)
	ln, err := c.listeners()
	if err != nil {
		return err
	}
	log.Info("Starting sidecar", "version", version, "store", loc.String(), "namespace", c.namespace,
		"listen", ln.Proxy.Addr().String(), "admin", ln.Admin.Addr().String(), "health", c.healthListen, "upstream", c.upstream)
	return sidecar.Serve(ctx, sidecar.Options{
		Upstream: upstream, Namespace: c.namespace, PodName: c.podName, LabelsFile: c.podLabelsFile, PolicyFile: c.policyFile,
		FallbackPolicyFile: c.fallbackPolicyFile,
		Trusted:            trusted, Timeout: c.storeTimeout, Resync: c.resync, DrainTimeout: c.drainTimeout, Log: log,
		FailurePolicy: c.failurePolicy,
	}, s, ln)
}

// listeners opens every address the sidecar serves on; an empty optional
// address (health, gRPC) is left closed.
func (c *sidecarConfig) listeners() (sidecar.Listeners, error) {
	ln, err := listenAll(c.listen, c.adminListen, c.healthListen, c.grpcListen)
	if err != nil {
		return sidecar.Listeners{}, err
	}
	return sidecar.Listeners{Proxy: ln[0], Admin: ln[1], Health: ln[2], GRPC: ln[3]}, nil
}
