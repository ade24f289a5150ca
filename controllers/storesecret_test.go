package controllers_test

import (
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/quotaops/quota-operator/internal/webhook"
)

func podWith(ns, name string, containers ...string) *corev1.Pod {
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	for _, c := range containers {
		p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: c, Image: "img:1"})
	}
	return p
}

// A namespace gets the store password Secret once a pod there runs the
// sidecar, and a Secret someone changed is set back.
func TestStoreSecretFollowsSidecars(t *testing.T) {
	plainNS, sidecarNS := namespace(t), namespace(t)
	if err := k8s.Create(ctx, podWith(plainNS, "app", "app")); err != nil {
		t.Fatal(err)
	}
	if err := k8s.Create(ctx, podWith(sidecarNS, "app", "app", webhook.ContainerName)); err != nil {
		t.Fatal(err)
	}
	key := client.ObjectKey{Namespace: sidecarNS, Name: storeSecret}
	s := expectPassword(t, key, "the Secret")
	s.Data["password"] = []byte("tampered")
	if err := k8s.Update(ctx, s); err != nil {
		t.Fatal(err)
	}
	// Any sidecar pod event brings it back.
	if err := k8s.Create(ctx, podWith(sidecarNS, "app-2", "app", webhook.ContainerName)); err != nil {
		t.Fatal(err)
	}
	expectPassword(t, key, "the Secret set back")
	err := k8s.Get(ctx, client.ObjectKey{Namespace: plainNS, Name: storeSecret}, &corev1.Secret{})
	if !apierrors.IsNotFound(err) {
		t.Fatalf("a namespace without sidecars got the Secret: %v", err)
	}
}

// expectPassword waits for the Secret at key to hold the store password.
func expectPassword(t *testing.T, key client.ObjectKey, what string) *corev1.Secret {
	t.Helper()
	var s corev1.Secret
	eventually(t, 10*time.Second, what, func() error {
		if err := k8s.Get(ctx, key, &s); err != nil {
			return err
		}
		if string(s.Data["password"]) != storePassword {
			return fmt.Errorf("password %q", s.Data["password"])
		}
		return nil
	})
	return &s
}
