package controllers_test

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/quotaops/quota-operator/api/v1alpha1"
)

// Every object reports whether Redis has room left: Unknown without a
// maxmemory, False once it uses 90% of it (before it refuses writes),
// True again once there is room.
func TestStoreHeadroomCondition(t *testing.T) {
	ns := namespace(t)
	p := rateLimitPolicy(ns, "api", 100)
	createProgrammed(t, p, func() *v1alpha1.PolicyStatus { return &p.Status.PolicyStatus })
	r := redisS.Client()
	defer func() { _ = r.Close() }()
	t.Cleanup(func() { _ = r.ConfigSet(ctx, "maxmemory", "0").Err() })
	expectHeadroom(t, p, metav1.ConditionUnknown, v1alpha1.ReasonNoMaxmemory, "Redis sets no maxmemory")

	used, err := usedMemory(r.Info(ctx, "memory").Val())
	if err != nil {
		t.Fatal(err)
	}
	// A maxmemory just above what is used: over 90% of it is in use.
	if err := r.ConfigSet(ctx, "maxmemory", strconv.FormatInt(used+used/20, 10)).Err(); err != nil {
		t.Fatal(err)
	}
	expectHeadroom(t, p, metav1.ConditionFalse, v1alpha1.ReasonLowMemory, "uses over 90% of its maxmemory")
	if err := r.ConfigSet(ctx, "maxmemory", "1gb").Err(); err != nil {
		t.Fatal(err)
	}
	expectHeadroom(t, p, metav1.ConditionTrue, v1alpha1.ReasonEnoughMemory, "Redis uses less than 90% of its maxmemory")
}

func usedMemory(info string) (int64, error) {
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "used_memory:"); ok {
			return strconv.ParseInt(v, 10, 64)
		}
	}
	return 0, fmt.Errorf("no used_memory in %q", info)
}

func expectHeadroom(t *testing.T, obj *v1alpha1.RateLimitPolicy, status metav1.ConditionStatus, reason, message string) {
	t.Helper()
	eventually(t, 10*time.Second, "StoreHeadroom "+reason, func() error {
		if err := k8s.Get(ctx, client.ObjectKeyFromObject(obj), obj); err != nil {
			return err
		}
		c := apimeta.FindStatusCondition(obj.Status.Conditions, v1alpha1.ConditionStoreHeadroom)
		if c == nil || c.Status != status || c.Reason != reason || !strings.Contains(c.Message, message) {
			return fmt.Errorf("condition %+v", c)
		}
		return nil
	})
}
