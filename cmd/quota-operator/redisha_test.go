package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/quotaops/quota-operator/internal/testutil/localtest"
)

func TestRedisHAFlags(t *testing.T) {
	for _, c := range []struct {
		name string
		args []string
		want string
	}{
		{"no role", nil, `"redis" or "sentinel"`},
		{"another role", []string{"replica"}, `"redis" or "sentinel"`},
		{"missing names", []string{"redis", "--config=/tmp/x"}, "--config, --self, --first and --sentinels are required"},
	} {
		t.Run(c.name, func(t *testing.T) {
			var stderr bytes.Buffer
			if code := runRedisHA(c.args, nil, &stderr); code != 2 || !strings.Contains(stderr.String(), c.want) {
				t.Fatalf("exit %d, stderr %q; want 2 and %q", code, stderr.String(), c.want)
			}
		})
	}
}

// With no Sentinel to ask (a new group), the first Redis pod starts as
// the primary, another replicates it, and a Sentinel monitors the first;
// the config files say so, and an empty password is refused.
func TestRedisHAWritesConfig(t *testing.T) {
	nobody := localtest.FreeAddr(t) // nothing listens there
	dir := t.TempDir()
	write := func(role, self, password string) (string, error) {
		c, err := parseRedisHAFlags([]string{role, "--config=" + filepath.Join(dir, role+"-"+self+".conf"), "--self=" + self,
			"--first=redis-0.redis", "--sentinels=" + nobody, "--wait=200ms"}, &bytes.Buffer{})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := writeRedisHAConfig(ctx, c, password, &bytes.Buffer{}); err != nil {
			return "", err
		}
		raw, err := os.ReadFile(c.config)
		return string(raw), err
	}
	for _, c := range []struct {
		role, self, want, not string
	}{
		{"redis", "redis-0.redis", "replica-announce-ip redis-0.redis\n", "replicaof"},
		{"redis", "redis-1.redis", "replica-announce-ip redis-1.redis\nreplicaof redis-0.redis 6379\n", ""},
		{"sentinel", "sentinel-0.sentinel", "sentinel monitor quota redis-0.redis 6379 2\n", ""},
	} {
		t.Run(c.role+" "+c.self, func(t *testing.T) {
			conf, err := write(c.role, c.self, "pw")
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(conf, c.want) || (c.not != "" && strings.Contains(conf, c.not)) {
				t.Fatalf("config:\n%s\nwant %q and no %q", conf, c.want, c.not)
			}
		})
	}
	if _, err := write("redis", "redis-2.redis", ""); err == nil || !strings.Contains(err.Error(), "REDIS_PASSWORD is empty") {
		t.Fatalf("no password: %v", err)
	}
}
