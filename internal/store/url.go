package store

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Location is a parsed store URL (the --store flag):
//
//	memory://[?max_entries=N]
//	redis://[user:pass@]host[:port][/db]           (rediss:// for TLS)
//	redis+sentinel://[user:pass@]host[:port][,host[:port]...]/master[/db]
//	redis+cluster://[user:pass@]host[:port][,host[:port]...]
//
// rediss+sentinel:// and rediss+cluster:// use TLS. Ports default to 6379
// (26379 for sentinels). Query parameters: dial_timeout, read_timeout,
// write_timeout (Go durations), pool_size and max_retries (integers);
// tls_ca_file, tls_cert_file, tls_key_file and tls_server_name (rediss);
// sentinel_username and sentinel_password_file (the sentinels' own).
type Location struct {
	// Kind is "memory", "redis", "sentinel" or "cluster".
	Kind  string
	Redis *redis.UniversalOptions
	// MaxEntries bounds a memory store: keys and hash fields together.
	MaxEntries int64
	// Files are the files the URL names.
	Files LocationFiles
	// OneSlotPerCall: no call names keys of two hash slots, as on a Redis
	// Cluster, though the URL is one endpoint (URL option cross_slot=false):
	// ElastiCache Serverless, Redis Enterprise and cluster proxies answer
	// CROSSSLOT otherwise. Always so for redis+cluster://.
	OneSlotPerCall bool
	// serverName overrides the TLS server name.
	serverName string
	// scheme is kept to print the location back.
	scheme string
}

// DefaultMemoryMaxEntries bounds a memory store unless its URL says
// otherwise: 6 to 21 MiB of counters as measured (TestMemoryStoreStaysBounded
// in internal/limiter), within the injected sidecar's 64 MiB memory limit.
const DefaultMemoryMaxEntries = 100_000

const (
	defaultRedisPort    = "6379"
	defaultSentinelPort = "26379"
	maxStoreURLLength   = 4096
)

var schemes = map[string]string{
	"memory":          "memory",
	"redis":           "redis",
	"rediss":          "redis",
	"redis+sentinel":  "sentinel",
	"rediss+sentinel": "sentinel",
	"redis+cluster":   "cluster",
	"rediss+cluster":  "cluster",
}

// ParseLocation parses a store URL. Errors never repeat the password.
func ParseLocation(raw string) (*Location, error) {
	if len(raw) > maxStoreURLLength {
		return nil, fmt.Errorf("store URL is longer than %d bytes", maxStoreURLLength)
	}
	scheme, rest, ok := strings.Cut(raw, "://")
	kind := schemes[strings.ToLower(scheme)]
	if !ok || kind == "" {
		return nil, errors.New(`store URL must start with memory://, redis://, rediss://, redis+sentinel:// or redis+cluster://`)
	}
	loc := &Location{Kind: kind, scheme: strings.ToLower(scheme)}
	if kind == "memory" {
		return parseMemory(loc, rest)
	}
	authority, pathQuery := rest, ""
	if i := strings.IndexAny(rest, "/?"); i >= 0 {
		authority, pathQuery = rest[:i], rest[i:]
	}
	// RESP2: quota-operator uses no RESP3 feature, and go-redis checks
	// every RESP3 reply for pending push notifications, which costs about
	// a tenth of the client's time per call.
	// ContextTimeoutEnabled: a caller's deadline (the sidecar's 50 ms) bounds
	// the socket reads and writes, not only the wait for a connection.
	// DisableIdentity: no CLIENT SETINFO on connect, one round trip less,
	// and a command that namespace users need not be allowed.
	// PipelinePoolSize -1: transactions and pipelines (a config read) run
	// on the one pool. go-redis's own pipeline pool kept a second idle
	// connection, with 256 KiB of buffers, in every sidecar.
	opts := &redis.UniversalOptions{Protocol: 2, ContextTimeoutEnabled: true, DisableIdentity: true, PipelinePoolSize: -1}
	if err := parseAuthority(authority, kind, opts); err != nil {
		return nil, err
	}
	u, err := url.Parse(pathQuery)
	if err != nil {
		return nil, fmt.Errorf("store URL path or query: %w", err)
	}
	if err := parsePath(u.Path, kind, opts); err != nil {
		return nil, err
	}
	loc.Redis = opts
	if err := loc.parseQuery(u.Query()); err != nil {
		return nil, err
	}
	if strings.HasPrefix(loc.scheme, "rediss") {
		opts.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	opts.IsClusterMode = kind == "cluster"
	if err := loc.applyFiles(); err != nil {
		return nil, err
	}
	return loc, nil
}

func parseAuthority(authority, kind string, opts *redis.UniversalOptions) error {
	if i := strings.LastIndex(authority, "@"); i >= 0 {
		user, pass, hasPass := strings.Cut(authority[:i], ":")
		var err error
		if opts.Username, err = url.PathUnescape(user); err != nil {
			return errors.New("store URL user name is not valid percent-encoding")
		}
		if hasPass {
			if opts.Password, err = url.PathUnescape(pass); err != nil {
				return errors.New("store URL password is not valid percent-encoding")
			}
		}
		authority = authority[i+1:]
	}
	port := defaultRedisPort
	if kind == "sentinel" {
		port = defaultSentinelPort
	}
	for _, h := range strings.Split(authority, ",") {
		addr, err := hostPort(h, port)
		if err != nil {
			return err
		}
		opts.Addrs = append(opts.Addrs, addr)
	}
	if kind == "redis" && len(opts.Addrs) != 1 {
		return errors.New("redis:// takes one host; use redis+cluster:// or redis+sentinel:// for several")
	}
	return nil
}

func hostPort(h, defaultPort string) (string, error) {
	if h == "" {
		return "", errors.New("store URL has an empty host")
	}
	host, port, err := net.SplitHostPort(h)
	if err != nil {
		// No port given (or a bare IPv6 address in brackets).
		host, port = strings.TrimSuffix(strings.TrimPrefix(h, "["), "]"), defaultPort
	}
	if host == "" || strings.ContainsAny(host, "[]/@?# ") {
		return "", fmt.Errorf("store URL host %q is not valid", h)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return "", fmt.Errorf("store URL port %q is not a number from 1 to 65535", port)
	}
	return net.JoinHostPort(host, port), nil
}

func parsePath(path, kind string, opts *redis.UniversalOptions) error {
	parts := strings.Split(strings.Trim(path, "/"), "/")
	if parts[0] == "" {
		parts = nil
	}
	if kind == "sentinel" {
		if len(parts) == 0 {
			return errors.New("redis+sentinel:// needs the master name as its path: redis+sentinel://host:26379/mymaster[/db]")
		}
		opts.MasterName, parts = parts[0], parts[1:]
	}
	switch {
	case len(parts) == 0:
		return nil
	case len(parts) > 1:
		return fmt.Errorf("store URL path %q has too many parts", path)
	case kind == "cluster":
		return errors.New("redis+cluster:// takes no database number: a cluster has only database 0")
	}
	db, err := strconv.Atoi(parts[0])
	if err != nil || db < 0 || db > 1<<20 {
		return fmt.Errorf("store URL database %q is not a non-negative number", parts[0])
	}
	opts.DB = db
	return nil
}

func (l *Location) parseQuery(q url.Values) error {
	opts := l.Redis
	for name, values := range q {
		v := values[len(values)-1]
		var err error
		switch name {
		case "dial_timeout":
			opts.DialTimeout, err = positiveDuration(v)
		case "read_timeout":
			opts.ReadTimeout, err = positiveDuration(v)
		case "write_timeout":
			opts.WriteTimeout, err = positiveDuration(v)
		case "pool_size":
			opts.PoolSize, err = boundedInt(v, 1, 100000)
		case "max_retries":
			opts.MaxRetries, err = boundedInt(v, -1, 100)
		case "tls_server_name":
			l.serverName = v
		case "sentinel_username":
			opts.SentinelUsername = v
		case "cross_slot":
			switch v {
			case "true":
				l.OneSlotPerCall = false
			case "false":
				l.OneSlotPerCall = true
			default:
				err = fmt.Errorf("%q is neither true nor false", v)
			}
		default:
			if !l.parseFileOption(name, v) {
				return fmt.Errorf("store URL option %q is unknown (known: %s)", name, strings.Join(knownOptions(), ", "))
			}
		}
		if err != nil {
			return fmt.Errorf("store URL option %s: %w", name, err)
		}
	}
	return nil
}

func knownOptions() []string {
	known := []string{"dial_timeout", "read_timeout", "write_timeout", "pool_size", "max_retries", "tls_server_name", "sentinel_username", "cross_slot"}
	for _, o := range fileOptions {
		known = append(known, o.name)
	}
	return known
}

func positiveDuration(v string) (time.Duration, error) {
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("%q is not a positive duration such as 50ms", v)
	}
	return d, nil
}

// parseMemory reads memory://'s one option, max_entries.
func parseMemory(loc *Location, rest string) (*Location, error) {
	loc.MaxEntries = DefaultMemoryMaxEntries
	if rest == "" {
		return loc, nil
	}
	query, ok := strings.CutPrefix(rest, "?")
	values, err := url.ParseQuery(query)
	if !ok || err != nil || len(values) != 1 || len(values["max_entries"]) != 1 {
		return nil, errors.New("memory:// takes no host or path, and one option: ?max_entries=N")
	}
	n, err := boundedInt(values.Get("max_entries"), 1, 1_000_000_000)
	if err != nil {
		return nil, fmt.Errorf("max_entries: %w", err)
	}
	loc.MaxEntries = int64(n)
	return loc, nil
}

func boundedInt(v string, lo, hi int) (int, error) {
	n, err := strconv.Atoi(v)
	if err != nil || n < lo || n > hi {
		return 0, fmt.Errorf("%q is not a number from %d to %d", v, lo, hi)
	}
	return n, nil
}

// String prints the location for logs, with any password masked.
func (l *Location) String() string {
	if l.Kind == "memory" {
		if l.MaxEntries != DefaultMemoryMaxEntries {
			return "memory://?max_entries=" + strconv.FormatInt(l.MaxEntries, 10)
		}
		return "memory://"
	}
	o := l.Redis
	var b strings.Builder
	b.WriteString(l.scheme + "://")
	if o.Username != "" || o.Password != "" {
		b.WriteString(url.PathEscape(o.Username))
		if o.Password != "" {
			b.WriteString(":xxxxx")
		}
		b.WriteString("@")
	}
	b.WriteString(strings.Join(o.Addrs, ","))
	if o.MasterName != "" {
		b.WriteString("/" + url.PathEscape(o.MasterName))
	}
	if l.Kind != "cluster" {
		b.WriteString("/" + strconv.Itoa(o.DB))
	}
	b.WriteString(l.printQuery())
	return b.String()
}

// Open returns the store at raw. Redis clients connect lazily: a server that
// is down now is not an error here, only on the first operation.
func Open(raw string, memoryOpts ...MemoryOption) (Store, error) {
	loc, err := ParseLocation(raw)
	if err != nil {
		return nil, err
	}
	return loc.Open(memoryOpts...), nil
}

// Open returns the store at l; callers may first set l.Redis.Password from a
// file or the environment rather than the URL.
func (l *Location) Open(memoryOpts ...MemoryOption) Store {
	if l.Kind == "memory" {
		return NewMemory(append([]MemoryOption{WithMaxEntries(l.MaxEntries)}, memoryOpts...)...)
	}
	r := NewRedis(redis.NewUniversalClient(l.Redis))
	r.oneSlotPerCall = l.OneSlotPerCall || l.Kind == "cluster"
	return r
}
