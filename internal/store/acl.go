package store

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"

	"github.com/redis/go-redis/v9"
)

// ACLUser is a Redis ACL user that the operator keeps on every node.
type ACLUser struct {
	Name string
	// PasswordSHA256 holds the hex SHA-256 digests of the passwords the
	// user accepts: Redis keeps only digests, and so can the manager.
	PasswordSHA256 []string
	// Keys may be read and written, ReadKeys only read (Redis glob
	// patterns); Channels may be published and subscribed to.
	Keys, ReadKeys, Channels []string
	// Commands are the only commands allowed, as "get" or "client|setinfo"
	// (or "fcall|qo1_get": that function only).
	Commands []string
	// SealedKeys, named as the library's callers name keys, and
	// SealedCommands form one ACL selector: those commands on the sealed
	// names of those keys, which is what the library's functions touch
	// when the user calls them (Redis checks a function's calls against
	// its caller). Without the seal, the user cannot name them itself.
	SealedKeys, SealedCommands []string
}

// rules is the ACL SETUSER argument list, for seal ("": none known, so
// no sealed key). It starts from reset, so the user has exactly these
// rules and nothing left from an older version.
func (u ACLUser) rules(seal string) []any {
	args := []any{"acl", "setuser", u.Name, "reset", "on"}
	for _, h := range u.PasswordSHA256 {
		args = append(args, "#"+h)
	}
	for _, k := range u.Keys {
		args = append(args, "~"+k)
	}
	for _, k := range u.ReadKeys {
		args = append(args, "%R~"+k)
	}
	for _, c := range u.Channels {
		args = append(args, "&"+c)
	}
	for _, c := range u.Commands {
		args = append(args, "+"+c)
	}
	if seal == "" || len(u.SealedKeys) == 0 {
		return args
	}
	var sel []string
	for _, k := range u.SealedKeys {
		sel = append(sel, "~"+SealedKey(seal, k))
	}
	for _, c := range u.SealedCommands {
		sel = append(sel, "+"+c)
	}
	return append(args, "("+strings.Join(sel, " ")+")")
}

// AccessString is the rule of u for seal, as an administrator gives it
// to a user of their own making: the words after "ACL SETUSER <name> on
// >password", which ElastiCache and Redis Enterprise also take as an
// access string. It starts from no commands; a new user has no keys and
// no channels.
func (u ACLUser) AccessString(seal string) string {
	rules := u.rules(seal)
	words := []string{"-@all"}
	for _, r := range rules[5:] { // acl setuser <name> reset on
		w := r.(string)
		if !strings.HasPrefix(w, "#") {
			words = append(words, w)
		}
	}
	return strings.Join(words, " ")
}

// IsACLRefused says whether err is a store refusing ACL commands to the
// operator's user: NOPERM where the user lacks +acl, or an unknown
// command where the provider removed ACL SETUSER (ElastiCache,
// Memorystore).
func IsACLRefused(err error) bool {
	if err == nil {
		return false
	}
	msg := err.Error()
	return strings.Contains(msg, "NOPERM") || strings.Contains(msg, "unknown command") || strings.Contains(msg, "unknown subcommand")
}

// ACLAdmin keeps ACL users on every node of a Redis deployment: the one
// server, the master and replicas a Sentinel knows, or every master and
// replica of a Cluster. Redis neither replicates nor persists ACL SETUSER
// (without an ACL file), so it remembers the users it was given and
// writes them again to any node that restarted (Resync).
//
// It also keeps quota-operator's Functions library on every master
// (KeepLibrary): Redis persists and replicates functions, but a master
// that restarted without its data, or a new one, has none.
type ACLAdmin struct {
	loc *Location

	mu      sync.Mutex
	users   map[string]ACLUser
	written map[string]string // node address → run_id the users were written under
	clients map[string]*redis.Client
	// sentinels and sentinelsWritten are the same for the Sentinels of a
	// Sentinel group, which keep SentinelUserName.
	sentinels        map[string]*redis.Client
	sentinelsWritten map[string]string

	// build makes the library for a seal; seal, source and digest are
	// the library last built, store the client that keeps the seal.
	build                func(seal string) (source, digest string, err error)
	seal, source, digest string
	store                redis.UniversalClient
}

// NewACLAdmin manages users with the credentials in loc, which must be a
// Redis location whose user may run ACL SETUSER and ACL DELUSER.
func NewACLAdmin(loc *Location) (*ACLAdmin, error) {
	if loc.Redis == nil {
		return nil, errors.New("the memory store has no users")
	}
	return &ACLAdmin{loc: loc, users: map[string]ACLUser{}, written: map[string]string{}, clients: map[string]*redis.Client{},
		sentinels: map[string]*redis.Client{}, sentinelsWritten: map[string]string{}}, nil
}

// Put writes u to every node and remembers it for Resync.
func (a *ACLAdmin) Put(ctx context.Context, u ACLUser) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.users[u.Name] = u
	// The user's selector names the seal; Resync keeps it once known.
	if a.seal == "" {
		if err := a.ensureSeal(ctx); err != nil {
			return fmt.Errorf("keeping the store's seal: %w", err)
		}
	}
	err := a.eachNode(ctx, func(c *redis.Client) error {
		return c.Do(ctx, u.rules(a.seal)...).Err()
	})
	if IsACLRefused(err) {
		// Resync would only be refused again, at every store check.
		delete(a.users, u.Name)
	}
	return err
}

// Delete removes the user from every node, which also disconnects its
// clients. A user that is not there is no error.
func (a *ACLAdmin) Delete(ctx context.Context, name string) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.users, name)
	return a.eachNode(ctx, func(c *redis.Client) error {
		return c.Do(ctx, "acl", "deluser", name).Err()
	})
}

// Users lists the names of the users it keeps.
func (a *ACLAdmin) Users() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	names := make([]string, 0, len(a.users))
	for n := range a.users {
		names = append(names, n)
	}
	return names
}

// KeepLibrary makes Resync keep the library build returns on every
// master, built with the seal the store keeps (a new one, the first time).
func (a *ACLAdmin) KeepLibrary(build func(seal string) (source, digest string, err error)) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.build = build
}

// Resync loads the library on each master that lacks it (or holds another
// build), and writes every user again to each node that restarted (its
// run_id changed) or joined since the last write, and SentinelUserName to
// each such Sentinel. A Redis older than 7.0 is an error that says so.
func (a *ACLAdmin) Resync(ctx context.Context) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if err := a.ensureSeal(ctx); err != nil {
		return fmt.Errorf("keeping the store's seal: %w", err)
	}
	return errors.Join(a.eachNode(ctx, func(c *redis.Client) error { return a.resyncNode(ctx, c) }), a.resyncSentinels(ctx))
}

func (a *ACLAdmin) resyncNode(ctx context.Context, c *redis.Client) error {
	info, err := c.Info(ctx, "server", "replication").Result()
	if err != nil {
		return err
	}
	if err := CheckVersion(info); err != nil {
		return err
	}
	if err := a.ensureLibrary(ctx, c, info); err != nil {
		return fmt.Errorf("loading the functions library: %w", err)
	}
	id := infoField(info, "run_id")
	if id == "" {
		return errors.New("INFO server has no run_id")
	}
	if a.written[c.Options().Addr] == id {
		return nil
	}
	pipe := c.Pipeline()
	for _, u := range a.users {
		pipe.Do(ctx, u.rules(a.seal)...)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return err
	}
	a.written[c.Options().Addr] = id
	return nil
}

// ensureSeal reads the store's seal, writing the one it knows (or a new
// one) when the store has none, and builds the library again when the
// seal changed.
func (a *ACLAdmin) ensureSeal(ctx context.Context) error {
	if a.build == nil {
		return nil
	}
	if a.store == nil {
		a.store = redis.NewUniversalClient(a.loc.Redis)
	}
	want := a.seal
	if want == "" {
		want = NewSeal()
	}
	seal, err := EnsureSeal(ctx, a.store, want)
	if err != nil || seal == a.seal {
		return err
	}
	source, digest, err := a.build(seal)
	if err != nil {
		return err
	}
	a.seal, a.source, a.digest = seal, source, digest
	// The users' selectors, and the Sentinel user's password, come from
	// the seal: write them all again.
	clear(a.written)
	clear(a.sentinelsWritten)
	return nil
}

// ensureLibrary loads the library on c when c is a master whose library
// is missing or another build. Replicas get it from their master.
func (a *ACLAdmin) ensureLibrary(ctx context.Context, c *redis.Client, info string) error {
	if a.source == "" || infoField(info, "role") != "master" {
		return nil
	}
	have, err := LibraryDigest(ctx, c)
	if err != nil || have == a.digest {
		return err
	}
	return LoadLibrary(ctx, c, a.source)
}

// infoField is one field of INFO's text, such as run_id (new at every
// start) or role.
func infoField(info, name string) string {
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(line, name+":"); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// eachNode runs fn on every node and joins the errors, each naming its
// node: one unreachable replica does not keep the others from their users.
func (a *ACLAdmin) eachNode(ctx context.Context, fn func(*redis.Client) error) error {
	addrs, err := a.nodeAddrs(ctx)
	if err != nil {
		return err
	}
	var errs []error
	for _, addr := range addrs {
		if err := fn(a.client(addr)); err != nil {
			errs = append(errs, fmt.Errorf("redis node %s: %w", addr, err))
		}
	}
	return errors.Join(errs...)
}

// nodeAddrs is the one server, the master and the live replicas that a
// Sentinel reports, or every live node of a Cluster.
func (a *ACLAdmin) nodeAddrs(ctx context.Context) ([]string, error) {
	o := a.loc.Redis
	find := a.sentinelNodes
	switch a.loc.Kind {
	case "redis":
		return o.Addrs[:1], nil
	case "cluster":
		find = a.clusterNodes
	}
	var errs []error
	for _, addr := range o.Addrs {
		nodes, err := find(ctx, addr)
		if err == nil {
			return nodes, nil
		}
		errs = append(errs, fmt.Errorf("%s %s: %w", a.loc.Kind, addr, err))
	}
	return nil, errors.Join(errs...)
}

func (a *ACLAdmin) sentinelNodes(ctx context.Context, addr string) ([]string, error) {
	o := a.loc.Redis
	s := redis.NewSentinelClient(a.sentinelOptions(addr))
	defer func() { _ = s.Close() }()
	master, err := s.GetMasterAddrByName(ctx, o.MasterName).Result()
	if err != nil {
		return nil, err
	}
	if len(master) != 2 {
		return nil, fmt.Errorf("master %q: unexpected answer %q", o.MasterName, master)
	}
	replicas, err := s.Replicas(ctx, o.MasterName).Result()
	if err != nil {
		return nil, err
	}
	nodes := []string{net.JoinHostPort(master[0], master[1])}
	for _, r := range replicas {
		// A replica that is down gets its users from Resync once it is back.
		if strings.Contains(r["flags"], "s_down") || strings.Contains(r["flags"], "disconnected") {
			continue
		}
		nodes = append(nodes, net.JoinHostPort(r["ip"], r["port"]))
	}
	return nodes, nil
}

// clusterNodes reads CLUSTER NODES from the node at addr: unlike CLUSTER
// SLOTS, it lists replicas that serve no reads yet.
func (a *ACLAdmin) clusterNodes(ctx context.Context, addr string) ([]string, error) {
	text, err := a.client(addr).ClusterNodes(ctx).Result()
	if err != nil {
		return nil, err
	}
	var nodes []string
	for _, line := range strings.Split(text, "\n") {
		// <id> <ip:port@cport[,hostname]> <flags> ...
		f := strings.Fields(line)
		if len(f) < 3 || strings.Contains(f[2], "fail") || strings.Contains(f[2], "noaddr") || strings.Contains(f[2], "handshake") {
			continue
		}
		hostPort, _, _ := strings.Cut(f[1], "@")
		if host, port, err := net.SplitHostPort(hostPort); err == nil && host != "" && port != "0" {
			nodes = append(nodes, hostPort)
		}
	}
	if len(nodes) == 0 {
		return nil, errors.New("CLUSTER NODES lists no live node")
	}
	return nodes, nil
}

// client is a connection to one node with the admin's credentials and
// TLS settings, kept for the next call.
func (a *ACLAdmin) client(addr string) *redis.Client {
	if c, ok := a.clients[addr]; ok {
		return c
	}
	o := a.loc.Redis.Simple()
	o.Addr, o.DB = addr, 0
	c := redis.NewClient(o)
	a.clients[addr] = c
	return c
}

// Close closes every connection.
func (a *ACLAdmin) Close() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, m := range []map[string]*redis.Client{a.clients, a.sentinels} {
		for addr, c := range m {
			_ = c.Close()
			delete(m, addr)
		}
	}
	if a.store != nil {
		_ = a.store.Close()
		a.store = nil
	}
	return nil
}
