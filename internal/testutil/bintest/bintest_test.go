package bintest

import (
	"os"
	"testing"
	"time"
)

// A build left by an earlier test process more than staleAfter ago is
// removed; a recent one (another process's, still running) stays.
func TestRemoveStale(t *testing.T) {
	t.Setenv("TMPDIR", t.TempDir())
	old, err := os.MkdirTemp("", "demo-bin-")
	if err != nil {
		t.Fatal(err)
	}
	recent, _ := os.MkdirTemp("", "demo-bin-")
	long := time.Now().Add(-staleAfter - time.Minute)
	if err := os.Chtimes(old, long, long); err != nil {
		t.Fatal(err)
	}
	removeStale("demo")
	if _, err := os.Stat(old); !os.IsNotExist(err) {
		t.Errorf("a stale build stayed: %v", err)
	}
	if _, err := os.Stat(recent); err != nil {
		t.Errorf("a recent build was removed: %v", err)
	}
}
