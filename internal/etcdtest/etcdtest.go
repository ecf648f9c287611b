// Package etcdtest runs a real etcd (Debian's etcd-server) for tests, in a
// temp dir on ports of its own, and lets a test stop and restart it to
// play a mediator that goes away.
package etcdtest

import (
	"context"
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"sync"
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
	mu       sync.Mutex
	cmd      *exec.Cmd
	exited   chan struct{}
}

// Start runs etcd on two free loopback ports (clientAddr and peerAddr when
// given, as "host:port") and waits until it answers. It is stopped when
// the test ends.
func Start(t testing.TB, clientAddr, peerAddr string) *Server {
	t.Helper()
	s := &Server{t: t, bin: testenv.Tool(t, "etcd"), dir: t.TempDir(), client: clientAddr, peer: peerAddr}
	if s.client == "" {
		s.client = freeAddr(t)
	}
	if s.peer == "" {
		s.peer = freeAddr(t)
	}
	s.Restart()
	t.Cleanup(s.Stop)
	return s
}

// Endpoint is the client address, host:port.
func (s *Server) Endpoint() string { return s.client }

// Restart starts etcd again (after Stop) with the same data: leases held
// before survive, as they do when a real etcd restarts.
func (s *Server) Restart() {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		return
	}
	cu, pu := "http://"+s.client, "http://"+s.peer
	cmd := exec.Command(s.bin, "--name", "m", "--data-dir", s.dir+"/data",
		"--listen-client-urls", cu, "--advertise-client-urls", cu,
		"--listen-peer-urls", pu, "--initial-advertise-peer-urls", pu,
		"--initial-cluster", "m="+pu, "--heartbeat-interval", "100", "--election-timeout", "1000",
		"--logger", "zap", "--log-outputs", s.dir+"/etcd.log")
	if err := cmd.Start(); err != nil {
		s.t.Fatalf("starting etcd: %v", err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	s.cmd, s.exited = cmd, exited
	deadline := time.Now().Add(15 * time.Second)
	for {
		if err := s.health(); err == nil {
			return
		} else if time.Now().After(deadline) {
			s.t.Fatalf("etcd at %s did not become healthy: %v (log in %s/etcd.log)", s.client, err, s.dir)
		}
		select {
		case <-exited:
			s.t.Fatalf("etcd exited at start; log in %s/etcd.log", s.dir)
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

func freeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("finding a free port for etcd: %v", err)
	}
	defer l.Close()
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(l.Addr().(*net.TCPAddr).Port))
}
