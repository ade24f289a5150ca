package redistest

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Sentinel is a master and its replica, watched by one redis-sentinel
// process.
type Sentinel struct {
	Master     *Server
	Replica    *Server
	Sentinel   *Server
	MasterName string
	password   string // the sentinel's own, from its config
}

// StartSentinel starts a master, its replica and a sentinel that monitors
// them as masterName, and waits until the sentinel reports both. Lines
// such as "requirepass x" are added to the sentinel's config.
func StartSentinel(masterName string, sentinelConf ...string) (*Sentinel, error) {
	master, err := startNew(Server{}, false)
	if err != nil {
		return nil, err
	}
	host, port, _ := net.SplitHostPort(master.Addr)
	replica, err := startNew(Server{extra: []string{"--replicaof", host, port}}, false)
	if err != nil {
		_ = master.Close()
		return nil, err
	}
	if err := waitReplicas(master, 1, 10*time.Second); err != nil {
		_ = replica.Close()
		_ = master.Close()
		return nil, err
	}
	dir, err := os.MkdirTemp("", "redistest-sentinel-")
	if err != nil {
		_ = master.Close()
		return nil, err
	}
	conf := filepath.Join(dir, "sentinel.conf")
	body := fmt.Sprintf("sentinel monitor %s %s %s 1\nsentinel down-after-milliseconds %s 5000\n", masterName, host, port, masterName)
	for _, line := range sentinelConf {
		body += line + "\n"
	}
	if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
		_ = master.Close()
		_ = os.RemoveAll(dir)
		return nil, err
	}
	sentinel, err := startNewIn(dir, Server{conf: conf, extra: []string{"--sentinel"}}, false)
	if err != nil {
		_ = replica.Close()
		_ = master.Close()
		return nil, err
	}
	sn := &Sentinel{Master: master, Replica: replica, Sentinel: sentinel, MasterName: masterName}
	for _, line := range sentinelConf {
		if p, ok := strings.CutPrefix(line, "requirepass "); ok {
			sn.password = p
		}
	}
	if err := sn.waitMaster(10 * time.Second); err != nil {
		_ = sn.Close()
		return nil, err
	}
	return sn, nil
}

func (sn *Sentinel) waitMaster(limit time.Duration) error {
	c := redis.NewSentinelClient(&redis.Options{Addr: sn.Sentinel.Addr, Password: sn.password})
	defer func() { _ = c.Close() }()
	end := time.Now().Add(limit)
	for {
		addr, err := c.GetMasterAddrByName(context.Background(), sn.MasterName).Result()
		replicas, rerr := c.Replicas(context.Background(), sn.MasterName).Result()
		if err == nil && rerr == nil && len(addr) == 2 && net.JoinHostPort(addr[0], addr[1]) == sn.Master.Addr && len(replicas) == 1 {
			return nil
		}
		if time.Now().After(end) {
			return fmt.Errorf("sentinel %s does not report master %s (got %v): %w", sn.Sentinel.Addr, sn.MasterName, addr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitReplicas waits until master has n replicas connected and in sync.
func waitReplicas(master *Server, n int, limit time.Duration) error {
	c := master.Client()
	defer func() { _ = c.Close() }()
	want := fmt.Sprintf("connected_slaves:%d", n)
	end := time.Now().Add(limit)
	for {
		info, err := c.Info(context.Background(), "replication").Result()
		if err == nil && strings.Contains(info, want) && !strings.Contains(info, "state=wait_bgsave") {
			return nil
		}
		if time.Now().After(end) {
			return fmt.Errorf("master %s has not %d replicas after %v: %s: %w", master.Addr, n, limit, info, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// RequirePassword makes the servers at addrs ask for password, as the
// default user and as replicas of each other.
func RequirePassword(password string, addrs ...string) error {
	for _, addr := range addrs {
		c := redis.NewClient(&redis.Options{Addr: addr})
		err := c.ConfigSet(context.Background(), "masterauth", password).Err()
		if err == nil {
			err = c.ConfigSet(context.Background(), "requirepass", password).Err()
		}
		_ = c.Close()
		if err != nil {
			return fmt.Errorf("%s: %w", addr, err)
		}
	}
	return nil
}

// RequirePassword has the master and replica ask for password, and the
// sentinel use it.
func (sn *Sentinel) RequirePassword(password string) error {
	if err := RequirePassword(password, sn.Master.Addr, sn.Replica.Addr); err != nil {
		return err
	}
	c := redis.NewSentinelClient(&redis.Options{Addr: sn.Sentinel.Addr, Password: sn.password})
	defer func() { _ = c.Close() }()
	return c.Set(context.Background(), sn.MasterName, "auth-pass", password).Err()
}

// Close kills the processes and removes their files.
func (sn *Sentinel) Close() error {
	_ = sn.Sentinel.Close()
	_ = sn.Replica.Close()
	return sn.Master.Close()
}

// StartSentinelConf starts a Sentinel (redis-server --sentinel) on a free
// port with the config file conf, which it rewrites as Sentinels do. Stop
// and Start keep the file and the port; Close removes conf's directory.
func StartSentinelConf(conf string) (*Server, error) {
	return startNewIn(filepath.Dir(conf), Server{conf: conf, extra: []string{"--sentinel"}}, false)
}
