package bench

import (
	"fmt"
	"io"
	"slices"
	"testing"
	"time"
)

// An A/B of two builds of the sidecar in one run: this tree's and
// BASELINE_BIN's (say, the commit before a change, built with
// `git worktree add` and `go build ./cmd/quota-operator`). Between runs the
// machine moves a server's CPU per decision by up to 1.5x; within a run, two
// processes measured alternately on one Redis differ by far less. So each
// round measures both, in alternating order (ABBA) to cancel drift, and the
// report gives the per-round ratios this/baseline, their median and range.

// abCase is one load both builds get: the batched gRPC path, and the
// unbatched proxy path (one store call per request).
type abCase struct {
	name string
	run  func(b *testing.B, w *world, p proc) sample
}

func abCases() []abCase {
	under := grpcCases()[0]
	d := time.Duration(envInt("BENCH_AB_PROXY_SECONDS", 3)) * time.Second
	return []abCase{
		{name: "RLS, " + under.name, run: func(b *testing.B, w *world, p proc) sample {
			return measureGRPC(b, w, p, under, under.want, envInt("BENCH_DECISIONS", 40000))
		}},
		{name: "proxy at 1000/s", run: func(b *testing.B, w *world, p proc) sample {
			return measureProxy(b, w, p, 1000, d)
		}},
	}
}

// abRound is one case's pair of samples in one round.
type abRound struct{ this, base sample }

// runAB measures this build and the baseline BENCH_AB_ROUNDS times per case.
func runAB(b *testing.B, w *world) map[string][]abRound {
	rounds := envInt("BENCH_AB_ROUNDS", 6)
	out := map[string][]abRound{}
	for _, c := range abCases() {
		for r := range rounds {
			var ab abRound
			if r%4 == 0 || r%4 == 3 {
				ab.this = c.run(b, w, w.sidecar)
				ab.base = c.run(b, w, *w.baseline)
			} else {
				ab.base = c.run(b, w, *w.baseline)
				ab.this = c.run(b, w, w.sidecar)
			}
			out[c.name] = append(out[c.name], ab)
		}
	}
	return out
}

// ratioStats is the median and range of this/baseline over rounds.
type ratioStats struct{ median, lo, hi, this, base float64 }

func statsOf(rounds []abRound, metric func(sample) float64) ratioStats {
	var ratios, this, base []float64
	for _, r := range rounds {
		ratios = append(ratios, metric(r.this)/metric(r.base))
		this, base = append(this, metric(r.this)), append(base, metric(r.base))
	}
	return ratioStats{median: median(ratios), lo: slices.Min(ratios), hi: slices.Max(ratios), this: median(this), base: median(base)}
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	if n := len(s); n%2 == 1 {
		return s[n/2]
	} else {
		return (s[n/2-1] + s[n/2]) / 2
	}
}

// abLimit is how much worse this build may be: the 5% issue 27 allows.
const abLimit = 1.05

func printAB(out io.Writer, ab map[string][]abRound) (worse int) {
	fmt.Fprintf(out, "\nA/B against BASELINE_BIN, same run, alternating rounds (ratio = this / baseline)\n")
	fmt.Fprintf(out, "%-34s %-22s %8s %8s %8s %16s %6s\n", "case", "metric", "this", "baseline", "median", "range", "")
	// CPU is judged; the commands Redis ran are shown, for the why.
	metrics := []struct {
		name   string
		of     func(sample) float64
		judged bool
	}{
		{"sidecar µs/decision", func(s sample) float64 { return s.cpu }, true},
		{"redis µs/decision", func(s sample) float64 { return s.redis }, true},
		{"redis calls/decision", func(s sample) float64 { return s.calls }, false},
	}
	for _, c := range abCases() {
		for _, m := range metrics {
			st := statsOf(ab[c.name], m.of)
			verdict := ""
			if m.judged {
				verdict = "ok"
			}
			if m.judged && st.median > abLimit {
				verdict, worse = "WORSE", worse+1
			}
			fmt.Fprintf(out, "%-34s %-22s %8.2f %8.2f %7.3fx %7.3f-%.3fx %6s\n", c.name, m.name, st.this, st.base, st.median, st.lo, st.hi, verdict)
		}
	}
	fmt.Fprintf(out, "(%d rounds per case; \"WORSE\": the median ratio is above %.2f)\n", len(ab[abCases()[0].name]), abLimit)
	var failed int64
	for _, rounds := range ab {
		for _, r := range rounds {
			failed += r.this.failed + r.base.failed
		}
	}
	if failed > 0 {
		fmt.Fprintf(out, "THIS A/B DOES NOT COUNT: %d decisions failed open\n", failed)
	}
	return worse
}
