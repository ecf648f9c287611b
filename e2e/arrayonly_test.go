package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/volrep/volrep/array/client"
	"github.com/volrep/volrep/internal/testenv"
	"github.com/volrep/volrep/server"
)

// TestTwoArrayOnlyProcesses runs two array-only volrepd processes on one
// host, as deploy/examples/array.conf does on each disk server. Neither
// sets driver_listen and neither has backends, so neither may take the
// driver API's default address from the other.
func TestTwoArrayOnlyProcesses(t *testing.T) {
	volrepd, _ := binaries(t)
	type proc struct {
		addr, token string
		out         *testenv.Buffer
		exited      chan struct{}
	}
	var procs []*proc
	for _, name := range []string{"site-a", "site-b"} {
		dir := t.TempDir()
		p := &proc{addr: freePort(t), token: "tok-" + name, out: &testenv.Buffer{}, exited: make(chan struct{})}
		conf := filepath.Join(dir, "array.conf")
		text := fmt.Sprintf("[volrep]\nstate_dir = %s/state\n\n[array:%s]\ndata_dir = %s/data\nlisten = %s\nnbd_listen = %s\napi_token = %s\npools = cinder\n",
			dir, name, dir, p.addr, freePort(t), p.token)
		if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(volrepd, "--config", conf)
		cmd.Stdout, cmd.Stderr = p.out, p.out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		go func() { cmd.Wait(); close(p.exited) }()
		t.Cleanup(func() {
			cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-p.exited:
			case <-time.After(20 * time.Second):
				cmd.Process.Kill()
				<-p.exited
			}
		})
		procs = append(procs, p)
	}
	for i, p := range procs {
		cc, err := server.Dial(p.addr, p.token)
		if err != nil {
			t.Fatal(err)
		}
		defer cc.Close()
		a := client.New(cc)
		waitFor(t, func() bool {
			select {
			case <-p.exited:
				t.Fatalf("array-only volrepd %d exited during start-up:\n%s", i, p.out)
			default:
			}
			ctx, cancel := context.WithTimeout(t.Context(), time.Second)
			defer cancel()
			_, err := a.Info(ctx)
			return err == nil
		})
	}
	for i, p := range procs {
		select {
		case <-p.exited:
			t.Fatalf("array-only volrepd %d exited:\n%s", i, p.out)
		default:
		}
		if strings.Contains(p.out.String(), "driver API on") {
			t.Errorf("array-only volrepd %d opened the driver API:\n%s", i, p.out)
		}
	}
}
