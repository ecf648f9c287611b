package server

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

const activationChildEnv = "VOLREP_TEST_ACTIVATION_ADDR"

// The child half of TestListenTakesInheritedSocket: Listen on the address
// the parent still holds, which only an inherited socket can satisfy.
func activationChild(addr string) {
	lis, err := Listen(context.Background(), addr)
	if err != nil {
		fmt.Println("listen:", err)
		os.Exit(1)
	}
	if os.Getenv("LISTEN_FDS") != "" {
		fmt.Println("LISTEN_FDS is still set; a process we start would take the sockets for its own")
		os.Exit(1)
	}
	fmt.Println("listening")
	c, err := lis.Accept()
	if err != nil {
		fmt.Println("accept:", err)
		os.Exit(1)
	}
	c.Write([]byte("child"))
	c.Close()
	os.Exit(0)
}

// A socket handed over as systemd socket activation does is what Listen
// returns for its address: the child serves a port its parent bound and
// still holds, where binding it afresh would fail with EADDRINUSE.
func TestListenTakesInheritedSocket(t *testing.T) {
	if addr := os.Getenv(activationChildEnv); addr != "" {
		activationChild(addr)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	f, err := l.(*net.TCPListener).File()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "sh", "-c", `LISTEN_PID=$$ LISTEN_FDS=1 exec "$0" "$@"`, os.Args[0], "-test.run=^TestListenTakesInheritedSocket$")
	cmd.Env = append(os.Environ(), activationChildEnv+"="+l.Addr().String())
	cmd.ExtraFiles = []*os.File{f}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	f.Close()
	buf := make([]byte, 256)
	n, _ := out.Read(buf)
	if !strings.Contains(string(buf[:n]), "listening") {
		cmd.Wait()
		t.Fatalf("child: %s", buf[:n])
	}
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// The parent never accepts: an answer comes from the child.
	c.SetDeadline(time.Now().Add(10 * time.Second))
	got := make([]byte, 5)
	if _, err := c.Read(got); err != nil || string(got) != "child" {
		t.Fatalf("read %q, %v", got, err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("child: %v", err)
	}
}
