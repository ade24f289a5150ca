package localtest

import (
	"strconv"
	"testing"
)

// Ports come from below the kernel's ephemeral range, which outgoing
// connections take their source ports from, and never twice; with an
// offset, port+offset stays below it too.
func TestFreePortBelowTheEphemeralRange(t *testing.T) {
	low := ephemeralLow()
	seen := map[int]bool{}
	for i := range 50 {
		offset := (i % 2) * 10000
		port, err := FreePort(offset)
		if err != nil {
			t.Fatal(err)
		}
		if port < lowestPort || port+offset >= low || seen[port] {
			t.Fatalf("port %d (offset %d): want it in [%d, %d) and new", port, offset, lowestPort, low-offset)
		}
		seen[port] = true
	}
	if _, err := strconv.Atoi(FreeAddr(t)[len("127.0.0.1:"):]); err != nil {
		t.Fatal(err)
	}
}
