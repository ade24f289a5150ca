package store_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/quotaops/quota-operator/internal/store"
	"github.com/quotaops/quota-operator/internal/testutil/redistest"
)

// pki writes a CA, a server certificate for 127.0.0.1 and a client
// certificate it signed, and a second CA that signed nothing here.
func pki(t *testing.T) (dir string) {
	t.Helper()
	dir = t.TempDir()
	caKey, caCert := newCert(t, dir, "ca", &x509.Certificate{IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}, nil, nil)
	newCert(t, dir, "server", &x509.Certificate{IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}, caCert, caKey)
	newCert(t, dir, "client", &x509.Certificate{ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}, caCert, caKey)
	newCert(t, dir, "other-ca", &x509.Certificate{IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}, nil, nil)
	return dir
}

// newCert writes name.crt and name.key, signed by parent (self-signed
// when nil).
func newCert(t *testing.T, dir, name string, tmpl *x509.Certificate, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) (*ecdsa.PrivateKey, *x509.Certificate) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl.SerialNumber, tmpl.Subject = big.NewInt(time.Now().UnixNano()), pkix.Name{CommonName: name}
	tmpl.NotBefore, tmpl.NotAfter = time.Now().Add(-time.Hour), time.Now().Add(time.Hour)
	tmpl.KeyUsage |= x509.KeyUsageDigitalSignature
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	for file, block := range map[string]*pem.Block{name + ".crt": {Type: "CERTIFICATE", Bytes: der}, name + ".key": {Type: "EC PRIVATE KEY", Bytes: keyDER}} {
		if err := os.WriteFile(filepath.Join(dir, file), pem.EncodeToMemory(block), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return key, cert
}

// A redis-server that speaks only TLS and requires client certificates
// is reached with the URL's CA and client certificate, and refused
// without either, with another CA, with another server name, or in
// plain text.
func TestRedisOverMutualTLS(t *testing.T) {
	dir := pki(t)
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
