package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/quotaops/quota-operator/internal/store"
	"github.com/quotaops/quota-operator/internal/subject"
)

// PasswordEnv holds the store password when no file is given. A password
// in --store works too, but then it sits in the pod spec; a file mounted
// from a Secret, or this variable from a secretKeyRef, does not.
const PasswordEnv = "QUOTA_STORE_PASSWORD"

// SentinelPasswordEnv holds the Sentinels' own password when the URL
// names no sentinel_password_file (the manager sets it from
// --store-sentinel-password-secret).
const SentinelPasswordEnv = "QUOTA_STORE_SENTINEL_PASSWORD"

// StoreFlags are --store and the files that hold its credentials, which
// the manager and the sidecar share.
type StoreFlags struct {
	URL, UsernameFile, PasswordFile string
	// SubjectKeyFile holds the install's subject key (sidecars, gateway).
	SubjectKeyFile string
}

// BindStore adds the store's flags to fs.
func BindStore(fs *flag.FlagSet, f *StoreFlags) {
	fs.StringVar(&f.URL, "store", "memory://", "store URL: memory://, redis://, rediss://, redis+sentinel://, redis+cluster://")
	fs.StringVar(&f.UsernameFile, "store-username-file", "", "file holding the store user name (else the URL's)")
	fs.StringVar(&f.PasswordFile, "store-password-file", "", "file holding the store password (else "+PasswordEnv+", else the URL's)")
	fs.StringVar(&f.SubjectKeyFile, "subject-key-file", "", "file holding the install's subject key, which keys subject hashes (the manager's, from its Secret); empty: the empty key, as the memory store's")
}

// OpenStore parses the --store URL and sets its credentials. Files are
// read again for every new connection, so a rotated Secret, which the
// kubelet updates in place, is used without a restart. Errors never
// contain the password.
func OpenStore(f StoreFlags, getenv func(string) string, memoryOpts ...store.MemoryOption) (store.Store, *store.Location, error) {
	loc, err := store.ParseLocation(f.URL)
	if err != nil {
		return nil, nil, fmt.Errorf("--store: %w", err)
	}
	if f.SubjectKeyFile != "" {
		key, err := ReadSecretFile("--subject-key-file", f.SubjectKeyFile)
		if err != nil {
			return nil, nil, err
		}
		subject.UseKey([]byte(key))
	}
	if p := getenv(SentinelPasswordEnv); p != "" {
		if loc.Kind != "sentinel" {
			return nil, nil, errors.New("a Sentinel password was given for a store that is not redis+sentinel://")
		}
		if loc.Files.SentinelPassword == "" {
			loc.Redis.SentinelPassword = p
		}
	}
	given := f.UsernameFile != "" || f.PasswordFile != "" || getenv(PasswordEnv) != ""
	if given && loc.Kind == "memory" {
		return nil, nil, errors.New("store credentials were given for the memory store, which has none")
	}
	if !given {
		return loc.Open(memoryOpts...), loc, nil
	}
	credentials := func(context.Context) (string, string, error) { return storeCredentials(f, loc, getenv) }
	if _, _, err := credentials(context.Background()); err != nil {
		return nil, nil, err
	}
	loc.Redis.CredentialsProviderContext = credentials
	return loc.Open(memoryOpts...), loc, nil
}

// storeCredentials reads the user name and the password from their files,
// each falling back to the URL's (the password first to QUOTA_STORE_PASSWORD).
func storeCredentials(f StoreFlags, loc *store.Location, getenv func(string) string) (user, password string, err error) {
	user, password = loc.Redis.Username, loc.Redis.Password
	if p := getenv(PasswordEnv); p != "" {
		password = p
	}
	if f.UsernameFile != "" {
		if user, err = ReadSecretFile("--store-username-file", f.UsernameFile); err != nil {
			return "", "", err
		}
	}
	if f.PasswordFile != "" {
		if password, err = ReadSecretFile("--store-password-file", f.PasswordFile); err != nil {
			return "", "", err
		}
	}
	return user, password, nil
}

// ReadSecretFile reads a credential from file, named by flagName in errors.
func ReadSecretFile(flagName, file string) (string, error) {
	raw, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("%s: %w", flagName, err)
	}
	// Secrets written by hand often end in a newline; a credential does not.
	return strings.TrimRight(string(raw), "\r\n"), nil
}

// WithEnv is getenv with name set to value.
func WithEnv(getenv func(string) string, name, value string) func(string) string {
	return func(k string) string {
		if k == name {
			return value
		}
		return getenv(k)
	}
}
