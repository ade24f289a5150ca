package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/quotaops/quota-operator/controllers"
	"github.com/quotaops/quota-operator/internal/store"
	"github.com/quotaops/quota-operator/internal/subject"
)

// passwordEnv holds the store password when no file is given. A password
// in --store works too, but then it sits in the pod spec; a file mounted
// from a Secret, or this variable from a secretKeyRef, does not.
const passwordEnv = "QUOTA_STORE_PASSWORD"

// sentinelPasswordEnv holds the Sentinels' own password when the URL
// names no sentinel_password_file (the manager sets it from
// --store-sentinel-password-secret).
const sentinelPasswordEnv = "QUOTA_STORE_SENTINEL_PASSWORD"

// storeFlags are --store and the files that hold its credentials, which
// the manager and the sidecar share.
type storeFlags struct {
	url, usernameFile, passwordFile string
	// subjectKeyFile holds the install's subject key (sidecars, gateway).
	subjectKeyFile string
}

func bindStoreFlags(fs *flag.FlagSet, f *storeFlags) {
	fs.StringVar(&f.url, "store", "memory://", "store URL: memory://, redis://, rediss://, redis+sentinel://, redis+cluster://")
	fs.StringVar(&f.usernameFile, "store-username-file", "", "file holding the store user name (else the URL's)")
	fs.StringVar(&f.passwordFile, "store-password-file", "", "file holding the store password (else "+passwordEnv+", else the URL's)")
	fs.StringVar(&f.subjectKeyFile, "subject-key-file", "", "file holding the install's subject key, which keys subject hashes (the manager's, from its Secret); empty: the empty key, as the memory store's")
}

// openStore parses the --store URL and sets its credentials. Files are
// read again for every new connection, so a rotated Secret, which the
// kubelet updates in place, is used without a restart. Errors never
// contain the password.
func openStore(f storeFlags, getenv func(string) string, memoryOpts ...store.MemoryOption) (store.Store, *store.Location, error) {
	loc, err := store.ParseLocation(f.url)
	if err != nil {
		return nil, nil, fmt.Errorf("--store: %w", err)
	}
	if f.subjectKeyFile != "" {
		key, err := readSecretFile("--subject-key-file", f.subjectKeyFile)
		if err != nil {
			return nil, nil, err
		}
		subject.UseKey([]byte(key))
	}
	if p := getenv(sentinelPasswordEnv); p != "" {
		if loc.Kind != "sentinel" {
			return nil, nil, errors.New("a Sentinel password was given for a store that is not redis+sentinel://")
		}
		if loc.Files.SentinelPassword == "" {
			loc.Redis.SentinelPassword = p
		}
	}
	given := f.usernameFile != "" || f.passwordFile != "" || getenv(passwordEnv) != ""
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
func storeCredentials(f storeFlags, loc *store.Location, getenv func(string) string) (user, password string, err error) {
	user, password = loc.Redis.Username, loc.Redis.Password
	if p := getenv(passwordEnv); p != "" {
		password = p
	}
	if f.usernameFile != "" {
		if user, err = readSecretFile("--store-username-file", f.usernameFile); err != nil {
			return "", "", err
		}
	}
	if f.passwordFile != "" {
		if password, err = readSecretFile("--store-password-file", f.passwordFile); err != nil {
			return "", "", err
		}
	}
	return user, password, nil
}

func readSecretFile(flagName, file string) (string, error) {
	raw, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("%s: %w", flagName, err)
	}
	// Secrets written by hand often end in a newline; a credential does not.
	return strings.TrimRight(string(raw), "\r\n"), nil
}

// +kubebuilder:rbac:groups="",namespace=system,resources=secrets,resourceNames=quota-operator-redis;quota-operator-subject-key,verbs=get

// storePasswordFromSecret returns the password in the Secret
// --store-password-secret, creating the Secret with a random password when
// it does not exist: the default install's Redis takes its password from
// the same Secret, so no password is ever written in Git.
func storePasswordFromSecret(ctx context.Context, c *managerConfig) (string, error) {
	return generatedSecret(ctx, c, "--store-password-secret", c.storePasswordSecret, "password")
}

// generatedSecret returns the value under key of the Secret name in the
// manager's namespace, creating the Secret with a random value when it
// does not exist. Two replicas starting at once both end with the one
// that was created first.
func generatedSecret(ctx context.Context, c *managerConfig, flagName, name, key string) (string, error) {
	cfg, err := restConfig(c.kubeconfig)
	if err != nil {
		return "", err
	}
	k, err := client.New(cfg, client.Options{})
	if err != nil {
		return "", err
	}
	at := client.ObjectKey{Namespace: c.namespace, Name: name}
	for range 2 {
		var s corev1.Secret
		switch err := k.Get(ctx, at, &s); {
		case err == nil && len(s.Data[key]) > 0:
			return string(s.Data[key]), nil
		case err == nil:
			return "", fmt.Errorf(`%s %s: its key %q is empty`, flagName, at, key)
		case !apierrors.IsNotFound(err):
			return "", fmt.Errorf("%s %s: %w", flagName, at, err)
		}
		value, err := controllers.NewPassword()
		if err != nil {
			return "", err
		}
		s = corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: at.Namespace, Name: at.Name, Labels: controllers.ManagedLabels()},
			Data: map[string][]byte{key: []byte(value)}}
		if err := k.Create(ctx, &s); err == nil {
			return value, nil
		} else if !apierrors.IsAlreadyExists(err) {
			return "", fmt.Errorf("%s %s: %w", flagName, at, err)
		}
	}
	return "", fmt.Errorf("%s %s: created and gone again", flagName, at)
}

// withEnv is getenv with name set to value.
func withEnv(getenv func(string) string, name, value string) func(string) string {
	return func(k string) string {
		if k == name {
			return value
		}
		return getenv(k)
	}
}
