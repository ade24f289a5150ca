package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/quotaops/quota-operator/internal/redisha"
)

// redisPasswordEnv holds the group's password in the init containers of
// config/overlays/redis-ha (from the Secret quota-operator-redis).
const redisPasswordEnv = "REDIS_PASSWORD"

type redisHAConfig struct {
	role, config, self, first, masterName string
	sentinels                             []string
	port, quorum                          int
	wait, downAfter, failoverTimeout      time.Duration
}

func parseRedisHAFlags(args []string, stderr io.Writer) (*redisHAConfig, error) {
	if len(args) == 0 || (args[0] != "redis" && args[0] != "sentinel") {
		return nil, errors.New(`the first argument is the pod's role: "redis" or "sentinel"`)
	}
	c := &redisHAConfig{role: args[0]}
	fs := flag.NewFlagSet("redis-ha "+c.role, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.config, "config", "", "the config file to write (redis: replaced at every start; sentinel: kept, with the install's lines renewed)")
	fs.StringVar(&c.self, "self", "", "this pod's stable DNS name (in the StatefulSet's headless Service)")
	fs.StringVar(&c.first, "first", "", "the DNS name of the first Redis pod: the primary of a group no Sentinel knows yet")
	fs.StringVar(&c.masterName, "master-name", "quota", "the name the Sentinels monitor the primary by")
	fs.Func("sentinels", "comma-separated host:port of every Sentinel", func(v string) error {
		c.sentinels = strings.Split(v, ",")
		return nil
	})
	fs.IntVar(&c.port, "port", 0, "this pod's port (default 6379 for redis, 26379 for sentinel)")
	fs.IntVar(&c.quorum, "quorum", 2, "sentinel: how many Sentinels must agree that the primary is down")
	fs.DurationVar(&c.wait, "wait", 30*time.Second, "redis: how long to wait for the Sentinels to answer, or to promote a replica of this restarting primary")
	fs.DurationVar(&c.downAfter, "down-after", 5*time.Second, "sentinel: how long the primary may not answer before it is down")
	fs.DurationVar(&c.failoverTimeout, "failover-timeout", 30*time.Second, "sentinel: the failover timeout")
	if err := fs.Parse(args[1:]); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	if c.config == "" || c.self == "" || c.first == "" || len(c.sentinels) == 0 {
		return nil, errors.New("--config, --self, --first and --sentinels are required")
	}
	if c.port == 0 {
		c.port = map[string]int{"redis": 6379, "sentinel": 26379}[c.role]
	}
	return c, nil
}

// runRedisHA writes a Redis or Sentinel pod's config (an init container of
// config/overlays/redis-ha); the decision is internal/redisha's.
func runRedisHA(args []string, _, stderr io.Writer) int {
	c, err := parseRedisHAFlags(args, stderr)
	if err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintf(stderr, "quota-operator redis-ha: %v\n", err)
		}
		return 2
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.wait+30*time.Second)
	defer cancel()
	if err := writeRedisHAConfig(ctx, c, os.Getenv(redisPasswordEnv), stderr); err != nil {
		fmt.Fprintf(stderr, "quota-operator redis-ha %s: %v\n", c.role, err)
		return 1
	}
	return 0
}

func writeRedisHAConfig(ctx context.Context, c *redisHAConfig, password string, stderr io.Writer) error {
	if password == "" {
		return fmt.Errorf("%s is empty: the group's password comes from the Secret quota-operator-redis", redisPasswordEnv)
	}
	group := redisha.Group{Sentinels: c.sentinels, MasterName: c.masterName, Password: password}
	first := net.JoinHostPort(c.first, "6379")
	if c.role == "redis" {
		node := redisha.Node{Group: group, Self: net.JoinHostPort(c.self, strconv.Itoa(c.port)), First: first, Wait: c.wait}
		start, err := node.Decide(ctx)
		if err != nil {
			return err
		}
		fmt.Fprintf(stderr, "redis-ha: %s\n", start.Why)
		return writeConfigFile(c.config, redisha.RedisConf(c.self, start))
	}
	existing, err := os.ReadFile(c.config)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	settings := redisha.SentinelSettings{SelfHost: c.self, Dir: filepath.Dir(c.config), Port: c.port, MasterName: c.masterName, Primary: first,
		Quorum: c.quorum, DownAfterMillis: int(c.downAfter.Milliseconds()), FailoverMillis: int(c.failoverTimeout.Milliseconds()),
		Password: password}
	if len(existing) == 0 {
		// A new Sentinel (or one whose volume was replaced) joins where
		// the others say the primary is now.
		if p, err := group.Primary(ctx); err == nil {
			settings.Primary = p.Addr
		}
		fmt.Fprintf(stderr, "redis-ha: a new Sentinel monitoring %s\n", settings.Primary)
	}
	return writeConfigFile(c.config, redisha.SentinelConf(string(existing), settings))
}

// writeConfigFile replaces path whole (a rename), so a pod killed while
// writing leaves the old file, never half of the new one. The file holds
// the password: only Redis's user reads it.
func writeConfigFile(path, content string) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".redis-ha-*")
	if err != nil {
		return err
	}
	defer func() { _ = os.Remove(tmp.Name()) }()
	if _, err := tmp.WriteString(content); err != nil {
		_ = tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		_ = tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
