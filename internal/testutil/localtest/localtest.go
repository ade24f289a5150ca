// Package localtest holds what tests on this machine keep needing: a free
// address to listen on, waiting for a condition, and an HTTP endpoint
// answering 200.
package localtest

import (
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// FreeAddr returns a loopback address with a port nobody listens on.
func FreeAddr(t testing.TB) string {
	t.Helper()
	port, err := FreePort(0)
	if err != nil {
		t.Fatal(err)
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
}

// lowestPort is where FreePort starts looking.
const lowestPort = 10000

var handedOut sync.Map // port → struct{}: never the same port twice in a process

// FreePort returns a loopback port nobody listens on, and with offset > 0
// one whose port+offset is free too (a Redis Cluster node's bus). It picks
// below the kernel's ephemeral range: a port from that range, as a listen
// on port 0 gives, may meanwhile become the source port of any outgoing
// connection on the machine, and the test's later listen then fails with
// "address already in use" (TestHealthPortReadyOnlyWithConfig did).
func FreePort(offset int) (int, error) {
	high := ephemeralLow() - offset
	if high <= lowestPort {
		return 0, fmt.Errorf("no port below the ephemeral range %d with room for %d more", high+offset, offset)
	}
	for range 200 {
		port := lowestPort + rand.IntN(high-lowestPort)
		if _, taken := handedOut.LoadOrStore(port, struct{}{}); taken {
			continue
		}
		if listenable(port) && (offset == 0 || listenable(port+offset)) {
			return port, nil
		}
	}
	return 0, errors.New("no free loopback port")
}

func listenable(port int) bool {
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		return false
	}
	_ = l.Close()
	return true
}

// ephemeralLow is the first port of the kernel's ephemeral range (32768
// unless the machine says otherwise).
func ephemeralLow() int {
	raw, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 32768
	}
	if low, err := strconv.Atoi(strings.Fields(string(raw) + " x")[0]); err == nil && low > lowestPort {
		return low
	}
	return 32768
}

// WaitFor calls check until it returns nil, and fails the test with its
// last error when that takes longer than within.
func WaitFor(t testing.TB, within time.Duration, what string, check func() error) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v: %v", what, within, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// WaitOK waits until a GET of url answers 200.
func WaitOK(t testing.TB, within time.Duration, url string) {
	t.Helper()
	WaitFor(t, within, url+" answering 200", func() error {
		resp, err := http.Get(url)
		if err != nil {
			return err
		}
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("%s", resp.Status)
		}
		return nil
	})
}

// Get sends a GET to url and returns the status code and the body; a
// request that fails fails the test.
func Get(t testing.TB, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(body)
}

// Env is an environment, for a getenv parameter, of the pairs kv.
func Env(kv ...string) func(string) string {
	return func(k string) string {
		for i := 0; i < len(kv); i += 2 {
			if kv[i] == k {
				return kv[i+1]
			}
		}
		return ""
	}
}
