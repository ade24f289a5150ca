// Package subject hashes request subjects (client addresses, API keys,
// user names). Raw subjects never reach store keys, status, logs or
// metrics: their hash does. The limiter keys counters by it and the config
// compiler hashes quota overrides with it, so both must use this one
// function.
package subject

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
)

// HashLen is how many hex digits a hash has.
const HashLen = 32

// Hash returns 32 hex digits of SHA-256 over the values, each length
// prefixed so that ("ab","c") and ("a","bc") differ.
func Hash(values ...string) string {
	h := sha256.New()
	var n [8]byte
	for _, v := range values {
		binary.BigEndian.PutUint64(n[:], uint64(len(v)))
		h.Write(n[:])
		h.Write([]byte(v))
	}
	sum := h.Sum(nil)
	return hex.EncodeToString(sum[:16])
}

// IsHash reports whether s has the form of a Hash: 32 lowercase hex
// digits, as operators name a subject without its raw value.
func IsHash(s string) bool {
	if len(s) != HashLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}
