// Package sidecartest runs a sidecar in the test process.
package sidecartest

import (
	"context"
	"net"
	"testing"

	"github.com/quotaops/quota-operator/api/v1alpha1"
	"github.com/quotaops/quota-operator/internal/config"
	"github.com/quotaops/quota-operator/internal/sidecar"
	"github.com/quotaops/quota-operator/internal/store"
	"github.com/quotaops/quota-operator/internal/store/storetest"
)

// Run serves a sidecar with o on s, on loopback ports, until the test ends
// or stop is called; stop also closes s. It returns the proxy's and the
// admin listener's URLs.
func Run(t testing.TB, o sidecar.Options, s store.Store) (proxy, admin string, stop func()) {
	t.Helper()
	var lns [2]net.Listener
	for i := range lns {
		var err error
		if lns[i], err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- sidecar.Serve(ctx, o, s, sidecar.Listeners{Proxy: lns[0], Admin: lns[1]}) }()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			t.Errorf("sidecar: %v", err)
		}
		_ = s.Close()
	}
	t.Cleanup(stop)
	return "http://" + lns[0].Addr().String(), "http://" + lns[1].Addr().String(), stop
}

// Publish compiles p and writes it to s as the operator would.
func Publish(t testing.TB, s storetest.ConfigWriter, p *v1alpha1.RateLimitPolicy) {
	t.Helper()
	id, raw := Compiled(t, p)
	if _, err := storetest.PutConfig(context.Background(), s, p.Namespace, id, raw); err != nil {
		t.Fatal(err)
	}
}

// Compiled is p's id and document as the operator compiles it.
func Compiled(t testing.TB, p *v1alpha1.RateLimitPolicy) (string, []byte) {
	t.Helper()
	doc, err := config.CompileRateLimitPolicy(p)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := doc.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return doc.ID(), raw
}
