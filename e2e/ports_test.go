package e2e

import (
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/volrep/volrep/array"
)

// Ports for the daemons under test are bound here, by the test, and the
// listening sockets are handed to volrepd when it starts (systemd's socket
// activation protocol, which server.Listen honours): nothing else can take
// a port between choosing it and the daemon's bind. The old freePort
// listened on port 0, closed, and let volrepd bind later, and any
// connection or port-0 listener on the machine could be given the port in
// between.
//
// Once volrepd serves, the test closes its own copy, so that a stopped
// daemon's port refuses connections as a real outage does. A daemon
// started again gets its port bound afresh; the ports come from below the
// kernel's ephemeral range (which it never assigns on its own), so that
// nothing but this allocator hands them out.
var ports struct {
	sync.Mutex
	next, low int
	// held is the test's listener for each address freePort gave out;
	// nil while a daemon owns the port.
	held map[string]net.Listener
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

// freePort binds a loopback port for the test and returns its address.
func freePort(t *testing.T) string {
	t.Helper()
	ports.Lock()
	defer ports.Unlock()
	if ports.low == 0 {
		ports.low = ephemeralLow()
		ports.held = map[string]net.Listener{}
		// Well away from the well-known ports; spread by pid so two test
		// processes started together begin apart.
		ports.next = 10000 + os.Getpid()%(ports.low-10000)
	}
	span := ports.low - 10000
	for tries := 0; tries < span; tries++ {
		p := ports.next
		ports.next = 10000 + (ports.next-10000+1)%span
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(p))
		if _, ours := ports.held[addr]; ours {
			continue
		}
		claim, ok := claimPort(p)
		if !ok {
			continue // another test process's
		}
		l, err := net.Listen("tcp", addr)
		if err != nil {
			claim.Close()
			continue // someone else's
		}
		ports.held[addr] = l
		t.Cleanup(func() {
			ports.Lock()
			defer ports.Unlock()
			if l := ports.held[addr]; l != nil {
				l.Close()
			}
			delete(ports.held, addr)
			claim.Close()
		})
		return addr
	}
	t.Fatalf("no free port between 10000 and %d", ports.low)
	return ""
}

// claimPort takes port p for this process among the test processes on
// the machine, until the file it returns is closed: between a daemon's
// kill and its restart its port is bound by nobody, and a second e2e
// process walking the same range would otherwise take it.
func claimPort(p int) (*os.File, bool) {
	dir := filepath.Join(os.TempDir(), "volrep-e2e-ports")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, true // no claims to check: the bind alone decides
	}
	f, err := os.OpenFile(filepath.Join(dir, strconv.Itoa(p)), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, true
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		return nil, false
	}
	return f, true
}

// listenKeys are the configuration keys whose address volrepd binds.
// iscsi_listen holds a comma-separated list of portals.
var listenKeys = regexp.MustCompile(`(?m)^\s*(?:driver_listen|listen|nbd_listen|metrics_listen|iscsi_listen)\s*=\s*(.+?)\s*$`)

// listenAddrs lists the addresses conf makes volrepd bind.
func listenAddrs(conf string) []string {
	var out []string
	for _, m := range listenKeys.FindAllStringSubmatch(conf, -1) {
		for _, a := range strings.Split(m[1], ",") {
			out = append(out, strings.TrimSpace(a))
		}
	}
	return out
}

// handOver returns, for the addresses conf makes volrepd listen on that
// freePort gave out, the sockets to pass to it (bound again if a daemon
// had them before), in the order LISTEN_FDS numbers them.
func handOver(t *testing.T, conf string) []*os.File {
	t.Helper()
	ports.Lock()
	defer ports.Unlock()
	var files []*os.File
	for _, addr := range listenAddrs(conf) {
		l, ours := ports.held[addr]
		if !ours {
			continue
		}
		if l == nil {
			var err error
			if l, err = net.Listen("tcp", addr); err != nil {
				t.Fatalf("binding %s again for the restarted daemon: %v", addr, err)
			}
			ports.held[addr] = l
		}
		f, err := l.(*net.TCPListener).File()
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
	}
	return files
}

// handedOver closes the test's copies of the sockets a daemon now serves.
func handedOver(conf string) {
	ports.Lock()
	defer ports.Unlock()
	for _, addr := range listenAddrs(conf) {
		if l := ports.held[addr]; l != nil {
			l.Close()
			ports.held[addr] = nil
		}
	}
}

// The allocator never repeats itself, never enters the ephemeral range,
// and holds each port until a daemon takes it.
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
		if l, err := net.Listen("tcp", a); err == nil {
			l.Close()
			t.Fatalf("%s is not held between freePort and the daemon's start", a)
		}
	}
}

// A daemon configured with port 0 everywhere binds free ports and says
// which: the harness learns them from its start-up lines, and each one
// serves.
func TestPortZeroAddressesAreReported(t *testing.T) {
	d := &Daemon{t: t, Dir: t.TempDir(), DriverAddr: "127.0.0.1:0", ArrayA: "127.0.0.1:0", ArrayB: "127.0.0.1:0",
		NBDA: "127.0.0.1:0", NBDB: "127.0.0.1:0", TokenA: "ta", TokenB: "tb"}
	d.WriteRaw(`[volrep]
driver_listen = 127.0.0.1:0

[array:site-a]
data_dir = ` + d.Dir + `/a
listen = 127.0.0.1:0
nbd_listen = 127.0.0.1:0
api_token = ta

[array:site-b]
data_dir = ` + d.Dir + `/b
listen = 127.0.0.1:0
nbd_listen = 127.0.0.1:0
api_token = tb
`)
	d.WaitFor("")
	d.Start()
	for _, a := range []string{d.DriverAddr, d.ArrayA, d.ArrayB, d.NBDA, d.NBDB} {
		if strings.HasSuffix(a, ":0") {
			t.Fatalf("addresses not learned: %+v", d)
		}
	}
	for _, which := range []string{"a", "b"} {
		if _, err := d.Array(which).CreateVolume(t.Context(), array.VolumeSpec{Name: "v", Pool: "cinder", SizeBytes: 1 << 20}); err != nil {
			t.Fatalf("array %s at its announced address: %v", which, err)
		}
		// The pod stream port it picked is the one it tells its peers.
		info, err := d.Array(which).Info(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		c, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(info.StreamPort)), 5*time.Second)
		if info.StreamPort <= 0 || err != nil {
			t.Fatalf("array %s reports stream port %d: %v", which, info.StreamPort, err)
		}
		c.Close()
	}
	for _, a := range []string{d.NBDA, d.NBDB} {
		c, err := net.DialTimeout("tcp", a, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(5 * time.Second))
		magic := make([]byte, 8)
		_, err = io.ReadFull(c, magic)
		c.Close()
		if err != nil || string(magic) != "NBDMAGIC" {
			t.Fatalf("NBD at %s greeted with %q, %v", a, magic, err)
		}
	}
}

// releasePort closes the test's hold on addr (from freePort) for a
// program that binds it itself, such as tgtd; the address stays reserved
// against freePort giving it out again.
func releasePort(addr string) {
	ports.Lock()
	defer ports.Unlock()
	if l := ports.held[addr]; l != nil {
		l.Close()
		ports.held[addr] = nil
	}
}

// A port another test process claimed is skipped, even while nobody
// binds it (its daemon killed, not yet restarted).
func TestFreePortSkipsAnotherProcesssClaim(t *testing.T) {
	freePort(t) // sets the allocator up
	// flock conflicts between open files even within one process, so this
	// claim stands for another process's.
	ports.Lock()
	next := ports.next
	claim, ok := claimPort(next)
	for ; !ok; claim, ok = claimPort(next) {
		next++
	}
	ports.next = next
	ports.Unlock()
	defer claim.Close()
	if a := freePort(t); a == net.JoinHostPort("127.0.0.1", strconv.Itoa(next)) {
		t.Fatalf("freePort gave %s, which another process claimed", a)
	}
}
