package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/quotaops/quota-operator/internal/store"
)

// passwordEnv holds the store password when no file is given. A password
// in --store works too, but then it sits in the pod spec; a file mounted
// from a Secret, or this variable from a secretKeyRef, does not.
const passwordEnv = "QUOTA_STORE_PASSWORD"

// openStore parses the --store URL and sets its password from the file,
// else from QUOTA_STORE_PASSWORD, else from the URL. Errors never contain
// the password.
func openStore(raw, passwordFile string, getenv func(string) string, memoryOpts ...store.MemoryOption) (store.Store, *store.Location, error) {
	loc, err := store.ParseLocation(raw)
	if err != nil {
		return nil, nil, fmt.Errorf("--store: %w", err)
	}
	password, err := storePassword(passwordFile, getenv)
	if err != nil {
		return nil, nil, err
	}
	if password != "" {
		if loc.Kind == "memory" {
			return nil, nil, errors.New("a store password was given for the memory store, which has none")
		}
		loc.Redis.Password = password
	}
	return loc.Open(memoryOpts...), loc, nil
}

func storePassword(file string, getenv func(string) string) (string, error) {
	if file == "" {
		return getenv(passwordEnv), nil
	}
	raw, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("--store-password-file: %w", err)
	}
	// Secrets written by hand often end in a newline; a password does not.
	return strings.TrimRight(string(raw), "\r\n"), nil
}

// bindStoreFlags adds --store and --store-password-file, which the manager
// and the sidecar share.
func bindStoreFlags(fs *flag.FlagSet, url, passwordFile *string) {
	fs.StringVar(url, "store", "memory://", "store URL: memory://, redis://, rediss://, redis+sentinel://, redis+cluster://")
	fs.StringVar(passwordFile, "store-password-file", "", "file holding the store password (else "+passwordEnv+")")
}
