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
	"hash"
	"sync"
	"sync/atomic"
)

// SecretKey is the key, in the Secrets of sidecars and the gateway (and
// the manager's own), that holds the install's subject key; the sidecar
// mounts it as a file of that name.
const SecretKey = "subject-key"

// HashLen is how many hex digits a hash has.
const HashLen = 32

// hasher is the process's subject key with a pool of HMACs keyed with
// it: one per install, so one per process, set once at start (UseKey)
// before anything is hashed. A sidecar hashes a subject per decision, and
// a new HMAC per hash cost 12 allocations and two compressions of the key
// pads; a pooled one is Reset to its keyed state.
type hasher struct {
	key  []byte
	pool sync.Pool // of *keyedHMAC
}

type keyedHMAC struct {
	h   hash.Hash
	buf []byte // the message, built in place
	sum [sha256.Size]byte
}

func newHasher(k []byte) *hasher {
	hs := &hasher{key: append([]byte(nil), k...)}
	hs.pool.New = func() any { return &keyedHMAC{h: hmac.New(sha256.New, hs.key)} }
	return hs
}

// current is the process's hasher; the empty key until UseKey, as with the
// memory store, whose sidecars get no Secret.
var current atomic.Pointer[hasher]

func init() { current.Store(newHasher(nil)) }

// UseKey makes k the key of every hash this process computes.
func UseKey(k []byte) { current.Store(newHasher(k)) }

// Hash returns 32 hex digits of HMAC-SHA256, under the process's key,
// over the values, each length prefixed so that ("ab","c") and ("a","bc")
// differ.
func Hash(values ...string) string {
	hs := current.Load()
	m := hs.pool.Get().(*keyedHMAC)
	m.buf = m.buf[:0]
	for _, v := range values {
		m.buf = binary.BigEndian.AppendUint64(m.buf, uint64(len(v)))
		m.buf = append(m.buf, v...)
	}
	m.h.Reset()
	m.h.Write(m.buf)
	sum := m.h.Sum(m.sum[:0])
	var out [HashLen]byte
	hex.Encode(out[:], sum[:HashLen/2])
	if cap(m.buf) <= 4096 { // a huge subject's buffer is not kept
		hs.pool.Put(m)
	}
	return string(out[:])
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
