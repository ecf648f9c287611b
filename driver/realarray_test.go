package driver

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/volrep/volrep/array"
	"github.com/volrep/volrep/array/client"
	"github.com/volrep/volrep/array/replication"
	"github.com/volrep/volrep/array/service"
	"github.com/volrep/volrep/array/store"
	"github.com/volrep/volrep/array/transfer"
	"github.com/volrep/volrep/config"
	"github.com/volrep/volrep/server"
)

// Real arrays for the driver's tests: the engine (store and replication)
// in a temporary directory behind the real gRPC server chain, as volrepd
// hosts one, and the driver connected to it over gRPC as volrepd connects it.

// testArray is one array. A test can halt its API server (a peer outage)
// and start it again on the same address.
type testArray struct {
	t     *testing.T
	name  string
	token string
	st    *store.Store
	eng   *replication.Engine
	addr  string
	stop  context.CancelFunc
	done  chan struct{}
	runMu sync.Mutex
}

func newTestArray(t *testing.T, name string) *testArray {
	t.Helper()
	return newTestArrayOpts(t, store.Options{Name: name})
}

// newTestArrayOpts is newTestArray with the store's options, say the
// iSCSI portals an array reports.
func newTestArrayOpts(t *testing.T, opts store.Options) *testArray {
	t.Helper()
	name := opts.Name
	st, err := store.Open(t.TempDir(), opts)
	if err != nil {
		t.Fatal(err)
	}
	eng, err := replication.New(t.Context(), st, replication.Options{Logger: slog.New(slog.DiscardHandler),
		Dial: func(addr, token string) (*grpc.ClientConn, error) { return server.Dial(addr, token) }})
	if err != nil {
		st.Close()
		t.Fatal(err)
	}
	rctx, cancel := context.WithCancel(context.Background())
	ran := make(chan struct{})
	go func() { eng.Run(rctx); close(ran) }()
	a := &testArray{t: t, name: name, token: name + "-token", st: st, eng: eng, addr: "127.0.0.1:0"}
	a.start()
	t.Cleanup(func() { a.halt(); cancel(); <-ran; eng.Close(); st.Close() })
	return a
}

// start serves the array's API, as volrepd's startArray does.
func (a *testArray) start() {
	a.runMu.Lock()
	defer a.runMu.Unlock()
	lis, err := net.Listen("tcp", a.addr)
	if err != nil {
		a.t.Fatal(err)
	}
	a.addr = lis.Addr().String()
	log := slog.New(slog.DiscardHandler)
	// A short stop timeout: halting is an outage, not a graceful drain.
	srv := server.New(server.Options{Name: "array " + a.name, Logger: log, Token: a.token, StopTimeout: 10 * time.Millisecond})
	service.New(a.st).Register(srv.GRPC())
	service.NewReplication(a.eng).Register(srv.GRPC())
	service.NewOperations(a.eng).Register(srv.GRPC())
	ts, err := transfer.NewService(context.Background(), a.st, log, transfer.ServiceOptions{})
	if err != nil {
		a.t.Fatal(err)
	}
	ts.Register(srv.GRPC())
	ctx, cancel := context.WithCancel(context.Background())
	a.stop, a.done = cancel, make(chan struct{})
	go func() { srv.Serve(ctx, lis); close(a.done) }()
}

// halt stops the array's API server; connections to it are cut and new
// ones refused.
func (a *testArray) halt() {
	a.runMu.Lock()
	defer a.runMu.Unlock()
	if a.stop != nil {
		a.stop()
		<-a.done
		a.stop = nil
	}
}

// dialTestArray reaches an array over its gRPC API, as volrepd's dialArray does.
func dialTestArray(addr, token string) (Conn, error) {
	cc, err := server.Dial(addr, token)
	if err != nil {
		return Conn{}, err
	}
	return Conn{Array: client.New(cc), Replication: client.NewReplication(cc), Close: cc.Close,
		Reconnect: func() { cc.ResetConnectBackoff(); cc.Connect() }}, nil
}

// startDriver parses conf as volrepd reads cinder.conf, runs its backends
// against the arrays it names and waits until each is up with its
// replication set up: its links, and a replica on the primary array for
// every replication_device.
func startDriver(t *testing.T, conf string, primary *testArray) *Driver {
	t.Helper()
	cfg, err := config.Parse("cinder.conf", []byte(conf))
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Problems) > 0 {
		t.Fatalf("cinder.conf: %v", cfg.Problems)
	}
	d := New(cfg.Backends, Options{Dial: dialTestArray, StateDir: t.TempDir(), Logger: slog.New(slog.DiscardHandler),
		RetryMin: 50 * time.Millisecond, RetryMax: time.Second})
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan struct{})
	go func() { d.Run(ctx); close(ran) }()
	t.Cleanup(func() { cancel(); <-ran; d.Close() })
	for _, bc := range cfg.Backends {
		b, err := d.Backend(bc.Section)
		if err != nil {
			t.Fatal(err)
		}
		waitFor(t, 20*time.Second, func() string {
			if st := b.State(); !st.Up {
				return fmt.Sprintf("backend %s is down: %s", bc.Section, st.Reason)
			}
			for _, rd := range bc.ReplicationDevices {
				name := b.pgReplica(rd.BackendID)
				if rd.Type == "sync" {
					name = b.podReplica(rd.BackendID)
				}
				r, err := primary.eng.GetReplica(t.Context(), name)
				if err != nil {
					return fmt.Sprintf("replica %s: %v", name, err)
				}
				if rd.Type == "sync" && r.PeerState != array.PeerOnline {
					return fmt.Sprintf("pod %s: peer %s, %s", name, r.PeerState, r.Message)
				}
			}
			return ""
		})
	}
	return d
}

func testBackend(t *testing.T, d *Driver, name string) *Backend {
	t.Helper()
	b, err := d.Backend(name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// waitFor polls cond until it returns "" (done) or fails the test with
// what it last returned.
func waitFor(t *testing.T, within time.Duration, cond func() string) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		why := cond()
		if why == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %s", within, why)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// backendConf is a cinder.conf with backend sections, each a list of
// "key = value" lines.
func backendConf(sections map[string][]string) string {
	var b strings.Builder
	names := slices.Sorted(maps.Keys(sections))
	fmt.Fprintf(&b, "[DEFAULT]\nenabled_backends = %s\n", strings.Join(names, ","))
	for _, n := range names {
		fmt.Fprintf(&b, "\n[%s]\nvolume_driver = volrep\n", n)
		for _, l := range sections[n] {
			b.WriteString(l + "\n")
		}
	}
	return b.String()
}

// throttleRate is what a throttled proxy forwards towards the target, in
// bytes a second: slow enough that a few MiB take longer than the
// driver's 30 s wait for a first pod copy, fast enough that each 1 MiB
// mirror message is acknowledged well within the pod's timeout.
const throttleRate = 256 << 10

// pairedBackend runs backend b1 on array site-a with one replication
// device, site-b, of kind ("async" or "sync").
func pairedBackend(t *testing.T, kind string) (b *Backend, primary, peer *testArray) {
	t.Helper()
	peer, primary = newTestArray(t, "site-b"), newTestArray(t, "site-a")
	d := startDriver(t, backendConf(map[string][]string{"b1": {
		"san_ip = " + primary.addr, "pure_api_token = " + primary.token,
		device("site-b", peer.addr, peer, kind),
	}}), primary)
	return testBackend(t, d, "b1"), primary, peer
}
