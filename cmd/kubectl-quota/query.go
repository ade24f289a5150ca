package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/quotaops/quota-operator/api/v1alpha1"
)

// ask creates a QuotaQuery, waits up to limit for the operator's answer,
// and deletes it. Kubernetes RBAC decides who may ask in the namespace; a
// query this user may not delete goes on its own, 10 minutes after its
// answer.
func ask(ctx context.Context, cl client.Client, ns string, spec v1alpha1.QuotaQuerySpec, limit time.Duration) (*v1alpha1.QuotaQuery, error) {
	q := &v1alpha1.QuotaQuery{ObjectMeta: metav1.ObjectMeta{Namespace: ns, GenerateName: "kubectl-quota-"}, Spec: spec}
	if err := cl.Create(ctx, q); err != nil {
		return nil, err
	}
	defer func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = cl.Delete(dctx, q)
	}()
	var cond *metav1.Condition
	err := wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, limit, true, func(ctx context.Context) (bool, error) {
		if err := cl.Get(ctx, client.ObjectKeyFromObject(q), q); err != nil {
			return false, err
		}
		cond = meta.FindStatusCondition(q.Status.Conditions, v1alpha1.ConditionAnswered)
		return cond != nil, nil
	})
	switch {
	case cond != nil && cond.Status == metav1.ConditionTrue:
		return q, nil
	case cond != nil:
		return nil, errors.New(cond.Message)
	case wait.Interrupted(err):
		return nil, fmt.Errorf("no answer within %s to quotaquery.policy.quotaops.dev/%s: is the operator running?", limit, q.Name)
	}
	return nil, err
}
