package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"syscall"

	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/quotaops/quota-operator/internal/rls"
	"github.com/quotaops/quota-operator/internal/sidecar"
	"github.com/quotaops/quota-operator/internal/store"
)

// RunSidecar is the sidecar's program: `quota-operator sidecar` and
// `quota-sidecar` (prog in errors), with args after the program's name.
// version is logged at start. rlsServer serves Envoy's rate-limit service
// (--grpc-listen); a program without one (quota-sidecar, which links no
// gRPC) hands a sidecar that asks for it to `quota-operator sidecar`,
// the program beside it in the image.
func RunSidecar(prog string, args []string, stderr io.Writer, version string, rlsServer func(rls.Handler) sidecar.RLSServer) int {
	return RunService(prog, stderr, func() (*sidecarConfig, error) { return parseSidecarFlags(args, stderr, os.Getenv) },
		func(ctx context.Context, c *sidecarConfig) error {
			if c.grpcListen != "" && rlsServer == nil {
				return ExecBeside(GRPCProgram, append([]string{"sidecar"}, args...))
			}
			return startSidecar(ctx, c, stderr, os.Getenv, version, rlsServer)
		})
}

// GRPCProgram is the program with gRPC that quota-sidecar hands
// --grpc-listen to.
const GRPCProgram = "quota-operator"

// ExecBeside replaces this process with the program name found in this
// program's folder, given args, with the same environment.
func ExecBeside(name string, args []string) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	path := filepath.Join(filepath.Dir(self), name)
	if _, err := os.Stat(path); err != nil {
		return fmt.Errorf("--grpc-listen is served by %s, which is not beside this program: %w", name, err)
	}
	return syscall.Exec(path, append([]string{path}, args...), os.Environ())
}

// sidecarConfig is the sidecar's command line (DESIGN §5). Every flag can
// also come from QUOTA_<FLAG>, dashes as underscores; a flag given on the
// command line wins.
type sidecarConfig struct {
	listen, upstream, adminListen, grpcListen string
	healthListen                              string
	store                                     StoreFlags
	namespace, podName, podLabelsFile         string
	policyFile, fallbackPolicyFile            string
	trustedProxies                            string
	Deciding
	zap zap.Options
}

// parseSidecarFlags reads the sidecar's command line and QUOTA_<FLAG>.
func parseSidecarFlags(args []string, stderr io.Writer, getenv func(string) string) (*sidecarConfig, error) {
	c := &sidecarConfig{}
	fs := flag.NewFlagSet("sidecar", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.listen, "listen", ":8000", "proxy address")
	fs.StringVar(&c.upstream, "upstream", "", "URL of the app, e.g. http://127.0.0.1:8080")
	fs.StringVar(&c.adminListen, "admin-listen", "127.0.0.1:9901", "address of /healthz, /readyz, /metrics and the local API")
	fs.StringVar(&c.healthListen, "health-listen", ":9902", "address of /healthz, /readyz and /metrics for the kubelet and Prometheus; off when empty")
	fs.StringVar(&c.grpcListen, "grpc-listen", "", "address of the Envoy rate-limit service; off when empty")
	BindStore(fs, &c.store)
	fs.StringVar(&c.namespace, "namespace", "", "the pod's namespace: whose config to enforce")
	fs.StringVar(&c.podName, "pod-name", "", "the pod's name, reported with the config revision it enforces (Redis only)")
	fs.StringVar(&c.podLabelsFile, "pod-labels-file", "", "downward API file of the pod's labels")
	fs.StringVar(&c.policyFile, "policy-file", "", "YAML file or folder of RateLimitPolicy/UsageQuota objects: run without the operator")
	fs.StringVar(&c.fallbackPolicyFile, "fallback-policy-file", "", "folder of the manager's compiled policies (its ConfigMap), enforced when the store cannot be read at start, each policy's failurePolicy answering, until it can")
	fs.StringVar(&c.trustedProxies, "trusted-proxies", "", "comma-separated CIDRs whose X-Forwarded-For is believed")
	c.Bind(fs, " in this pod")
	c.zap.BindFlags(fs)
	if err := Parse(fs, args, getenv); err != nil {
		return nil, err
	}
	return c, c.check(fs)
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
	if err := c.Check(); err != nil {
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

func startSidecar(ctx context.Context, c *sidecarConfig, stderr io.Writer, getenv func(string) string, version string,
	rlsServer func(rls.Handler) sidecar.RLSServer) error {
	log := NewLog(&c.zap, stderr)
	if rlsServer != nil {
		// The program with gRPC, which pods that ask for Envoy's
		// rate-limit service run (with 128Mi), trades heap for CPU: at
		// Go's default GC its decisions cost 8-12% more CPU
		// (BenchmarkSidecar/grpc-process). quota-sidecar keeps the
		// default: its pods are many, its heap small.
		SetDecisionGC(getenv)
	}
	s, loc, err := OpenStore(c.store, getenv, store.WithFullHook(func() {
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
		Trusted:            trusted, Timeout: c.StoreTimeout, Resync: c.Resync, DrainTimeout: c.DrainTimeout, Log: log,
		FailurePolicy: c.FailurePolicy, RLS: rlsServer,
	}, s, ln)
}

// listeners opens every address the sidecar serves on; an empty optional
// address (health, gRPC) is left closed.
func (c *sidecarConfig) listeners() (sidecar.Listeners, error) {
	ln, err := ListenAll(c.listen, c.adminListen, c.healthListen, c.grpcListen)
	if err != nil {
		return sidecar.Listeners{}, err
	}
	return sidecar.Listeners{Proxy: ln[0], Admin: ln[1], Health: ln[2], GRPC: ln[3]}, nil
}
