// Package redistest starts private redis-server processes for tests: a single
// server or a Cluster of several masters, each on free loopback ports with its
// own data directory, killed when the test process goes away.
package redistest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/quotaops/quota-operator/internal/store"
	"github.com/quotaops/quota-operator/internal/testutil/localtest"
	"github.com/redis/go-redis/v9"
)

// Library, when a package's TestMain sets it (to limiter.Library), is
// loaded on each server this package starts, as the manager loads it:
// with the seal kept in the server. A server that is restarted (Stop,
// Start) has it again only from LoadLibrary, or a manager.
var Library func(seal string) (source, digest string, err error)

// ErrNoRedis means redis-server is not installed.
var ErrNoRedis = errors.New("redis-server not found on PATH (install it: apt-get install -y redis-server)")

// Server is one redis-server process, or an external server named by
// REDIS_URL (then Stop and Start do nothing).
type Server struct {
	Addr     string
	URL      string
	external bool
	dir      string
	conf     string // config file, for modes such as --sentinel
	extra    []string
	tls      bool // TLS only: the port is --tls-port
	cmd      *exec.Cmd
	exited   chan struct{}
}

// Start starts a private redis-server on a free port. When REDIS_URL is set
// it returns that server instead; tests must then keep to their own keys.
func Start() (*Server, error) {
	if u := os.Getenv("REDIS_URL"); u != "" {
		opt, err := redis.ParseURL(u)
		if err != nil {
			return nil, fmt.Errorf("REDIS_URL: %w", err)
		}
		return &Server{Addr: opt.Addr, URL: u, external: true}, nil
	}
	return startNew(Server{}, false)
}

// StartWith starts a private redis-server with extra arguments, such as
// --requirepass, which it keeps across Stop and Start.
func StartWith(extra ...string) (*Server, error) { return startNew(Server{extra: extra}, false) }

// StartOrSkip is Start for a single test: it skips when redis-server is
// missing, loudly, except under CI, where a missing server is a failure.
func StartOrSkip(tb testing.TB) *Server {
	tb.Helper()
	s, err := Start()
	SkipIfMissing(tb, err)
	if err != nil {
		tb.Fatalf("start redis-server: %v", err)
	}
	tb.Cleanup(func() { _ = s.Close() })
	return s
}

// Main is the TestMain of a package whose tests share one redis-server:
// it starts it into *s (or the reason it could not into *err, which tests
// pass to SkipIfMissing), runs the tests, stops it and exits.
func Main(m *testing.M, s **Server, err *error) {
	code := func() int {
		defer func() {
			if *s != nil {
				_ = (*s).Close()
			}
		}()
		if *s, *err = Start(); *err != nil {
			Report(*err)
		}
		return m.Run()
	}()
	os.Exit(code)
}

// Report says, loudly, that the Redis tests cannot run and why.
func Report(err error) {
	fmt.Fprintf(os.Stderr, "\n*** REDIS TESTS CANNOT RUN: %v ***\n\n", err)
}

// SkipIfMissing skips tb when err is ErrNoRedis, or fails it when the CI
// environment variable is set: CI must always run the Redis cases.
func SkipIfMissing(tb testing.TB, err error) {
	tb.Helper()
	if !errors.Is(err, ErrNoRedis) {
		return
	}
	if os.Getenv("CI") != "" {
		tb.Fatalf("%v; CI must run the Redis tests", err)
	}
	tb.Skipf("SKIPPING REDIS TESTS: %v", err)
}

// StartInDir starts a private redis-server with its files in dir, which
// may hold data to load (a dump.rdb, an append-only directory), and extra
// arguments. Close removes dir.
func StartInDir(dir string, extra ...string) (*Server, error) {
	if _, err := exec.LookPath("redis-server"); err != nil {
		return nil, ErrNoRedis
	}
	return startNewIn(dir, Server{extra: extra}, false)
}

// startNew starts a server like proto (its conf, extra arguments and TLS)
// in a new data dir.
func startNew(proto Server, cluster bool) (*Server, error) {
	if _, err := exec.LookPath("redis-server"); err != nil {
		return nil, ErrNoRedis
	}
	dir, err := os.MkdirTemp("", "redistest-")
	if err != nil {
		return nil, err
	}
	return startNewIn(dir, proto, cluster)
}

// startNewIn starts a server with its files in dir, retrying on another port
// when the one it picked was taken meanwhile.
func startNewIn(dir string, proto Server, cluster bool) (*Server, error) {
	scheme := "redis://"
	if proto.tls {
		scheme = "rediss://"
	}
	var lastErr error
	for range 5 {
		port, err := freePort(cluster)
		if err != nil {
			return nil, err
		}
		s := &Server{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), dir: dir, conf: proto.conf, extra: proto.extra, tls: proto.tls}
		s.URL = scheme + s.Addr + "/0"
		if lastErr = s.Start(); lastErr == nil {
			if err := s.LoadLibrary(); err != nil {
				_ = s.Stop()
				return nil, err
			}
			return s, nil
		}
	}
	_ = os.RemoveAll(dir)
	return nil, lastErr
}

// Start (re)starts a stopped private server on its old port and data dir.
func (s *Server) Start() error {
	if s.external || s.cmd != nil {
		return nil
	}
	_, port, _ := net.SplitHostPort(s.Addr)
	var args []string
	if s.conf != "" {
		args = append(args, s.conf)
	}
	ports := []string{"--port", port}
	if s.tls {
		ports = []string{"--port", "0", "--tls-port", port}
	}
	args = append(args, ports...)
	args = append(args, "--bind", "127.0.0.1", "--protected-mode", "no",
		"--save", "", "--appendonly", "no", "--daemonize", "no",
		"--dir", s.dir, "--logfile", s.logFile(),
		// Tests see what ACL rules decide, not DEBUG's default refusal.
		"--enable-debug-command", "yes")
	args = append(args, s.extra...)
	cmd := exec.Command("redis-server", args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start redis-server: %w", err)
	}
	s.cmd, s.exited = cmd, make(chan struct{})
	go func() { _ = cmd.Wait(); close(s.exited) }()
	if err := s.waitReady(5 * time.Second); err != nil {
		_ = s.Stop()
		return err
	}
	return nil
}

// LoadLibrary loads Library (when set) on the server, if it is a master
// outside a Cluster (StartCluster loads it on a Cluster's masters): a
// replica gets it from its master. A server with --requirepass is loaded
// with that password; a TLS server is left alone.
func (s *Server) LoadLibrary() error {
	if Library == nil || s.tls || s.external || slices.Contains(s.extra, "--sentinel") {
		return nil
	}
	o := &redis.Options{Addr: s.Addr, Password: s.password(), Protocol: 2}
	c := redis.NewClient(o)
	defer func() { _ = c.Close() }()
	info, err := c.Info(context.Background(), "replication", "cluster").Result()
	if err != nil {
		return fmt.Errorf("redistest: loading the library: %w", err)
	}
	if !strings.Contains(info, "role:master") || strings.Contains(info, "cluster_enabled:1") {
		return nil
	}
	return loadLibrary(c, c)
}

// LoadLibraryOn loads Library (when set) on the master c, with the seal
// c keeps: for a server this package cannot reach itself (TLS).
func LoadLibraryOn(c *redis.Client) error {
	if Library == nil {
		return nil
	}
	return loadLibrary(c, c)
}

// loadLibrary keeps a seal in sealer and loads Library with it on each of
// masters.
func loadLibrary(sealer redis.UniversalClient, masters ...*redis.Client) error {
	ctx := context.Background()
	seal, err := store.EnsureSeal(ctx, sealer, store.NewSeal())
	if err != nil {
		return fmt.Errorf("redistest: seal: %w", err)
	}
	source, _, err := Library(seal)
	if err != nil {
		return err
	}
	for _, m := range masters {
		if err := store.LoadLibrary(ctx, m, source); err != nil {
			return fmt.Errorf("redistest: loading the library on %s: %w", m.Options().Addr, err)
		}
	}
	return nil
}

// Seal is the seal the server keeps ("": none), for a test that looks at
// what the library wrote (store.SealedKey).
func (s *Server) Seal() string {
	c := redis.NewClient(&redis.Options{Addr: s.Addr, Password: s.password(), Protocol: 2})
	defer func() { _ = c.Close() }()
	v, _ := c.Get(context.Background(), "qo:seal").Result()
	return v
}

// password is the --requirepass the server was started with.
func (s *Server) password() string {
	for i, a := range s.extra {
		if a == "--requirepass" && i+1 < len(s.extra) {
			return s.extra[i+1]
		}
	}
	return ""
}

func (s *Server) waitReady(limit time.Duration) error {
	if s.tls {
		return s.waitListening(limit)
	}
	c := redis.NewClient(&redis.Options{Addr: s.Addr, MaxRetries: -1, DialTimeout: 200 * time.Millisecond})
	defer func() { _ = c.Close() }()
	end := time.Now().Add(limit)
	for {
		select {
		case <-s.exited:
			log, _ := os.ReadFile(s.logFile())
			return fmt.Errorf("redis-server on %s exited at start: %s", s.Addr, log)
		default:
		}
		err := c.Ping(context.Background()).Err()
		if err == nil || strings.HasPrefix(err.Error(), "NOAUTH") { // started with --requirepass
			return nil
		}
		if time.Now().After(end) {
			return fmt.Errorf("redis-server on %s not ready after %v: %w", s.Addr, limit, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitListening waits until the port accepts connections: a TLS server's
// clients need certificates this package does not have.
func (s *Server) waitListening(limit time.Duration) error {
	end := time.Now().Add(limit)
	for {
		conn, err := net.DialTimeout("tcp", s.Addr, 200*time.Millisecond)
		if err == nil {
			return conn.Close()
		}
		if time.Now().After(end) {
			return fmt.Errorf("redis-server on %s not listening after %v: %w", s.Addr, limit, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// StartTLS starts a private redis-server that speaks TLS only, with the
// given server certificate and key, and requires client certificates
// signed by the CA in caFile.
func StartTLS(certFile, keyFile, caFile string) (*Server, error) {
	return startNew(Server{tls: true, extra: []string{"--tls-cert-file", certFile, "--tls-key-file", keyFile,
		"--tls-ca-cert-file", caFile, "--tls-auth-clients", "yes"}}, false)
}

func (s *Server) logFile() string {
	_, port, _ := net.SplitHostPort(s.Addr)
	return filepath.Join(s.dir, "redis-"+port+".log")
}

// Stop kills the server (SIGKILL: like a crash, nothing is saved). The data
// dir stays for a later Start; Close removes it.
func (s *Server) Stop() error {
	if s.external || s.cmd == nil {
		return nil
	}
	_ = s.cmd.Process.Kill()
	<-s.exited
	s.cmd = nil
	return nil
}

// RestartWithData saves the server's data (SAVE), kills it and starts it
// again, which loads what it saved, as a Redis with persistence does. The
// snapshot is then removed, so a later Start begins empty again.
func (s *Server) RestartWithData() error {
	if s.external {
		return errors.New("an external server cannot be restarted")
	}
	c := s.Client()
	err := c.Save(context.Background()).Err()
	_ = c.Close()
	if err != nil {
		return err
	}
	if err := s.Stop(); err != nil {
		return err
	}
	if err := s.Start(); err != nil {
		return err
	}
	return s.removeSnapshot()
}

// RestartEmpty kills the server and starts it with no data, as a Redis
// without persistence, or whose volume was lost, comes back.
func (s *Server) RestartEmpty() error {
	if s.external {
		return errors.New("an external server cannot be restarted")
	}
	if err := s.Stop(); err != nil {
		return err
	}
	if err := s.removeSnapshot(); err != nil {
		return err
	}
	return s.Start()
}

func (s *Server) removeSnapshot() error {
	err := os.Remove(filepath.Join(s.dir, "dump.rdb"))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	return err
}

// Pause freezes the server (SIGSTOP): connections stay open but nothing
// answers, as with a hung server or a network partition. Resume undoes it.
func (s *Server) Pause() error { return s.signal(syscall.SIGSTOP) }

// Resume lets a paused server run again (SIGCONT).
func (s *Server) Resume() error { return s.signal(syscall.SIGCONT) }

func (s *Server) signal(sig syscall.Signal) error {
	if s.external || s.cmd == nil {
		return errors.New("redistest: no server process to signal")
	}
	return s.cmd.Process.Signal(sig)
}

// Close stops the server and removes its files.
func (s *Server) Close() error {
	err := s.Stop()
	if !s.external {
		_ = os.RemoveAll(s.dir)
	}
	return err
}

// Client returns a client for this server.
func (s *Server) Client() *redis.Client {
	opt, err := redis.ParseURL(s.URL)
	if err != nil {
		opt = &redis.Options{Addr: s.Addr}
	}
	return redis.NewClient(opt)
}

// freePort finds a free loopback port. A cluster node also needs port+10000
// for its bus.
func freePort(cluster bool) (int, error) {
	if cluster {
		return localtest.FreePort(clusterBusOffset)
	}
	return localtest.FreePort(0)
}

// clusterBusOffset is where a Cluster node's bus listens, from its port.
const clusterBusOffset = 10000
