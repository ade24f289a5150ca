package subject

import "testing"

// A hash has the form IsHash checks; anything else does not.
func TestIsHash(t *testing.T) {
	tests := []struct {
		s    string
		want bool
	}{
		{Hash("alice"), true},
		{Hash(), true},
		{"6ea988ee737a68d0fb1d7bb76040e804", true},
		{"6EA988EE737A68D0FB1D7BB76040E804", false},
		{"6ea988ee737a68d0fb1d7bb76040e80", false},
		{"6ea988ee737a68d0fb1d7bb76040e8044", false},
		{"6ea988ee737a68d0fb1d7bb76040e80g", false},
		{"", false},
		{"alice", false},
	}
	for _, tt := range tests {
		t.Run(tt.s, func(t *testing.T) {
			if got := IsHash(tt.s); got != tt.want {
				t.Fatalf("IsHash(%q) = %v; want %v", tt.s, got, tt.want)
			}
		})
	}
}
