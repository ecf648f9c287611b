package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/volrep/volrep/array/client"
	"github.com/volrep/volrep/server"
)

// TestTwoArrayOnlyProcesses runs two array-only volrepd processes on one
// host, as deploy/examples/array.conf does on each disk server. Neither
// sets driver_listen and neither has backends, so neither may take the
// driver API's default address from the other.
func TestTwoArrayOnlyProcesses(t *testing.T) {
	var procs []*Daemon
	for _, name := range []string{"site-a", "site-b"} {
		d := &Daemon{t: t, Dir: t.TempDir(), TokenA: "tok-" + name, ArrayA: freePort(t)}
		d.WriteRaw(fmt.Sprintf("[volrep]\nstate_dir = %s/state\n\n[array:%s]\ndata_dir = %s/data\nlisten = %s\nnbd_listen = %s\napi_token = %s\npools = cinder\n",
			d.Dir, name, d.Dir, d.ArrayA, freePort(t), d.TokenA))
		d.Start() // no driver API to wait for: the arrays are polled below
		procs = append(procs, d)
	}
	for i, d := range procs {
		cc, err := server.Dial(d.ArrayA, d.TokenA)
		if err != nil {
			t.Fatal(err)
		}
		defer cc.Close()
		a := client.New(cc)
		waitFor(t, func() bool {
			select {
			case <-d.exited:
				t.Fatalf("array-only volrepd %d exited during start-up:\n%s", i, d.Logs())
			default:
			}
			ctx, cancel := context.WithTimeout(t.Context(), time.Second)
			defer cancel()
			_, err := a.Info(ctx)
			return err == nil
		})
	}
	for i, d := range procs {
		select {
		case <-d.exited:
			t.Fatalf("array-only volrepd %d exited:\n%s", i, d.Logs())
		default:
		}
		if strings.Contains(d.Logs(), "driver API on") {
			t.Errorf("array-only volrepd %d opened the driver API:\n%s", i, d.Logs())
		}
	}
}
