package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/quotaops/quota-operator/api/v1alpha1"
	"github.com/quotaops/quota-operator/internal/usageapi"
)

func usageCommand(c clients, stdout io.Writer) *cobra.Command {
	var limit string
	var top int
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
			_, ns, err := c.kube()
			if err != nil {
				return err
			}
			d, err := c.raw()
			if err != nil {
				return err
			}
			req := d.RESTClient().Get().AbsPath(usageapi.Prefix, "namespaces", ns, usageapi.Resource(t.Kind), t.Name).Param("top", strconv.Itoa(top))
			if t.Kind == v1alpha1.TargetRateLimitPolicy {
				req = req.Param("limit", limit)
			}
			raw, err := do(cmd.Context(), req)
			if err != nil {
				return err
			}
			if t.Kind == v1alpha1.TargetUsageQuota {
				return printQuotaUsage(stdout, raw)
			}
			return printLimitUsage(stdout, raw)
		},
	}
	cmd.Flags().StringVar(&limit, "limit", "", "the RateLimitPolicy's limit")
	cmd.Flags().IntVar(&top, "top", 10, "how many subjects to show (at most 100)")
	return cmd
}

func printQuotaUsage(w io.Writer, raw []byte) error {
	var u usageapi.QuotaUsage
	if err := json.Unmarshal(raw, &u); err != nil {
		return err
	}
	fmt.Fprintf(w, "UsageQuota %s/%s: %d per subject, period %s to %s\n", u.Namespace, u.Name, u.Limit,
		u.Period.Start.UTC().Format(time.RFC3339), u.Period.End.UTC().Format(time.RFC3339))
	fmt.Fprintf(w, "%d subjects consumed %d\n", u.Usage.Subjects, u.Usage.Consumed)
	if len(u.Usage.Top) == 0 {
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "SUBJECT\tUSED\tREMAINING")
	for _, c := range u.Usage.Top {
		fmt.Fprintf(tw, "%s\t%d\t%d\n", c.Subject, c.Used, c.Remaining)
	}
	return tw.Flush()
}

func printLimitUsage(w io.Writer, raw []byte) error {
	var u usageapi.LimitUsage
	if err := json.Unmarshal(raw, &u); err != nil {
		return err
	}
	var rates []string
	for _, r := range u.Rates {
		rates = append(rates, fmt.Sprintf("%d per %s", r.Limit, shortDuration(r.Window)))
	}
	fmt.Fprintf(w, "RateLimitPolicy %s/%s, limit %s: %s\n", u.Namespace, u.Name, u.Limit, strings.Join(rates, ", "))
	scan := "every key scanned"
	if !u.Complete {
		scan = "the scan stopped at its bound: more subjects may have counters"
	}
	fmt.Fprintf(w, "%d subjects have used it in their current window (%s)\n", u.Subjects, scan)
	if len(u.Top) == 0 {
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "SUBJECT\tWINDOW\tUSED\tREMAINING")
	for _, s := range u.Top {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\n", s.Subject, shortDuration(s.Rate.Window), s.Rate.Used, s.Rate.Remaining)
	}
	return tw.Flush()
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
