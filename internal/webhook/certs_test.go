package webhook_test

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/quotaops/quota-operator/internal/webhook"
)

const certLife = 30 * 24 * time.Hour

// certsUnder is a Certs for a fresh Secret and webhook configuration, on a
// clock the test moves.
func certsUnder(t *testing.T, name string, now *time.Time) *webhook.Certs {
	t.Helper()
	createNamespace(t, operatorNamespace, nil)
	cfg := &admissionv1.MutatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: name},
		Webhooks: []admissionv1.MutatingWebhook{{Name: "never.quotaops.dev", AdmissionReviewVersions: []string{"v1"},
			SideEffects:  ptr.To(admissionv1.SideEffectClassNone),
			ClientConfig: admissionv1.WebhookClientConfig{URL: ptr.To("https://127.0.0.1:1/never")},
			// Selects nothing: the configuration is only there to be patched.
			ObjectSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"never": "matches"}}}}}
	if err := k8s.Create(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	return &webhook.Certs{Client: k8s, Secret: client.ObjectKey{Namespace: operatorNamespace, Name: name},
		Hosts: append(webhook.ServiceHosts("webhook-service", operatorNamespace), "127.0.0.1"),
		Dir:   t.TempDir(), Configurations: []webhook.Configuration{{Kind: "MutatingWebhookConfiguration", Name: name}}, Life: certLife, Now: func() time.Time { return *now }}
}

// served is what the API server trusts and what the webhook server would
// present after a Sync.
type served struct {
	bundle, cert []byte
	version      string
}

func syncAndRead(t *testing.T, c *webhook.Certs) served {
	t.Helper()
	ctx := context.Background()
	if err := c.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	cfg := &admissionv1.MutatingWebhookConfiguration{}
	if err := k8s.Get(ctx, client.ObjectKey{Name: c.Configurations[0].Name}, cfg); err != nil {
		t.Fatal(err)
	}
	secret := &corev1.Secret{}
	if err := k8s.Get(ctx, c.Secret, secret); err != nil {
		t.Fatal(err)
	}
	cert, err := os.ReadFile(filepath.Join(c.Dir, "tls.crt"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(c.Dir, "tls.key")); err != nil {
		t.Fatal(err)
	}
	return served{cfg.Webhooks[0].ClientConfig.CABundle, cert, secret.ResourceVersion}
}

// verify checks that cert is trusted through bundle for every host at now.
func verify(t *testing.T, bundle, cert []byte, now time.Time, hosts ...string) {
	t.Helper()
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(bundle) {
		t.Fatal("caBundle holds no certificate")
	}
	block, _ := pem.Decode(cert)
	leaf, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range hosts {
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: h, CurrentTime: now}); err != nil {
			t.Fatalf("%s at %s: %v", h, now.Format(time.RFC3339), err)
		}
	}
}

func firstCert(bundle []byte) []byte {
	block, _ := pem.Decode(bundle)
	return block.Bytes
}

func certCount(bundle []byte) int {
	n := 0
	for block, rest := pem.Decode(bundle); block != nil; block, rest = pem.Decode(rest) {
		n++
	}
	return n
}

// Over the CA's whole life: the serving certificate is renewed with a third
// of its life left, the CA likewise, the old CA stays trusted until it
// expires, and every certificate ever served verifies through the caBundle
// the API server holds at that moment.
func TestCertsRotate(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	now := t0
	c := certsUnder(t, "rotate", &now)
	hosts := []string{"webhook-service.quota-operator-system.svc", "webhook-service.quota-operator-system.svc.cluster.local", "127.0.0.1"}
	first := syncAndRead(t, c)
	verify(t, first.bundle, first.cert, now, hosts...)
	steps := []struct {
		name                   string
		at                     time.Duration
		newCert, newCA         bool
		bundleCerts            int
		previousCertStillValid bool
	}{
		{"half way: nothing to do", certLife / 2, false, false, 1, true},
		{"a third left: new serving certificate, same CA", certLife * 7 / 10, true, false, 1, true},
		{"an expired serving certificate is replaced", certLife * 66 / 10, true, false, 1, false},
		{"the CA has a third left: new CA beside the old", certLife * 67 / 10, true, true, 2, true},
		{"the old CA expired: it leaves the bundle", certLife*10 + time.Hour, true, false, 1, false},
	}
	prev := first
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			now = t0.Add(s.at)
			got := syncAndRead(t, c)
			if changed := !bytes.Equal(got.cert, prev.cert); changed != s.newCert {
				t.Fatalf("serving certificate changed: %v; want %v", changed, s.newCert)
			}
			if !s.newCert && got.version != prev.version {
				t.Fatal("the Secret was written with nothing due")
			}
			if n := certCount(got.bundle); n != s.bundleCerts {
				t.Fatalf("caBundle holds %d CAs; want %d", n, s.bundleCerts)
			}
			if changedCA := !bytes.Equal(firstCert(got.bundle), firstCert(prev.bundle)); changedCA != s.newCA {
				t.Fatalf("CA changed: %v; want %v", changedCA, s.newCA)
			}
			verify(t, got.bundle, got.cert, now, hosts...)
			if s.previousCertStillValid {
				// A replica that has not synced yet still serves the old one.
				verify(t, got.bundle, prev.cert, now, hosts...)
			}
			prev = got
		})
	}
}

// A changed host list gets a new serving certificate at once; two replicas
// syncing a fresh Secret together end up serving the same one.
func TestCertsHostsAndReplicas(t *testing.T) {
	now := time.Now()
	a := certsUnder(t, "replicas", &now)
	b := *a
	b.Dir = t.TempDir()
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, c := range []*webhook.Certs{a, &b} {
		wg.Go(func() { errs[i] = c.Sync(context.Background()) })
	}
	wg.Wait()
	if errs[0] != nil || errs[1] != nil {
		t.Fatal(errs)
	}
	// The replica that lost the race serves the winner's certificate after
	// its next sync at the latest.
	ga, gb := syncAndRead(t, a), syncAndRead(t, &b)
	if !bytes.Equal(ga.cert, gb.cert) || !bytes.Equal(ga.bundle, gb.bundle) {
		t.Fatal("two replicas serve different certificates")
	}
	b.Hosts = append(b.Hosts, "webhook.example.test")
	moved := syncAndRead(t, &b)
	if bytes.Equal(moved.cert, gb.cert) {
		t.Fatal("a new host did not renew the serving certificate")
	}
	verify(t, moved.bundle, moved.cert, now, "webhook.example.test", "webhook-service.quota-operator-system.svc")
}
