package webhook

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"
)

// +kubebuilder:rbac:groups=admissionregistration.k8s.io,resources=mutatingwebhookconfigurations;validatingwebhookconfigurations,resourceNames=quota-operator-mutating-webhook-configuration;quota-operator-validating-webhook-configuration,verbs=get;update
// The certificate Secret, in the operator's own namespace, by name.
// +kubebuilder:rbac:groups="",namespace=system,resources=secrets,verbs=create
// +kubebuilder:rbac:groups="",namespace=system,resources=secrets,resourceNames=quota-operator-webhook-cert,verbs=get;update

// Keys of the certificate Secret. tls.crt and tls.key are what the webhook
// server reads; ca-bundle.crt is what the API server trusts: the current CA
// and, during a CA rotation, the previous one.
const (
	keyCACert   = "ca.crt"
	keyCAKey    = "ca.key"
	keyBundle   = "ca-bundle.crt"
	keyTLSCert  = corev1.TLSCertKey
	keyTLSKey   = corev1.TLSPrivateKeyKey
	defaultLife = 365 * 24 * time.Hour
)

// Certs keeps the webhook's serving certificate without cert-manager: a
// self-signed CA and a serving certificate in a Secret shared by every
// replica, their files in the webhook server's directory, and the CA in the
// webhook configurations' caBundle. Each is renewed when a third of its
// life is left; a new CA is trusted next to the old one until the old one
// expires, so no replica's certificate is ever untrusted.
type Certs struct {
	// Client reads and writes directly (no cache): Sync runs before the
	// manager starts.
	Client client.Client
	// Secret holds the CA and the serving certificate.
	Secret client.ObjectKey
	// Hosts are the serving certificate's names: the Service's DNS names,
	// and any extra name or IP.
	Hosts []string
	// Dir receives tls.crt and tls.key; the webhook server reloads them.
	Dir string
	// Configurations are the webhook configurations whose caBundle is
	// kept.
	Configurations []Configuration
	// Life is the serving certificate's validity (default a year); the CA
	// lives ten times as long.
	Life time.Duration
	// Interval between checks in Start (default a minute).
	Interval time.Duration
	Now      func() time.Time
}

// Configuration names a MutatingWebhookConfiguration or a
// ValidatingWebhookConfiguration.
type Configuration struct {
	Kind, Name string
}

// ServiceHosts are the DNS names the API server uses for a Service.
func ServiceHosts(service, namespace string) []string {
	return []string{service, service + "." + namespace, service + "." + namespace + ".svc", service + "." + namespace + ".svc.cluster.local"}
}

// Start checks the certificates every Interval until ctx ends. Every
// replica runs it: each needs the files, and a race to renew the Secret is
// settled by its resourceVersion.
func (c *Certs) Start(ctx context.Context) error {
	t := time.NewTicker(c.interval())
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			if err := c.Sync(ctx); err != nil {
				log.FromContext(ctx).Error(err, "Webhook certificate check failed; retrying", "secret", c.Secret)
			}
		}
	}
}

// NeedLeaderElection is false: every replica serves the webhook.
func (c *Certs) NeedLeaderElection() bool { return false }

// Sync renews what is due in the Secret, then sets the caBundles and
// writes the files from it: the bundle first, so the API server trusts a
// new CA before any server presents a certificate it signed.
func (c *Certs) Sync(ctx context.Context) error {
	secret, err := c.ensureSecret(ctx)
	if err != nil {
		return err
	}
	if err := c.patchBundles(ctx, secret.Data[keyBundle]); err != nil {
		return err
	}
	return c.writeFiles(secret.Data)
}

func (c *Certs) ensureSecret(ctx context.Context) (*corev1.Secret, error) {
	secret := &corev1.Secret{}
	err := c.Client.Get(ctx, c.Secret, secret)
	exists := err == nil
	if err != nil && !apierrors.IsNotFound(err) {
		return nil, fmt.Errorf("webhook certificate Secret %s: %w", c.Secret, err)
	}
	data, changed, err := c.renew(secret.Data)
	if err != nil || !changed {
		return secret, err
	}
	secret.Data = data
	if exists {
		err = c.Client.Update(ctx, secret)
	} else {
		secret.ObjectMeta = metav1.ObjectMeta{Name: c.Secret.Name, Namespace: c.Secret.Namespace,
			Labels: map[string]string{"app.kubernetes.io/managed-by": "quota-operator"}}
		secret.Type = corev1.SecretTypeTLS
		err = c.Client.Create(ctx, secret)
	}
	if apierrors.IsConflict(err) || apierrors.IsAlreadyExists(err) {
		// Another replica renewed first: use its certificates.
		if err := c.Client.Get(ctx, c.Secret, secret); err != nil {
			return nil, err
		}
		return secret, nil
	}
	if err != nil {
		return nil, fmt.Errorf("webhook certificate Secret %s: %w", c.Secret, err)
	}
	log.FromContext(ctx).Info("Renewed the webhook certificate", "secret", c.Secret, "hosts", c.Hosts)
	return secret, nil
}

// renew returns data with what is due renewed, and whether anything was.
func (c *Certs) renew(old map[string][]byte) (map[string][]byte, bool, error) {
	now := c.now()
	ca, caKey, caOK := parsePair(old[keyCACert], old[keyCAKey])
	caOK = caOK && !due(ca, now)
	leaf, _, leafOK := parsePair(old[keyTLSCert], old[keyTLSKey])
	if caOK && leafOK && !due(leaf, now) && leaf.CheckSignatureFrom(ca) == nil && coversHosts(leaf, c.Hosts) {
		return old, false, nil
	}
	data := map[string][]byte{keyCACert: old[keyCACert], keyCAKey: old[keyCAKey]}
	// The bundle is the current CA and those before it that have not
	// expired yet: replicas may still serve certificates they signed.
	retiring := previous(old[keyBundle], old[keyCACert])
	if !caOK {
		var err error
		ca, caKey, data[keyCACert], data[keyCAKey], err = newCA(now, 10*c.life())
		if err != nil {
			return nil, false, err
		}
		retiring = old[keyCACert]
	}
	data[keyBundle] = append(append([]byte{}, data[keyCACert]...), stillValid(retiring, now)...)
	var err error
	data[keyTLSCert], data[keyTLSKey], err = newLeaf(now, c.life(), c.Hosts, ca, caKey)
	return data, err == nil, err
}

func (c *Certs) writeFiles(data map[string][]byte) error {
	if err := os.MkdirAll(c.Dir, 0o700); err != nil {
		return err
	}
	for _, name := range []string{keyTLSCert, keyTLSKey} {
		path := filepath.Join(c.Dir, name)
		if cur, err := os.ReadFile(path); err == nil && bytes.Equal(cur, data[name]) {
			continue
		}
		// Write and rename, so the server never reads half a file.
		tmp := path + ".tmp"
		if err := os.WriteFile(tmp, data[name], 0o600); err != nil {
			return err
		}
		if err := os.Rename(tmp, path); err != nil {
			return err
		}
	}
	return nil
}

func (c *Certs) patchBundles(ctx context.Context, bundle []byte) error {
	for _, cfg := range c.Configurations {
		// Replicas patch the same object: a conflict is retried.
		err := retry.RetryOnConflict(retry.DefaultRetry, func() error { return c.patchBundle(ctx, cfg, bundle) })
		if apierrors.IsNotFound(err) {
			// Not installed (yet): the next check sets it.
			log.FromContext(ctx).Info("No webhook configuration to set the caBundle of", "kind", cfg.Kind, "name", cfg.Name)
			continue
		}
		if err != nil {
			return fmt.Errorf("%s %s: %w", cfg.Kind, cfg.Name, err)
		}
	}
	return nil
}

// patchBundle sets bundle in every webhook of a configuration (both
// webhook kinds have webhooks[].clientConfig.caBundle). It works on
// unstructured data.
func (c *Certs) patchBundle(ctx context.Context, cfg Configuration, bundle []byte) error {
	u := &unstructured.Unstructured{}
	u.SetGroupVersionKind(admissionv1.SchemeGroupVersion.WithKind(cfg.Kind))
	if err := c.Client.Get(ctx, client.ObjectKey{Name: cfg.Name}, u); err != nil {
		return err
	}
	want := base64.StdEncoding.EncodeToString(bundle)
	changed, err := setInHooks(u.Object, want)
	if err != nil || !changed {
		return err
	}
	if err := c.Client.Update(ctx, u); err != nil {
		return err
	}
	log.FromContext(ctx).Info("Set the caBundle", "kind", cfg.Kind, "name", cfg.Name)
	return nil
}

func setInHooks(obj map[string]any, want string) (bool, error) {
	hooks, _, err := unstructured.NestedSlice(obj, "webhooks")
	if err != nil {
		return false, err
	}
	changed := false
	for _, h := range hooks {
		hook, ok := h.(map[string]any)
		if !ok {
			return false, errors.New("a webhook is not an object")
		}
		c, err := setField(hook, want, "clientConfig", "caBundle")
		if err != nil {
			return false, err
		}
		changed = changed || c
	}
	if !changed {
		return false, nil
	}
	return true, unstructured.SetNestedSlice(obj, hooks, "webhooks")
}

func setField(obj map[string]any, want string, path ...string) (bool, error) {
	if got, _, _ := unstructured.NestedString(obj, path...); got == want {
		return false, nil
	}
	return true, unstructured.SetNestedField(obj, want, path...)
}

func (c *Certs) life() time.Duration {
	if c.Life > 0 {
		return c.Life
	}
	return defaultLife
}

func (c *Certs) interval() time.Duration {
	if c.Interval > 0 {
		return c.Interval
	}
	return time.Minute
}

func (c *Certs) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

// due: a third of the certificate's life or less is left.
func due(cert *x509.Certificate, now time.Time) bool {
	life := cert.NotAfter.Sub(cert.NotBefore)
	return now.After(cert.NotAfter.Add(-life/3)) || now.Before(cert.NotBefore)
}

func coversHosts(cert *x509.Certificate, hosts []string) bool {
	for _, h := range hosts {
		if cert.VerifyHostname(h) != nil {
			return false
		}
	}
	return true
}

// parsePair parses a PEM certificate and its ECDSA key; ok is false when
// either is missing, unreadable, or they do not belong together.
func parsePair(certPEM, keyPEM []byte) (*x509.Certificate, *ecdsa.PrivateKey, bool) {
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, nil, false
	}
	key, ok := pair.PrivateKey.(*ecdsa.PrivateKey)
	return pair.Leaf, key, ok && pair.Leaf != nil
}

// previous is what bundle holds besides current.
func previous(bundle, current []byte) []byte {
	return bytes.Replace(bundle, current, nil, 1)
}

// stillValid keeps the certificates of a PEM bundle that have not expired.
func stillValid(bundle []byte, now time.Time) []byte {
	var out []byte
	for {
		var block *pem.Block
		block, bundle = pem.Decode(bundle)
		if block == nil {
			return out
		}
		if cert, err := x509.ParseCertificate(block.Bytes); err == nil && now.Before(cert.NotAfter) {
			out = append(out, pem.EncodeToMemory(block)...)
		}
	}
}

func newCA(now time.Time, life time.Duration) (*x509.Certificate, *ecdsa.PrivateKey, []byte, []byte, error) {
	tmpl := template(now, life, "quota-operator webhook CA")
	tmpl.IsCA, tmpl.BasicConstraintsValid = true, true
	tmpl.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature
	certPEM, keyPEM, key, err := sign(tmpl, nil, nil)
	if err != nil {
		return nil, nil, nil, nil, err
	}
	cert, _, _ := parsePair(certPEM, keyPEM)
	return cert, key, certPEM, keyPEM, nil
}

func newLeaf(now time.Time, life time.Duration, hosts []string, ca *x509.Certificate, caKey *ecdsa.PrivateKey) ([]byte, []byte, error) {
	if len(hosts) == 0 {
		return nil, nil, errors.New("a serving certificate needs at least one host name")
	}
	tmpl := template(now, life, hosts[0])
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	certPEM, keyPEM, _, err := sign(tmpl, ca, caKey)
	return certPEM, keyPEM, err
}

func template(now time.Time, life time.Duration, name string) *x509.Certificate {
	serial, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	return &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: name},
		// A minute back: the API server's clock may be a little behind.
		NotBefore: now.Add(-time.Minute),
		NotAfter:  now.Add(life),
	}
}

// sign makes a key for tmpl and signs it with parentKey, or itself when
// parent is nil.
func sign(tmpl, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) ([]byte, []byte, *ecdsa.PrivateKey, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, nil, err
	}
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		return nil, nil, nil, err
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), key, nil
}
