package limiter

import (
	"strings"

	"github.com/quotaops/quota-operator/internal/store"
)

// TenantUserPrefix starts the name of every namespace's Redis user.
const TenantUserPrefix = "quota-ns-"

// TenantUserName is the Redis user of namespace's sidecars.
func TenantUserName(namespace string) string { return TenantUserPrefix + namespace }

// tenantCommands are all a sidecar sends itself. It writes nothing but
// through the library's functions, and only those it needs: no EVAL, no
// FUNCTION, no SET (the first-argument rules name each function).
var tenantCommands = []string{
	// connecting, and finding the nodes of a Cluster
	"auth", "hello", "client|setname", "ping", "select",
	"readonly", "readwrite", "asking", "cluster|slots", "cluster|shards", "cluster|nodes", "command",
	// decisions, refunds, locks, the local API and reports: the library
	"fcall|qo1_decide", "fcall|qo1_refund", "fcall|qo1_settle", "fcall|qo1_acquire",
	"fcall|qo1_incr", "fcall|qo1_expire", "fcall|qo1_set", "fcall|qo1_del", "fcall|qo1_cas", "fcall|qo1_report",
	"fcall_ro|qo1_get", "fcall_ro|qo1_has", "fcall_ro|qo1_ttl", "fcall_ro|qo1_usage",
	// config reads and change announcements
	"multi", "exec", "discard", "get", "hgetall", "subscribe", "unsubscribe",
}

// tenantSealedCommands are what those functions call (Redis checks a
// function's calls against its caller's rules): allowed on the sealed
// names of the namespace's keys only, which the user cannot name.
var tenantSealedCommands = []string{
	"time", "get", "set", "del", "exists", "incrby", "decrby", "pexpire", "pttl", "hmget",
	"hexists", "hincrby", "hdel", "zincrby", "zrem", "zscore", "zcard", "zadd",
	"zremrangebyscore", "zrangebyscore", "zrevrange",
}

// TenantUser is the Redis user of namespace's sidecars, with the given
// password digests. Through the library it may touch only the namespace's
// counters, quotas, locks and app keys; it may read (not write) its
// config, and hear its config channel. Every key the limiter and the local
// API build for the namespace starts with one of its patterns, and no
// other namespace's key does, since the namespace is followed by its
// tag's separator.
func TenantUser(namespace string, passwordSHA256 ...string) store.ACLUser {
	var ns strings.Builder
	escapeKeyPart(&ns, namespace) // a DNS label already; escaping keeps glob characters out regardless
	keys := []string{keyPrefix + "{" + ns.String() + "/*", keyPrefix + "app:{" + ns.String() + "/*"}
	return store.ACLUser{
		Name:           TenantUserName(namespace),
		PasswordSHA256: passwordSHA256,
		Keys:           keys,
		ReadKeys:       []string{store.ConfigKeyPattern(ns.String())},
		Channels:       []string{store.ConfigChannel(ns.String())},
		Commands:       tenantCommands,
		SealedKeys:     keys,
		SealedCommands: tenantSealedCommands,
	}
}

// GatewayUserName is the Redis user of the gateway rate-limit service.
const GatewayUserName = "quota-gateway"

// GatewayUser is the Redis user of the gateway rate-limit service, which
// decides for the given namespaces: what each namespace's own user may
// do, on those namespaces' keys and channels, and on no other's.
func GatewayUser(namespaces []string, passwordSHA256 ...string) store.ACLUser {
	u := store.ACLUser{Name: GatewayUserName, PasswordSHA256: passwordSHA256,
		Commands: tenantCommands, SealedCommands: tenantSealedCommands}
	for _, ns := range namespaces {
		t := TenantUser(ns)
		u.Keys = append(u.Keys, t.Keys...)
		u.ReadKeys = append(u.ReadKeys, t.ReadKeys...)
		u.Channels = append(u.Channels, t.Channels...)
		u.SealedKeys = append(u.SealedKeys, t.SealedKeys...)
	}
	return u
}

// SharedUserName is the Redis user the rule SharedUser builds is meant
// for: the one store user every namespace's sidecars share with
// --store-tenancy=shared.
const SharedUserName = "quota-shared"

// SharedUser is what every namespace's user may do, on every namespace's
// keys and channels: the rule of the one user all sidecars share when
// Redis cannot keep a user per namespace. It keeps tenants from the
// admin's keys and from writing without the library, not from each other.
func SharedUser(passwordSHA256 ...string) store.ACLUser {
	keys := []string{keyPrefix + "{*", keyPrefix + "app:{*"}
	return store.ACLUser{
		Name:           SharedUserName,
		PasswordSHA256: passwordSHA256,
		Keys:           keys,
		ReadKeys:       []string{store.ConfigKeyPattern("*")},
		Channels:       []string{store.ConfigChannel("*")},
		Commands:       tenantCommands,
		SealedKeys:     keys,
		SealedCommands: tenantSealedCommands,
	}
}
