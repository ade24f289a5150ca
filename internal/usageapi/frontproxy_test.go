package usageapi

import (
	"crypto/tls"
	"crypto/x509"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/quotaops/quota-operator/internal/testutil/testpki"
)

// The front proxy is admitted by a client certificate from the
// requestheader CA with an allowed name, and names the user in the header
// the API server says; nothing else is. (A narrow test with a fake API
// reader: the whole path runs against a real API server in
// cmd/kubectl-quota.)
func TestFrontProxy(t *testing.T) {
	dir := testpki.Write(t)
	caPEM, err := os.ReadFile(filepath.Join(dir, "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "kube-system", Name: "extension-apiserver-authentication"},
		Data: map[string]string{"requestheader-client-ca-file": string(caPEM), "requestheader-allowed-names": `["client"]`,
			"requestheader-username-headers": `["X-Remote-User"]`}}
	fp := &FrontProxy{Reader: fake.NewClientBuilder().WithScheme(scheme.Scheme).WithObjects(cm).Build()}
	cert := func(name string) []*x509.Certificate {
		pair, err := tls.LoadX509KeyPair(filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key"))
		if err != nil {
			t.Fatal(err)
		}
		c, _ := x509.ParseCertificate(pair.Certificate[0])
		return []*x509.Certificate{c}
	}
	// "server" is signed by the CA too, but is no client certificate;
	// other-ca is self-signed.
	tests := []struct {
		name    string
		certs   []*x509.Certificate
		user    string
		want    string
		wantErr string
	}{
		{"the front proxy", cert("client"), "dana", "dana", ""},
		{"no certificate", nil, "dana", "", "no client certificate"},
		{"another CA", cert("other-ca"), "dana", "", "client certificate: x509: certificate signed by unknown authority"},
		{"a server certificate", cert("server"), "dana", "", "client certificate: x509: certificate specifies an incompatible key usage"},
		{"no user", cert("client"), "", "", "no user named"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", Prefix, nil)
			r.TLS = &tls.ConnectionState{PeerCertificates: tt.certs}
			if tt.user != "" {
				r.Header.Set("X-Remote-User", tt.user)
			}
			got, err := fp.Authenticate(r)
			if got != tt.want || (err == nil) != (tt.wantErr == "") || err != nil && err.Error() != tt.wantErr {
				t.Fatalf("Authenticate: %q, %v; want %q, %q", got, err, tt.want, tt.wantErr)
			}
		})
	}
	t.Run("a name not allowed", func(t *testing.T) {
		cm.Data["requestheader-allowed-names"] = `["front-proxy-client"]`
		other := &FrontProxy{Reader: fake.NewClientBuilder().WithScheme(scheme.Scheme).WithObjects(cm).Build()}
		r := httptest.NewRequest("GET", Prefix, nil)
		r.TLS = &tls.ConnectionState{PeerCertificates: cert("client")}
		r.Header.Set("X-Remote-User", "dana")
		if _, err := other.Authenticate(r); err == nil || err.Error() != `client certificate "client" is not an allowed front proxy` {
			t.Fatalf("Authenticate: %v", err)
		}
	})
}
