package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/quotaops/quota-operator/api/v1alpha1"
	"github.com/quotaops/quota-operator/internal/config"
	"github.com/quotaops/quota-operator/internal/sidecar"
)

// checkFlags are a check's: a target and subject, or a request.
type checkFlags struct {
	limit    string
	cost     int64
	subject  subjectFlags
	request  string
	headers  []string
	clientIP string
	labels   string
	wait     time.Duration
}

func checkCommand(c clients, stdout io.Writer) *cobra.Command {
	var f checkFlags
	cmd := &cobra.Command{
		Use:   "check (usagequota/NAME | ratelimitpolicy/NAME --limit LIMIT) --subject VALUE | check --request 'METHOD PATH' [-H 'Name: value']...",
		Short: "Show what a subject, or a request, would get now, consuming nothing",
		Example: `  kubectl quota check usagequota/api-calls --subject acme -n team-a
  kubectl quota check ratelimitpolicy/api --limit per-user --subject alice -n team-a
  kubectl quota check --request 'GET /v1/items' -H 'X-User: alice' -n team-a`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, ns, err := c.kube()
			if err != nil {
				return err
			}
			spec, names, err := f.spec(cmd.Context(), cl, ns, args)
			if err != nil {
				return err
			}
			if len(spec.Limits) == 0 {
				fmt.Fprintln(stdout, "No limit of namespace "+ns+" applies to this request: it would pass")
				return nil
			}
			q, err := ask(cmd.Context(), cl, ns, v1alpha1.QuotaQuerySpec{Check: &spec}, f.wait)
			if err != nil {
				return err
			}
			printCheck(stdout, q.Status.Check, names)
			return nil
		},
	}
	cmd.Flags().StringVar(&f.limit, "limit", "", "the RateLimitPolicy's limit")
	cmd.Flags().Int64Var(&f.cost, "cost", 1, "what the request would consume")
	f.subject.bind(cmd)
	cmd.Flags().StringVar(&f.request, "request", "", "a request, 'METHOD PATH[?QUERY]': check every limit of the namespace it would meet")
	cmd.Flags().StringArrayVarP(&f.headers, "header", "H", nil, "a header of --request, 'Name: value'; repeat it")
	cmd.Flags().StringVar(&f.clientIP, "client-ip", "192.0.2.1", "the client address of --request, for limits keyed by ClientIP")
	cmd.Flags().DurationVar(&f.wait, "wait", 30*time.Second, "how long to wait for the operator's answer")
	cmd.Flags().StringVar(&f.labels, "pod-labels", "", "with --request: the labels of the pod it reaches, k=v,...; only policies selecting it apply (default: every policy, as at a gateway)")
	return cmd
}

// spec builds the check, and names each limit for the output.
func (f *checkFlags) spec(ctx context.Context, cl client.Reader, ns string, args []string) (v1alpha1.CheckQuestion, []string, error) {
	if f.request != "" {
		if len(args) > 0 || f.limit != "" || len(f.subject.values) > 0 || f.subject.hash != "" {
			return v1alpha1.CheckQuestion{}, nil, fmt.Errorf("--request checks every limit it meets: name no target, limit or subject")
		}
		return f.requestSpec(ctx, cl, ns)
	}
	if len(args) == 0 {
		return v1alpha1.CheckQuestion{}, nil, fmt.Errorf("name a usagequota/NAME or ratelimitpolicy/NAME and a --subject, or give --request")
	}
	t, err := parseTarget(args[0], f.limit)
	if err != nil {
		return v1alpha1.CheckQuestion{}, nil, err
	}
	hash, err := f.subject.subjectHash(ctx, cl, ns)
	if err != nil {
		return v1alpha1.CheckQuestion{}, nil, err
	}
	return v1alpha1.CheckQuestion{Limits: []v1alpha1.CheckLimit{{Target: t, SubjectHash: hash, Cost: f.cost}}}, []string{targetName(t)}, nil
}

func targetName(t v1alpha1.AdjustmentTarget) string {
	if t.Kind == v1alpha1.TargetUsageQuota {
		return "usagequota/" + t.Name
	}
	return "ratelimitpolicy/" + t.Name + " " + t.Limit
}

// requestSpec matches the request against the namespace's policies, as a
// sidecar would, here: the subject's values are hashed before they leave.
func (f *checkFlags) requestSpec(ctx context.Context, cl client.Reader, ns string) (v1alpha1.CheckQuestion, []string, error) {
	r, peer, err := f.httpRequest()
	if err != nil {
		return v1alpha1.CheckQuestion{}, nil, err
	}
	ps, err := f.policies(ctx, cl, ns)
	if err != nil {
		return v1alpha1.CheckQuestion{}, nil, err
	}
	if err := f.subject.useKey(ctx, cl, ns); err != nil {
		return v1alpha1.CheckQuestion{}, nil, err
	}
	applied, err := ps.Match(r, peer)
	if err != nil {
		// What the sidecar would answer instead of deciding.
		return v1alpha1.CheckQuestion{}, nil, fmt.Errorf("the sidecar would refuse this request: %w", err)
	}
	var spec v1alpha1.CheckQuestion
	var names []string
	for _, a := range applied {
		t := v1alpha1.AdjustmentTarget{Kind: v1alpha1.TargetKind(a.Kind), Name: a.Policy}
		if t.Kind == v1alpha1.TargetRateLimitPolicy {
			t.Limit = a.Name
		}
		spec.Limits = append(spec.Limits, v1alpha1.CheckLimit{Target: t, SubjectHash: a.Limit.Key.SubjectHash(), Cost: a.Limit.Cost})
		names = append(names, targetName(t))
	}
	return spec, names, nil
}

func (f *checkFlags) httpRequest() (*http.Request, netip.Addr, error) {
	method, target, ok := strings.Cut(strings.TrimSpace(f.request), " ")
	if !ok || !strings.HasPrefix(target, "/") {
		return nil, netip.Addr{}, fmt.Errorf("--request %q: write 'METHOD /path'", f.request)
	}
	r, err := http.NewRequest(method, "http://check"+target, nil)
	if err != nil {
		return nil, netip.Addr{}, fmt.Errorf("--request: %w", err)
	}
	for _, h := range f.headers {
		name, value, ok := strings.Cut(h, ":")
		if !ok {
			return nil, netip.Addr{}, fmt.Errorf("--header %q: write 'Name: value'", h)
		}
		r.Header.Add(strings.TrimSpace(name), strings.TrimSpace(value))
	}
	client, err := netip.ParseAddr(f.clientIP)
	if err != nil {
		return nil, netip.Addr{}, fmt.Errorf("--client-ip: %w", err)
	}
	return r, client, nil
}

// policies compiles the namespace's RateLimitPolicies and UsageQuotas.
func (f *checkFlags) policies(ctx context.Context, cl client.Reader, ns string) (*sidecar.Policies, error) {
	var rlps v1alpha1.RateLimitPolicyList
	var uqs v1alpha1.UsageQuotaList
	if err := cl.List(ctx, &rlps, client.InNamespace(ns)); err != nil {
		return nil, err
	}
	if err := cl.List(ctx, &uqs, client.InNamespace(ns)); err != nil {
		return nil, err
	}
	var docs []*config.Policy
	for i := range rlps.Items {
		if d, err := config.CompileRateLimitPolicy(&rlps.Items[i]); err == nil {
			docs = append(docs, d)
		}
	}
	for i := range uqs.Items {
		if d, err := config.CompileUsageQuota(&uqs.Items[i]); err == nil {
			docs = append(docs, d)
		}
	}
	if f.labels == "" {
		return sidecar.AllPolicies(ns, 0, docs)
	}
	podLabels, err := labels.ConvertSelectorToLabelsMap(f.labels)
	if err != nil {
		return nil, fmt.Errorf("--pod-labels %q: write k=v,k=v: %w", f.labels, err)
	}
	return sidecar.NewPolicies(ns, podLabels, 0, docs)
}

func printCheck(w io.Writer, c *v1alpha1.CheckAnswer, names []string) {
	if c.Allowed {
		fmt.Fprintln(w, "Allowed: a request now would pass (nothing was consumed)")
	} else {
		fmt.Fprintln(w, "Denied: a request now would get 429 Too Many Requests (nothing was consumed)")
	}
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "LIMIT\tWINDOW\tUSED\tREMAINING\tALLOWED\tRESETS AT")
	for _, r := range c.Results {
		window := shortDuration(r.Rate.Window)
		if window == "" {
			window = "period"
		}
		allowed := fmt.Sprint(r.Allowed)
		if r.DryRun {
			allowed += " (dry run)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%d/%d\t%d\t%s\t%s\n", names[r.Limit], window, r.Rate.Used, r.Rate.Limit, r.Rate.Remaining,
			allowed, r.ResetAt.UTC().Format(time.RFC3339))
	}
	_ = tw.Flush()
}
