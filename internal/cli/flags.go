// Package cli is the command-line plumbing the programs share: flags that
// also come from QUOTA_<FLAG>, the store's flags and credentials, the
// deciding flags of the sidecar and the gateway service, logging, signals
// and listeners. It links no Kubernetes client, so the sidecar's own
// program (cmd/quota-sidecar) stays small.
package cli

import (
	"errors"
	"flag"
	"fmt"
	"strings"
)

// Parse reads args, then QUOTA_<FLAG> for each flag not among them.
func Parse(fs *flag.FlagSet, args []string, getenv func(string) string) error {
	if err := fs.Parse(args); err != nil {
		return err
	}
	return FlagsFromEnv(fs, getenv)
}

// FlagsFromEnv sets each flag not given on the command line from
// QUOTA_<FLAG>, dashes as underscores.
func FlagsFromEnv(fs *flag.FlagSet, getenv func(string) string) error {
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
