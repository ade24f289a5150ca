package store

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
)

// LocationFiles are the files a store URL names in its query: a CA bundle,
// a client certificate and key (rediss:// only), and the sentinels' own
// password. Paths are not secret, so the URL prints them back.
type LocationFiles struct {
	CA, Cert, Key, SentinelPassword string
}

// fileOptions are the query options that name files, in printing order.
var fileOptions = []struct {
	name  string
	field func(*LocationFiles) *string
}{
	{"tls_ca_file", func(f *LocationFiles) *string { return &f.CA }},
	{"tls_cert_file", func(f *LocationFiles) *string { return &f.Cert }},
	{"tls_key_file", func(f *LocationFiles) *string { return &f.Key }},
	{"sentinel_password_file", func(f *LocationFiles) *string { return &f.SentinelPassword }},
}

// parseFileOption takes name=v when name is a file option.
func (l *Location) parseFileOption(name, v string) bool {
	for _, o := range fileOptions {
		if o.name == name {
			*o.field(&l.Files) = v
			return true
		}
	}
	return false
}

// applyFiles reads the files the URL names into its options. The client
// certificate is read again at every handshake, so a renewed one (as
// cert-manager writes it) is used without a restart.
func (l *Location) applyFiles() error {
	f, o := l.Files, l.Redis
	if (f.CA != "" || f.Cert != "" || f.Key != "" || l.serverName != "") && o.TLSConfig == nil {
		return errors.New("store URL options tls_* need rediss://, rediss+sentinel:// or rediss+cluster://")
	}
	if f.SentinelPassword != "" && l.Kind != "sentinel" {
		return errors.New("store URL option sentinel_password_file is for redis+sentinel:// only")
	}
	if o.TLSConfig != nil {
		o.TLSConfig.ServerName = l.serverName
	}
	if f.CA != "" {
		pem, err := os.ReadFile(f.CA)
		if err != nil {
			return fmt.Errorf("store URL option tls_ca_file: %w", err)
		}
		o.TLSConfig.RootCAs = x509.NewCertPool()
		if !o.TLSConfig.RootCAs.AppendCertsFromPEM(pem) {
			return fmt.Errorf("store URL option tls_ca_file: %s holds no PEM certificate", f.CA)
		}
	}
	if err := l.applyClientCert(); err != nil {
		return err
	}
	if f.SentinelPassword != "" {
		raw, err := os.ReadFile(f.SentinelPassword)
		if err != nil {
			return fmt.Errorf("store URL option sentinel_password_file: %w", err)
		}
		o.SentinelPassword = strings.TrimRight(string(raw), "\r\n")
	}
	return nil
}

func (l *Location) applyClientCert() error {
	f := l.Files
	if (f.Cert == "") != (f.Key == "") {
		return errors.New("store URL options tls_cert_file and tls_key_file go together")
	}
	if f.Cert == "" {
		return nil
	}
	if _, err := tls.LoadX509KeyPair(f.Cert, f.Key); err != nil {
		return fmt.Errorf("store URL options tls_cert_file, tls_key_file: %w", err)
	}
	l.Redis.TLSConfig.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
		c, err := tls.LoadX509KeyPair(f.Cert, f.Key)
		return &c, err
	}
	return nil
}

// printQuery is the query of the printed URL: the options a reader of the
// log, or a sidecar given this URL, needs.
func (l *Location) printQuery() string {
	q := url.Values{}
	for _, o := range fileOptions {
		if v := *o.field(&l.Files); v != "" {
			q.Set(o.name, v)
		}
	}
	if l.serverName != "" {
		q.Set("tls_server_name", l.serverName)
	}
	if l.Redis.SentinelUsername != "" {
		q.Set("sentinel_username", l.Redis.SentinelUsername)
	}
	if l.OneSlotPerCall {
		q.Set("cross_slot", "false")
	}
	if len(q) == 0 {
		return ""
	}
	return "?" + q.Encode()
}
