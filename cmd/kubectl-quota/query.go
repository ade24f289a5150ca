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
	cond, err := pollCondition(ctx, cl, q, func() []metav1.Condition { return q.Status.Conditions }, v1alpha1.ConditionAnswered,
		50*time.Millisecond, limit, func(*metav1.Condition) bool { return true })
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

// pollCondition gets obj every so often until its condition typ (read by
// conditions) is there and done says it will not change, or limit passes.
// It returns the condition last seen (nil: none yet) and the wait's error.
func pollCondition(ctx context.Context, cl client.Client, obj client.Object, conditions func() []metav1.Condition, typ string,
	every, limit time.Duration, done func(*metav1.Condition) bool) (*metav1.Condition, error) {
	var cond *metav1.Condition
	err := wait.PollUntilContextTimeout(ctx, every, limit, true, func(ctx context.Context) (bool, error) {
		if err := cl.Get(ctx, client.ObjectKeyFromObject(obj), obj); err != nil {
			return false, err
		}
		cond = meta.FindStatusCondition(conditions(), typ)
		return cond != nil && done(cond), nil
	})
	return cond, err
}
