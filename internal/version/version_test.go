package version

import (
	"runtime/debug"
	"testing"
)

func TestText(t *testing.T) {
	built := &debug.BuildInfo{GoVersion: "go1.26.8", Settings: []debug.BuildSetting{
		{Key: "vcs.revision", Value: "4ed1dbc5"}, {Key: "vcs.modified", Value: "true"}}}
	tests := []struct {
		name, version, commit string
		info                  *debug.BuildInfo
		want                  string
	}{
		{"from the checkout", "dev", "", built, "dev (commit 4ed1dbc5, modified, go1.26.8)"},
		{"from ldflags", "v0.2.0", "9f8e7d6c", &debug.BuildInfo{GoVersion: "go1.26.8"}, "v0.2.0 (commit 9f8e7d6c, go1.26.8)"},
		{"nothing recorded", "dev", "", &debug.BuildInfo{GoVersion: "go1.26.8"}, "dev (commit unknown, go1.26.8)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := text(tt.version, tt.commit, tt.info); got != tt.want {
				t.Fatalf("%q; want %q", got, tt.want)
			}
		})
	}
}
