package server

import (
	"context"
	"testing"
	"time"

	"github.com/volrep/volrep/internal/netfault"
	arrayv1 "github.com/volrep/volrep/proto/volrep/array/v1"
)

// A call whose client went silent ends within the server's keepalive and
// its timeout, and a call on a healthy connection that is just as idle
// (the pings are answered) goes on.
func TestServerCutsASilentConnection(t *testing.T) {
	h := start(t, Options{Keepalive: time.Second})
	px := netfault.New(t, h.addr)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	call := func(addr string) chan error {
		cc, err := Dial(addr, "")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cc.Close() })
		res := make(chan error, 1)
		go func() {
			_, err := arrayv1.NewVolumeServiceClient(cc).GetVolume(ctx, &arrayv1.GetVolumeRequest{Name: "slow"})
			res <- err
		}()
		<-h.vols.entered
		return res
	}
	healthy := call(h.addr)
	call(px.Addr())
	px.Freeze()
	cut := time.Now()
	select {
	case err := <-h.vols.left:
		if err == nil {
			t.Fatal("a slow call returned as if released")
		}
		// The healthy connection's call is the one still waiting, so
		// this was the frozen one's, ended by the server.
		t.Logf("the server ended the silent client's call %v after the freeze: %v", time.Since(cut).Round(time.Millisecond), err)
	case <-time.After(5 * time.Second):
		t.Fatal("the server still waits on a client that has been silent for 5s (keepalive 1s, timeout 0.5s)")
	}
	select {
	case err := <-h.vols.left:
		t.Fatalf("the call on the healthy connection ended too: %v", err)
	case <-time.After(2500 * time.Millisecond): // two more keepalive rounds
	}
	close(h.vols.release)
	if err := <-healthy; err != nil {
		t.Fatalf("the call on the healthy connection: %v", err)
	}
}
