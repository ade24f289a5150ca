package main

import (
	"io"
	"testing"
	"time"
)

// The demo runs end to end in test/e2e (make demo); here, its flags.
func TestDemoFlags(t *testing.T) {
	tests := []struct {
		args   []string
		linger time.Duration
		err    string
	}{
		{nil, -1, ""},
		{[]string{"--duration", "0s"}, 0, ""},
		{[]string{"--duration", "5m"}, 5 * time.Minute, ""},
		{[]string{"--duration", "-1s"}, 0, `invalid value "-1s" for flag -duration: "-1s" is not a duration of 0s or more`},
		{[]string{"--duration", "soon"}, 0, `invalid value "soon" for flag -duration: "soon" is not a duration of 0s or more`},
		{[]string{"extra"}, 0, `unexpected arguments: ["extra"]`},
	}
	for _, tt := range tests {
		c, err := parseDemoFlags(tt.args, io.Discard)
		if tt.err != "" {
			if err == nil || err.Error() != tt.err {
				t.Errorf("%q: error %v; want %q", tt.args, err, tt.err)
			}
			continue
		}
		if err != nil || c.linger != tt.linger || c.store != "memory://" || c.namespace != "demo" {
			t.Errorf("%q: %+v, %v", tt.args, c, err)
		}
	}
}
