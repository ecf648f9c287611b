package replication_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/volrep/volrep/array"
	"github.com/volrep/volrep/array/replication"
	"github.com/volrep/volrep/array/service"
	"github.com/volrep/volrep/array/store"
	"github.com/volrep/volrep/array/transfer"
	"github.com/volrep/volrep/clock"
	"github.com/volrep/volrep/errdefs"
	"github.com/volrep/volrep/server"
	"github.com/volrep/volrep/server/rawstream"
)

const (
	mib   = 1 << 20
	token = "peer-token"
)

var t0 = time.Date(2026, 1, 5, 0, 0, 0, 0, time.UTC)

// target is a peer array: the real engine behind the real server chain,
// which a test can stop and start again on the same address.
type target struct {
	t    testing.TB
	st   *store.Store
	addr string
	// streams is the raw stream port the pods use (server/rawstream);
	// its listener is opened before the store, which reports its port.
	streams    string
	streamsLis net.Listener
	stop       context.CancelFunc
	done       chan struct{}
	commit     atomic.Int64 // snapshots committed, counted by the transfer service
}

// newTarget starts a peer array. Its NBDAddress is never listened on: it
// lets a test export a snapshot.
func newTarget(t testing.TB) *target { return newTargetWith(t, true) }

// newTargetWith starts a peer array that, without serveStreams, reports a
// raw stream port where nothing listens (a firewall between the arrays).
func newTargetWith(t testing.TB, serveStreams bool) *target {
	return newTargetOf(t, serveStreams, nil)
}

// newTargetOf starts a peer array that, with features set, reports those
// protocol features instead of this build's: an older array.
func newTargetOf(t testing.TB, serveStreams bool, features *[]string) *target {
	slis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	// The portals are only reported: nothing serves them, but volumes
	// can be connected to hosts, as a peer's copy may be.
	st, err := store.Open(t.TempDir(), store.Options{Name: "site-b", NBDAddress: "127.0.0.1:10809", ISCSIPortals: []string{"127.0.0.1:3260"},
		StreamPort: slis.Addr().(*net.TCPAddr).Port, Features: features})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.CreatePool(t.Context(), "replicas"); err != nil {
		t.Fatal(err)
	}
	tg := &target{t: t, st: st, addr: "127.0.0.1:0", streams: slis.Addr().String(), streamsLis: slis}
	if !serveStreams {
		slis.Close()
		tg.streams, tg.streamsLis = "", nil
	}
	tg.start()
	t.Cleanup(func() { tg.halt(); st.Close() })
	return tg
}

func (tg *target) start() {
	lis, err := net.Listen("tcp", tg.addr)
	if err != nil {
		tg.t.Fatal(err)
	}
	tg.addr = lis.Addr().String()
	// A short stop timeout: halting is a peer outage, not a graceful drain.
	srv := server.New(server.Options{Name: "site-b", Token: token, Logger: slog.New(slog.DiscardHandler), StopTimeout: 10 * time.Millisecond})
	service.New(tg.st).Register(srv.GRPC())
	ts, err := transfer.NewService(context.Background(), tg.st, slog.New(slog.DiscardHandler), transfer.ServiceOptions{})
	if err != nil {
		tg.t.Fatal(err)
	}
	ts.OnReceived = func(int64, time.Duration) { tg.commit.Add(1) }
	ts.Register(srv.GRPC())
	ctx, cancel := context.WithCancel(context.Background())
	tg.stop, tg.done = cancel, make(chan struct{})
	if tg.streams == "" {
		go func() { srv.Serve(ctx, lis); close(tg.done) }()
		return
	}
	slis := tg.streamsLis
	if slis == nil {
		if slis, err = net.Listen("tcp", tg.streams); err != nil {
			tg.t.Fatal(err)
		}
	}
	tg.streamsLis = nil
	rs := rawstream.NewServer(rawstream.Options{Logger: slog.New(slog.DiscardHandler), CheckToken: server.CheckToken(token),
		Validate: server.Validate, MaxMsgSize: server.DefaultMaxMsgSize})
	ts.RegisterStreams(rs)
	served := make(chan struct{})
	go func() { rs.Serve(ctx, slis); close(served) }()
	go func() { srv.Serve(ctx, lis); <-served; close(tg.done) }()
}

func (tg *target) halt() {
	if tg.stop != nil {
		tg.stop()
		<-tg.done
		tg.stop = nil
	}
}

type source struct {
	st  *store.Store
	eng *replication.Engine
	clk *clock.Fake
}

func newSource(t testing.TB, clk *clock.Fake, opts ...func(*replication.Options)) *source {
	st, err := store.Open(t.TempDir(), store.Options{Name: "site-a", Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	if _, err := st.CreatePool(ctx, "cinder"); err != nil {
		t.Fatal(err)
	}
	o := replication.Options{Clock: clk, RetryMax: time.Minute, Logger: testLogger(),
		Dial: func(a, tk string) (*grpc.ClientConn, error) { return server.Dial(a, tk) }}
	for _, f := range opts {
		f(&o)
	}
	eng, err := replication.New(ctx, st, o)
	if err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { eng.Run(rctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done; eng.Close(); st.Close() })
	return &source{st: st, eng: eng, clk: clk}
}

// waitCycle waits until the replica has shipped snapshot want and is idle.
func waitCycle(t testing.TB, e *replication.Engine, name, want string) array.Replica {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second) // a bound, not a wait: a loaded 2-core machine is slow
	for {
		r, err := e.GetReplica(t.Context(), name)
		if err != nil {
			t.Fatal(err)
		}
		if r.LastSnapshot == want && r.SyncState == array.SyncIdle {
			return r
		}
		if time.Now().After(deadline) {
			t.Fatalf("replica %s: last snapshot %q (state %s, sync %s, %s), want %q", name, r.LastSnapshot, r.State, r.SyncState, r.Message, want)
		}
		time.Sleep(time.Millisecond)
	}
}

func waitState(t testing.TB, e *replication.Engine, name, state string) array.Replica {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		r, err := e.GetReplica(t.Context(), name)
		if err != nil {
			t.Fatal(err)
		}
		if r.State == state && r.SyncState == array.SyncIdle {
			return r
		}
		if time.Now().After(deadline) {
			t.Fatalf("replica %s: state %s (%s), want %s", name, r.State, r.Message, state)
		}
		time.Sleep(time.Millisecond)
	}
}

// waitSnapshot waits until the scheduler has taken snapshot name.
func waitSnapshot(t testing.TB, st *store.Store, vol, name string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		if _, err := st.GetSnapshot(t.Context(), vol, name); err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("snapshot %s@%s was never taken", vol, name)
		}
		time.Sleep(time.Millisecond)
	}
}

func names(snaps []array.Snapshot) []string {
	var out []string
	for _, s := range snaps {
		out = append(out, s.Name)
	}
	slices.Sort(out)
	return out
}

func protect(t testing.TB, src *source, tg *target, name string, spec array.ReplicaSpec) {
	t.Helper()
	ctx := t.Context()
	if _, err := src.eng.CreateLink(ctx, array.LinkSpec{Name: "site-b", Address: tg.addr, Token: token}); err != nil {
		t.Fatal(err)
	}
	spec.Name, spec.Link, spec.RemotePool = name, "site-b", "replicas"
	if _, err := src.eng.ReplicateEntity(ctx, spec); err != nil {
		t.Fatal(err)
	}
}

// TestWeekOfSchedule runs seven days of hourly protection-group snapshots
// on a fake clock and checks the exact snapshots each side keeps.
func TestWeekOfSchedule(t *testing.T) {
	clk := clock.NewFake(t0)
	src, tg := newSource(t, clk), newTarget(t)
	ctx := t.Context()
	if _, err := src.st.CreateVolume(ctx, array.VolumeSpec{Name: "vol", Pool: "cinder", SizeBytes: mib}); err != nil {
		t.Fatal(err)
	}
	if _, err := src.st.CreateGroup(ctx, "cinder-group", "cinder", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := src.st.AddMembers(ctx, "cinder-group", []string{"vol"}); err != nil {
		t.Fatal(err)
	}
	protect(t, src, tg, "pg", array.ReplicaSpec{Kind: array.KindGroup, Local: "cinder-group", Interval: time.Hour,
		TargetRetention: array.Retention{AllFor: 14400 * time.Second, PerDay: 3, Days: 7},
		SourceRetention: array.Retention{AllFor: 2 * time.Hour}})
	waitCycle(t, src.eng, "pg", "pg.1")
	for k := 1; k < 168; k++ {
		if err := src.st.WriteVolume(ctx, "vol", int64(k%256)*4096, bytes.Repeat([]byte{byte(k)}, 4096), false); err != nil {
			t.Fatal(err)
		}
		clk.Advance(time.Hour)
		waitCycle(t, src.eng, "pg", fmt.Sprintf("pg.%d", k+1))
	}
	// By hand (the snapshot taken at hour k is pg.k+1): the target keeps
	// ages up to 4 h (k = 163..167) and the first snapshot of each 8-hour
	// slot from 00:00 UTC for 7 days (k = 0, 8, ..., 160).
	var want []string
	for k := 0; k <= 160; k += 8 {
		want = append(want, fmt.Sprintf("pg.%d", k+1))
	}
	for k := 163; k <= 167; k++ {
		want = append(want, fmt.Sprintf("pg.%d", k+1))
	}
	slices.Sort(want)
	got, err := tg.st.ListSnapshots(ctx, "vol")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(names(got), want) {
		t.Fatalf("target keeps %v\nwant %v", names(got), want)
	}
	// The source keeps 2 hours: ages 0, 1 and 2 h.
	got, err = src.st.ListSnapshots(ctx, "vol")
	if err != nil {
		t.Fatal(err)
	}
	if w := []string{"pg.166", "pg.167", "pg.168"}; !slices.Equal(names(got), w) {
		t.Fatalf("source keeps %v, want %v", names(got), w)
	}
	// And the target volume holds the newest data.
	a, b := make([]byte, mib), make([]byte, mib)
	src.st.ReadSnapshot(ctx, "vol", "pg.168", 0, a)
	tg.st.ReadVolume(ctx, "vol", 0, b)
	if !bytes.Equal(a, b) {
		t.Fatal("target volume differs from the newest source snapshot")
	}
}

// TestDeltaSize changes 1% of a 1 GiB volume's blocks between intervals
// and checks the next interval sends no more than 1.1× that.
func TestDeltaSize(t *testing.T) {
	clk := clock.NewFake(t0)
	src, tg := newSource(t, clk), newTarget(t)
	ctx := t.Context()
	const size = 1 << 30
	if _, err := src.st.CreateVolume(ctx, array.VolumeSpec{Name: "vol", Pool: "cinder", SizeBytes: size}); err != nil {
		t.Fatal(err)
	}
	if err := src.st.WriteVolume(ctx, "vol", 0, bytes.Repeat([]byte{1}, 32*mib), false); err != nil {
		t.Fatal(err)
	}
	protect(t, src, tg, "r", array.ReplicaSpec{Kind: array.KindVolume, Local: "vol", Interval: time.Hour})
	waitCycle(t, src.eng, "r", "r.1")
	r := rand.New(rand.NewPCG(1, 2))
	blocks := size / 4096
	changed := map[int]bool{}
	for len(changed) < blocks/100 {
		changed[r.IntN(blocks)] = true
	}
	for b := range changed {
		if err := src.st.WriteVolume(ctx, "vol", int64(b)*4096, bytes.Repeat([]byte{byte(b)}, 4096), false); err != nil {
			t.Fatal(err)
		}
	}
	clk.Advance(time.Hour)
	rep := waitCycle(t, src.eng, "r", "r.2")
	changedBytes := int64(len(changed)) * 4096
	t.Logf("changed %d bytes (1%% of %d blocks); the interval sent %d bytes (%.3fx)", changedBytes, blocks, rep.LastSyncBytes, float64(rep.LastSyncBytes)/float64(changedBytes))
	if rep.LastSyncBytes > changedBytes*11/10 {
		t.Fatalf("sent %d bytes for %d changed", rep.LastSyncBytes, changedBytes)
	}
	if rep.LastSyncBytes < changedBytes {
		t.Fatalf("sent %d bytes, less than the %d changed: data is missing", rep.LastSyncBytes, changedBytes)
	}
}

// TestTargetOutage stops the target for three intervals and checks the
// replica degrades, then recovers with one delta.
func TestTargetOutage(t *testing.T) {
	clk := clock.NewFake(t0)
	src, tg := newSource(t, clk), newTarget(t)
	ctx := t.Context()
	if _, err := src.st.CreateVolume(ctx, array.VolumeSpec{Name: "vol", Pool: "cinder", SizeBytes: 8 * mib}); err != nil {
		t.Fatal(err)
	}
	protect(t, src, tg, "r", array.ReplicaSpec{Kind: array.KindVolume, Local: "vol", Interval: time.Hour,
		SourceRetention: array.Retention{AllFor: 24 * time.Hour}, TargetRetention: array.Retention{AllFor: 24 * time.Hour}})
	waitCycle(t, src.eng, "r", "r.1")
	tg.halt()
	for i := 0; i < 3; i++ {
		if err := src.st.WriteVolume(ctx, "vol", int64(i)*mib, bytes.Repeat([]byte{9}, mib), false); err != nil {
			t.Fatal(err)
		}
		clk.Advance(time.Hour)
		waitSnapshot(t, src.st, "vol", fmt.Sprintf("r.%d", i+2))
		rep := waitState(t, src.eng, "r", array.StateDegraded)
		if !errdefs.IsUnavailable(errdefs.Unavailable("%s", rep.Message)) || rep.Message == "" {
			t.Fatalf("degraded without a reason: %+v", rep)
		}
	}
	rep, _ := src.eng.GetReplica(ctx, "r")
	if rep.LastSnapshot != "r.1" || rep.RPOState != array.RPOLagging {
		t.Fatalf("during the outage: last %s, RPO %s", rep.LastSnapshot, rep.RPOState)
	}
	before := tg.commit.Load()
	tg.start()
	clk.Advance(time.Minute) // the retry backoff
	rep = waitCycle(t, src.eng, "r", "r.4")
	if rep.State != array.StateActive {
		t.Fatalf("after recovery: %s %s", rep.State, rep.Message)
	}
	if n := tg.commit.Load() - before; n != 1 {
		t.Fatalf("recovery committed %d snapshots on the target, want one delta", n)
	}
	if rep.LastSyncBytes != 3*mib {
		t.Fatalf("recovery sent %d bytes, want the 3 MiB written during the outage", rep.LastSyncBytes)
	}
	got, _ := tg.st.ListSnapshots(ctx, "vol")
	if w := []string{"r.1", "r.4"}; !slices.Equal(names(got), w) {
		t.Fatalf("target has %v, want %v", names(got), w)
	}
}

func testLogger() *slog.Logger {
	if os.Getenv("VOLREP_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// TestTargetRetentionSparesAttached checks that target retention keeps a
// replicated snapshot while it is exported (someone reads the replica at
// the target) and prunes it in the first cycle after it is detached.
func TestTargetRetentionSparesAttached(t *testing.T) {
	clk := clock.NewFake(t0)
	src, tg := newSource(t, clk), newTarget(t)
	ctx := t.Context()
	if _, err := src.st.CreateVolume(ctx, array.VolumeSpec{Name: "vol", Pool: "cinder", SizeBytes: mib}); err != nil {
		t.Fatal(err)
	}
	protect(t, src, tg, "r", array.ReplicaSpec{Kind: array.KindVolume, Local: "vol", Interval: time.Hour,
		TargetRetention: array.Retention{AllFor: time.Hour}, SourceRetention: array.Retention{AllFor: time.Hour}})
	waitCycle(t, src.eng, "r", "r.1")
	x, err := tg.st.CreateExport(ctx, array.ExportSpec{Volume: "vol", Snapshot: "r.1", AttachmentID: "dr-test"})
	if err != nil {
		t.Fatal(err)
	}
	for k := 2; k <= 4; k++ {
		clk.Advance(time.Hour)
		waitCycle(t, src.eng, "r", fmt.Sprintf("r.%d", k))
	}
	got, err := tg.st.ListSnapshots(ctx, "vol")
	if err != nil {
		t.Fatal(err)
	}
	// r.1 is 3 h old but exported; r.2 (2 h) is not and goes.
	if w := []string{"r.1", "r.3", "r.4"}; !slices.Equal(names(got), w) {
		t.Fatalf("target keeps %v while r.1 is exported, want %v", names(got), w)
	}
	if _, err := tg.st.DeleteExport(ctx, x.Name, "", ""); err != nil {
		t.Fatal(err)
	}
	clk.Advance(time.Hour)
	waitCycle(t, src.eng, "r", "r.5")
	if got, err = tg.st.ListSnapshots(ctx, "vol"); err != nil {
		t.Fatal(err)
	}
	if w := []string{"r.4", "r.5"}; !slices.Equal(names(got), w) {
		t.Fatalf("target keeps %v after the detach, want %v", names(got), w)
	}
}
