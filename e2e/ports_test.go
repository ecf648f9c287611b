package e2e

import (
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// Ports for the daemons under test come from below the kernel's ephemeral
// range. Asking the kernel for port 0 and closing the listener (the old
// freePort) left a window in which any outgoing connection or port-0
// listener on the machine could be given the same port before volrepd
// bound it. The kernel never hands out a port below ip_local_port_range on
// its own, so a port taken from there, probed free and handed out once by
// this process, stays free for the daemon. A daemon restarted by a test
// reuses its own ports, as a real one does.
var ports struct {
	sync.Mutex
	next, low int
}

// ephemeralLow is the first port the kernel may assign by itself.
func ephemeralLow() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 32768
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return 32768
	}
	n, err := strconv.Atoi(f[0])
	if err != nil || n < 2048 {
		return 32768
	}
	return n
}

func freePort(t *testing.T) string {
	t.Helper()
	ports.Lock()
	defer ports.Unlock()
	if ports.low == 0 {
		ports.low = ephemeralLow()
		// Well away from the well-known ports; spread by pid so two test
		// processes started together begin apart.
		span := ports.low - 10000
		ports.next = 10000 + os.Getpid()%span
	}
	span := ports.low - 10000
	for tries := 0; tries < span; tries++ {
		p := ports.next
		ports.next = 10000 + (ports.next-10000+1)%span
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(p))
		l, err := net.Listen("tcp", addr)
		if err != nil {
			continue // taken by a listener of someone else's
		}
		l.Close()
		return addr
	}
	t.Fatalf("no free port between 10000 and %d", ports.low)
	return ""
}

// The allocator never repeats itself and never enters the ephemeral range.
func TestFreePortOutsideEphemeralRange(t *testing.T) {
	low := ephemeralLow()
	seen := map[string]bool{}
	for range 200 {
		a := freePort(t)
		_, p, _ := net.SplitHostPort(a)
		n, _ := strconv.Atoi(p)
		if n >= low || n < 10000 || seen[a] {
			t.Fatalf("freePort gave %s (ephemeral from %d, repeat %v)", a, low, seen[a])
		}
		seen[a] = true
	}
}
