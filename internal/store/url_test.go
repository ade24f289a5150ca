package store_test

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/quotaops/quota-operator/internal/store"
)

func TestParseLocation(t *testing.T) {
	tests := []struct {
		raw        string
		kind       string
		addrs      []string
		db         int
		master     string
		user, pass string
		tls        bool
		printed    string
	}{
		{raw: "memory://", kind: "memory", printed: "memory://"},
		{raw: "memory://?max_entries=5000", kind: "memory", printed: "memory://?max_entries=5000"},
		{raw: "redis://localhost", kind: "redis", addrs: []string{"localhost:6379"}, printed: "redis://localhost:6379/0"},
		{raw: "redis://:s3cret@10.0.0.1:6380/2", kind: "redis", addrs: []string{"10.0.0.1:6380"}, db: 2, pass: "s3cret", printed: "redis://:xxxxx@10.0.0.1:6380/2"},
		{raw: "rediss://app:p%40ss@redis.example:6390/0", kind: "redis", addrs: []string{"redis.example:6390"}, user: "app", pass: "p@ss", tls: true, printed: "rediss://app:xxxxx@redis.example:6390/0"},
		{raw: "redis://[::1]:7000", kind: "redis", addrs: []string{"[::1]:7000"}, printed: "redis://[::1]:7000/0"},
		{raw: "redis+sentinel://s1,s2:26380/mymaster/3", kind: "sentinel", addrs: []string{"s1:26379", "s2:26380"}, master: "mymaster", db: 3, printed: "redis+sentinel://s1:26379,s2:26380/mymaster/3"},
		{raw: "redis+cluster://u:p@n1:7000,n2:7001,n3", kind: "cluster", addrs: []string{"n1:7000", "n2:7001", "n3:6379"}, user: "u", pass: "p", printed: "redis+cluster://u:xxxxx@n1:7000,n2:7001,n3:6379"},
		{raw: "rediss+cluster://n1:7000/?pool_size=50&dial_timeout=100ms", kind: "cluster", addrs: []string{"n1:7000"}, tls: true, printed: "rediss+cluster://n1:7000"},
		{raw: "rediss://h?tls_server_name=r.example", kind: "redis", addrs: []string{"h:6379"}, tls: true, printed: "rediss://h:6379/0?tls_server_name=r.example"},
		{raw: "redis+sentinel://s/m?sentinel_username=watcher", kind: "sentinel", addrs: []string{"s:26379"}, master: "m", printed: "redis+sentinel://s:26379/m/0?sentinel_username=watcher"},
		// Printed, so sidecars get it with the rest of the manager's URL.
		{raw: "rediss://serverless.example:6379?cross_slot=false", kind: "redis", addrs: []string{"serverless.example:6379"}, tls: true, printed: "rediss://serverless.example:6379/0?cross_slot=false"},
		{raw: "redis://h?cross_slot=true", kind: "redis", addrs: []string{"h:6379"}, printed: "redis://h:6379/0"},
	}
	for _, tt := range tests {
		t.Run(tt.raw, func(t *testing.T) {
			loc, err := store.ParseLocation(tt.raw)
			if err != nil {
				t.Fatalf("ParseLocation: %v", err)
			}
			if loc.Kind != tt.kind || loc.String() != tt.printed {
				t.Fatalf("got kind %q printed %q; want %q %q", loc.Kind, loc.String(), tt.kind, tt.printed)
			}
			if tt.kind == "memory" {
				return
			}
			o := loc.Redis
			if !reflect.DeepEqual(o.Addrs, tt.addrs) || o.DB != tt.db || o.MasterName != tt.master ||
				o.Username != tt.user || o.Password != tt.pass || (o.TLSConfig != nil) != tt.tls {
				t.Fatalf("options = %+v", o)
			}
			if o.IsClusterMode != (tt.kind == "cluster") {
				t.Fatalf("IsClusterMode = %v for %s", o.IsClusterMode, tt.kind)
			}
		})
	}
}

func TestParseLocationOptions(t *testing.T) {
	loc, err := store.ParseLocation("redis://h:1/0?dial_timeout=100ms&read_timeout=1s&write_timeout=2s&pool_size=50&max_retries=-1")
	if err != nil {
		t.Fatal(err)
	}
	o := loc.Redis
	if o.DialTimeout != 100*time.Millisecond || o.ReadTimeout != time.Second || o.WriteTimeout != 2*time.Second || o.PoolSize != 50 || o.MaxRetries != -1 {
		t.Fatalf("options = %+v", o)
	}
}

func TestParseLocationErrors(t *testing.T) {
	notPEM := filepath.Join(t.TempDir(), "ca.crt")
	if err := os.WriteFile(notPEM, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct{ raw, want string }{
		{"", "must start with memory://"},
		{"localhost:6379", "must start with memory://"},
		{"http://localhost", "must start with memory://"},
		{"memory://x", "memory:// takes no host or path, and one option: ?max_entries=N"},
		{"memory://?max_keys=5", "memory:// takes no host or path, and one option: ?max_entries=N"},
		{"memory://?max_entries=0", `max_entries: "0" is not a number from 1 to 1000000000`},
		{"redis://", "empty host"},
		{"redis://a,b", "redis:// takes one host"},
		{"redis://h:0", `port "0"`},
		{"redis://h:99999", `port "99999"`},
		{"redis://h:port", `port "port"`},
		{"redis://h/x", `database "x"`},
		{"redis://h/-1", `database "-1"`},
		{"redis://h/1/2", "too many parts"},
		{"redis+sentinel://s1", "needs the master name"},
		{"redis+cluster://n1/1", "no database number"},
		{"redis://h?pool=5", `option "pool" is unknown`},
		{"redis://h?cross_slot=no", `store URL option cross_slot: "no" is neither true nor false`},
		{"redis://h?pool_size=0", "pool_size"},
		{"redis://h?dial_timeout=-1s", "dial_timeout"},
		{"redis://u:bad%zz@h", "password is not valid percent-encoding"},
		{"redis://" + strings.Repeat("a", 5000), "longer than 4096"},
		{"redis://h?tls_ca_file=/ca.crt", "store URL options tls_* need rediss://"},
		{"redis://h?tls_server_name=r.example", "store URL options tls_* need rediss://"},
		{"rediss://h?tls_ca_file=/nonexistent/ca.crt", "store URL option tls_ca_file: open /nonexistent/ca.crt: no such file or directory"},
		{"rediss://h?tls_ca_file=" + notPEM, "store URL option tls_ca_file: " + notPEM + " holds no PEM certificate"},
		{"rediss://h?tls_cert_file=/c.crt", "store URL options tls_cert_file and tls_key_file go together"},
		{"rediss://h?tls_cert_file=/nonexistent/c.crt&tls_key_file=/nonexistent/c.key", "store URL options tls_cert_file, tls_key_file: open /nonexistent/c.crt"},
		{"redis://h?sentinel_password_file=/p", "store URL option sentinel_password_file is for redis+sentinel:// only"},
		{"redis+sentinel://s/m?sentinel_password_file=/nonexistent/p", "store URL option sentinel_password_file: open /nonexistent/p"},
	}
	for _, tt := range tests {
		t.Run(tt.raw, func(t *testing.T) {
			_, err := store.ParseLocation(tt.raw)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error = %v; want it to contain %q", err, tt.want)
			}
		})
	}
}

func TestParseLocationErrorsHidePassword(t *testing.T) {
	for _, raw := range []string{"redis://u:hunter2@h:0", "redis://u:hunter2@h/x", "redis+cluster://u:hunter2@h/2", "redis://u:hunter2@h?x=1"} {
		_, err := store.ParseLocation(raw)
		if err == nil || strings.Contains(err.Error(), "hunter2") {
			t.Fatalf("ParseLocation(%q) error %v; want an error without the password", raw, err)
		}
	}
}

func FuzzParseLocation(f *testing.F) {
	for _, seed := range []string{"memory://", "memory://?max_entries=7", "redis://:p@h:1/2", "rediss+sentinel://u:p@a,b:2/m/1?pool_size=3",
		"redis+cluster://a:1,b:2", "redis://[::1]:6379/0", "redis://h?dial_timeout=1s"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		loc, err := store.ParseLocation(raw)
		if err != nil {
			return
		}
		// What String prints must parse back to the same place.
		again, err := store.ParseLocation(loc.String())
		if err != nil {
			t.Fatalf("String() %q of %q does not parse: %v", loc.String(), raw, err)
		}
		if loc.Kind != again.Kind {
			t.Fatalf("kind changed: %q -> %q", loc.Kind, again.Kind)
		}
		if loc.Kind == "memory" {
			if loc.MaxEntries != again.MaxEntries {
				t.Fatalf("%q printed as %q bounds %d entries, not %d", raw, loc.String(), again.MaxEntries, loc.MaxEntries)
			}
			return
		}
		a, b := loc.Redis, again.Redis
		if !reflect.DeepEqual(a.Addrs, b.Addrs) || a.DB != b.DB || a.MasterName != b.MasterName || a.Username != b.Username {
			t.Fatalf("%q printed as %q parses to %+v; want %+v", raw, loc.String(), b, a)
		}
		if a.Password != "" && strings.Contains(loc.String(), ":"+a.Password+"@") {
			t.Fatalf("String() %q shows the password", loc.String())
		}
	})
}

func TestOpen(t *testing.T) {
	s, err := store.Open("memory://")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = s.Close() }()
	if n, err := s.Increment(context.Background(), "k", 2); err != nil || n != 2 {
		t.Fatalf("Increment = %d, %v", n, err)
	}
	if _, err := store.Open("redis://a,b"); err == nil {
		t.Fatal("Open accepted an invalid URL")
	}
}
