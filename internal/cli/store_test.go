package cli

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The password comes from its file, else the environment, else the URL,
// the user name from its file, else the URL; files are read again for
// each new connection (a rotated Secret needs no restart), and no error
// repeats the password.
func TestStoreCredentials(t *testing.T) {
	dir := t.TempDir()
	write := func(name, v string) string {
		f := filepath.Join(dir, name)
		if err := os.WriteFile(f, []byte(v), 0o600); err != nil {
			t.Fatal(err)
		}
		return f
	}
	passwordFile, userFile := write("password", "from-file\n"), write("username", "quota-ns-a\n")
	env := func(v string) func(string) string {
		return func(k string) string {
			if k == PasswordEnv {
				return v
			}
			return ""
		}
	}
	tests := []struct {
		name               string
		flags              StoreFlags
		getenv             func(string) string
		wantUser, wantPass string
		wantErr            string
	}{
		{"files win", StoreFlags{URL: "redis://u:in-url@h:6379/0", UsernameFile: userFile, PasswordFile: passwordFile}, env("from-env"), "quota-ns-a", "from-file", ""},
		{"environment next", StoreFlags{URL: "redis://u:in-url@h:6379/0", UsernameFile: "", PasswordFile: ""}, env("from-env"), "u", "from-env", ""},
		{"URL last", StoreFlags{URL: "redis://u:in-url@h:6379/0", UsernameFile: "", PasswordFile: ""}, env(""), "u", "in-url", ""},
		{"missing file", StoreFlags{URL: "redis://h:6379/0", UsernameFile: "", PasswordFile: filepath.Join(dir, "nope")}, env(""), "", "", "--store-password-file: open "},
		{"missing user file", StoreFlags{URL: "redis://h:6379/0", UsernameFile: filepath.Join(dir, "nope")}, env(""), "", "", "--store-username-file: open "},
		{"memory has no password", StoreFlags{URL: "memory://", UsernameFile: "", PasswordFile: ""}, env("from-env"), "", "", "store credentials were given for the memory store, which has none"},
		{"bad URL hides the password", StoreFlags{URL: "redis://:s3cret@h:port/0", UsernameFile: "", PasswordFile: ""}, env(""), "", "", "--store: "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, loc, err := OpenStore(tt.flags, tt.getenv)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || strings.Contains(err.Error(), "s3cret") {
					t.Fatalf("error %v; want one containing %q, without the password", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = s.Close() }()
			user, pass := loc.Redis.Username, loc.Redis.Password
			if get := loc.Redis.CredentialsProviderContext; get != nil {
				user, pass, err = get(context.Background())
			}
			if err != nil || user != tt.wantUser || pass != tt.wantPass || strings.Contains(loc.String(), tt.wantPass) {
				t.Fatalf("credentials %q, %q, %v (want %q, %q); printed as %s", user, pass, err, tt.wantUser, tt.wantPass, loc)
			}
		})
	}
}

// The files are read again for each new connection: a rotated Secret,
// updated in place by the kubelet, needs no restart.
func TestStoreCredentialsFollowTheFiles(t *testing.T) {
	dir := t.TempDir()
	userFile, passwordFile := filepath.Join(dir, "username"), filepath.Join(dir, "password")
	for f, v := range map[string]string{userFile: "quota-ns-a", passwordFile: "first"} {
		if err := os.WriteFile(f, []byte(v), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	s, loc, err := OpenStore(StoreFlags{URL: "redis://h:6379/0", UsernameFile: userFile, PasswordFile: passwordFile}, func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = s.Close() }()
	if err := os.WriteFile(passwordFile, []byte("rotated"), 0o600); err != nil {
		t.Fatal(err)
	}
	if user, pass, err := loc.Redis.CredentialsProviderContext(context.Background()); user != "quota-ns-a" || pass != "rotated" || err != nil {
		t.Fatalf("after the file changed: %q, %q, %v; want the new password", user, pass, err)
	}
}
