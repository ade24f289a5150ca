package controllers_test

import (
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/quotaops/quota-operator/controllers"
)

// The finalizer is patched with the object's resourceVersion: against a
// copy read before another writer added its own finalizer, the API server
// answers Conflict and the other finalizer stays. Before, the merge patch
// replaced the whole list with the stale copy's plus ours, and the other
// writer's finalizer was gone.
func TestFinalizerPatchKeepsAnotherWritersFinalizer(t *testing.T) {
	ns := namespace(t)
	const theirs = "other.example/keep"
	obj := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "watched"}}
	if err := k8s.Create(ctx, obj); err != nil {
		t.Fatal(err)
	}
	key := client.ObjectKeyFromObject(obj)
	finalizers := func() []string {
		var cur corev1.ConfigMap
		if err := k8s.Get(ctx, key, &cur); err != nil {
			t.Fatal(err)
		}
		return cur.Finalizers
	}
	for _, add := range []bool{true, false} {
		stale := &corev1.ConfigMap{}
		if err := k8s.Get(ctx, key, stale); err != nil {
			t.Fatal(err)
		}
		other := stale.DeepCopy()
		if add {
			other.Finalizers = append(other.Finalizers, theirs)
		} else {
			other.Finalizers = slices.DeleteFunc(other.Finalizers, func(f string) bool { return f == theirs })
		}
		if err := k8s.Update(ctx, other); err != nil {
			t.Fatal(err)
		}
		err := controllers.PatchFinalizer(ctx, k8s, stale, add)
		if !apierrors.IsConflict(err) {
			t.Fatalf("add %v on a stale copy: %v; want Conflict", add, err)
		}
		if add && !slices.Contains(finalizers(), theirs) {
			t.Fatalf("finalizers %v: the other writer's %s was dropped", finalizers(), theirs)
		}
		fresh := &corev1.ConfigMap{}
		if err := k8s.Get(ctx, key, fresh); err != nil {
			t.Fatal(err)
		}
		if err := controllers.PatchFinalizer(ctx, k8s, fresh, add); err != nil {
			t.Fatalf("add %v on a fresh copy: %v", add, err)
		}
		if got := finalizers(); slices.Contains(got, controllers.Finalizer) != add {
			t.Fatalf("add %v: finalizers %v", add, got)
		}
	}
	if got := finalizers(); len(got) != 0 {
		t.Fatalf("finalizers left: %v", got)
	}
}
