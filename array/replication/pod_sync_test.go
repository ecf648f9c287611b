package replication_test

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/volrep/volrep/array"
	"github.com/volrep/volrep/array/nbd"
	"github.com/volrep/volrep/array/replication"
	"github.com/volrep/volrep/array/store"
	"github.com/volrep/volrep/clock"
	"github.com/volrep/volrep/errdefs"
	"github.com/volrep/volrep/internal/netfault"
	"github.com/volrep/volrep/internal/testenv"
	"github.com/volrep/volrep/server"
)

// TestPodLargeWrites: a single client write of any size the data paths
// accept is on the peer when it is acknowledged, without falling back to
// the dirty set (which a message over the peer connection's limit did).
func TestPodLargeWrites(t *testing.T) {
	src, tg := newPod(t, 5*time.Second)
	ctx := t.Context()
	size := int64(2 * nbd.MaxRequestSize)
	if _, err := src.st.CreateVolume(ctx, array.VolumeSpec{Name: "big", Pool: "cinder", SizeBytes: size}); err != nil {
		t.Fatal(err)
	}
	if _, err := src.st.AddMembers(ctx, "cinder-pod", []string{"big"}); err != nil {
		t.Fatal(err)
	}
	syncNow(t, src)
	sizes := []int{4 * mib, 16 * mib, 16*mib + 4096, 32 * mib, nbd.MaxRequestSize}
	var written int64
	for i, n := range sizes {
		written += int64(n)
		p := bytes.Repeat([]byte{0xc0 + byte(i)}, n)
		off := int64(i%2) * 4096 // aligned and not: both split the same way
		if err := src.st.WriteVolume(ctx, "big", off, p, false); err != nil {
			t.Fatalf("write of %d bytes: %v", n, err)
		}
		got := make([]byte, n)
		if err := tg.st.ReadVolume(ctx, "big", off, got); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, p) {
			t.Fatalf("a write of %d bytes is not on the peer when acknowledged", n)
		}
	}
	r, err := src.eng.GetReplica(ctx, "pod")
	if err != nil {
		t.Fatal(err)
	}
	if r.DirtyBytes != 0 || r.LastResyncBytes != 0 || r.State != array.StateActive || r.SyncState != array.SyncInSync {
		t.Fatalf("after large writes the pod fell back to its dirty set: dirty %d, resync %d, %s/%s %s",
			r.DirtyBytes, r.LastResyncBytes, r.State, r.SyncState, r.Message)
	}
	if r.MirroredBytes != written {
		t.Fatalf("the pod counts %d mirrored bytes for %d written", r.MirroredBytes, written)
	}
}

// freezer stands for a target array that stops moving bytes without
// closing anything (netfault), on 127.0.0.2 for both of its ports: its
// API and, on the same port number, its raw stream port, which peers
// reach on the host of the API address.
type freezer struct{ api, streams *netfault.Proxy }

// frozenTarget starts a target and a freezer in front of it. The stream
// port's number, which the target picked on 127.0.0.1, may be taken on
// 127.0.0.2 (by a listener on every address, say): then it starts
// another target.
func frozenTarget(t *testing.T) (*target, *freezer) {
	for tries := 0; ; tries++ {
		tg := newTarget(t)
		_, streamPort, _ := net.SplitHostPort(tg.streams)
		streams, err := netfault.TryAt(t, "127.0.0.2:"+streamPort, tg.streams)
		if err != nil && tries < 5 {
			tg.halt()
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		return tg, &freezer{api: netfault.NewAt(t, "127.0.0.2:0", tg.addr), streams: streams}
	}
}

func (f *freezer) addr() string { return f.api.Addr() }

func (f *freezer) freeze() { f.api.Freeze(); f.streams.Freeze() }
func (f *freezer) thaw()   { f.api.Thaw(); f.streams.Thaw() }

// podBehindFreezer creates members (16 MiB volumes) in src's group
// cinder-pod, makes it a pod with a new target, reached through a
// freezer, and waits for it to be in sync.
func podBehindFreezer(t *testing.T, src *source, timeout time.Duration, members ...string) (*target, *freezer) {
	t.Helper()
	ctx := t.Context()
	for _, v := range members {
		if _, err := src.st.CreateVolume(ctx, array.VolumeSpec{Name: v, Pool: "cinder", SizeBytes: 16 * mib}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := src.st.CreateGroup(ctx, "cinder-pod", "cinder", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := src.st.AddMembers(ctx, "cinder-pod", members); err != nil {
		t.Fatal(err)
	}
	tg, fz := frozenTarget(t)
	if _, err := src.eng.CreateLink(ctx, array.LinkSpec{Name: "site-b", Address: fz.addr(), Token: token}); err != nil {
		t.Fatal(err)
	}
	if _, err := src.eng.ReplicateEntity(ctx, array.ReplicaSpec{Name: "pod", Link: "site-b", RemotePool: "replicas",
		Kind: array.KindGroup, Local: "cinder-pod", Type: array.TypeSync, SyncTimeout: timeout}); err != nil {
		t.Fatal(err)
	}
	syncNow(t, src)
	return tg, fz
}

type span struct{ start, end time.Time }

func (s span) d() time.Duration { return s.end.Sub(s.start) }

func lats(spans []span) []time.Duration {
	out := make([]time.Duration, len(spans))
	for i, s := range spans {
		out[i] = s.d()
	}
	return out
}

func p99(d []time.Duration) time.Duration { return pct(d, 99) }

func pct(d []time.Duration, p int) time.Duration {
	slices.Sort(d)
	return d[len(d)*p/100]
}

// TestPodFrozenPeerStallsNothingElse: while a pod's peer is frozen, the
// writes that wait for it are bounded by the pod's timeout, and nothing
// else on the array waits: writes to an unreplicated volume and snapshots
// of other volumes keep a p99 under 10 ms.
func TestPodFrozenPeerStallsNothingElse(t *testing.T) {
	const timeout = 2 * time.Second
	src := newSource(t, clock.NewFake(t0))
	ctx := t.Context()
	for _, v := range []string{"plain", "other"} {
		if _, err := src.st.CreateVolume(ctx, array.VolumeSpec{Name: v, Pool: "cinder", SizeBytes: 16 * mib}); err != nil {
			t.Fatal(err)
		}
	}
	tg, fz := podBehindFreezer(t, src, timeout, "v1")
	if fz.streams.Accepted() == 0 {
		t.Fatal("the pod's stream did not use the peer's raw stream port")
	}

	measure := func(d time.Duration) (writes, snaps []span) {
		block := bytes.Repeat([]byte{7}, 4096)
		for i, end := 0, time.Now().Add(d); time.Now().Before(end); i++ {
			start := time.Now()
			if err := src.st.WriteVolume(ctx, "plain", int64(i%4096)*4096, block, false); err != nil {
				t.Fatal(err)
			}
			writes = append(writes, span{start, time.Now()})
			if i%10 == 0 {
				start = time.Now()
				if _, err := src.st.CreateSnapshot(ctx, "other", "s", nil); err != nil {
					t.Fatal(err)
				}
				snaps = append(snaps, span{start, time.Now()})
				if err := src.st.DeleteSnapshot(ctx, "other", "s"); err != nil {
					t.Fatal(err)
				}
			}
			time.Sleep(200 * time.Microsecond)
		}
		return writes, snaps
	}
	bw, bs := measure(time.Second)
	t.Logf("peer answering: unreplicated write p99 %v, snapshot p50 %v p99 %v", p99(lats(bw)), pct(lats(bs), 50), p99(lats(bs)))

	fz.freeze()
	thawed := false
	defer func() {
		if !thawed {
			fz.thaw()
		}
	}()
	// Pod writers: each write must return within the timeout (plus
	// scheduling slack), whatever the frozen peer does. 1 MiB writes fill
	// the connection's buffers, which is what blocked senders before; they
	// go to one region so the page cache they dirty stays small.
	var pod []span
	var mu sync.Mutex
	var wg sync.WaitGroup
	podCtx, stopPod := context.WithCancel(ctx)
	for w := 0; w < 2; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p := bytes.Repeat([]byte{byte(w + 1)}, mib)
			for i := 0; podCtx.Err() == nil; i++ {
				start := time.Now()
				if err := src.st.WriteVolume(ctx, "v1", int64(w)*mib, p, false); err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				pod = append(pod, span{start, time.Now()})
				mu.Unlock()
				// Paced: once the pod has dropped its peer these writes
				// are local, and unpaced they would only measure the disk.
				time.Sleep(20 * time.Millisecond)
			}
		}()
	}
	fw, fs := measure(2*timeout + 500*time.Millisecond)
	stopPod()
	wg.Wait()
	// The window in which a pod write waited on the frozen peer: its
	// longest write. Snapshots of another volume must go on inside it.
	wait := slices.MaxFunc(pod, func(a, b span) int { return cmp.Compare(a.d(), b.d()) })
	inside := 0
	for _, sp := range fs {
		if sp.start.After(wait.start) && sp.end.Before(wait.end) {
			inside++
		}
	}
	t.Logf("peer frozen: unreplicated write p99 %v (%d), snapshot p50 %v p99 %v (%d); a pod write waited %v, %d snapshots of another volume completed meanwhile",
		p99(lats(fw)), len(fw), pct(lats(fs), 50), p99(lats(fs)), len(fs), wait.d(), inside)
	if p99(lats(fw)) > 10*time.Millisecond {
		t.Errorf("a frozen pod peer stalls writes to an unreplicated volume: p99 %v", p99(lats(fw)))
	}
	if wait.d() < timeout*9/10 || wait.d() > timeout+time.Second {
		t.Errorf("the longest pod write took %v with a %v sync timeout: it should wait for the peer until the timeout, no longer", wait.d(), timeout)
	}
	// A snapshot's own cost is its fsyncs, which a shared disk makes
	// noisy, so what is asserted is that they do not wait for the peer:
	// several complete while a pod write waits (with a lock held across
	// that wait, the first of them waited for it to end).
	if inside < 3 {
		t.Errorf("only %d snapshots of another volume completed while a pod write waited %v for the frozen peer", inside, wait.d())
	}
	r, _ := src.eng.GetReplica(ctx, "pod")
	if r.PeerState == array.PeerOnline || r.DirtyBytes == 0 {
		t.Errorf("with the peer frozen the pod still claims %s with %d dirty bytes", r.PeerState, r.DirtyBytes)
	}
	fz.thaw()
	thawed = true
	syncNow(t, src)
	same(t, src, tg, "v1")
}

// TestPodUnreadableDirtyRecord: when the persisted record of the blocks
// the peer misses cannot be read after a restart, the pod says so loudly
// and compares both copies instead of trusting an empty set.
func TestPodUnreadableDirtyRecord(t *testing.T) {
	dir := t.TempDir()
	tg := newTarget(t)
	ctx := t.Context()
	src, stop := openSource(t, dir, slog.New(slog.DiscardHandler))
	if _, err := src.st.CreateVolume(ctx, array.VolumeSpec{Name: "v1", Pool: "cinder", SizeBytes: 16 * mib}); err != nil {
		t.Fatal(err)
	}
	if _, err := src.st.CreateGroup(ctx, "cinder-pod", "cinder", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := src.st.AddMembers(ctx, "cinder-pod", []string{"v1"}); err != nil {
		t.Fatal(err)
	}
	protect(t, src, tg, "pod", array.ReplicaSpec{Kind: array.KindGroup, Local: "cinder-pod", Type: array.TypeSync, SyncTimeout: 500 * time.Millisecond})
	syncNow(t, src)
	tg.halt()
	missed := bytes.Repeat([]byte{0x5a}, 64<<10)
	if err := src.st.WriteVolume(ctx, "v1", 3*mib, missed, false); err != nil {
		t.Fatal(err)
	}
	if err := src.st.FlushVolume(ctx, "v1"); err != nil {
		t.Fatal(err)
	}
	if r, _ := src.eng.GetReplica(ctx, "pod"); r.DirtyBytes == 0 {
		t.Fatalf("the write made while the peer was away is not dirty: %+v", r)
	}
	stop() // a clean stop: no compare is due on the next start
	st, err := store.Open(dir, store.Options{Name: "site-a"})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.PutRecord(ctx, "pod-dirty", "pod/v1", []byte(`{"chunks":{"0":"not a bitmap"}}`)); err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	var logs testenv.Buffer
	src, _ = openSource(t, dir, slog.New(slog.NewTextHandler(&logs, nil)))
	tg.start()
	syncNow(t, src)
	same(t, src, tg, "v1")
	if out := logs.String(); !strings.Contains(out, "level=ERROR") || !strings.Contains(out, "unreadable") {
		t.Fatalf("the unreadable dirty record was not logged as an error:\n%s", out)
	}
}

// openSource opens a source array's store and engine in dir; stop closes
// both cleanly (and runs at cleanup if not called).
func openSource(t *testing.T, dir string, log *slog.Logger) (*source, func()) {
	t.Helper()
	clk := clock.NewFake(t0)
	st, err := store.Open(dir, store.Options{Name: "site-a", Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	if _, err := st.CreatePool(ctx, "cinder"); err != nil && !strings.Contains(err.Error(), "exists") {
		t.Fatal(err)
	}
	eng, err := replication.New(ctx, st, replication.Options{Clock: clk, RetryMax: time.Minute, Logger: log,
		Dial: func(a, tk string) (*grpc.ClientConn, error) { return server.Dial(a, tk) }})
	if err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { eng.Run(rctx); close(done) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			<-done
			eng.Close()
			st.Close()
		})
	}
	t.Cleanup(stop)
	return &source{st: st, eng: eng, clk: clk}, stop
}

// TestPodMemberLeavesWhilePeerIsFrozen: a volume leaving the pod (moved
// out of the group, or deleted) takes its copy at the peer with it, but a
// peer that does not answer holds the change up for the pod's timeout at
// most; the copy left there is named in the log.
//
// The copy left is recorded, and the pod deletes it once the peer answers
// again, here after this array restarted meanwhile; unless a volume of the
// same name that is not a copy of it took its place at the peer. A copy
// the peer keeps refusing to delete (connected to a host there) is named
// in a warning again every leftWarnEvery, and deleted once it is freed.
func TestPodMemberLeavesWhilePeerIsFrozen(t *testing.T) {
	for _, c := range []struct {
		name string
		peer leftAtPeer
	}{{"left copy", leftAlone}, {"replaced at the peer", leftReplaced}, {"refused at the peer", leftConnected}} {
		t.Run(c.name, func(t *testing.T) { podMemberLeavesWhilePeerIsFrozen(t, c.peer) })
	}
}

// leftAtPeer is what becomes of a former member's copy at the peer while
// the pod cannot reach it.
type leftAtPeer int

const (
	leftAlone     leftAtPeer = iota
	leftReplaced             // deleted there, and another volume of its name made
	leftConnected            // connected to a host there, which refuses its deletion
)

func podMemberLeavesWhilePeerIsFrozen(t *testing.T, peer leftAtPeer) {
	const timeout = time.Second
	logs := &testenv.Buffer{}
	dir := t.TempDir()
	src, stop := openSource(t, dir, slog.New(slog.NewTextHandler(logs, nil)))
	ctx := t.Context()
	tg, fz := podBehindFreezer(t, src, timeout, "v1", "v2")

	fz.freeze()
	t.Cleanup(fz.thaw) // before the pod stops
	start := time.Now()
	left := make(chan error, 1)
	go func() {
		_, err := src.st.RemoveMembers(ctx, "cinder-pod", []string{"v2"})
		left <- err
	}()
	select {
	case err := <-left:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(timeout + 5*time.Second):
		t.Fatalf("moving a volume out of the pod waited %s for a peer that does not answer", time.Since(start).Round(time.Millisecond))
	}
	took := time.Since(start)
	t.Logf("the member left %s after the peer froze (pod timeout %s)", took.Round(time.Millisecond), timeout)
	if took > timeout+time.Second {
		t.Errorf("moving a volume out of the pod took %s; want within the pod's timeout %s", took, timeout)
	}
	if !strings.Contains(logs.String(), "removing the peer's copy of a former pod member") {
		t.Errorf("the copy left at the peer is not logged:\n%s", logs.String())
	}

	stop()
	fz.thaw()
	if _, err := tg.st.GetVolume(ctx, "v2"); err != nil {
		t.Fatalf("the frozen peer's copy of v2 should still be there before the pod retries: %v", err)
	}
	switch peer {
	case leftReplaced:
		snaps, err := tg.st.ListSnapshots(ctx, "v2")
		if err != nil {
			t.Fatal(err)
		}
		for _, sn := range snaps {
			if err := tg.st.DeleteSnapshot(ctx, "v2", sn.Name); err != nil {
				t.Fatal(err)
			}
		}
		if err := tg.st.DeleteVolume(ctx, "v2"); err != nil {
			t.Fatal(err)
		}
		if _, err := tg.st.CreateVolume(ctx, array.VolumeSpec{Name: "v2", Pool: "replicas", SizeBytes: mib}); err != nil {
			t.Fatal(err)
		}
	case leftConnected:
		if _, err := tg.st.CreateHost(ctx, array.HostSpec{Name: "h", IQNs: []string{"iqn.2026-12.test:h"}}); err != nil {
			t.Fatal(err)
		}
		if _, err := tg.st.ConnectVolume(ctx, array.ConnectionSpec{Host: "h", Volume: "v2"}); err != nil {
			t.Fatal(err)
		}
	}
	logs2 := &testenv.Buffer{}
	src, _ = openSource(t, dir, slog.New(slog.NewTextHandler(logs2, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if peer == leftConnected {
		podRefusesLeftCopy(t, src, tg, logs2)
	}
	// Removed (or left alone), logged, and forgotten, in that order.
	deadline := time.Now().Add(20 * time.Second)
	for {
		_, err := tg.st.GetVolume(ctx, "v2")
		records := len(recordKeys(t, src.st, "pod-left"))
		logged := strings.Contains(logs2.String(), "removed the peer's copy of a former pod member")
		if records == 0 && (peer == leftReplaced || errdefs.IsNotFound(err) && logged) {
			if peer == leftReplaced && (err != nil || logged) {
				t.Fatalf("the peer's own volume v2, which replaced the copy, was removed (%v; logged: %v)", err, logged)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("20s after the peer answers again: the copy of former member v2 at the peer: %v; removal logged: %v; records left: %d\n%s",
				err, logged, records, logs2.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if _, err := tg.st.GetVolume(ctx, "v1"); err != nil {
		t.Errorf("the peer's copy of member v1 went too: %v", err)
	}
}

// podRefusesLeftCopy: while the peer refuses to delete the copy v2 left
// there, the pod retries at debug, warns again once leftWarnEvery has
// passed (on the source's clock), and keeps the record; then the copy is
// freed at the peer, for the caller to see it removed.
func podRefusesLeftCopy(t *testing.T, src *source, tg *target, logs *testenv.Buffer) {
	t.Helper()
	ctx := t.Context()
	const retried, warned = "still there; retried at the next step", "the peer still refuses to remove the copy of a former pod member"
	waitLog := func(what string, n int) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for strings.Count(logs.String(), what) < n {
			if time.Now().After(deadline) {
				t.Fatalf("20s after the peer answers again, %q is not logged %d times:\n%s", what, n, logs.String())
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	waitLog(retried, 2)
	if strings.Contains(logs.String(), warned) {
		t.Fatalf("a refusal warned again before %s had passed:\n%s", replication.LeftWarnEvery, logs.String())
	}
	src.clk.Advance(replication.LeftWarnEvery)
	waitLog(warned, 1)
	if records := recordKeys(t, src.st, "pod-left"); len(records) != 1 {
		t.Fatalf("the records of refused copies: %q; want one", records)
	}
	if err := tg.st.DisconnectVolume(ctx, array.ConnectionSpec{Host: "h", Volume: "v2"}); err != nil {
		t.Fatal(err)
	}
}

// TestPodWriteEndsWithItsContext: a client write, or flush, waiting for a
// frozen peer ends when its request's context does, not after the pod's
// timeout: at the preferred array, waiting for the peer's
// acknowledgement, and at the peer, waiting for the preferred array's
// answer to what it forwarded. Neither is acknowledged; at the preferred array its range
// counts as dirty (the peer may or may not apply the copy still queued to
// it), and once the peer answers again both copies end equal.
func TestPodWriteEndsWithItsContext(t *testing.T) {
	const timeout = 5 * time.Second
	src := newSource(t, clock.NewFake(t0))
	ctx := t.Context()
	tg, fz := podBehindFreezer(t, src, timeout, "v1")
	peerWritable(t, tg, "v1", 0, bytes.Repeat([]byte{0x11}, 4096))
	fz.freeze()
	t.Cleanup(fz.thaw) // before the pod stops
	const patience = 200 * time.Millisecond
	for _, side := range []struct {
		name string
		st   *store.Store
		off  int64
	}{{"preferred array", src.st, 4 * mib}, {"peer", tg.st, 8 * mib}} {
		wctx, cancel := context.WithTimeout(ctx, patience)
		start := time.Now()
		err := side.st.WriteVolume(wctx, "v1", side.off, bytes.Repeat([]byte{0xab}, 256<<10), false)
		took := time.Since(start)
		cancel()
		t.Logf("the write at the %s ended %s after it began (its context's deadline %s, the pod's timeout %s): %v",
			side.name, took.Round(time.Millisecond), patience, timeout, err)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("a write at the %s whose context ended while the peer was frozen: %v; want its context's error", side.name, err)
		}
		if took > patience+time.Second {
			t.Fatalf("the write at the %s ended %s after it began; want soon after its context's deadline %s, not the pod's timeout %s",
				side.name, took, patience, timeout)
		}
		fctx, cancel := context.WithTimeout(ctx, patience)
		start = time.Now()
		err = side.st.FlushVolume(fctx, "v1")
		took = time.Since(start)
		cancel()
		t.Logf("a flush at the %s ended %s after it began: %v", side.name, took.Round(time.Millisecond), err)
		if !errors.Is(err, context.DeadlineExceeded) || took > patience+time.Second {
			t.Fatalf("a flush at the %s whose context ended while the peer was frozen: %v after %s; want its context's error soon after %s, not the pod's timeout %s",
				side.name, err, took.Round(time.Millisecond), patience, timeout)
		}
	}
	if r, err := src.eng.GetReplica(ctx, "pod"); err != nil || r.DirtyBytes < 256<<10 {
		t.Fatalf("the pod after a write its client gave up on: %d dirty bytes, %v; want its 256 KiB dirty", r.DirtyBytes, err)
	}
	fz.thaw()
	syncNow(t, src)
	same(t, src, tg, "v1")
}

// TestPodRecordsGoWithIt: a pod that is deleted takes its records with
// it: the blocks its peer missed, and the copy of a former member that
// the peer was not there to delete, both kept while the peer was away.
func TestPodRecordsGoWithIt(t *testing.T) {
	src := newSource(t, clock.NewFake(t0))
	ctx := t.Context()
	_, fz := podBehindFreezer(t, src, time.Second, "v1", "v2")
	fz.freeze()
	t.Cleanup(fz.thaw) // before the pod stops
	if err := src.st.WriteVolume(ctx, "v1", 0, bytes.Repeat([]byte{7}, 4096), false); err != nil {
		t.Fatal(err)
	}
	if _, err := src.st.RemoveMembers(ctx, "cinder-pod", []string{"v2"}); err != nil {
		t.Fatal(err)
	}
	records := func(bucket string) []string { return recordKeys(t, src.st, bucket) }
	for deadline := time.Now().Add(10 * time.Second); !slices.Contains(records("pod-dirty"), "pod/v1") || !slices.Contains(records("pod-left"), "pod/v2"); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the pod never recorded the block its peer missed or the copy it left: %q, %q", records("pod-dirty"), records("pod-left"))
		}
	}
	if err := src.eng.DeleteReplica(ctx, "pod", false); err != nil {
		t.Fatal(err)
	}
	for _, bucket := range []string{"pod-dirty", "pod-left"} {
		if keys := records(bucket); len(keys) != 0 {
			t.Errorf("records of the deleted pod left behind in %s: %q", bucket, keys)
		}
	}
}
