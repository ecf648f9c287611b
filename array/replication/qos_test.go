package replication_test

import (
	"testing"
	"time"

	"github.com/volrep/volrep/array"
	"github.com/volrep/volrep/array/store"
	"github.com/volrep/volrep/clock"
	"github.com/volrep/volrep/errdefs"
)

// wantQoS fails unless vol has q at st.
func wantQoS(t *testing.T, st *store.Store, side, vol string, q array.QoS) {
	t.Helper()
	v, err := st.GetVolume(t.Context(), vol)
	if err != nil {
		t.Fatal(err)
	}
	if v.QoS != q {
		t.Fatalf("%s at the %s: QoS %+v, want %+v", vol, side, v.QoS, q)
	}
}

// groupOf creates 1 MiB volumes in pool "cinder" and protection group
// name there, with members in it.
func groupOf(t *testing.T, st *store.Store, name string, volumes, members []string) {
	t.Helper()
	for _, v := range volumes {
		if _, err := st.CreateVolume(t.Context(), array.VolumeSpec{Name: v, Pool: "cinder", SizeBytes: mib}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := st.CreateGroup(t.Context(), name, "cinder", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := st.AddMembers(t.Context(), name, members); err != nil {
		t.Fatal(err)
	}
}

func setQoS(t *testing.T, st *store.Store, vol string, q array.QoS) {
	t.Helper()
	if _, err := st.SetVolumeQoS(t.Context(), vol, q); err != nil {
		t.Fatal(err)
	}
}

// TestReplicaTargetsTakeTheSourcesQoS: every cycle gives the copies at
// the target their source's QoS limit, a volume's and a protection
// group's members' alike, and a change or a removal follows at the next
// cycle even when no data changed; so a failover finds the limit in place.
func TestReplicaTargetsTakeTheSourcesQoS(t *testing.T) {
	src, tg := newSource(t, clock.NewFake(t0)), newTarget(t)
	ctx := t.Context()
	groupOf(t, src.st, "pg", []string{"a", "b"}, []string{"b"})
	qa, qb := array.QoS{TotalIOPS: 500}, array.QoS{WriteBytesPerSec: 1 << 20, ReadIOPS: 40}
	setQoS(t, src.st, "a", qa)
	setQoS(t, src.st, "b", qb)
	protect(t, src, tg, "r", array.ReplicaSpec{Kind: array.KindVolume, Local: "a", Interval: time.Hour})
	if _, err := src.eng.ReplicateEntity(ctx, array.ReplicaSpec{Name: "pg.site-b", Kind: array.KindGroup, Local: "pg", Link: "site-b",
		RemotePool: "replicas", Interval: time.Hour}); err != nil {
		t.Fatal(err)
	}
	cycle := func() {
		t.Helper()
		for _, r := range []string{"r", "pg.site-b"} {
			if _, err := src.eng.SyncReplica(ctx, r, true); err != nil {
				t.Fatalf("cycle of %s: %v", r, err)
			}
		}
	}
	cycle()
	wantQoS(t, tg.st, "target after the first copy", "a", qa)
	wantQoS(t, tg.st, "target after the first copy", "b", qb)

	qa = array.QoS{ReadIOPS: 100, WriteIOPS: 50}
	setQoS(t, src.st, "a", qa)
	setQoS(t, src.st, "b", array.QoS{})
	cycle()
	wantQoS(t, tg.st, "target after a cycle with no data changed", "a", qa)
	wantQoS(t, tg.st, "target after a cycle with no data changed", "b", array.QoS{})
}

// TestPodPeerTakesTheQoS: a pod's peer serves hosts too, so its copy takes
// the limit: one the volume had before it joined the pod, at the initial
// copy; a change, by the time SetVolumeQoS returns; and one made while
// the peer was away, when the pod is in sync again.
func TestPodPeerTakesTheQoS(t *testing.T) {
	src, tg := newSource(t, clock.NewFake(t0)), newTarget(t)
	ctx := t.Context()
	if _, err := src.st.CreateVolume(ctx, array.VolumeSpec{Name: "v1", Pool: "cinder", SizeBytes: 16 * mib}); err != nil {
		t.Fatal(err)
	}
	q := array.QoS{TotalIOPS: 300}
	setQoS(t, src.st, "v1", q)
	// podOn adds v1 to the pod and waits until it is in sync.
	podOn(t, src, tg, 5*time.Second)
	wantQoS(t, tg.st, "peer after the initial copy", "v1", q)

	q = array.QoS{TotalIOPS: 200, TotalBytesPerSec: 8 << 20}
	setQoS(t, src.st, "v1", q)
	wantQoS(t, tg.st, "peer as SetVolumeQoS returns", "v1", q)

	tg.halt()
	q = array.QoS{WriteIOPS: 10}
	setQoS(t, src.st, "v1", q) // stands here, the peer away
	wantQoS(t, src.st, "preferred array, the peer away", "v1", q)
	tg.start()
	syncNow(t, src)
	wantQoS(t, tg.st, "peer back in sync", "v1", q)
}

// TestTidyFollowsWhatChangedHere: a cycle lists the target's copies (to
// match QoS limits and drop former members' copies) only when a member,
// a copy's name or a member's QoS limit changed here since the last
// complete tidy, or tidyEvery has passed. A limit changed at the target
// alone is therefore put right by the first cycle after that, or by the
// first that follows a change here; a member that leaves loses its copy
// at the next cycle.
func TestTidyFollowsWhatChangedHere(t *testing.T) {
	clk := clock.NewFake(t0)
	src, tg := newSource(t, clk), newTarget(t)
	ctx := t.Context()
	groupOf(t, src.st, "pg", []string{"a", "b"}, []string{"a", "b"})
	qa, qb := array.QoS{TotalIOPS: 500}, array.QoS{ReadIOPS: 40}
	setQoS(t, src.st, "a", qa)
	setQoS(t, src.st, "b", qb)
	protect(t, src, tg, "pg.site-b", array.ReplicaSpec{Kind: array.KindGroup, Local: "pg", Interval: time.Hour})
	cycle := func() {
		t.Helper()
		if _, err := src.eng.SyncReplica(ctx, "pg.site-b", true); err != nil {
			t.Fatal(err)
		}
	}
	cycle()
	wantQoS(t, tg.st, "target after the first copy", "b", qb)

	byHand := array.QoS{WriteIOPS: 7}
	setQoS(t, tg.st, "b", byHand)
	cycle()
	wantQoS(t, tg.st, "target after a cycle with nothing changed here", "b", byHand)
	clk.Advance(11 * time.Minute)
	cycle()
	wantQoS(t, tg.st, "target after a cycle 11 minutes on", "b", qb)

	setQoS(t, tg.st, "b", byHand)
	qa = array.QoS{TotalIOPS: 600}
	setQoS(t, src.st, "a", qa)
	cycle()
	wantQoS(t, tg.st, "target after a's limit changed here", "a", qa)
	wantQoS(t, tg.st, "target after a's limit changed here", "b", qb)

	if _, err := src.st.RemoveMembers(ctx, "pg", []string{"b"}); err != nil {
		t.Fatal(err)
	}
	cycle()
	if _, err := tg.st.GetVolume(ctx, "b"); !errdefs.IsNotFound(err) {
		t.Fatalf("the former member's copy is still on the target after the next cycle (err %v)", err)
	}
}
