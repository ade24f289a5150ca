package e2e

import (
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"

	"github.com/quotaops/quota-operator/internal/testutil/kubeenv"
)

// `make demo`, the README's first command, runs to its summary and exits 0
// when DEMO_DURATION bounds it. Its own API server, manager and sidecar
// run beside this package's.
func TestMakeDemo(t *testing.T) {
	cmd := exec.Command("make", "--no-print-directory", "demo", "DEMO_DURATION=0s")
	cmd.Dir = kubeenv.ModuleRoot()
	cmd.Env = append(os.Environ(), "MAKEFLAGS=")
	raw, err := cmd.CombinedOutput()
	out := string(raw)
	if err != nil {
		t.Fatalf("make demo: %v\n%s", err, out)
	}
	// Exact where the samples make the numbers exact: a fixed window of 10
	// a second (the burst starts with a second) and 5 exports a day. The
	// bucket of 20 refills one token per 200 ms: a burst slowed down that
	// long by a busy machine gets a 21st.
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`25 GET /v1/items from one client, X-Api-Key demo-key +10 allowed +15 denied`),
		regexp.MustCompile(`12 GET /search from 12 clients, X-Api-Key search-key +12 allowed +0 denied`),
		regexp.MustCompile(`25 POST /upload from 25 clients, all as X-User alice +(20 allowed +5|21 allowed +4) denied`),
		regexp.MustCompile(`7 exports by bob through the local API \(feature quota exports\) +5 allowed +2 denied`),
		regexp.MustCompile(`POLICY +LIMIT +ALLOWED +DENIED +WOULD DENY \(DRY RUN\)`),
		regexp.MustCompile(`per-ip-multi +per-ip +\d+ +15 +0`),
		regexp.MustCompile(`daily-exports +exports +5 +2 +0`),
		regexp.MustCompile(`daily-exports +5 +Day +5 +1 +True`),
		regexp.MustCompile(`page-views +1000 +Day +\d+ +\d+ +True`),
	} {
		if !want.MatchString(out) {
			t.Errorf("make demo output lacks %q", want)
		}
	}
	if !strings.HasSuffix(strings.TrimSpace(out), "Done.") {
		t.Errorf("make demo did not end with its summary")
	}
	if t.Failed() {
		t.Log(out)
	}
}
