// Command kubectl-quota is the kubectl plugin of quota-operator
// (`kubectl quota`): usage and checks create a QuotaQuery, which the
// operator answers from the store; reset and grant create
// QuotaAdjustments. Kubernetes RBAC decides who may do either, per
// namespace. Subjects are hashed here: raw
// values (API keys) never leave the terminal.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/quotaops/quota-operator/api/v1alpha1"
	buildinfo "github.com/quotaops/quota-operator/internal/version"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run is the plugin with its arguments; it returns the exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	root := newRoot(stdout)
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	if err := root.ExecuteContext(ctx); err != nil {
		fmt.Fprintln(stderr, describeError(err))
		return 1
	}
	return 0
}

// describeError words an error as kubectl does.
func describeError(err error) string {
	var status apierrors.APIStatus
	if errors.As(err, &status) && status.Status().Reason != "" {
		return fmt.Sprintf("Error from server (%s): %s", status.Status().Reason, status.Status().Message)
	}
	return "error: " + err.Error()
}

// clients are what the commands talk to, made from the kubeconfig flags.
type clients struct {
	flags *genericclioptions.ConfigFlags
}

// kube is a client for the operator's objects, and the namespace the
// flags name.
func (c clients) kube() (client.Client, string, error) {
	cfg, err := c.flags.ToRESTConfig()
	if err != nil {
		return nil, "", err
	}
	scheme := runtime.NewScheme()
	if err := v1alpha1.AddToScheme(scheme); err != nil {
		return nil, "", err
	}
	if err := corev1.AddToScheme(scheme); err != nil {
		return nil, "", err
	}
	cl, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return nil, "", err
	}
	ns, _, err := c.flags.ToRawKubeConfigLoader().Namespace()
	return cl, ns, err
}

func newRoot(stdout io.Writer) *cobra.Command {
	flags := genericclioptions.NewConfigFlags(true)
	root := &cobra.Command{
		Use:           "kubectl quota",
		Short:         "See and change quota-operator's counters",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	flags.AddFlags(root.PersistentFlags())
	c := clients{flags: flags}
	root.AddCommand(usageCommand(c, stdout), checkCommand(c, stdout), adjustCommand(c, stdout, v1alpha1.ActionReset),
		adjustCommand(c, stdout, v1alpha1.ActionGrant), hashCommand(c, stdout), versionCommand(stdout))
	return root
}

// version and commit are set at build time with -ldflags "-X
// main.version=... -X main.commit=..." (make build, a release).
var version, commit = "dev", ""

func versionCommand(stdout io.Writer) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the plugin's version, the commit it was built from and the Go version",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			_, err := fmt.Fprintln(stdout, buildinfo.Text(version, commit))
			return err
		},
	}
}
