package usageapi

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// AuthenticationConfigMap is where the API server publishes how it
// proxies to aggregated APIs: the CA of its front-proxy client certificate,
// the names that certificate may have and the headers naming the user.
var AuthenticationConfigMap = client.ObjectKey{Namespace: "kube-system", Name: "extension-apiserver-authentication"}

// FrontProxy admits requests that the API server forwards: their client
// certificate chains to the requestheader CA and has an allowed name.
// Anyone else who reaches the port is refused, whatever headers they send.
type FrontProxy struct {
	// Reader reads AuthenticationConfigMap directly (not from a cache of
	// every ConfigMap in the cluster).
	Reader client.Reader
	// Refresh is how long the ConfigMap is kept (default a minute), so a
	// rotated CA is taken up.
	Refresh time.Duration
	Now     func() time.Time

	mu     sync.Mutex
	read   time.Time
	loaded *frontProxyConfig
}

type frontProxyConfig struct {
	roots       *x509.CertPool
	names       []string
	userHeaders []string
}

// Authenticate returns the user the API server names.
func (f *FrontProxy) Authenticate(r *http.Request) (string, error) {
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		return "", errors.New("no client certificate")
	}
	cfg, err := f.config(r.Context())
	if err != nil {
		return "", err
	}
	leaf, intermediates := r.TLS.PeerCertificates[0], x509.NewCertPool()
	for _, c := range r.TLS.PeerCertificates[1:] {
		intermediates.AddCert(c)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: cfg.roots, Intermediates: intermediates, CurrentTime: f.now(),
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		return "", fmt.Errorf("client certificate: %w", err)
	}
	if len(cfg.names) > 0 && !slices.Contains(cfg.names, leaf.Subject.CommonName) {
		return "", fmt.Errorf("client certificate %q is not an allowed front proxy", leaf.Subject.CommonName)
	}
	for _, h := range cfg.userHeaders {
		if user := r.Header.Get(h); user != "" {
			return user, nil
		}
	}
	return "", errors.New("no user named")
}

func (f *FrontProxy) config(ctx context.Context) (*frontProxyConfig, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	refresh := f.Refresh
	if refresh <= 0 {
		refresh = time.Minute
	}
	if f.loaded != nil && f.now().Sub(f.read) < refresh {
		return f.loaded, nil
	}
	cfg, err := f.load(ctx)
	if err != nil {
		if f.loaded != nil {
			return f.loaded, nil // the last good one, until the API server answers
		}
		return nil, err
	}
	f.loaded, f.read = cfg, f.now()
	return cfg, nil
}

func (f *FrontProxy) load(ctx context.Context) (*frontProxyConfig, error) {
	var cm corev1.ConfigMap
	if err := f.Reader.Get(ctx, AuthenticationConfigMap, &cm); err != nil {
		return nil, fmt.Errorf("read %s: %w", AuthenticationConfigMap, err)
	}
	cfg := &frontProxyConfig{roots: x509.NewCertPool()}
	if !cfg.roots.AppendCertsFromPEM([]byte(cm.Data["requestheader-client-ca-file"])) {
		return nil, fmt.Errorf("%s has no requestheader-client-ca-file: the API server does not proxy to aggregated APIs", AuthenticationConfigMap)
	}
	for key, into := range map[string]*[]string{"requestheader-allowed-names": &cfg.names, "requestheader-username-headers": &cfg.userHeaders} {
		if raw := cm.Data[key]; raw != "" {
			if err := json.Unmarshal([]byte(raw), into); err != nil {
				return nil, fmt.Errorf("%s %s: %w", AuthenticationConfigMap, key, err)
			}
		}
	}
	if len(cfg.userHeaders) == 0 {
		cfg.userHeaders = []string{"X-Remote-User"}
	}
	return cfg, nil
}

func (f *FrontProxy) now() time.Time { return clock(f.Now) }
