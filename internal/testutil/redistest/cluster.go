package redistest

import (
	"context"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Cluster is a Redis Cluster of local redis-server processes.
type Cluster struct {
	Nodes []*Server
}

// StartCluster starts masters nodes, and replicas replicas of each, and
// joins them with `redis-cli --cluster create`, then waits until every
// node reports the cluster healthy with all 16384 slots served.
func StartCluster(masters, replicas int) (*Cluster, error) {
	if _, err := exec.LookPath("redis-cli"); err != nil {
		return nil, ErrNoRedis
	}
	c := &Cluster{}
	for range masters * (1 + replicas) {
		s, err := startNew(Server{extra: []string{
			"--cluster-enabled", "yes",
			"--cluster-config-file", "nodes.conf",
			"--cluster-node-timeout", "5000",
		}}, true)
		if err != nil {
			_ = c.Close()
			return nil, err
		}
		c.Nodes = append(c.Nodes, s)
	}
	args := append([]string{"--cluster", "create"}, c.Addrs()...)
	args = append(args, "--cluster-replicas", strconv.Itoa(replicas), "--cluster-yes")
	if out, err := exec.Command("redis-cli", args...).CombinedOutput(); err != nil {
		_ = c.Close()
		return nil, fmt.Errorf("redis-cli --cluster create: %w: %s", err, out)
	}
	if err := c.waitHealthy(1+replicas, 20*time.Second); err != nil {
		_ = c.Close()
		return nil, err
	}
	if err := c.LoadLibrary(); err != nil {
		_ = c.Close()
		return nil, err
	}
	return c, nil
}

// LoadLibrary loads Library (when set) on every master, with the seal the
// Cluster keeps.
func (c *Cluster) LoadLibrary() error {
	if Library == nil {
		return nil
	}
	cc := c.Client()
	defer func() { _ = cc.Close() }()
	var (
		mu      sync.Mutex
		masters []*redis.Client
	)
	err := cc.ForEachMaster(context.Background(), func(_ context.Context, m *redis.Client) error {
		mu.Lock()
		defer mu.Unlock()
		masters = append(masters, m)
		return nil
	})
	if err != nil {
		return err
	}
	return loadLibrary(cc, masters...)
}

// Seal is the seal the Cluster keeps.
func (c *Cluster) Seal() string {
	cc := c.Client()
	defer func() { _ = cc.Close() }()
	v, _ := cc.Get(context.Background(), "qo:seal").Result()
	return v
}

// Addrs lists the nodes' host:port addresses.
func (c *Cluster) Addrs() []string {
	addrs := make([]string, len(c.Nodes))
	for i, n := range c.Nodes {
		addrs[i] = n.Addr
	}
	return addrs
}

// Client returns a cluster client seeded with every node.
func (c *Cluster) Client() *redis.ClusterClient {
	return redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs()})
}

// Close kills every node and removes their files.
func (c *Cluster) Close() error {
	for _, n := range c.Nodes {
		_ = n.Close()
	}
	return nil
}

// waitHealthy waits until every node reports the cluster ok and each
// slot range is served by perSlot nodes (its master and replicas).
func (c *Cluster) waitHealthy(perSlot int, limit time.Duration) error {
	end := time.Now().Add(limit)
	for _, n := range c.Nodes {
		cl := redis.NewClient(&redis.Options{Addr: n.Addr})
		var info string
		var err error
		for {
			info, err = cl.ClusterInfo(context.Background()).Result()
			if err == nil && strings.Contains(info, "cluster_state:ok") &&
				strings.Contains(info, "cluster_slots_ok:16384") && servedBy(cl, perSlot) {
				break
			}
			if time.Now().After(end) {
				_ = cl.Close()
				return fmt.Errorf("cluster node %s not healthy after %v (%s): %w", n.Addr, limit, info, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
		_ = cl.Close()
	}
	return nil
}

func servedBy(cl *redis.Client, perSlot int) bool {
	shards, err := cl.ClusterShards(context.Background()).Result()
	if err != nil {
		return false
	}
	for _, s := range shards {
		online := 0
		for _, n := range s.Nodes {
			if n.Health == "online" {
				online++
			}
		}
		if online != perSlot {
			return false
		}
	}
	return true
}
