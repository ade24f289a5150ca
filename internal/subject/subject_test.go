package subject

import (
	"crypto/sha256"
	"encoding/hex"
	"testing"
)

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

// The hash is keyed: without the install's key, a guess (every IPv4
// address, a list of e-mail addresses) cannot be tested against it. Two
// keys give two hashes, neither of them SHA-256 of the value.
func TestHashIsKeyed(t *testing.T) {
	t.Cleanup(func() { UseKey(nil) })
	plain := sha256.Sum256(append(make([]byte, 7), 8, '1', '0', '.', '0', '.', '0', '.', '7'))
	UseKey([]byte("install-one"))
	one := Hash("10.0.0.7")
	UseKey([]byte("install-two"))
	two := Hash("10.0.0.7")
	if one == two || one == hex.EncodeToString(plain[:16]) || !IsHash(one) || !IsHash(two) {
		t.Fatalf("hashes %s and %s under two keys (plain SHA-256 %x)", one, two, plain[:16])
	}
	UseKey([]byte("install-one"))
	if again := Hash("10.0.0.7"); again != one {
		t.Fatalf("the same key hashes the same value to %s, then %s", one, again)
	}
	// HMAC-SHA256 with key "k" over the length-prefixed value "v", as
	// Python's hmac module computes it.
	UseKey([]byte("k"))
	if got, want := Hash("v"), "f2f29e0aa347fcaf817ca3ac16efb66e"; got != want {
		t.Fatalf(`Hash("v") under key "k" = %s; want %s`, got, want)
	}
}

// BenchmarkHash is the hash a sidecar computes per decision.
func BenchmarkHash(b *testing.B) {
	UseKey([]byte("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"))
	defer UseKey(nil)
	b.ReportAllocs()
	for b.Loop() {
		_ = Hash("bench", "api", "per-user", "user-123")
	}
}
