// Package etcdtest runs a real etcd (Debian's etcd-server) for tests, in a
// temp dir on ports of its own, and lets a test stop and restart it to
// play a mediator that goes away.
package etcdtest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/volrep/volrep/internal/testenv"
)

// Server is one etcd member.
type Server struct {
	t        testing.TB
	bin, dir string
	client   string // host:port clients use
	peer     string
	// ns, if set, is the network namespace etcd runs in; it then listens
	// for clients on every address of the namespace, at client's port.
	ns     string
	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
}

// Start runs etcd on two free loopback ports (clientAddr and peerAddr when
// given, as "host:port") and waits until it answers. It is stopped when
// the test ends.
func Start(t testing.TB, clientAddr, peerAddr string) *Server {
	t.Helper()
	s := &Server{t: t, bin: testenv.Tool(t, "etcd"), dir: t.TempDir(), client: clientAddr, peer: peerAddr}
	t.Cleanup(s.Stop)
	pick := clientAddr == "" || peerAddr == ""
	for try := 1; ; try++ {
		if clientAddr == "" {
			s.client = freeAddr(t)
		}
		if peerAddr == "" {
			s.peer = freeAddr(t)
		}
		err := s.start()
		if err == nil {
			return s
		}
		// A port picked here may be taken before etcd binds it: pick again.
		if !pick || try == 5 {
			t.Fatal(err)
		}
		_ = os.RemoveAll(s.dir + "/data")
	}
}

// StartIn runs etcd in network namespace ns (`ip netns exec`), serving
// clients on every address of ns at clientAddr's port, so arrays in other
// namespaces reach it over links of their own that a test can cut one by
// one; the test reaches it at clientAddr. peerAddr is inside ns.
func StartIn(t testing.TB, ns, clientAddr, peerAddr string) *Server {
	t.Helper()
	s := &Server{t: t, bin: testenv.Tool(t, "etcd"), dir: t.TempDir(), client: clientAddr, peer: peerAddr, ns: ns}
	t.Cleanup(s.Stop)
	if err := s.start(); err != nil {
		t.Fatal(err)
	}
	return s
}

// Endpoint is the client address, host:port.
func (s *Server) Endpoint() string { return s.client }

// Restart starts etcd again (after Stop) with the same data: leases held
// before survive, as they do when a real etcd restarts.
func (s *Server) Restart() {
	s.t.Helper()
	if err := s.start(); err != nil {
		s.t.Fatal(err)
	}
}

func (s *Server) start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		return nil
	}
	cu, pu := "http://"+s.client, "http://"+s.peer
	listen := cu
	var prefix []string
	if s.ns != "" {
		_, port, err := net.SplitHostPort(s.client)
		if err != nil {
			return err
		}
		listen = "http://0.0.0.0:" + port
		prefix = []string{"ip", "netns", "exec", s.ns}
	}
	args := append(prefix, s.bin, "--name", "m", "--data-dir", s.dir+"/data",
		"--listen-client-urls", listen, "--advertise-client-urls", cu,
		"--listen-peer-urls", pu, "--initial-advertise-peer-urls", pu,
		"--initial-cluster", "m="+pu, "--heartbeat-interval", "100", "--election-timeout", "1000",
		"--logger", "zap", "--log-outputs", s.dir+"/etcd.log")
	// `ip netns exec` execs etcd in place, so the process killed is etcd.
	cmd := exec.Command(args[0], args[1:]...)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting etcd: %w", err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	s.cmd, s.exited = cmd, exited
	deadline := time.Now().Add(15 * time.Second)
	for {
		if err := s.health(); err == nil {
			return nil
		} else if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			<-exited
			s.cmd = nil
			return fmt.Errorf("etcd at %s did not become healthy: %v", s.client, err)
		}
		select {
		case <-exited:
			s.cmd = nil
			log, _ := os.ReadFile(s.dir + "/etcd.log")
			return fmt.Errorf("etcd exited at start: %s", tail(log, 1500))
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (s *Server) health() error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", s.client)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := fmt.Fprintf(c, "GET /health HTTP/1.0\r\n\r\n"); err != nil {
		return err
	}
	buf := make([]byte, 512)
	n, _ := c.Read(buf)
	if n == 0 || !strings.Contains(string(buf[:n]), `"health":"true"`) {
		return fmt.Errorf("not healthy yet: %q", buf[:n])
	}
	return nil
}

// Stop kills etcd (SIGKILL: a mediator that vanishes) and waits for it.
func (s *Server) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	<-s.exited
	s.cmd = nil
}

// Freeze stops etcd with SIGSTOP until Thaw: a mediator that keeps its
// connections open and answers nothing, as a hung host or a link that
// drops every packet, so a client waits for its deadline rather than
// being refused at once.
func (s *Server) Freeze() { s.signal(syscall.SIGSTOP) }

// Thaw lets a frozen etcd go on; it does nothing to one that was
// stopped meanwhile, so a test may register it as a cleanup.
func (s *Server) Thaw() { s.signal(syscall.SIGCONT) }

func (s *Server) signal(sig syscall.Signal) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		if sig == syscall.SIGCONT {
			return
		}
		s.t.Fatalf("etcd is not running")
	}
	if err := s.cmd.Process.Signal(sig); err != nil {
		s.t.Fatalf("signalling etcd: %v", err)
	}
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

// freeAddr picks a free loopback port below the kernel's ephemeral range,
// so that no listener on port 0 (the peer arrays of the same test) can be
// handed it between the pick and etcd's bind.
func freeAddr(t testing.TB) string {
	t.Helper()
	low := 32768
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if n, err := strconv.Atoi(f[0]); err == nil && n > 11000 {
				low = n
			}
		}
	}
	for range 100 {
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(10000+rand.IntN(low-10000)))
		l, err := net.Listen("tcp", addr)
		if err == nil {
			l.Close()
			return addr
		}
	}
	t.Fatal("found no free port for etcd below the ephemeral range")
	return ""
}
