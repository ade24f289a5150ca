package store

import (
	"errors"
	"fmt"
	"testing"
)

// The refusals of a managed Redis are told apart from an outage, also
// inside the per-node errors Put joins.
func TestIsACLRefused(t *testing.T) {
	for _, tt := range []struct {
		err  error
		want bool
	}{
		{errors.New("NOPERM User operator has no permissions to run the 'acl|setuser' command"), true},
		{errors.New("ERR unknown command 'ACL', with args beginning with: 'setuser' "), true},
		{errors.New("ERR unknown subcommand 'setuser'. Try ACL HELP."), true},
		{errors.Join(fmt.Errorf("redis node 10.0.0.1:6379: %w", errors.New("NOPERM User operator has no permissions"))), true},
		{errors.New("dial tcp 10.0.0.1:6379: connect: connection refused"), false},
		{errors.New("WRONGPASS invalid username-password pair or user is disabled."), false},
		{nil, false},
	} {
		t.Run(fmt.Sprint(tt.err), func(t *testing.T) {
			if got := IsACLRefused(tt.err); got != tt.want {
				t.Fatalf("IsACLRefused = %v; want %v", got, tt.want)
			}
		})
	}
}
