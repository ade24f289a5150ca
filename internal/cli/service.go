package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	"go.uber.org/zap/zapcore"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/quotaops/quota-operator/internal/sidecar"
)

// RunService parses a long-running subcommand's flags (exit 2 when they
// are wrong), then runs it until SIGINT or SIGTERM (exit 1 when it fails).
// prog names it in errors, such as "quota-operator sidecar".
func RunService[C any](prog string, stderr io.Writer, parse func() (C, error), start func(context.Context, C) error) int {
	c, err := parse()
	if err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintf(stderr, "%s: %v\n", prog, err)
		}
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := start(ctx, c); err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", prog, err)
		return 1
	}
	return 0
}

// ListenAll opens every address; an empty one is left closed (nil). On an
// error, the ones opened are closed.
func ListenAll(addrs ...string) ([]net.Listener, error) {
	out := make([]net.Listener, len(addrs))
	for i, addr := range addrs {
		if addr == "" {
			continue
		}
		l, err := net.Listen("tcp", addr)
		if err != nil {
			for _, o := range out[:i] {
				if o != nil {
					_ = o.Close()
				}
			}
			return nil, err
		}
		out[i] = l
	}
	return out, nil
}

// NewLog logs as the flags o say to w. Locked: w may be any io.Writer,
// written from many goroutines.
func NewLog(o *zap.Options, w io.Writer) logr.Logger {
	return zap.New(zap.UseFlagOptions(o), zap.WriteTo(zapcore.Lock(zapcore.AddSync(w))))
}

// DecisionGCPercent is the GOGC of the gateway service and of
// `quota-operator sidecar` (the program of pods that serve Envoy's
// rate-limit service) unless the environment sets one: there CPU per
// decision counts more than the tens of MiB of heap it lets grow.
// quota-sidecar, in every other injected pod, keeps Go's default (100):
// its live heap is 1-2 MiB, and 400's smallest goal is 16 MiB of heap
// (docs/performance.md).
const DecisionGCPercent = 400

// SetDecisionGC gives a process that decides requests DecisionGCPercent.
func SetDecisionGC(getenv func(string) string) {
	if getenv("GOGC") == "" {
		debug.SetGCPercent(DecisionGCPercent)
	}
}

// Deciding is what the sidecar and the gateway service share: how they
// decide when the store fails, and their bounds in time.
type Deciding struct {
	FailurePolicy                      string
	StoreTimeout, Resync, DrainTimeout time.Duration
}

// Bind adds Deciding's flags; scope says whose failure policies the
// override covers.
func (d *Deciding) Bind(fs *flag.FlagSet, scope string) {
	fs.StringVar(&d.FailurePolicy, "failure-policy", "", "Open or Closed: overrides every policy's failurePolicy"+scope+"; empty: each policy's own")
	fs.DurationVar(&d.StoreTimeout, "store-timeout", 50*time.Millisecond, "bound on each store call")
	fs.DurationVar(&d.Resync, "resync-interval", time.Minute, "how often the config revision is checked besides change announcements; the whole config is read when it changed")
	fs.DurationVar(&d.DrainTimeout, "drain-timeout", 10*time.Second, "how long shutdown waits for requests in flight")
}

// Check refuses values Deciding cannot run with.
func (d *Deciding) Check() error {
	if d.StoreTimeout <= 0 || d.Resync <= 0 {
		return errors.New("--store-timeout and --resync-interval must be positive")
	}
	if d.FailurePolicy != "" && d.FailurePolicy != sidecar.FailOpen && d.FailurePolicy != sidecar.FailClosed {
		return fmt.Errorf("--failure-policy %q is neither Open nor Closed", d.FailurePolicy)
	}
	return nil
}
