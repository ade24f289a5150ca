package redistest

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/redis/go-redis/v9"
)

// Sentinel is a master watched by one redis-sentinel process.
type Sentinel struct {
	Master     *Server
	Sentinel   *Server
	MasterName string
}

// StartSentinel starts a master and a sentinel that monitors it as
// masterName, and waits until the sentinel reports the master's address.
func StartSentinel(masterName string) (*Sentinel, error) {
	master, err := startNew(nil, false)
	if err != nil {
		return nil, err
	}
	host, port, _ := net.SplitHostPort(master.Addr)
	dir, err := os.MkdirTemp("", "redistest-sentinel-")
	if err != nil {
		_ = master.Close()
		return nil, err
	}
	conf := filepath.Join(dir, "sentinel.conf")
	body := fmt.Sprintf("sentinel monitor %s %s %s 1\nsentinel down-after-milliseconds %s 5000\n", masterName, host, port, masterName)
	if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
		_ = master.Close()
		_ = os.RemoveAll(dir)
		return nil, err
	}
	sentinel, err := startNewIn(dir, conf, []string{"--sentinel"}, false)
	if err != nil {
		_ = master.Close()
		return nil, err
	}
	sn := &Sentinel{Master: master, Sentinel: sentinel, MasterName: masterName}
	if err := sn.waitMaster(10 * time.Second); err != nil {
		_ = sn.Close()
		return nil, err
	}
	return sn, nil
}

func (sn *Sentinel) waitMaster(limit time.Duration) error {
	c := redis.NewSentinelClient(&redis.Options{Addr: sn.Sentinel.Addr})
	defer func() { _ = c.Close() }()
	end := time.Now().Add(limit)
	for {
		addr, err := c.GetMasterAddrByName(context.Background(), sn.MasterName).Result()
		if err == nil && len(addr) == 2 && net.JoinHostPort(addr[0], addr[1]) == sn.Master.Addr {
			return nil
		}
		if time.Now().After(end) {
			return fmt.Errorf("sentinel %s does not report master %s (got %v): %w", sn.Sentinel.Addr, sn.MasterName, addr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Close kills both processes and removes their files.
func (sn *Sentinel) Close() error {
	_ = sn.Sentinel.Close()
	return sn.Master.Close()
}
