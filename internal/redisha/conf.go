package redisha

import (
	"fmt"
	"net"
	"strings"
)

// RedisConf is the part of a data node's config that depends on where it
// starts; the rest (password, persistence, memory) is on its command line.
// The file is the node's own, in an emptyDir: Sentinel rewrites it
// (CONFIG REWRITE) when it moves the primary, and the next pod start
// writes it again from what the Sentinels say.
func RedisConf(selfHost string, s Start) string {
	var b strings.Builder
	b.WriteString("# Written by quota-operator redis-ha at the pod's start: " + oneLine(s.Why) + "\n")
	// Replicas are known by their stable DNS names, not their pod IPs,
	// which change with every restart.
	fmt.Fprintf(&b, "replica-announce-ip %s\n", selfHost)
	if s.ReplicaOf != "" {
		host, port, _ := net.SplitHostPort(s.ReplicaOf)
		fmt.Fprintf(&b, "replicaof %s %s\n", host, port)
	}
	return b.String()
}

// SentinelSettings are what a Sentinel's config holds that the install,
// not the Sentinel, decides.
type SentinelSettings struct {
	// SelfHost is the name the Sentinel announces to the others.
	SelfHost string
	// Dir is the Sentinel's working directory: its volume.
	Dir        string
	Port       int
	MasterName string
	// Primary is where a new Sentinel starts monitoring (host:port); a
	// Sentinel with a config of its own keeps the one it wrote.
	Primary         string
	Quorum          int
	DownAfterMillis int
	FailoverMillis  int
	Password        string
}

// managed are the lines SentinelConf writes at every start, so a changed
// password or name replaces the old one in a config the Sentinel keeps.
var managed = []string{"port ", "dir ", "requirepass ", "user default ", "sentinel resolve-hostnames ",
	"sentinel announce-hostnames ", "sentinel announce-ip ", "sentinel auth-pass ", "# Written by quota-operator"}

// SentinelConf is a Sentinel's config file: existing (the file on its
// volume, which the Sentinel rewrites with what it learns: the primary
// after a failover, the replicas, the other Sentinels, its epochs) with
// the install's lines put first, or a new config monitoring s.Primary
// when there is none.
func SentinelConf(existing string, s SentinelSettings) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# Written by quota-operator redis-ha at the pod's start; the Sentinel adds what it learns below.\n")
	fmt.Fprintf(&b, "port %d\ndir %s\n", s.Port, s.Dir)
	// Before any monitor line: it says how the lines after it are read.
	b.WriteString("sentinel resolve-hostnames yes\nsentinel announce-hostnames yes\n")
	fmt.Fprintf(&b, "sentinel announce-ip %s\n", s.SelfHost)
	fmt.Fprintf(&b, "requirepass %s\n", s.Password)
	kept := keptLines(existing)
	if !strings.Contains(kept, "sentinel monitor "+s.MasterName+" ") {
		host, port, _ := net.SplitHostPort(s.Primary)
		fmt.Fprintf(&b, "sentinel monitor %s %s %s %d\n", s.MasterName, host, port, s.Quorum)
		fmt.Fprintf(&b, "sentinel down-after-milliseconds %s %d\n", s.MasterName, s.DownAfterMillis)
		fmt.Fprintf(&b, "sentinel failover-timeout %s %d\n", s.MasterName, s.FailoverMillis)
		fmt.Fprintf(&b, "sentinel parallel-syncs %s 1\n", s.MasterName)
	}
	b.WriteString(kept)
	// After the monitor line, which it refers to.
	fmt.Fprintf(&b, "sentinel auth-pass %s %s\n", s.MasterName, s.Password)
	return b.String()
}

// keptLines are existing's lines but the managed ones.
func keptLines(existing string) string {
	var b strings.Builder
	for _, line := range strings.Split(existing, "\n") {
		if strings.TrimSpace(line) == "" || isManaged(line) {
			continue
		}
		b.WriteString(line + "\n")
	}
	return b.String()
}

func isManaged(line string) bool {
	for _, prefix := range managed {
		if strings.HasPrefix(line, prefix) {
			return true
		}
	}
	return false
}

func oneLine(s string) string { return strings.ReplaceAll(s, "\n", " ") }
