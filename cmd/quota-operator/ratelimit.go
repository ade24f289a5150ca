package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"strings"

	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/quotaops/quota-operator/internal/cli"
	"github.com/quotaops/quota-operator/internal/gateway"
)

// ratelimitConfig is the gateway rate-limit service's command line. As
// the sidecar's, every flag can also come from QUOTA_<FLAG>.
type ratelimitConfig struct {
	grpcListen, healthListen        string
	store                           cli.StoreFlags
	namespaces                      []string
	certFile, keyFile, clientCAFile string
	cli.Deciding
	zap zap.Options
}

// namespaceName is a namespace's form (RFC 1123 label).
var namespaceName = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$`)

// namespaceList parses a comma-separated list of namespace names into
// *to, each once.
func namespaceList(to *[]string) func(string) error {
	return func(v string) error {
		*to = nil
		if strings.TrimSpace(v) == "" {
			return nil
		}
		for _, ns := range strings.Split(v, ",") {
			if ns = strings.TrimSpace(ns); !namespaceName.MatchString(ns) {
				return fmt.Errorf("%q is not a namespace name", ns)
			}
			if !slices.Contains(*to, ns) {
				*to = append(*to, ns)
			}
		}
		return nil
	}
}

func parseRatelimitFlags(args []string, stderr io.Writer, getenv func(string) string) (*ratelimitConfig, error) {
	c := &ratelimitConfig{}
	fs := flag.NewFlagSet("ratelimit", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.grpcListen, "grpc-listen", ":8081", "address of the Envoy rate-limit service")
	fs.StringVar(&c.healthListen, "health-listen", ":9902", "address of /healthz, /readyz and /metrics; off when empty")
	cli.BindStore(fs, &c.store)
	fs.Func("namespaces", "comma-separated namespaces whose policies are served (domain \"namespace/policy\")", namespaceList(&c.namespaces))
	fs.StringVar(&c.certFile, "tls-cert-file", "", "serving certificate (PEM); empty: plaintext gRPC")
	fs.StringVar(&c.keyFile, "tls-key-file", "", "key of --tls-cert-file")
	fs.StringVar(&c.clientCAFile, "client-ca-file", "", "CA that signs the gateways' client certificates: mTLS; needs --tls-cert-file")
	c.Bind(fs, "")
	c.zap.BindFlags(fs)
	if err := cli.Parse(fs, args, getenv); err != nil {
		return nil, err
	}
	return c, c.check(fs)
}

func (c *ratelimitConfig) check(fs *flag.FlagSet) error {
	switch {
	case fs.NArg() > 0:
		return fmt.Errorf("unexpected arguments: %q", fs.Args())
	case len(c.namespaces) == 0:
		return errors.New("--namespaces is required: the namespaces whose policies this service may serve")
	case c.store.URL == "" || strings.HasPrefix(c.store.URL, "memory:"):
		return errors.New("--store must be Redis: replicas of a gateway service share their counters")
	case c.grpcListen == "":
		return errors.New("--grpc-listen is required")
	case (c.certFile == "") != (c.keyFile == ""):
		return errors.New("--tls-cert-file and --tls-key-file go together")
	case c.clientCAFile != "" && c.certFile == "":
		return errors.New("--client-ca-file needs --tls-cert-file and --tls-key-file")
	}
	return c.Check()
}

func runRatelimit(args []string, _, stderr io.Writer) int {
	return cli.RunService("quota-operator ratelimit", stderr, func() (*ratelimitConfig, error) { return parseRatelimitFlags(args, stderr, os.Getenv) },
		func(ctx context.Context, c *ratelimitConfig) error { return startRatelimit(ctx, c, stderr, os.Getenv) })
}

func startRatelimit(ctx context.Context, c *ratelimitConfig, stderr io.Writer, getenv func(string) string) error {
	log := cli.NewLog(&c.zap, stderr)
	cli.SetDecisionGC(getenv)
	o := gateway.Options{Namespaces: c.namespaces, Timeout: c.StoreTimeout, Resync: c.Resync, DrainTimeout: c.DrainTimeout,
		FailurePolicy: c.FailurePolicy, Log: log}
	if c.certFile != "" {
		cfg, err := gateway.TLSFiles(c.certFile, c.keyFile, c.clientCAFile)
		if err != nil {
			return err
		}
		o.TLS = cfg
	}
	s, loc, err := cli.OpenStore(c.store, getenv)
	if err != nil {
		return err
	}
	defer func() { _ = s.Close() }()
	gs, ok := s.(gateway.Store)
	if !ok {
		return errors.New("--store cannot hold config")
	}
	ln, err := cli.ListenAll(c.grpcListen, c.healthListen)
	if err != nil {
		return err
	}
	log.Info("Starting the gateway rate-limit service", "version", version, "store", loc.String())
	return gateway.Serve(ctx, o, gs, gateway.Listeners{GRPC: ln[0], Health: ln[1]})
}
