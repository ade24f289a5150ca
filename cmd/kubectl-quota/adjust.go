package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/quotaops/quota-operator/api/v1alpha1"
)

// adjustFlags are reset's and grant's.
type adjustFlags struct {
	limit, name, reason string
	units               int64
	subject             subjectFlags
	wait                time.Duration
}

// adjustCommand is reset or grant: it creates a QuotaAdjustment, which
// Kubernetes RBAC allows or not and which stays as the audit trail, and
// waits until the operator applied it.
func adjustCommand(c clients, stdout io.Writer, action v1alpha1.AdjustmentAction) *cobra.Command {
	var f adjustFlags
	cmd := &cobra.Command{
		Use: strings.ToLower(string(action)) + " (usagequota/NAME | ratelimitpolicy/NAME --limit LIMIT) --subject VALUE",
		Short: map[v1alpha1.AdjustmentAction]string{
			v1alpha1.ActionReset: "Reset a subject's current window or period, by creating a QuotaAdjustment",
			v1alpha1.ActionGrant: "Grant a subject extra units of a UsageQuota for the current period, by creating a QuotaAdjustment",
		}[action],
		Example: map[v1alpha1.AdjustmentAction]string{
			v1alpha1.ActionReset: "  kubectl quota reset usagequota/api-calls --subject acme --reason 'ticket 4711' -n team-a",
			v1alpha1.ActionGrant: "  kubectl quota grant usagequota/api-calls --subject acme --units 500 --reason 'launch day' -n team-a",
		}[action],
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, ns, err := c.kube()
			if err != nil {
				return err
			}
			qa, err := f.object(cmd.Context(), cl, ns, action, args[0])
			if err != nil {
				return err
			}
			if err := cl.Create(cmd.Context(), qa); err != nil {
				return err
			}
			fmt.Fprintf(stdout, "quotaadjustment.policy.quotaops.dev/%s created\n", qa.Name)
			if f.wait <= 0 {
				return nil
			}
			return waitApplied(cmd.Context(), cl, qa, f.wait, stdout)
		},
	}
	cmd.Flags().StringVar(&f.limit, "limit", "", "the RateLimitPolicy's limit")
	cmd.Flags().StringVar(&f.name, "name", "", "the QuotaAdjustment's name (default: generated from the target and action)")
	cmd.Flags().StringVar(&f.reason, "reason", "", "why, for the audit trail (a ticket, a name)")
	cmd.Flags().DurationVar(&f.wait, "wait", 30*time.Second, "how long to wait until it is applied; 0: do not wait")
	if action == v1alpha1.ActionGrant {
		cmd.Flags().Int64Var(&f.units, "units", 0, "extra units for the current period")
		_ = cmd.MarkFlagRequired("units")
	}
	f.subject.bind(cmd)
	return cmd
}

// object is the QuotaAdjustment; the subject goes by its hash only.
func (f *adjustFlags) object(ctx context.Context, cl client.Reader, ns string, action v1alpha1.AdjustmentAction, arg string) (*v1alpha1.QuotaAdjustment, error) {
	t, err := parseTarget(arg, f.limit)
	if err != nil {
		return nil, err
	}
	hash, err := f.subject.subjectHash(ctx, cl, ns)
	if err != nil {
		return nil, err
	}
	qa := &v1alpha1.QuotaAdjustment{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: f.name},
		Spec: v1alpha1.QuotaAdjustmentSpec{Target: t, Subject: v1alpha1.AdjustmentSubject{Hash: hash}, Action: action,
			Units: f.units, Reason: f.reason},
	}
	if f.name == "" {
		qa.GenerateName = strings.ToLower(t.Name + "-" + string(action) + "-")
	}
	return qa, nil
}

// waitApplied waits for the Applied condition, then prints its message.
// An adjustment that cannot be applied (Invalid, PerPodCounters) fails;
// one waiting for its target or the store is left to the operator.
func waitApplied(ctx context.Context, cl client.Client, qa *v1alpha1.QuotaAdjustment, limit time.Duration, stdout io.Writer) error {
	cond, err := pollCondition(ctx, cl, qa, func() []metav1.Condition { return qa.Status.Conditions }, v1alpha1.ConditionApplied,
		100*time.Millisecond, limit, func(c *metav1.Condition) bool { return c.Status == metav1.ConditionTrue || final(c.Reason) })
	switch {
	case cond != nil && cond.Status == metav1.ConditionTrue:
		fmt.Fprintln(stdout, cond.Message)
		return nil
	case cond != nil && final(cond.Reason):
		return fmt.Errorf("%s", cond.Message)
	case cond != nil:
		return fmt.Errorf("not applied within %s: %s", limit, cond.Message)
	case err != nil:
		return fmt.Errorf("not applied within %s: is the operator running? %w", limit, err)
	}
	return nil
}

// final reasons will not change by waiting.
func final(reason string) bool {
	return reason == v1alpha1.ReasonInvalid || reason == v1alpha1.ReasonPerPodCounters
}
