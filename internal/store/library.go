package store

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	_ "embed"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// The Redis side of the store is one Redis Functions library (Redis 7.0 or
// later), which the manager loads on every master with the install's seal
// (docs/tenancy.md). Nothing else the store or the limiter sends to Redis
// writes a key of a namespace: sidecars' users may call the library's
// functions and read their config, no more.
var (
	//go:embed lua/head.lua
	libraryHead string
	//go:embed lua/store.lua
	libraryStore string
)

// LibraryName is the Functions library's name; its version is part of it,
// so a later layout can be loaded beside this one during an upgrade.
const LibraryName = "quotaops_v1"

// MaxTTL bounds every key the library writes on Redis: a Set without a TTL,
// or an Increment that creates a key, gets this one.
const MaxTTL = 45 * 24 * time.Hour

// MinRedisVersion is the oldest Redis with Functions.
const MinRedisVersion = "7.0"

// sealKey holds the install's seal. Only an admin user may read it.
const sealKey = "qo:seal"

// Library is the source of the Functions library for seal: the store's
// functions, then parts (Lua chunks of register_function calls, each run
// in a scope of its own), with a digest of all of it that qo1_digest
// answers.
func Library(seal string, parts ...string) (source, digest string, err error) {
	if !validSeal(seal) {
		return "", "", errors.New("store: a seal is 22 characters of unpadded base64url")
	}
	body := libraryHead
	for _, p := range append([]string{libraryStore}, parts...) {
		body += "do\n" + p + "\nend\n"
	}
	sum := sha256.Sum256([]byte(seal + "\x00" + body))
	digest = hex.EncodeToString(sum[:8])
	r := strings.NewReplacer("{{SEAL}}", SealPrefix(seal), "{{DIGEST}}", digest)
	return r.Replace(body), digest, nil
}

// SealPrefix is what the library puts before every key name it is given.
func SealPrefix(seal string) string { return "qo:s:" + seal + ":" }

// SealedKey is the name under which the library keeps key: for an admin
// looking at what the functions wrote.
func SealedKey(seal, key string) string { return SealPrefix(seal) + key }

// NewSeal is a new random seal: 128 bits.
func NewSeal() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

func validSeal(s string) bool {
	b, err := base64.RawURLEncoding.DecodeString(s)
	return err == nil && len(b) == 16
}

// EnsureSeal returns the seal kept in c, first writing want there when
// there is none (a new install, or a store that lost its data). Managers
// that race agree on the first one written.
func EnsureSeal(ctx context.Context, c redis.UniversalClient, want string) (string, error) {
	if !validSeal(want) {
		return "", errors.New("store: invalid seal")
	}
	old, err := c.SetArgs(ctx, sealKey, want, redis.SetArgs{Mode: "NX", Get: true}).Result()
	switch {
	case errors.Is(err, redis.Nil):
		return want, nil
	case err != nil:
		return "", err
	case !validSeal(old):
		return "", fmt.Errorf("store: key %s holds no seal", sealKey)
	}
	return old, nil
}

// LoadLibrary loads source on the master c.
func LoadLibrary(ctx context.Context, c redis.Cmdable, source string) error {
	return c.FunctionLoadReplace(ctx, source).Err()
}

// LibraryDigest is the digest of the library loaded on c; "" when none is.
func LibraryDigest(ctx context.Context, c redis.Cmdable) (string, error) {
	d, err := c.FCallRo(ctx, "qo1_digest", nil).Text()
	if functionMissing(err) {
		return "", nil
	}
	return d, err
}

// CheckVersion refuses a Redis older than MinRedisVersion, by its INFO
// server text.
func CheckVersion(info string) error {
	v := infoField(info, "redis_version")
	if v == "" {
		return errors.New("INFO server has no redis_version")
	}
	major, _, _ := strings.Cut(v, ".")
	if n, err := strconv.Atoi(major); err != nil || n < 7 {
		return fmt.Errorf("redis %s is too old: quota-operator needs Redis %s or later (Redis Functions)", v, MinRedisVersion)
	}
	return nil
}

// functionMissing reports Redis's answer to an FCALL of a function that is
// not loaded.
func functionMissing(err error) bool {
	return err != nil && strings.Contains(err.Error(), "Function not found")
}

// ErrNoLibrary: the store has not loaded quota-operator's functions (a new
// or restarted Redis the manager has not reached yet).
var ErrNoLibrary = errors.New("the store has no quota-operator functions loaded yet (the manager loads them on every master; is it running?)")

// LibraryError maps a missing function to ErrNoLibrary.
func LibraryError(err error) error {
	if functionMissing(err) {
		return fmt.Errorf("%w: %w", ErrNoLibrary, err)
	}
	return err
}
