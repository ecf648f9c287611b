package daemon

import (
	"context"
	"net"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/volrep/volrep/config"
	"github.com/volrep/volrep/server"
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
// is opened before any that asks for a free one, so that a free port the
// kernel hands out (an array's default stream_port) cannot be one that
// another array or the driver API needs. Arrays that will not start are
// left alone; each listener goes where its array or server takes it.
func TestFixedPortsOpenFirst(t *testing.T) {
	a := freeAddrs(t, 7)
	_, p4, _ := net.SplitHostPort(a[4])
	stream, _ := strconv.Atoi(p4)
	cfg := &config.Config{Arrays: []config.Array{
		{Name: "first", Listen: a[0], NBDListen: "127.0.0.1:0"}, // stream_port 0: a free port
		{Name: "second", Listen: a[1], NBDListen: a[2], ISCSIListen: []string{a[3]}, StreamPort: stream},
		{Name: "broken", Listen: a[5], Problems: config.Problems{{Message: "bad"}}},
	}}
	cfg.Daemon.DriverListen = a[6]
	var order []string
	ls, err := openWith(t.Context(), cfg, true, func(ctx context.Context, addr string) (net.Listener, error) {
		order = append(order, addr)
		return server.Listen(ctx, addr)
	})
	if err != nil {
		t.Fatal(err)
	}
	defer ls.close()
	want := []string{a[0], a[1], a[2], a[3], a[4], a[6], "127.0.0.1:0", "127.0.0.1:0"}
	if !slices.Equal(order, want) {
		t.Fatalf("opened %q; want the fixed ports of the arrays that start and the driver API, then the free ones: %q", order, want)
	}
	first, second := ls.arrays["first"], ls.arrays["second"]
	if ls.arrays["broken"] != nil {
		t.Error("an array that will not start got listeners")
	}
	for _, c := range []struct {
		lis  net.Listener
		addr string
	}{{first.api, a[0]}, {second.api, a[1]}, {second.nbd, a[2]}, {second.iscsi[0], a[3]}, {second.stream, a[4]}, {ls.driver, a[6]}} {
		if c.lis == nil || c.lis.Addr().String() != c.addr {
			t.Errorf("the listener for %s is %v", c.addr, c.lis)
		}
	}
	if first.nbd == nil || first.stream == nil || ls.metrics != nil {
		t.Errorf("free ports: first's NBD %v and streams %v; metrics (not configured) %v", first.nbd, first.stream, ls.metrics)
	}
	ls.close()
	for _, addr := range []string{a[0], a[1], a[6]} {
		if l, err := net.Listen("tcp", addr); err != nil {
			t.Errorf("%s is still held after close: %v", addr, err)
		} else {
			l.Close()
		}
	}
}

// TestListenersOpenAllOrNone: an address that cannot be opened fails the
// start, naming the array and the setting, and releases what was opened.
func TestListenersOpenAllOrNone(t *testing.T) {
	a := freeAddrs(t, 2)
	held, err := net.Listen("tcp", a[1])
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	cfg := &config.Config{Arrays: []config.Array{{Name: "x", Listen: a[0], NBDListen: a[1], StreamPort: -1}}}
	_, err = openListeners(t.Context(), cfg, false)
	if err == nil || !strings.Contains(err.Error(), "array x: nbd_listen") {
		t.Fatalf("opening an address in use: %v; want an error naming array x's nbd_listen", err)
	}
	if l, err := net.Listen("tcp", a[0]); err != nil {
		t.Errorf("the API address %s is still held after the failed start: %v", a[0], err)
	} else {
		l.Close()
	}
}
