package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/quotaops/quota-operator/internal/cli"
	"github.com/quotaops/quota-operator/internal/limiter"
	"github.com/quotaops/quota-operator/internal/store"
)

// tenantACLConfig is tenant-acl's command line.
type tenantACLConfig struct {
	store             cli.StoreFlags
	seal              string
	shared            bool
	gatewayNamespaces []string
	namespace         string
}

func parseTenantACLFlags(args []string, stderr io.Writer) (*tenantACLConfig, error) {
	c := &tenantACLConfig{}
	fs := flag.NewFlagSet("tenant-acl", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: quota-operator tenant-acl [flags] NAMESPACE | --shared | --gateway NS,...")
		fs.PrintDefaults()
	}
	cli.BindStore(fs, &c.store)
	fs.StringVar(&c.seal, "seal", "", "the store's seal (redis-cli GET qo:seal, as an admin); default: read from --store, written there first if the store has none")
	fs.BoolVar(&c.shared, "shared", false, "the rule of the one user every namespace shares (--store-tenancy=shared): no isolation between namespaces")
	fs.Func("gateway", "the rule of the gateway rate-limit service's user, for these comma-separated namespaces", namespaceList(&c.gatewayNamespaces))
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	modes := 0
	for _, set := range []bool{fs.NArg() > 0, c.shared, len(c.gatewayNamespaces) > 0} {
		if set {
			modes++
		}
	}
	if modes != 1 || fs.NArg() > 1 {
		return nil, errors.New("give one NAMESPACE, or --shared, or --gateway with its namespaces")
	}
	if fs.NArg() == 1 {
		c.namespace = fs.Arg(0)
		if !namespaceName.MatchString(c.namespace) {
			return nil, fmt.Errorf("%q is not a namespace name", c.namespace)
		}
	}
	return c, nil
}

// runTenantACL prints the rule of a store user an administrator makes for
// --store-tenancy=provided or shared: the words after "ACL SETUSER <user>
// on >password", valid as an ElastiCache or Redis Enterprise access
// string.
func runTenantACL(args []string, stdout, stderr io.Writer) int {
	c, err := parseTenantACLFlags(args, stderr)
	if err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintf(stderr, "quota-operator tenant-acl: %v\n", err)
		}
		return 2
	}
	seal := c.seal
	if seal == "" {
		if seal, err = storeSeal(c.store); err != nil {
			fmt.Fprintf(stderr, "quota-operator tenant-acl: %v\n", err)
			return 1
		}
	}
	u := limiter.SharedUser()
	switch {
	case c.namespace != "":
		u = limiter.TenantUser(c.namespace)
	case len(c.gatewayNamespaces) > 0:
		u = limiter.GatewayUser(c.gatewayNamespaces)
	}
	fmt.Fprintln(stdout, u.AccessString(seal))
	return 0
}

// storeSeal reads the seal the store keeps, as the manager does: written
// first when the store has none, so both agree on it.
func storeSeal(f cli.StoreFlags) (string, error) {
	if f.URL == "memory://" {
		return "", errors.New("give --store (the manager's store URL and credentials) or --seal")
	}
	s, _, err := cli.OpenStore(f, os.Getenv)
	if err != nil {
		return "", err
	}
	defer func() { _ = s.Close() }()
	r, ok := s.(*store.Redis)
	if !ok {
		return "", errors.New("the memory store has no users")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	seal, err := store.EnsureSeal(ctx, r.Client(), store.NewSeal())
	if err != nil {
		return "", fmt.Errorf("reading the store's seal: %w", err)
	}
	return seal, nil
}
