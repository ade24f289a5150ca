package gateway

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"sync"

	"github.com/quotaops/quota-operator/internal/sidecar"
)

// TLSFiles serves with the key pair in certFile and keyFile and, when
// clientCAFile is set, admits only clients with a certificate it signed
// (mTLS). The files are read again when they change, as the kubelet
// rewrites a renewed Secret (cert-manager), so no restart is needed.
func TLSFiles(certFile, keyFile, clientCAFile string) (*tls.Config, error) {
	f := &tlsFiles{cert: certFile, key: keyFile, ca: clientCAFile}
	if _, err := f.load(); err != nil {
		return nil, err
	}
	return &tls.Config{MinVersion: tls.VersionTLS12, GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
		return f.load()
	}}, nil
}

type tlsFiles struct {
	cert, key, ca string

	mu     sync.Mutex
	stamp  string
	config *tls.Config
}

// load returns the config of the files as they are now, building it again
// only when one of them changed.
func (f *tlsFiles) load() (*tls.Config, error) {
	stamp, err := sidecar.FileStamp(f.cert, f.key, f.ca)
	if err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.config != nil && stamp == f.stamp {
		return f.config, nil
	}
	cfg, err := buildTLS(f.cert, f.key, f.ca)
	if err != nil {
		if f.config != nil {
			// A half-written renewal: the last good pair serves until the
			// files agree again.
			return f.config, nil
		}
		return nil, err
	}
	f.stamp, f.config = stamp, cfg
	return cfg, nil
}

func buildTLS(certFile, keyFile, caFile string) (*tls.Config, error) {
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("TLS key pair: %w", err)
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{pair}}
	if caFile == "" {
		return cfg, nil
	}
	raw, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("client CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(raw) {
		return nil, errors.New("client CA: " + caFile + " holds no PEM certificate")
	}
	cfg.ClientCAs, cfg.ClientAuth = pool, tls.RequireAndVerifyClientCert
	return cfg, nil
}
