// Package subject hashes request subjects (client addresses, API keys,
// user names). Raw subjects never reach store keys, status, logs or
// metrics: their hash does. The limiter keys counters by it and the config
// compiler hashes quota overrides with it, so both must use this one
// function, with one key.
//
// The hash is an HMAC keyed with the install's subject key, which the
// manager keeps in a Secret and hands to sidecars and the gateway service
// with their store credentials. Whoever sees a hash (in status, metrics,
// a dashboard) but not the key cannot test guesses against it, as one
// could test every IPv4 address against a plain SHA-256.
package subject

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"sync/atomic"
)

// SecretKey is the key, in the Secrets of sidecars and the gateway (and
// the manager's own), that holds the install's subject key; the sidecar
// mounts it as a file of that name.
const SecretKey = "subject-key"

// HashLen is how many hex digits a hash has.
const HashLen = 32

// key is the process's subject key: one per install, so one per process,
// set once at start (UseKey) before anything is hashed. Nil: the empty
// key, as with the memory store, whose sidecars get no Secret.
var key atomic.Pointer[[]byte]

// UseKey makes k the key of every hash this process computes.
func UseKey(k []byte) {
	c := append([]byte(nil), k...)
	key.Store(&c)
}

// Hash returns 32 hex digits of HMAC-SHA256, under the process's key,
// over the values, each length prefixed so that ("ab","c") and ("a","bc")
// differ.
func Hash(values ...string) string {
	var k []byte
	if p := key.Load(); p != nil {
		k = *p
	}
	h := hmac.New(sha256.New, k)
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
