package replication_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/volrep/volrep/array"
	"github.com/volrep/volrep/array/client"
	"github.com/volrep/volrep/array/replication"
	"github.com/volrep/volrep/clock"
	"github.com/volrep/volrep/errdefs"
	"github.com/volrep/volrep/internal/testenv"
	"github.com/volrep/volrep/server"
)

func newPod(t testing.TB, timeout time.Duration) (*source, *target) {
	t.Helper()
	src, tg := newSource(t, clock.NewFake(t0)), newTarget(t)
	podOn(t, src, tg, timeout)
	return src, tg
}

// podOn makes the pod "pod" of src's volume v1 (1 MiB written) on tg, and
// an unreplicated v2, and waits until the pod is in sync.
func podOn(t testing.TB, src *source, tg *target, timeout time.Duration) {
	t.Helper()
	ctx := t.Context()
	if _, err := src.st.CreateGroup(ctx, "cinder-pod", "cinder", nil); err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{"v1", "v2"} {
		if _, err := src.st.CreateVolume(ctx, array.VolumeSpec{Name: v, Pool: "cinder", SizeBytes: 16 * mib}); err != nil {
			t.Fatal(err)
		}
	}
	if err := src.st.WriteVolume(ctx, "v1", 0, bytes.Repeat([]byte{1}, mib), false); err != nil {
		t.Fatal(err)
	}
	if _, err := src.st.AddMembers(ctx, "cinder-pod", []string{"v1"}); err != nil {
		t.Fatal(err)
	}
	protect(t, src, tg, "pod", array.ReplicaSpec{Kind: array.KindGroup, Local: "cinder-pod", Type: array.TypeSync, SyncTimeout: timeout})
	syncNow(t, src)
}

// podGroup makes the group "cinder-pod" of src with one member, v1 (16 MiB).
func podGroup(t testing.TB, src *source) { podGroupOf(t, src, "v1") }

// podGroupOf is podGroup with the member named vol.
func podGroupOf(t testing.TB, src *source, vol string) {
	t.Helper()
	ctx := t.Context()
	if _, err := src.st.CreateGroup(ctx, "cinder-pod", "cinder", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := src.st.CreateVolume(ctx, array.VolumeSpec{Name: vol, Pool: "cinder", SizeBytes: 16 * mib}); err != nil {
		t.Fatal(err)
	}
	if _, err := src.st.AddMembers(ctx, "cinder-pod", []string{vol}); err != nil {
		t.Fatal(err)
	}
}

func syncNow(t testing.TB, src *source) array.Replica {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	r, err := src.eng.SyncReplica(ctx, "pod", true)
	if err != nil {
		t.Fatalf("waiting for the pod to be in sync: %v", err)
	}
	return r
}

// same compares the whole of vol at both arrays, its size included.
func same(t testing.TB, src *source, tg *target, vol string) {
	t.Helper()
	va, err := src.st.GetVolume(t.Context(), vol)
	if err != nil {
		t.Fatal(err)
	}
	vb, err := tg.st.GetVolume(t.Context(), vol)
	if err != nil {
		t.Fatal(err)
	}
	if va.SizeBytes != vb.SizeBytes {
		t.Fatalf("%s is %d bytes at the preferred array and %d at the peer", vol, va.SizeBytes, vb.SizeBytes)
	}
	a, b := make([]byte, va.SizeBytes), make([]byte, vb.SizeBytes)
	if err := src.st.ReadVolume(t.Context(), vol, 0, a); err != nil {
		t.Fatal(err)
	}
	if err := tg.st.ReadVolume(t.Context(), vol, 0, b); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a, b) {
		for i := range a {
			if a[i] != b[i] {
				t.Fatalf("%s differs between the two sides first at byte %d", vol, i)
			}
		}
	}
}

// TestPodMirrorsEveryWrite: once in sync, a write is on the peer when it
// is acknowledged, with no snapshot in between; members added later are
// copied and mirrored too.
func TestPodMirrorsEveryWrite(t *testing.T) {
	src, tg := newPod(t, 2*time.Second)
	ctx := t.Context()
	same(t, src, tg, "v1") // the initial copy
	for i := 0; i < 50; i++ {
		off := int64(i) * 12345
		p := bytes.Repeat([]byte{byte(i + 2)}, 5000)
		if err := src.st.WriteVolume(ctx, "v1", off, p, false); err != nil {
			t.Fatal(err)
		}
		got := make([]byte, len(p))
		if err := tg.st.ReadVolume(ctx, "v1", off, got); err != nil || !bytes.Equal(got, p) {
			t.Fatalf("write %d is not on the peer when acknowledged (%v)", i, err)
		}
	}
	// The peer's copy takes client writes only through this array, which
	// sequences them: acknowledged, one is here too.
	peerWritable(t, tg, "v1", 0, []byte{1})
	if got := make([]byte, 1); src.st.ReadVolume(ctx, "v1", 0, got) != nil || got[0] != 1 {
		t.Fatal("a write the peer's copy acknowledged is not on the preferred array")
	}
	// A volume joining the pod is copied, then mirrored.
	if err := src.st.WriteVolume(ctx, "v2", 3*mib, bytes.Repeat([]byte{9}, mib), false); err != nil {
		t.Fatal(err)
	}
	if _, err := src.st.AddMembers(ctx, "cinder-pod", []string{"v2"}); err != nil {
		t.Fatal(err)
	}
	r := syncNow(t, src)
	if r.State != array.StateActive || r.PeerState != array.PeerOnline || r.SyncState != array.SyncInSync {
		t.Fatalf("pod after a new member: %+v", r)
	}
	if err := src.st.WriteVolume(ctx, "v2", 0, []byte("mirrored"), false); err != nil {
		t.Fatal(err)
	}
	same(t, src, tg, "v2")
}

// TestPodFaultDrill writes continuously, takes the peer away, checks the
// writes go on after the timeout, brings the peer back and checks the
// resync sends only the dirty blocks and both sides end up equal.
func TestPodFaultDrill(t *testing.T) {
	const timeout = 300 * time.Millisecond
	src, tg := newPod(t, timeout)
	ctx := t.Context()
	var stop atomic.Bool
	var wg sync.WaitGroup
	var acked, slow atomic.Int64
	wg.Add(1)
	go func() {
		defer wg.Done()
		r := rand.New(rand.NewPCG(3, 4))
		for i := 0; !stop.Load(); i++ {
			off := r.Int64N(16*mib/4096) * 4096
			start := time.Now()
			if err := src.st.WriteVolume(ctx, "v1", off, bytes.Repeat([]byte{byte(i)}, 4096), false); err != nil {
				t.Error(err)
				return
			}
			if time.Since(start) > timeout+time.Second {
				slow.Add(1)
			}
			acked.Add(1)
			time.Sleep(time.Millisecond)
		}
	}()
	time.Sleep(200 * time.Millisecond)
	tg.halt()
	// Writes keep being acknowledged once the timeout has passed.
	before := acked.Load()
	time.Sleep(timeout + 700*time.Millisecond)
	if acked.Load() <= before+10 {
		t.Fatalf("writes stopped while the peer was gone: %d then %d", before, acked.Load())
	}
	r, _ := src.eng.GetReplica(ctx, "pod")
	if r.PeerState != array.PeerOffline || r.State != array.StateDegraded || r.DirtyBytes == 0 {
		t.Fatalf("with the peer gone: %+v", r)
	}
	if r.MirroredBytes == 0 {
		t.Fatal("no write counts as mirrored, though the peer took writes for 200 ms")
	}
	time.Sleep(100 * time.Millisecond)
	stop.Store(true)
	wg.Wait()
	if r2, _ := src.eng.GetReplica(ctx, "pod"); r2.MirroredBytes != r.MirroredBytes {
		t.Fatalf("with the peer gone, mirrored bytes grew from %d to %d", r.MirroredBytes, r2.MirroredBytes)
	}
	if slow.Load() > 0 {
		t.Fatalf("%d writes waited longer than the timeout", slow.Load())
	}
	if err := src.st.FlushVolume(ctx, "v1"); err != nil {
		t.Fatal(err)
	}
	r, _ = src.eng.GetReplica(ctx, "pod")
	dirty := r.DirtyBytes
	tg.start()
	r = syncNow(t, src)
	t.Logf("%d writes acknowledged; %d dirty bytes; the resync sent %d bytes (%.2fx)", acked.Load(), dirty, r.LastResyncBytes, float64(r.LastResyncBytes)/float64(dirty))
	if r.LastResyncBytes > dirty*11/10 || r.LastResyncBytes < dirty {
		t.Fatalf("the resync sent %d bytes for %d dirty", r.LastResyncBytes, dirty)
	}
	if r.DirtyBytes != 0 || r.PeerState != array.PeerOnline {
		t.Fatalf("after the resync: %+v", r)
	}
	same(t, src, tg, "v1")
}

// TestPodChangeType turns a pod async and back without a full copy.
func TestPodChangeType(t *testing.T) {
	src, tg := newPod(t, 2*time.Second)
	ctx := t.Context()
	r, err := src.eng.ChangeReplicaType(ctx, "pod", array.TypeAsync)
	if err != nil || r.Type != array.TypeAsync {
		t.Fatalf("to async: %+v, %v", r, err)
	}
	if err := src.st.WriteVolume(ctx, "v1", 5*mib, bytes.Repeat([]byte{7}, 2*mib), false); err != nil {
		t.Fatal(err)
	}
	r, err = src.eng.SyncReplica(ctx, "pod", true)
	if err != nil || r.LastSyncBytes > 3*mib {
		t.Fatalf("async cycle after sync sent %d bytes (want a delta of about 2 MiB): %v", r.LastSyncBytes, err)
	}
	if err := src.st.WriteVolume(ctx, "v1", 9*mib, bytes.Repeat([]byte{8}, mib), false); err != nil {
		t.Fatal(err)
	}
	sentBefore := r.TotalBytesSent
	if r, err = src.eng.ChangeReplicaType(ctx, "pod", array.TypeSync); err != nil || r.Type != array.TypeSync {
		t.Fatalf("to sync: %+v, %v", r, err)
	}
	r = syncNow(t, src)
	same(t, src, tg, "v1")
	_ = sentBefore
	if err := src.st.WriteVolume(ctx, "v1", 0, []byte("after"), false); err != nil {
		t.Fatal(err)
	}
	same(t, src, tg, "v1")
}

// TestPodFallsBackToGRPCWhenTheStreamPortIsShut: a peer whose raw stream
// port cannot be reached still gets every write mirrored, over gRPC, and
// the preferred array says why in its log.
func TestPodFallsBackToGRPCWhenTheStreamPortIsShut(t *testing.T) {
	var logs testenv.Buffer
	src := newSource(t, clock.NewFake(t0), func(o *replication.Options) {
		o.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelWarn}))
	})
	tg := newTargetWith(t, false)
	podOn(t, src, tg, 2*time.Second)
	ctx := t.Context()
	var written int64
	for i := 0; i < 20; i++ {
		p := bytes.Repeat([]byte{byte(i + 1)}, 8192)
		if err := src.st.WriteVolume(ctx, "v1", int64(i)*40000, p, false); err != nil {
			t.Fatal(err)
		}
		written += int64(len(p))
	}
	r, err := src.eng.GetReplica(ctx, "pod")
	if err != nil {
		t.Fatal(err)
	}
	if r.MirroredBytes < written || r.DirtyBytes != 0 || r.SyncState != array.SyncInSync {
		t.Fatalf("over gRPC the pod mirrored %d of %d bytes, %d dirty, %s", r.MirroredBytes, written, r.DirtyBytes, r.SyncState)
	}
	same(t, src, tg, "v1")
	if !strings.Contains(logs.String(), "stream port cannot be reached") {
		t.Fatalf("the preferred array did not log why its pod streams use gRPC; its log:\n%s", logs.String())
	}
}

// TestConcurrentCreationsOfOnePodMakeOnePod: a backend's start-up and its
// first CreateVolume both ask for the pod's replica at once. Every call
// succeeds, one replica (and one pod) is made, and writes mirrored after
// it are on the peer. Two pods for one name each sent the peer an
// initial copy, and the second dropped the writes the first had
// mirrored there (TestSyncFaultDrill's lost blocks).
func TestConcurrentCreationsOfOnePodMakeOnePod(t *testing.T) {
	var logs testenv.Buffer
	src := newSource(t, clock.NewFake(t0), func(o *replication.Options) { o.Logger = slog.New(slog.NewTextHandler(&logs, nil)) })
	tg := newTarget(t)
	ctx := t.Context()
	podGroup(t, src)
	if _, err := src.eng.CreateLink(ctx, array.LinkSpec{Name: "site-b", Address: tg.addr, Token: token}); err != nil {
		t.Fatal(err)
	}
	spec := array.ReplicaSpec{Name: "pod", Link: "site-b", RemotePool: "replicas", Kind: array.KindGroup, Local: "cinder-pod",
		Type: array.TypeSync, SyncTimeout: 2 * time.Second}
	const callers = 8
	errs := make(chan error, callers)
	for range callers {
		go func() {
			_, err := src.eng.ReplicateEntity(ctx, spec)
			errs <- err
		}()
	}
	for range callers {
		if err := <-errs; err != nil {
			t.Fatalf("a concurrent ReplicateEntity of the same spec: %v", err)
		}
	}
	syncNow(t, src)
	if n := strings.Count(logs.String(), `msg="replica created"`); n != 1 {
		t.Fatalf("%d concurrent calls created the replica %d times, want once", callers, n)
	}
	if err := src.st.WriteVolume(ctx, "v1", 3*mib, bytes.Repeat([]byte{7}, mib), false); err != nil {
		t.Fatal(err)
	}
	same(t, src, tg, "v1")
}

// TestSyncReplicaDuringThePodsCreation: a sync replica is visible a moment
// before its pod runs. SyncReplica in that moment (a volume created while
// the backend's start-up creates the pod) waits for the pod, not for the
// async scheduler, which never answers a sync replica.
func TestSyncReplicaDuringThePodsCreation(t *testing.T) {
	src, tg := newSource(t, clock.NewFake(t0)), newTarget(t)
	ctx := t.Context()
	podGroup(t, src)
	// Each member lengthens the pod's start, and so that moment.
	var more []string
	for i := range 63 {
		name := fmt.Sprintf("m%d", i)
		if _, err := src.st.CreateVolume(ctx, array.VolumeSpec{Name: name, Pool: "cinder", SizeBytes: mib}); err != nil {
			t.Fatal(err)
		}
		more = append(more, name)
	}
	if _, err := src.st.AddMembers(ctx, "cinder-pod", more); err != nil {
		t.Fatal(err)
	}
	if _, err := src.eng.CreateLink(ctx, array.LinkSpec{Name: "site-b", Address: tg.addr, Token: token}); err != nil {
		t.Fatal(err)
	}
	created := make(chan error, 1)
	go func() {
		_, err := src.eng.ReplicateEntity(ctx, array.ReplicaSpec{Name: "pod", Link: "site-b", RemotePool: "replicas", Kind: array.KindGroup,
			Local: "cinder-pod", Type: array.TypeSync, SyncTimeout: 2 * time.Second})
		created <- err
	}()
	for calls := 1; ; calls++ {
		wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		start := time.Now()
		rep, err := src.eng.SyncReplica(wctx, "pod", true)
		cancel()
		if errdefs.IsNotFound(err) {
			runtime.Gosched()
			continue
		}
		if err != nil {
			t.Fatalf("SyncReplica, call %d, after %s: %v", calls, time.Since(start), err)
		}
		if rep.PeerState != array.PeerOnline || rep.DirtyBytes != 0 {
			t.Fatalf("SyncReplica returned before the pod was in sync: %+v", rep)
		}
		t.Logf("SyncReplica found the replica on call %d and returned in sync after %s", calls, time.Since(start))
		break
	}
	if err := <-created; err != nil {
		t.Fatal(err)
	}
}

// TestPodCopyAtThePeer: the peer reports the pod as it sees it
// (GetPodCopy over its API): in sync and taking writes through the
// preferred array, then, once the preferred array stops mirroring to it,
// offline with its writes stopped.
func TestPodCopyAtThePeer(t *testing.T) {
	src, tg := newPod(t, 2*time.Second)
	ctx := t.Context()
	cc, err := server.Dial(tg.addr, token)
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	peer := client.NewReplication(cc)
	copyIs := func(what string, ok func(array.PodCopy) bool) array.PodCopy {
		t.Helper()
		var c array.PodCopy
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			if c, err = peer.GetPodCopy(ctx, "pod"); err == nil && ok(c) {
				return c
			}
		}
		t.Fatalf("the peer's copy of the pod is not %s: %+v, %v", what, c, err)
		return c
	}
	c := copyIs("online", func(c array.PodCopy) bool { return c.State == array.PodOnline })
	if c.Writes != array.WritesOnline || !slices.Equal(c.Volumes, []string{"v1"}) || c.MediatorState != "" || c.Message == "" {
		t.Fatalf("in sync, the peer says %+v", c)
	}
	if _, err := peer.GetPodCopy(ctx, "other"); !errdefs.IsNotFound(err) || !strings.Contains(err.Error(), "has no copies on this array") {
		t.Fatalf("a pod the peer never heard of: %v", err)
	}
	if _, err := peer.GetPodCopy(ctx, "a/b"); !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), "pod") {
		t.Fatalf("an invalid pod name: %v", err)
	}
	// Async now: the preferred array's pod, and its streams, stop.
	if _, err := src.eng.ChangeReplicaType(ctx, "pod", array.TypeAsync); err != nil {
		t.Fatal(err)
	}
	c = copyIs("offline", func(c array.PodCopy) bool { return c.State == array.PodOffline })
	if c.Writes != array.WritesStopped || !strings.Contains(c.Message, "does not reach this array") {
		t.Fatalf("with the preferred array gone, the peer says %+v", c)
	}
	// The preferred array said, before its streams closed, that the copy
	// is the pod's no more: it is a plain replica (an optimized path, for
	// a DR test's reads), now and after a restart.
	wantPath(t, "the peer's copy of a pod made async", openVol(t, tg.st, "v1"), array.Path{State: array.PathOptimized})
	// The peer confirmed it (a Forward stream that states no copies, ended
	// by the peer once applied), so nothing stays owed to it.
	waitNoneOwed(t, src.st, "to a peer that is up")
	// Restarted, the peer has not heard from the preferred array: it
	// still knows its copies of the pod, by their label.
	tg.halt()
	tg.start()
	c = copyIs("offline after a restart", func(c array.PodCopy) bool { return c.State == array.PodOffline })
	if c.Writes != array.WritesStopped || !slices.Equal(c.Volumes, []string{"v1"}) || !strings.Contains(c.Message, "since it started") {
		t.Fatalf("restarted, the peer says %+v", c)
	}
	wantPath(t, "the restarted peer's copy of a pod made async", openVol(t, tg.st, "v1"), array.Path{State: array.PathOptimized})
}
