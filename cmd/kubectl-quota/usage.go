package main

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/quotaops/quota-operator/api/v1alpha1"
)

func usageCommand(c clients, stdout io.Writer) *cobra.Command {
	var limit string
	var top int32
	var limitWait time.Duration
	cmd := &cobra.Command{
		Use:   "usage (usagequota/NAME | ratelimitpolicy/NAME --limit LIMIT)",
		Short: "Show a quota's or a limit's usage now: the subjects that used most, and what remains",
		Example: `  kubectl quota usage usagequota/api-calls -n team-a
  kubectl quota usage ratelimitpolicy/api --limit per-user -n team-a --top 5`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			t, err := parseTarget(args[0], limit)
			if err != nil {
				return err
			}
			cl, ns, err := c.kube()
			if err != nil {
				return err
			}
			q, err := ask(cmd.Context(), cl, ns, v1alpha1.QuotaQuerySpec{Usage: &v1alpha1.UsageQuestion{Target: t, Top: &top}}, limitWait)
			switch {
			case err != nil:
				return err
			case q.Status.Quota != nil:
				printQuotaUsage(stdout, ns, t, q.Status.Quota)
			case q.Status.Limit != nil:
				printLimitUsage(stdout, ns, t, q.Status.Limit)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&limit, "limit", "", "the RateLimitPolicy's limit")
	cmd.Flags().Int32Var(&top, "top", 10, "how many subjects to show (at most 100)")
	cmd.Flags().DurationVar(&limitWait, "wait", 30*time.Second, "how long to wait for the operator's answer")
	return cmd
}

func printQuotaUsage(w io.Writer, ns string, t v1alpha1.AdjustmentTarget, u *v1alpha1.QuotaUsageAnswer) {
	fmt.Fprintf(w, "UsageQuota %s/%s: %d per subject, period %s to %s\n", ns, t.Name, u.Limit,
		u.Period.Start.UTC().Format(time.RFC3339), u.Period.End.UTC().Format(time.RFC3339))
	fmt.Fprintf(w, "%d subjects consumed %d\n", u.Subjects, u.Consumed)
	if len(u.Top) == 0 {
		return
	}
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "SUBJECT\tUSED\tREMAINING")
	for _, c := range u.Top {
		fmt.Fprintf(tw, "%s\t%d\t%d\n", c.Subject, c.Used, c.Remaining)
	}
	_ = tw.Flush()
}

func printLimitUsage(w io.Writer, ns string, t v1alpha1.AdjustmentTarget, u *v1alpha1.LimitUsageAnswer) {
	var rates []string
	for _, r := range u.Rates {
		rates = append(rates, fmt.Sprintf("%d per %s", r.Limit, shortDuration(r.Window)))
	}
	fmt.Fprintf(w, "RateLimitPolicy %s/%s, limit %s: %s\n", ns, t.Name, t.Limit, strings.Join(rates, ", "))
	scan := "every key scanned"
	if !u.Complete {
		scan = "the scan stopped at its bound: more subjects may have counters"
	}
	fmt.Fprintf(w, "%d subjects have used it in their current window (%s)\n", u.Subjects, scan)
	if len(u.Top) == 0 {
		return
	}
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "SUBJECT\tWINDOW\tUSED\tREMAINING")
	for _, s := range u.Top {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\n", s.Subject, shortDuration(s.Rate.Window), s.Rate.Used, s.Rate.Remaining)
	}
	_ = tw.Flush()
}

// shortDuration writes a window as a policy does: 1m, not 1m0s.
func shortDuration(s string) string {
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return s
	}
	out := d.String()
	for _, unit := range []string{"m0s", "h0m"} {
		if strings.HasSuffix(out, unit) {
			out = strings.TrimSuffix(out, unit[1:])
		}
	}
	return out
}
