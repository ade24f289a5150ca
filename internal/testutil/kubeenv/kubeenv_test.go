package kubeenv_test

import (
	"context"
	"fmt"
	"os"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/quotaops/quota-operator/internal/testutil/kubeenv"
)

var env *kubeenv.Env

func TestMain(m *testing.M) {
	var err error
	env, err = kubeenv.Start(kubeenv.Options{})
	if err != nil {
		fmt.Fprintf(os.Stderr, "control plane: %v\n", err)
		os.Exit(1)
	}
	code := m.Run()
	if err := env.Stop(); err != nil {
		fmt.Fprintf(os.Stderr, "stop control plane: %v\n", err)
	}
	os.Exit(code)
}

func TestNamespaceRoundTrip(t *testing.T) {
	ctx := context.Background()
	c, err := client.New(env.Config, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
		Name:   "kubeenv-roundtrip",
		Labels: map[string]string{"quotaops.dev/test": "roundtrip"},
	}}
	if err := c.Create(ctx, ns); err != nil {
		t.Fatalf("create namespace: %v", err)
	}
	var got corev1.Namespace
	if err := c.Get(ctx, client.ObjectKey{Name: ns.Name}, &got); err != nil {
		t.Fatalf("get namespace: %v", err)
	}
	if got.UID == "" || got.Labels["quotaops.dev/test"] != "roundtrip" || got.Status.Phase != corev1.NamespaceActive {
		t.Fatalf("namespace read back as uid=%q labels=%v phase=%q", got.UID, got.Labels, got.Status.Phase)
	}
	// A second create must conflict: the API server, not a fake, holds state.
	again := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns.Name}}
	if err := c.Create(ctx, again); !apierrors.IsAlreadyExists(err) {
		t.Fatalf("second create: %v; want AlreadyExists", err)
	}
}
