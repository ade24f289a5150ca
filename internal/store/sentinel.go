package store

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"slices"

	"github.com/redis/go-redis/v9"
)

// SentinelUserName is the user every client but the manager logs in to
// the Sentinels with. It may find the master, its replicas and the other
// Sentinels, and hear of failovers: what a failover client needs, and
// nothing that changes a Sentinel (no SENTINEL FAILOVER, SET, REMOVE,
// MONITOR or RESET, no ACL, no CONFIG). The Sentinels' own password stays
// with the manager.
const SentinelUserName = "quota-sentinel"

// sentinelUserCommands are what go-redis's failover client sends a
// Sentinel: its connection setup, the three discovery queries and the
// subscription to failover events.
var sentinelUserCommands = []string{
	"auth", "hello", "ping", "client|setname",
	"sentinel|get-master-addr-by-name", "sentinel|replicas", "sentinel|slaves", "sentinel|sentinels",
	"subscribe", "unsubscribe",
}

var sentinelUserChannels = []string{"+switch-master", "+replica-reconf-done"}

// SentinelPassword is SentinelUserName's password for the store sealed
// with seal. It is derived from the seal, so every manager of the store
// agrees on it without keeping it anywhere, and it says nothing about
// the seal: knowing it lets a client find the master, no more.
func SentinelPassword(seal string) string {
	mac := hmac.New(sha256.New, []byte(seal))
	mac.Write([]byte("quota-operator sentinel user v1"))
	return base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
}

// sentinelUser is SentinelUserName with seal's password.
func sentinelUser(seal string) ACLUser {
	sum := sha256.Sum256([]byte(SentinelPassword(seal)))
	return ACLUser{Name: SentinelUserName, PasswordSHA256: []string{hex.EncodeToString(sum[:])},
		Channels: sentinelUserChannels, Commands: sentinelUserCommands}
}

// SentinelPassword is the password of SentinelUserName on this store's
// Sentinels, or "" when the store is not a Sentinel group.
func (a *ACLAdmin) SentinelPassword(ctx context.Context) (string, error) {
	if a.loc.Kind != "sentinel" {
		return "", nil
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.seal == "" {
		if err := a.ensureSeal(ctx); err != nil {
			return "", fmt.Errorf("keeping the store's seal: %w", err)
		}
	}
	if a.seal == "" {
		return "", errors.New("the store has no seal: the functions library is not kept")
	}
	// Given out once a Sentinel has the user; Resync brings the others,
	// so a namespace's reconcile asks the Sentinels nothing after that.
	if len(a.sentinelsWritten) == 0 {
		if err := a.resyncSentinels(ctx); err != nil && len(a.sentinelsWritten) == 0 {
			return "", err
		}
	}
	return SentinelPassword(a.seal), nil
}

// resyncSentinels writes SentinelUserName to every Sentinel that restarted
// or joined since the last write. Sentinels neither share nor (without a
// config rewrite) keep ACL users, so each gets its own.
func (a *ACLAdmin) resyncSentinels(ctx context.Context) error {
	if a.loc.Kind != "sentinel" || a.seal == "" {
		return nil
	}
	addrs, err := a.sentinelAddrs(ctx)
	var errs []error
	if err != nil {
		errs = append(errs, err)
	}
	rules := sentinelUser(a.seal).rules("")
	for _, addr := range addrs {
		if err := a.writeSentinel(ctx, addr, rules); err != nil {
			errs = append(errs, fmt.Errorf("sentinel %s: %w", addr, err))
		}
	}
	return errors.Join(errs...)
}

func (a *ACLAdmin) writeSentinel(ctx context.Context, addr string, rules []any) error {
	c := a.sentinelClient(addr)
	info, err := c.Info(ctx, "server").Result()
	if err != nil {
		return err
	}
	id := infoField(info, "run_id")
	if id == "" {
		return errors.New("INFO server has no run_id")
	}
	if a.sentinelsWritten[addr] == id {
		return nil
	}
	if err := c.Do(ctx, rules...).Err(); err != nil {
		return err
	}
	a.sentinelsWritten[addr] = id
	return nil
}

// sentinelAddrs are the URL's Sentinels and every other one they know of:
// a failover client asks any of them once the first is gone.
func (a *ACLAdmin) sentinelAddrs(ctx context.Context) ([]string, error) {
	o := a.loc.Redis
	addrs := slices.Clone(o.Addrs)
	var errs []error
	for _, addr := range o.Addrs {
		others, err := a.sentinelClient(addr).Do(ctx, "sentinel", "sentinels", o.MasterName).Slice()
		if err != nil {
			errs = append(errs, fmt.Errorf("sentinel %s: %w", addr, err))
			continue
		}
		for _, s := range others {
			if f := sentinelFields(s); f["ip"] != "" && f["port"] != "" {
				addrs = append(addrs, net.JoinHostPort(f["ip"], f["port"]))
			}
		}
		errs = nil
		break
	}
	slices.Sort(addrs)
	return slices.Compact(addrs), errors.Join(errs...)
}

// sentinelFields reads one entry of SENTINEL SENTINELS, a flat list of
// names and values (a map under RESP3).
func sentinelFields(v any) map[string]string {
	out := map[string]string{}
	switch e := v.(type) {
	case []any:
		for i := 0; i+1 < len(e); i += 2 {
			out[fmt.Sprint(e[i])] = fmt.Sprint(e[i+1])
		}
	case map[any]any:
		for k, val := range e {
			out[fmt.Sprint(k)] = fmt.Sprint(val)
		}
	}
	return out
}

// sentinelClient is a connection to one Sentinel with the manager's
// Sentinel credentials, kept for the next call.
func (a *ACLAdmin) sentinelClient(addr string) *redis.Client {
	if c, ok := a.sentinels[addr]; ok {
		return c
	}
	c := redis.NewClient(a.sentinelOptions(addr))
	a.sentinels[addr] = c
	return c
}

func (a *ACLAdmin) sentinelOptions(addr string) *redis.Options {
	o := a.loc.Redis
	return &redis.Options{Addr: addr, Username: o.SentinelUsername, Password: o.SentinelPassword,
		TLSConfig: o.TLSConfig, DialTimeout: o.DialTimeout, ReadTimeout: o.ReadTimeout, WriteTimeout: o.WriteTimeout, Protocol: 2}
}
