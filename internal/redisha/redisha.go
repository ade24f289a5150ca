// Package redisha writes the configuration of the bundled highly available
// Redis (config/overlays/redis-ha): a primary, two replicas and three
// Sentinels. An init container runs it at each pod's start, so a node that
// restarts joins the group where the Sentinels say the primary is, instead
// of where the pod's ordinal first put it; a restarted primary never comes
// back as a second primary and never overwrites newer data with its own.
package redisha

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// Group is what a node knows of its group: the Sentinels to ask, the
// name they monitor the primary by, and the password of the default user
// (Redis's requirepass, and the Sentinels' own).
type Group struct {
	Sentinels  []string
	MasterName string
	Password   string
	// DialTimeout bounds each question to a Sentinel.
	DialTimeout time.Duration
}

// Primary is one Sentinel's view of the primary.
type Primary struct {
	Addr string
	// Epoch is the configuration epoch: the view of the latest failover
	// has the highest.
	Epoch int64
	// Replicas is how many replicas the Sentinel knows of: with none, no
	// failover can happen.
	Replicas int
}

// ErrNoSentinel means no Sentinel answered about the primary: none is up
// yet, or none monitors it.
var ErrNoSentinel = errors.New("no Sentinel knows the primary")

// Primary asks every Sentinel and returns the view with the highest
// configuration epoch, which is the one after the latest failover.
func (g Group) Primary(ctx context.Context) (Primary, error) {
	var best Primary
	found := false
	var errs []error
	for _, addr := range g.Sentinels {
		p, err := g.ask(ctx, addr)
		if err != nil {
			errs = append(errs, fmt.Errorf("sentinel %s: %w", addr, err))
			continue
		}
		if !found || p.Epoch > best.Epoch {
			best, found = p, true
		}
	}
	if !found {
		return Primary{}, fmt.Errorf("%w: %w", ErrNoSentinel, errors.Join(errs...))
	}
	return best, nil
}

func (g Group) ask(ctx context.Context, addr string) (Primary, error) {
	timeout := g.DialTimeout
	if timeout <= 0 {
		timeout = 2 * time.Second
	}
	c := redis.NewSentinelClient(&redis.Options{Addr: addr, Password: g.Password, DialTimeout: timeout,
		ReadTimeout: timeout, WriteTimeout: timeout, MaxRetries: -1, DialerRetries: 1, Protocol: 2})
	defer func() { _ = c.Close() }()
	fields, err := c.Master(ctx, g.MasterName).Result()
	if err != nil {
		return Primary{}, err
	}
	return primaryFrom(fields)
}

// primaryFrom reads SENTINEL MASTER's fields.
func primaryFrom(f map[string]string) (Primary, error) {
	if f["ip"] == "" || f["port"] == "" {
		return Primary{}, errors.New("SENTINEL MASTER names no address")
	}
	p := Primary{Addr: net.JoinHostPort(f["ip"], f["port"])}
	p.Epoch, _ = strconv.ParseInt(f["config-epoch"], 10, 64)
	p.Replicas, _ = strconv.Atoi(f["num-slaves"])
	return p, nil
}

// Start says how a data node starts: as the primary (ReplicaOf empty) or
// as a replica of ReplicaOf.
type Start struct {
	ReplicaOf string
	// Why is one line for the node's log.
	Why string
}

// Node is one Redis pod at its start.
type Node struct {
	Group Group
	// Self and First are host:port of this node and of the group's first
	// (ordinal 0), which is the primary of a group no Sentinel knows yet.
	Self, First string
	// Wait bounds how long a node waits for the Sentinels: to answer at
	// all, and, when they still name it the primary, to fail over to a
	// replica that holds its data.
	Wait time.Duration
	// Poll is the pause between questions (default one second).
	Poll  time.Duration
	Sleep func(context.Context, time.Duration) error
}

// Decide says how the node starts.
//   - The Sentinels name another primary: replicate it.
//   - They name this node, and it has replicas: it is restarting (its
//     Redis is not running while this runs), and they will promote one of
//     its replicas once they find it down. Wait for that, up to Wait, so
//     this node does not come back as a primary beside the new one; then
//     replicate the new one, or start as the primary if none was promoted.
//     Their flags are not consulted: until down-after-milliseconds passes
//     they may still see this node up, or between two reconnection
//     attempts not even disconnected, and trusting that made a restarted
//     primary a second primary.
//   - They name this node, without replicas: start as the primary.
//   - None answers within Wait (a new group, or all restarting at once):
//     the first node is the primary and the others replicate it.
func (n Node) Decide(ctx context.Context) (Start, error) {
	deadline := time.Now().Add(n.Wait)
	for {
		p, err := n.Group.Primary(ctx)
		switch {
		case err == nil && p.Addr != n.Self:
			return Start{ReplicaOf: p.Addr, Why: fmt.Sprintf("the Sentinels name %s the primary (epoch %d)", p.Addr, p.Epoch)}, nil
		case err == nil && p.Replicas == 0:
			return Start{Why: fmt.Sprintf("the Sentinels name this node the primary (epoch %d)", p.Epoch)}, nil
		}
		if !time.Now().Before(deadline) {
			return n.fallback(err), nil
		}
		if err := n.sleep(ctx); err != nil {
			return Start{}, err
		}
	}
}

// fallback is the start when waiting did not settle it.
func (n Node) fallback(err error) Start {
	if err == nil {
		return Start{Why: fmt.Sprintf("the Sentinels still name this node the primary after %v and promoted no replica", n.Wait)}
	}
	if n.Self == n.First {
		return Start{Why: fmt.Sprintf("no Sentinel answered in %v; the first node starts as the primary (%v)", n.Wait, err)}
	}
	return Start{ReplicaOf: n.First, Why: fmt.Sprintf("no Sentinel answered in %v; replicating the first node (%v)", n.Wait, err)}
}

func (n Node) sleep(ctx context.Context) error {
	d := n.Poll
	if d <= 0 {
		d = time.Second
	}
	if n.Sleep != nil {
		return n.Sleep(ctx, d)
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
