package store_test

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/quotaops/quota-operator/internal/store"
	"github.com/quotaops/quota-operator/internal/testutil/redistest"
	"github.com/quotaops/quota-operator/internal/testutil/testpki"
	"github.com/redis/go-redis/v9"
)

// A redis-server that speaks only TLS and requires client certificates
// is reached with the URL's CA and client certificate, and refused
// without either, with another CA, with another server name, or in
// plain text.
func TestRedisOverMutualTLS(t *testing.T) {
	dir := testpki.Write(t)
	f := func(name string) string { return filepath.Join(dir, name) }
	s, err := redistest.StartTLS(f("server.crt"), f("server.key"), f("ca.crt"))
	redistest.SkipIfMissing(t, err)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	withCA := "tls_ca_file=" + f("ca.crt")
	withClient := "&tls_cert_file=" + f("client.crt") + "&tls_key_file=" + f("client.key")
	tests := []struct {
		name, url, wantErr string
	}{
		{"CA and client certificate", "rediss://" + s.Addr + "/0?" + withCA + withClient, ""},
		{"no client certificate", "rediss://" + s.Addr + "/0?" + withCA, "tls: certificate required|connection reset by peer|broken pipe|EOF"},
		{"system roots only", "rediss://" + s.Addr + "/0?" + strings.TrimPrefix(withClient, "&"), "certificate signed by unknown authority"},
		{"another CA", "rediss://" + s.Addr + "/0?tls_ca_file=" + f("other-ca.crt") + withClient, "certificate signed by unknown authority"},
		{"another server name", "rediss://" + s.Addr + "/0?" + withCA + withClient + "&tls_server_name=redis.example", "wanted to match redis.example"},
		{"plain text", "redis://" + s.Addr + "/0?dial_timeout=1s&read_timeout=1s", "connection reset by peer|EOF"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { expectRoundTrip(t, tt.url, tt.wantErr) })
	}
}

// expectRoundTrip writes and reads a key through the store at raw, or,
// when wantErr is set, expects the write to fail with an error matching it.
func expectRoundTrip(t *testing.T, raw, wantErr string) {
	t.Helper()
	st, err := store.Open(raw)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = st.Close() }()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if wantErr == "" {
		// The test's server is TLS only: load the library as the manager
		// would, over the connection under test.
		if err := redistest.LoadLibraryOn(st.(*store.Redis).Client().(*redis.Client)); err != nil {
			t.Fatal(err)
		}
	}
	err = st.Set(ctx, "qo:v1:roundtrip-test", []byte("v"), time.Minute)
	if wantErr == "" {
		if v, ok, gerr := st.Get(ctx, "qo:v1:roundtrip-test"); err != nil || gerr != nil || !ok || string(v) != "v" {
			t.Fatalf("set %v; get %q, %v, %v", err, v, ok, gerr)
		}
		return
	}
	if err == nil || !regexp.MustCompile(wantErr).MatchString(err.Error()) {
		t.Fatalf("error %v; want one matching %q", err, wantErr)
	}
}

// Sentinels that ask for their own password are reached with
// sentinel_password_file, and refuse a client without it.
func TestSentinelWithItsOwnPassword(t *testing.T) {
	sn, err := redistest.StartSentinel("guarded", "requirepass sentinel-pa55")
	redistest.SkipIfMissing(t, err)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sn.Close() })
	file := filepath.Join(t.TempDir(), "sentinel-password")
	if err := os.WriteFile(file, []byte("sentinel-pa55\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	base := "redis+sentinel://" + sn.Sentinel.Addr + "/guarded"
	for _, tt := range []struct {
		name, url, wantErr string
	}{
		{"with the password file", base + "?sentinel_password_file=" + file, ""},
		{"without it", base, "NOAUTH"},
	} {
		t.Run(tt.name, func(t *testing.T) { expectRoundTrip(t, tt.url, tt.wantErr) })
	}
}
