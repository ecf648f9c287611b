package daemon

import (
	"net"
	"strconv"
	"testing"

	"github.com/volrep/volrep/config"
)

// freeAddrs returns n loopback addresses whose ports were free a moment ago.
func freeAddrs(t *testing.T, n int) []string {
	t.Helper()
	var out []string
	var held []net.Listener
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, l)
		out = append(out, l.Addr().String())
	}
	for _, l := range held {
		l.Close()
	}
	return out
}

// TestFixedPortsOpenFirst: every address of the daemon that names a port
// is held before any array starts, so that a free port the kernel hands
// an array started earlier (its default stream_port) cannot be one that a
// later array or the driver API needs. Free-port addresses and arrays
// that will not start are left alone.
func TestFixedPortsOpenFirst(t *testing.T) {
	a := freeAddrs(t, 7)
	_, p4, _ := net.SplitHostPort(a[4])
	stream, _ := strconv.Atoi(p4)
	cfg := &config.Config{Arrays: []config.Array{
		{Name: "first", Listen: a[0], NBDListen: "127.0.0.1:0"},
		{Name: "second", Listen: a[1], NBDListen: a[2], ISCSIListen: []string{a[3]}, StreamPort: stream},
		{Name: "broken", Listen: a[5], Problems: config.Problems{{Message: "bad"}}},
	}}
	cfg.Daemon.DriverListen = a[6]
	ctx := t.Context()
	ls, err := openFixed(ctx, cfg, true)
	if err != nil {
		t.Fatal(err)
	}
	defer ls.close()
	for _, addr := range []string{a[0], a[1], a[2], a[3], a[4], a[6]} {
		if ls[addr] == nil {
			t.Errorf("%s was not opened first", addr)
		}
		if l, err := net.Listen("tcp", addr); err == nil {
			l.Close()
			t.Errorf("%s is not held", addr)
		}
	}
	if len(ls) != 6 {
		t.Errorf("opened %d addresses; want the 6 with fixed ports of the arrays that start and the driver API: %v", len(ls), ls)
	}
	l, err := ls.listen(ctx, a[0])
	if err != nil || l.Addr().String() != a[0] {
		t.Fatalf("listen(%s) = %v, %v; want the listener held for it", a[0], l, err)
	}
	l.Close()
	if ls[a[0]] != nil {
		t.Errorf("%s is still held after it was handed out", a[0])
	}
	free, err := ls.listen(ctx, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	free.Close()
	ls.close()
	if l, err := net.Listen("tcp", a[1]); err != nil {
		t.Errorf("%s is still held after close: %v", a[1], err)
	} else {
		l.Close()
	}
}
