package limiter

import (
	"strings"

	"github.com/quotaops/quota-operator/internal/store"
)

// TenantUserPrefix starts the name of every namespace's Redis user.
const TenantUserPrefix = "quota-ns-"

// TenantUserName is the Redis user of namespace's sidecars.
func TenantUserName(namespace string) string { return TenantUserPrefix + namespace }

// tenantCommands are all the sidecar sends, and all its scripts call
// (Redis checks a script's calls against the caller's rules too).
var tenantCommands = []string{
	// connecting, and finding the nodes of a Cluster
	"auth", "hello", "client|setname", "ping", "select",
	"readonly", "readwrite", "asking", "cluster|slots", "cluster|shards", "cluster|nodes", "command",
	// decisions and locks: scripts, and what they call
	"evalsha", "eval", "evalsha_ro", "eval_ro", "time",
	"get", "set", "del", "exists", "incr", "incrby", "decrby", "pexpire", "pttl", "hmget",
	"hexists", "hincrby", "hdel", "zincrby", "zrem", "zscore", "zcard",
	// reporting the revision the sidecar enforces
	"zadd", "zremrangebyscore",
	// usage reads
	"multi", "exec", "discard", "zrevrange",
	// config reads and change announcements
	"hgetall", "subscribe", "unsubscribe",
}

// TenantUser is the Redis user of namespace's sidecars, with the given
// password digests. It may touch only the namespace's counters, quotas,
// locks and app keys, read (not write) its config, and hear its config
// channel; every key the limiter and the local API build for the
// namespace starts with one of its patterns, and no other namespace's
// key does, since the namespace is followed by its tag's separator.
func TenantUser(namespace string, passwordSHA256 ...string) store.ACLUser {
	var ns strings.Builder
	escapeKeyPart(&ns, namespace) // a DNS label already; escaping keeps glob characters out regardless
	return store.ACLUser{
		Name:           TenantUserName(namespace),
		PasswordSHA256: passwordSHA256,
		Keys:           []string{keyPrefix + "{" + ns.String() + "/*", keyPrefix + "app:{" + ns.String() + "/*"},
		ReadKeys:       []string{store.ConfigKeyPattern(ns.String())},
		Channels:       []string{store.ConfigChannel(ns.String())},
		Commands:       tenantCommands,
	}
}
