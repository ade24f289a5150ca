// Package version words what a program was built from, the same way for
// every program of the project.
package version

import (
	"fmt"
	"runtime"
	"runtime/debug"
)

// Text is "v0.2.0 (commit 1a2b3c..., go1.26.8)" for version and commit
// (set with -ldflags -X by make build and the image), "modified" after the
// commit when the tree had uncommitted changes. Without a commit, the one
// Go recorded from the checkout is used.
func Text(version, commit string) string {
	info, _ := debug.ReadBuildInfo()
	return text(version, commit, info)
}

func text(version, commit string, info *debug.BuildInfo) string {
	goVersion, modified := runtime.Version(), false
	if info != nil {
		goVersion = info.GoVersion
		for _, s := range info.Settings {
			switch {
			case s.Key == "vcs.revision" && commit == "":
				commit = s.Value
			case s.Key == "vcs.modified":
				modified = s.Value == "true"
			}
		}
	}
	if commit == "" {
		commit = "unknown"
	}
	if modified {
		commit += ", modified"
	}
	return fmt.Sprintf("%s (commit %s, %s)", version, commit, goVersion)
}
