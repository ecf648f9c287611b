package replication_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/volrep/volrep/array"
	"github.com/volrep/volrep/array/mediator"
	"github.com/volrep/volrep/array/replication"
	"github.com/volrep/volrep/clock"
	"github.com/volrep/volrep/errdefs"
	"github.com/volrep/volrep/internal/etcdtest"
)

const mediatorTTL = 2 * time.Second

// newMediatedPod is newPod with a mediator (a real etcd) and a state hook.
func newMediatedPod(t *testing.T, timeout time.Duration, states *podStates) (*source, *target, *etcdtest.Server) {
	t.Helper()
	return newMediatedPodWith(t, timeout, states, false)
}

// newMediatedPodWith is newMediatedPod for a pod that prefers its peer at
// a partition when preferPeer is set.
func newMediatedPodWith(t *testing.T, timeout time.Duration, states *podStates, preferPeer bool) (*source, *target, *etcdtest.Server) {
	t.Helper()
	etcd := etcdtest.Start(t, "", "")
	src, tg := mediatedPodAt(t, etcd.Endpoint(), newTarget(t), timeout, states, preferPeer)
	return src, tg, etcd
}

// mediatedPodAt is newMediatedPodWith for a mediator already running at
// endpoint, and the peer tg.
func mediatedPodAt(t *testing.T, endpoint string, tg *target, timeout time.Duration, states *podStates, preferPeer bool) (*source, *target) {
	t.Helper()
	return mediatedPodTTL(t, endpoint, tg, timeout, mediatorTTL, states, preferPeer)
}

// mediatedPodTTL is mediatedPodAt with a lease time of ttl.
func mediatedPodTTL(t *testing.T, endpoint string, tg *target, timeout, ttl time.Duration, states *podStates, preferPeer bool) (*source, *target) {
	t.Helper()
	src := newSource(t, clock.NewFake(t0), func(o *replication.Options) {
		o.MediatorTTL = ttl
		o.OnPodState = states.add
	})
	podGroup(t, src)
	protect(t, src, tg, "pod", array.ReplicaSpec{Kind: array.KindGroup, Local: "cinder-pod", Type: array.TypeSync,
		SyncTimeout: timeout, PodMediator: []string{endpoint}, PreferPeer: preferPeer})
	syncNow(t, src)
	return src, tg
}

type podStates struct {
	mu   sync.Mutex
	seen []string
}

func (s *podStates) add(_, state string) { s.mu.Lock(); s.seen = append(s.seen, state); s.mu.Unlock() }

func (s *podStates) has(state string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, x := range s.seen {
		if x == state {
			return true
		}
	}
	return false
}

func replicaUntil(t *testing.T, src *source, within time.Duration, what string, ok func(array.Replica) bool) array.Replica {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		r, err := src.eng.GetReplica(t.Context(), "pod")
		if err != nil {
			t.Fatal(err)
		}
		if ok(r) {
			return r
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s; pod %s, peer %s, mediator %s held %v (%s), %s", what, within,
				r.PodState, r.PeerState, r.MediatorState, r.MediatorHeld, r.MediatorMessage, r.Message)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// writer writes 4 KiB blocks in turn until stopped and reports when
// writes began to fail and how many were acknowledged.
type writer struct {
	stop          atomic.Bool
	acked, failed atomic.Int64
	firstFail     atomic.Int64 // unix nanos
	wg            sync.WaitGroup
}

func startWriter(t *testing.T, src *source) *writer {
	w := &writer{}
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		for i := 0; !w.stop.Load(); i++ {
			off := int64(i%4096) * 4096
			err := src.st.WriteVolume(context.Background(), "v1", off, bytes.Repeat([]byte{byte(i)}, 4096), false)
			switch {
			case err == nil:
				w.acked.Add(1)
			case errdefs.IsUnavailable(err):
				w.firstFail.CompareAndSwap(0, time.Now().UnixNano())
				w.failed.Add(1)
			default:
				t.Errorf("write: %v", err)
				return
			}
			time.Sleep(2 * time.Millisecond)
		}
	}()
	return w
}

func (w *writer) end() { w.stop.Store(true); w.wg.Wait() }

// TestPodMediatorDrill: with a mediator, the primary carries on without
// its peer while it holds the pod's key; cut from both the peer and the
// mediator it stops (its writes fail at once and change nothing), and it
// resumes by itself when either is back, resyncing exactly the dirty set.
func TestPodMediatorDrill(t *testing.T) {
	const timeout = 500 * time.Millisecond
	var states podStates
	src, tg, etcd := newMediatedPod(t, timeout, &states)
	ctx := t.Context()
	r := replicaUntil(t, src, 10*time.Second, "the primary holds the pod's key", func(r array.Replica) bool { return r.MediatorHeld })
	mname := mediatorName(t, src, r)
	if r.PodState != array.PodOnline || r.MediatorState != array.MediatorHealthy {
		t.Fatalf("in sync with a healthy mediator: pod %s, mediator %s", r.PodState, r.MediatorState)
	}
	// The path a host's multipath sees (ALUA, through the iSCSI target).
	h, err := src.st.OpenVolume(ctx, "v1")
	if err != nil {
		t.Fatal(err)
	}
	if p := h.Path(); p != (array.Path{State: array.PathOptimized, Preferred: true}) {
		t.Fatalf("the pod's primary reports %v (preferred %v), want active/optimized and preferred", p.State, p.Preferred)
	}

	// 1. The mediator alone goes away: nothing changes, writes stay mirrored.
	etcd.Stop()
	w := startWriter(t, src)
	time.Sleep(mediatorTTL + time.Second)
	w.end()
	if w.failed.Load() > 0 || w.acked.Load() == 0 {
		t.Fatalf("with only the mediator gone: %d writes failed, %d acknowledged", w.failed.Load(), w.acked.Load())
	}
	r = replicaUntil(t, src, 5*time.Second, "the mediator is reported unreachable", func(r array.Replica) bool {
		return r.MediatorState == array.MediatorUnreachable
	})
	if r.PodState != array.PodOnline || r.DirtyBytes != 0 {
		t.Fatalf("with only the mediator gone the pod is %s with %d dirty bytes", r.PodState, r.DirtyBytes)
	}
	etcd.Restart()
	replicaUntil(t, src, 10*time.Second, "the key is held again", func(r array.Replica) bool { return r.MediatorHeld })

	// 2. The peer alone goes away: the primary holds the key and carries on.
	w = startWriter(t, src)
	time.Sleep(100 * time.Millisecond)
	tg.halt()
	time.Sleep(timeout + time.Second)
	before := w.acked.Load()
	time.Sleep(500 * time.Millisecond)
	if w.acked.Load() <= before || w.failed.Load() > 0 {
		t.Fatalf("with only the peer gone: %d acknowledged in 500 ms, %d failed", w.acked.Load()-before, w.failed.Load())
	}
	r = replicaUntil(t, src, 5*time.Second, "degraded, holding the key", func(r array.Replica) bool {
		return r.PodState == array.PodDegraded && r.MediatorHeld && r.DirtyBytes > 0
	})
	// It acknowledged writes the peer lacks: its mark stands at the
	// mediator, so the peer could not take the pod over.
	med, err := mediator.New([]string{etcd.Endpoint()}, mediator.Options{TTL: mediatorTTL})
	if err != nil {
		t.Fatal(err)
	}
	defer med.Close()
	info, err := src.st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if ahead, err := med.Ahead(ctx, mname); err != nil || ahead != info.ID {
		t.Fatalf("the mark while the primary carries on alone: %q, %v; want %q", ahead, err, info.ID)
	}

	// 3. Then the mediator too: the pod stops within the sync timeout
	// plus the lease time.
	cut := time.Now()
	etcd.Stop()
	deadline := time.Now().Add(timeout + mediatorTTL + 2*time.Second)
	for w.firstFail.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if w.firstFail.Load() == 0 {
		t.Fatalf("writes still succeed %s after losing both the peer and the mediator", time.Since(cut))
	}
	stopAfter := time.Unix(0, w.firstFail.Load()).Sub(cut)
	t.Logf("writes failed %s after the mediator was cut too (sync timeout %s, lease %s)", stopAfter, timeout, mediatorTTL)
	if stopAfter > timeout+mediatorTTL+200*time.Millisecond {
		t.Errorf("the pod stopped %s after the cut; want within %s", stopAfter, timeout+mediatorTTL)
	}
	time.Sleep(300 * time.Millisecond)
	w.end()
	r = replicaUntil(t, src, 5*time.Second, "stopped by the mediator", func(r array.Replica) bool {
		return r.PodState == array.PodStoppedByMediator
	})
	if r.MediatorHeld || r.MediatorState != array.MediatorUnreachable || r.State != array.StateDegraded {
		t.Fatalf("stopped pod: held %v, mediator %s, state %s", r.MediatorHeld, r.MediatorState, r.State)
	}
	dirtyAtStop := r.DirtyBytes
	if p := h.Path(); p.State != array.PathUnavailable {
		t.Fatalf("a pod its mediator stopped reports %v to hosts, want unavailable", p.State)
	}
	// A stopped pod refuses writes at once and changes nothing here.
	old := make([]byte, 4096)
	if err := src.st.ReadVolume(ctx, "v1", 15*mib, old); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	for i := range 20 {
		err := src.st.WriteVolume(ctx, "v1", 15*mib, bytes.Repeat([]byte{0xEE}, 4096), false)
		if !errdefs.IsUnavailable(err) {
			t.Fatalf("write %d to a stopped pod: %v, want Unavailable", i, err)
		}
	}
	if took := time.Since(start); took > 200*time.Millisecond {
		t.Errorf("20 refused writes took %s; a stopped pod fails them at once", took)
	}
	got := make([]byte, 4096)
	if err := src.st.ReadVolume(ctx, "v1", 15*mib, got); err != nil || !bytes.Equal(got, old) {
		t.Fatalf("a refused write changed the primary's copy (%v)", err)
	}
	if r2, _ := src.eng.GetReplica(ctx, "pod"); r2.DirtyBytes != dirtyAtStop {
		t.Fatalf("refused writes were recorded: dirty %d → %d bytes", dirtyAtStop, r2.DirtyBytes)
	}

	// 4. The mediator comes back (the peer still away): the pod resumes
	// on its own, carrying on without the peer.
	etcd.Restart()
	back := time.Now()
	replicaUntil(t, src, 10*time.Second, "degraded again once the mediator is back", func(r array.Replica) bool {
		return r.PodState == array.PodDegraded && r.MediatorHeld
	})
	t.Logf("writes resumed %s after the mediator came back", time.Since(back))
	if err := src.st.WriteVolume(ctx, "v1", 15*mib, bytes.Repeat([]byte{0xAB}, 4096), false); err != nil {
		t.Fatalf("a write after the mediator came back: %v", err)
	}

	// 5. Both gone again, then the peer comes back alone: the pod resumes
	// and resyncs exactly what it recorded.
	etcd.Stop()
	replicaUntil(t, src, timeout+mediatorTTL+2*time.Second, "stopped again", func(r array.Replica) bool {
		return r.PodState == array.PodStoppedByMediator
	})
	if err := src.st.FlushVolume(ctx, "v1"); !errdefs.IsUnavailable(err) {
		t.Fatalf("flush on a stopped pod: %v, want Unavailable", err)
	}
	r, _ = src.eng.GetReplica(ctx, "pod")
	dirty := r.DirtyBytes
	tg.start()
	r = syncNow(t, src)
	t.Logf("dirty %d bytes; the resync sent %d bytes", dirty, r.LastResyncBytes)
	if r.LastResyncBytes != dirty {
		t.Errorf("the resync sent %d bytes for %d dirty", r.LastResyncBytes, dirty)
	}
	if r.PodState != array.PodOnline || r.DirtyBytes != 0 {
		t.Fatalf("after healing: pod %s, %d dirty", r.PodState, r.DirtyBytes)
	}
	if p := h.Path(); p.State != array.PathOptimized {
		t.Fatalf("after healing the primary reports %v, want active/optimized", p.State)
	}
	same(t, src, tg, "v1")
	// In sync again, the primary clears its mark once the mediator is back.
	etcd.Restart()
	deadline = time.Now().Add(15 * time.Second)
	for {
		ahead, err := med.Ahead(ctx, mname)
		if err == nil && ahead == "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the mark in sync, with the mediator back: %q, %v; want none", ahead, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	got = make([]byte, 4096)
	if err := tg.st.ReadVolume(ctx, "v1", 15*mib, got); err != nil || !bytes.Equal(got, bytes.Repeat([]byte{0xAB}, 4096)) {
		t.Fatalf("the write taken while the peer was away is not on the peer (%v)", err)
	}
	for _, s := range []string{array.PodDegraded, array.PodStoppedByMediator, array.PodResyncing, array.PodOnline} {
		if !states.has(s) {
			t.Errorf("no state change to %s was reported (saw %v)", s, states.seen)
		}
	}
	etcd.Restart()
}

// TestPodMediatorFromArrayDefault: a pod whose spec names no mediator uses
// the array's (Options.PodMediator, the [array:NAME] section's key), and
// gives its key up when the pod is deleted.
func TestPodMediatorFromArrayDefault(t *testing.T) {
	etcd := etcdtest.Start(t, "", "")
	src := newSource(t, clock.NewFake(t0), func(o *replication.Options) {
		o.PodMediator, o.MediatorTTL = []string{etcd.Endpoint()}, mediatorTTL
	})
	tg := newTarget(t)
	ctx := t.Context()
	if _, err := src.st.CreateVolume(ctx, array.VolumeSpec{Name: "v1", Pool: "cinder", SizeBytes: 4 * mib}); err != nil {
		t.Fatal(err)
	}
	protect(t, src, tg, "pod", array.ReplicaSpec{Kind: array.KindVolume, Local: "v1", Type: array.TypeSync, SyncTimeout: time.Second})
	r := replicaUntil(t, src, 10*time.Second, "the pod holds the array's mediator's key", func(r array.Replica) bool { return r.MediatorHeld })
	mname := mediatorName(t, src, r)
	if len(r.PodMediator) != 0 || r.MediatorState != array.MediatorHealthy {
		t.Fatalf("spec mediator %v, state %s", r.PodMediator, r.MediatorState)
	}
	// The async replicas have no mediator to name.
	if _, err := src.eng.ReplicateEntity(ctx, array.ReplicaSpec{Name: "a", Kind: array.KindVolume, Local: "v1", Link: "site-b", RemotePool: "replicas",
		RemoteEntity: "v1-async", Type: array.TypeAsync, PodMediator: []string{etcd.Endpoint()}}); !errdefs.IsInvalidArgument(err) {
		t.Fatalf("an async replica with a mediator: %v, want InvalidArgument", err)
	}
	cli, err := mediator.New([]string{etcd.Endpoint()}, mediator.Options{TTL: mediatorTTL})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	info, err := src.st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if h, err := cli.Holder(ctx, mname); err != nil || h != info.ID {
		t.Fatalf("the pod's key is held by %q (%v); want the primary, %q", h, err, info.ID)
	}
	if err := src.eng.DeleteReplica(ctx, "pod", false); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		h, err := cli.Holder(ctx, mname)
		if err == nil && h == "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the deleted pod's key is still held by %q (%v)", h, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestPodPreferringItsPeerYields: a pod that prefers its peer at a
// partition gives the pod's key up when it loses the in-sync peer, so its
// writes fail at once rather than being acknowledged without the peer;
// when the peer does not take the key within the lease time (it is down,
// not cut off), the pod takes the key back and carries on alone.
func TestPodPreferringItsPeerYields(t *testing.T) {
	const timeout = 500 * time.Millisecond
	var states podStates
	src, tg, etcd := newMediatedPodWith(t, timeout, &states, true)
	ctx := t.Context()
	r := replicaUntil(t, src, 10*time.Second, "the primary holds the pod's key", func(r array.Replica) bool { return r.MediatorHeld })
	mname := mediatorName(t, src, r)
	if !r.PreferPeer {
		t.Fatal("the replica does not report that it prefers its peer")
	}
	med, err := mediator.New([]string{etcd.Endpoint()}, mediator.Options{TTL: mediatorTTL})
	if err != nil {
		t.Fatal(err)
	}
	defer med.Close()
	w := startWriter(t, src)
	time.Sleep(100 * time.Millisecond)
	cut := time.Now()
	tg.halt()
	// The first write that waits for the peer fails, and the key is free
	// for the peer.
	deadline := time.Now().Add(timeout + 2*time.Second)
	for w.firstFail.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if w.firstFail.Load() == 0 {
		t.Fatalf("writes still succeed %s after the peer went, with the pod preferring it", time.Since(cut))
	}
	failedAfter := time.Unix(0, w.firstFail.Load()).Sub(cut)
	r = replicaUntil(t, src, time.Second, "stopped, having given the key up", func(r array.Replica) bool {
		return r.PodState == array.PodStoppedByMediator && strings.Contains(r.MediatorMessage, "gave the pod's key up")
	})
	if err := src.st.WriteVolume(ctx, "v1", 15*mib, bytes.Repeat([]byte{0xEE}, 4096), false); !errdefs.IsUnavailable(err) ||
		!strings.Contains(err.Error(), "gave the pod's key up") {
		t.Fatalf("a write while the primary yields: %v, want UNAVAILABLE naming the yield", err)
	}
	// The claim's goroutine revokes the lease right after the yield.
	for deadline := time.Now().Add(time.Second); ; time.Sleep(10 * time.Millisecond) {
		h, err := med.Holder(ctx, mname)
		if err == nil && h == "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the key's holder a second after the primary yielded: %q, %v; want none", h, err)
		}
	}
	// Nobody took the key: the primary takes it back and carries on.
	r = replicaUntil(t, src, mediatorTTL+3*time.Second, "carrying on alone once the yield is over", func(r array.Replica) bool {
		return r.PodState == array.PodDegraded && r.MediatorHeld
	})
	before := w.acked.Load()
	time.Sleep(300 * time.Millisecond)
	w.end()
	if w.acked.Load() <= before {
		t.Fatal("no write was acknowledged once the primary carried on alone")
	}
	t.Logf("writes failed %s after the cut; the primary carried on alone %s after it", failedAfter.Round(time.Millisecond), time.Since(cut).Round(time.Millisecond))
	info, err := src.st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if ahead, err := med.Ahead(ctx, mname); err != nil || ahead != info.ID {
		t.Fatalf("the mark while the primary carries on alone: %q, %v; want %q", ahead, err, info.ID)
	}
	tg.start()
	r = syncNow(t, src)
	if r.PodState != array.PodOnline || r.DirtyBytes != 0 {
		t.Fatalf("after healing: pod %s, %d dirty", r.PodState, r.DirtyBytes)
	}
	same(t, src, tg, "v1")
	// Preferring the peer is changed in place.
	no := false
	if r, err := src.eng.UpdateReplica(ctx, "pod", array.ReplicaUpdate{PreferPeer: &no}); err != nil || r.PreferPeer {
		t.Fatalf("UpdateReplica turning prefer_peer off: %v, %v", r.PreferPeer, err)
	}
}

// TestPreferPeerNeedsAMediator: without a mediator the peer could never
// know that the primary stopped, so a pod cannot prefer it.
func TestPreferPeerNeedsAMediator(t *testing.T) {
	src, _ := newPod(t, time.Second)
	yes := true
	_, err := src.eng.UpdateReplica(t.Context(), "pod", array.ReplicaUpdate{PreferPeer: &yes})
	if !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), "volrep_pod_mediator") {
		t.Fatalf("preferring the peer of a pod without a mediator: %v, want INVALID_ARGUMENT naming volrep_pod_mediator", err)
	}
	if r, err := src.eng.GetReplica(t.Context(), "pod"); err != nil || r.PreferPeer {
		t.Fatalf("a refused update changed the pod: prefer_peer %v, %v", r.PreferPeer, err)
	}
}

// mediatorName is the pod's name at the mediator, as its replica reports
// it: scoped by the primary, whose peer (this build) takes scoped names.
func mediatorName(t *testing.T, src *source, r array.Replica) string {
	t.Helper()
	info, err := src.st.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if want := mediator.Scoped(info.ID, r.Name); r.MediatorName != want {
		t.Fatalf("the pod's name at the mediator is %q; want %q", r.MediatorName, want)
	}
	return r.MediatorName
}

// TestSameNamedPodsShareAMediator: pods of one name on two pairs of
// arrays that share a mediator (two clouds' backends of one name, say)
// each hold a key of their own. Before names were scoped by the primary,
// they contended for one: only one primary held it, and the other pair's
// could not carry on alone when cut from its peer.
func TestSameNamedPodsShareAMediator(t *testing.T) {
	etcd := etcdtest.Start(t, "", "")
	var states1, states2 podStates
	src1, tg1 := mediatedPodAt(t, etcd.Endpoint(), newTarget(t), time.Second, &states1, false)
	src2, _ := mediatedPodAt(t, etcd.Endpoint(), newTarget(t), time.Second, &states2, false)
	var reps []array.Replica
	for i, src := range []*source{src1, src2} {
		reps = append(reps, replicaUntil(t, src, 10*time.Second, fmt.Sprintf("primary %d holds its pod's key", i+1), func(r array.Replica) bool { return r.MediatorHeld }))
	}
	names := map[string]bool{mediatorName(t, src1, reps[0]): true, mediatorName(t, src2, reps[1]): true}
	if len(names) != 2 {
		t.Fatalf("the two pods' names at the mediator: %v; want two", names)
	}
	// The first pair loses its link: its primary carries on alone, on the
	// key it holds, and the second pair's primary keeps its own.
	tg1.halt()
	if err := src1.st.WriteVolume(t.Context(), "v1", 0, bytes.Repeat([]byte{0x5e}, 4096), false); err != nil {
		t.Fatalf("a write at the first primary, cut from its peer: %v", err)
	}
	replicaUntil(t, src1, 5*time.Second, "the first primary degraded, holding its key", func(r array.Replica) bool {
		return r.PodState == array.PodDegraded && r.MediatorHeld
	})
	if r, err := src2.eng.GetReplica(t.Context(), "pod"); err != nil || !r.MediatorHeld || r.PodState != array.PodOnline {
		t.Fatalf("the second pair's pod while the first carries on alone: %+v, %v; want online, holding its key", r, err)
	}
}

// TestPodWithAnOlderPeerKeepsItsName: a peer that does not report
// FeatureMediatorName asks the mediator under the pod's name alone, so
// the primary does too, for the pod's life.
func TestPodWithAnOlderPeerKeepsItsName(t *testing.T) {
	etcd := etcdtest.Start(t, "", "")
	var states podStates
	tg := newTargetOf(t, true, &[]string{array.FeatureForwardOwnCopy, array.FeatureLUReset})
	src, _ := mediatedPodAt(t, etcd.Endpoint(), tg, time.Second, &states, false)
	r := replicaUntil(t, src, 10*time.Second, "the primary holds the pod's key", func(r array.Replica) bool { return r.MediatorHeld })
	if r.MediatorName != "pod" {
		t.Fatalf("the pod's name at the mediator, with a peer too old to take another: %q; want the pod's name alone", r.MediatorName)
	}
	med, err := mediator.New([]string{etcd.Endpoint()}, mediator.Options{TTL: mediatorTTL})
	if err != nil {
		t.Fatal(err)
	}
	defer med.Close()
	info, err := src.st.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if h, err := med.Holder(t.Context(), "pod"); err != nil || h != info.ID {
		t.Fatalf("the key %q is held by %q (%v); want the primary, %q", "pod", h, err, info.ID)
	}
}

// TestWritesNeedingTheMarkShareOneCall: the peer goes and the mediator
// stops answering at once, while the primary still holds the pod's key. Each write the peer
// misses must be marked at the mediator before it is acknowledged, and
// the mediator does not answer. The writes waiting for the mark share the
// one call in flight and fail together when it times out; none waits for
// the others' calls in turn behind a lock held across the mediator.
func TestWritesNeedingTheMarkShareOneCall(t *testing.T) {
	const timeout = 500 * time.Millisecond
	src := podNeedingAMark(t, timeout)
	cut := time.Now()
	const writers = 6
	took := make(chan time.Duration, writers)
	errs := make(chan error, writers)
	for i := range writers {
		go func() {
			err := src.st.WriteVolume(context.Background(), "v1", int64(i)*4096, bytes.Repeat([]byte{byte(i)}, 4096), false)
			took <- time.Since(cut)
			errs <- err
		}()
	}
	var slowest time.Duration
	for range writers {
		slowest = max(slowest, <-took)
		err := <-errs
		if !errdefs.IsUnavailable(err) {
			t.Errorf("a write with neither the peer nor the mediator: %v; want UNAVAILABLE", err)
		}
	}
	t.Logf("the slowest of %d writes failed %s after the cut (sync timeout %s)", writers, slowest.Round(time.Millisecond), timeout)
	// One timeout for the mark (the peer's stream ends at once); in turn,
	// they would take one each.
	if slowest > timeout+700*time.Millisecond {
		t.Errorf("the slowest write failed %s after the cut; want within %s: the writes waited for the mark in turn", slowest, timeout+700*time.Millisecond)
	}
}

// TestMarkingWriteEndsWithItsContext: the write that begins the pod's
// Mark at a mediator that does not answer stops waiting when its context
// ends, not after the pod's timeout; the Mark runs on, and a write that
// needs it meanwhile shares its outcome.
func TestMarkingWriteEndsWithItsContext(t *testing.T) {
	const timeout, deadline = 2 * time.Second, 200 * time.Millisecond
	src := podNeedingAMark(t, timeout)
	ctx, cancel := context.WithTimeout(t.Context(), deadline)
	defer cancel()
	start := time.Now()
	err := src.st.WriteVolume(ctx, "v1", 0, bytes.Repeat([]byte{1}, 4096), false)
	took := time.Since(start)
	t.Logf("the write that began the Mark, with a %s deadline: %s, %v", deadline, took.Round(time.Millisecond), err)
	if !errors.Is(err, context.DeadlineExceeded) || took > deadline+time.Second {
		t.Fatalf("the write that began the Mark returned %v after %s; want its context's error within %s, not the pod's timeout %s",
			err, took.Round(time.Millisecond), deadline+time.Second, timeout)
	}
	err = src.st.WriteVolume(t.Context(), "v1", 4096, bytes.Repeat([]byte{2}, 4096), false)
	shared := time.Since(start)
	t.Logf("a write behind it: %s after the first began, %v", shared.Round(time.Millisecond), err)
	if !errdefs.IsUnavailable(err) || shared > timeout+time.Second {
		t.Fatalf("a write behind the Mark in flight: %v after %s; want UNAVAILABLE when the Mark times out (%s)", err, shared.Round(time.Millisecond), timeout)
	}
}

// podNeedingAMark is a pod in sync with no mark standing, whose peer is
// then halted and whose mediator frozen, with the primary holding the
// pod's key: its next write needs a Mark the mediator does not answer.
func podNeedingAMark(t *testing.T, timeout time.Duration) *source {
	t.Helper()
	var states podStates
	src, tg, etcd := newMediatedPod(t, timeout, &states)
	r := replicaUntil(t, src, 10*time.Second, "the primary holds the pod's key", func(r array.Replica) bool { return r.MediatorHeld })
	// In sync, with no mark standing: a write the peer misses needs one.
	med, err := mediator.New([]string{etcd.Endpoint()}, mediator.Options{TTL: mediatorTTL})
	if err != nil {
		t.Fatal(err)
	}
	defer med.Close()
	mname := mediatorName(t, src, r)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		ahead, err := med.Ahead(t.Context(), mname)
		if err == nil && ahead == "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the mark after the first sync: %q, %v; want none", ahead, err)
		}
	}
	tg.halt()
	// The peer's last stream may still answer as it closes: the writes
	// begin once the pod has lost it.
	replicaUntil(t, src, 10*time.Second, "the pod loses its peer", func(r array.Replica) bool { return r.PodState == array.PodDegraded })
	etcd.Freeze()
	t.Cleanup(etcd.Thaw) // before the pod stops, which gives the key up
	return src
}

// TestWriteBehindAnUnmarkMarksAgain: a write acknowledged without the
// peer while the pod's Unmark is in flight must not trust the mark that
// Unmark is clearing. Here the mediator is frozen as the pod comes back in
// sync, so its Unmark hangs for the sync timeout; the peer is then halted
// again and a write made. It waits for the Unmark, marks again, and, with
// the mediator still silent, fails rather than being acknowledged with no
// mark standing (an Unmark the mediator applies late would leave the peer
// free to take the pod over without that write).
func TestWriteBehindAnUnmarkMarksAgain(t *testing.T) {
	const timeout = 2 * time.Second
	var states podStates
	etcd := etcdtest.Start(t, "", "")
	// A lease that outlives the test's frozen mediator: this array holds
	// the pod's key throughout, so only the mark decides the write.
	src, tg := mediatedPodTTL(t, etcd.Endpoint(), newTarget(t), timeout, 30*time.Second, &states, false)
	replicaUntil(t, src, 10*time.Second, "the primary holds the pod's key", func(r array.Replica) bool { return r.MediatorHeld })
	tg.halt()
	replicaUntil(t, src, 10*time.Second, "the pod loses its peer", func(r array.Replica) bool { return r.PodState == array.PodDegraded })
	// Marked, with the mediator answering.
	if err := src.st.WriteVolume(t.Context(), "v1", 0, bytes.Repeat([]byte{1}, 4096), false); err != nil {
		t.Fatal(err)
	}
	etcd.Freeze()
	t.Cleanup(etcd.Thaw) // before the pod stops, which gives the key up
	tg.start()
	// In sync: the pod's step has begun its Unmark, which hangs.
	replicaUntil(t, src, 20*time.Second, "the pod is back in sync", func(r array.Replica) bool { return r.PodState == array.PodOnline })
	inSync := time.Now()
	tg.halt()
	replicaUntil(t, src, 10*time.Second, "the pod loses its peer again", func(r array.Replica) bool { return r.PodState == array.PodDegraded })
	if since := time.Since(inSync); since > timeout/2 {
		t.Fatalf("the peer was gone %s after the pod was in sync; the Unmark (timeout %s) may have ended already", since, timeout)
	}
	err := src.st.WriteVolume(t.Context(), "v1", 4096, bytes.Repeat([]byte{2}, 4096), false)
	t.Logf("the write behind the Unmark, %s after the pod was in sync: %v", time.Since(inSync).Round(time.Millisecond), err)
	if !errdefs.IsUnavailable(err) {
		t.Fatalf("a write without the peer while the Unmark was in flight and the mediator silent: %v; want UNAVAILABLE (could not record the mark)", err)
	}
}

// TestDeletingAPodEndsWithItsContext: deleting a pod, or making it
// async, while its mediator does not answer ends within the call's
// context, not the mediator's lease (30 s here), which giving the pod's
// key up would otherwise wait for. A deleted replica is gone, with its
// record and its snapshots here, even though the call's deadline passed
// while the pod stopped.
func TestDeletingAPodEndsWithItsContext(t *testing.T) {
	for _, c := range []struct {
		name   string
		delete bool
	}{{"deleted", true}, {"made async", false}} {
		t.Run(c.name, func(t *testing.T) { podEndsWithItsContext(t, c.delete) })
	}
}

func podEndsWithItsContext(t *testing.T, deleted bool) {
	const timeout, deadline = 2 * time.Second, time.Second
	var states podStates
	etcd := etcdtest.Start(t, "", "")
	src, _ := mediatedPodTTL(t, etcd.Endpoint(), newTarget(t), timeout, 30*time.Second, &states, false)
	replicaUntil(t, src, 10*time.Second, "the primary holds the pod's key", func(r array.Replica) bool { return r.MediatorHeld })
	etcd.Freeze()
	t.Cleanup(etcd.Thaw)
	ctx, cancel := context.WithTimeout(t.Context(), deadline)
	defer cancel()
	start := time.Now()
	var err error
	if deleted {
		err = src.eng.DeleteReplica(ctx, "pod", false)
	} else {
		var r array.Replica
		if r, err = src.eng.ChangeReplicaType(ctx, "pod", array.TypeAsync); err == nil && r.Type != array.TypeAsync {
			t.Errorf("the pod made async is reported as %s", r.Type)
		}
	}
	took := time.Since(start)
	t.Logf("with a %s deadline and a silent mediator: %s, %v", deadline, took.Round(time.Millisecond), err)
	if err != nil {
		t.Fatalf("the change failed: %v; it was made, and must be reported", err)
	}
	if took > deadline+time.Second {
		t.Errorf("the change took %s; want within the call's deadline %s", took.Round(time.Millisecond), deadline)
	}
	if !deleted {
		return
	}
	if _, err := src.eng.GetReplica(t.Context(), "pod"); !errdefs.IsNotFound(err) {
		t.Fatalf("the deleted pod: %v; want NOT_FOUND", err)
	}
	if records := recordKeys(t, src.st, "replicas"); slices.Contains(records, "pod") {
		t.Fatalf("the deleted pod's record is still kept (records %q): a restart would bring it back", records)
	}
	snaps, err := src.st.ListSnapshots(t.Context(), "v1")
	if err != nil {
		t.Fatal(err)
	}
	for _, sn := range snaps {
		if sn.Labels[replication.LabelReplica] == "pod" {
			t.Errorf("the deleted pod's snapshot %s of v1 is still kept", sn.Name)
		}
	}
}

// TestPodStopsWithAMarkInFlight: a pod deleted while a write's Mark waits
// on a mediator that does not answer stops within the call's deadline,
// not the Mark's timeout: the Mark ends with the pod, whose goroutine
// waits for it, and the write is not acknowledged.
func TestPodStopsWithAMarkInFlight(t *testing.T) {
	const timeout, deadline = 2 * time.Second, time.Second
	src := podNeedingAMark(t, timeout)
	wrote := make(chan error, 1)
	go func() {
		wrote <- src.st.WriteVolume(context.Background(), "v1", 0, bytes.Repeat([]byte{3}, 4096), false)
	}()
	time.Sleep(100 * time.Millisecond) // the write has begun the Mark
	ctx, cancel := context.WithTimeout(t.Context(), deadline)
	defer cancel()
	start := time.Now()
	err := src.eng.DeleteReplica(ctx, "pod", false)
	took := time.Since(start)
	t.Logf("DeleteReplica with a Mark in flight: %s, %v", took.Round(time.Millisecond), err)
	// Giving the key up at the frozen mediator takes the deadline; the
	// Mark, begun 0.1 s before, would take its timeout on top of it.
	if err != nil || took > deadline+600*time.Millisecond {
		t.Fatalf("deleting the pod with a Mark in flight: %v after %s; want done soon after the call's deadline %s, not the Mark's timeout %s",
			err, took.Round(time.Millisecond), deadline, timeout)
	}
	select {
	case err := <-wrote:
		t.Logf("the write: %v", err)
		if err == nil {
			t.Error("the write whose Mark never reached the mediator was acknowledged")
		}
	case <-time.After(timeout + time.Second):
		t.Fatal("the write whose Mark was in flight still waits after the pod stopped")
	}
}
