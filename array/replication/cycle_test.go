package replication_test

import (
	"testing"
	"time"

	"github.com/volrep/volrep/array"
	"github.com/volrep/volrep/clock"
	"github.com/volrep/volrep/errdefs"
)

// TestEmptyGroupDropsLastMembersCopy: when the last member leaves a
// protection group, the group's next cycle removes its read-only copy from
// the target, although an empty group takes no snapshot to ship.
func TestEmptyGroupDropsLastMembersCopy(t *testing.T) {
	clk := clock.NewFake(t0)
	src, tg := newSource(t, clk), newTarget(t)
	ctx := t.Context()
	groupOf(t, src.st, "pg", []string{"vol", "keep"}, []string{"vol"})
	protect(t, src, tg, "pg.site-b", array.ReplicaSpec{Kind: array.KindGroup, Local: "pg", Interval: time.Hour})
	waitCycle(t, src.eng, "pg.site-b", "pg.site-b.1")
	if v, err := tg.st.GetVolume(ctx, "vol"); err != nil || !v.ReadOnly {
		t.Fatalf("the member's copy on the target: %+v, %v", v, err)
	}
	// The copy has the source's SCSI identity, so a failover keeps it.
	sv, err := src.st.GetVolume(ctx, "vol")
	if err != nil {
		t.Fatal(err)
	}
	if tv, err := tg.st.GetVolume(ctx, "vol"); err != nil || sv.WWN == "" || tv.WWN != sv.WWN {
		t.Fatalf("the copy's WWN is %q (%v), the source's %q", tv.WWN, err, sv.WWN)
	}
	// A volume on the target that the replica did not make stays.
	if _, err := tg.st.CreateVolume(ctx, array.VolumeSpec{Name: "keep", Pool: "replicas", SizeBytes: mib}); err != nil {
		t.Fatal(err)
	}

	if _, err := src.st.RemoveMembers(ctx, "pg", []string{"vol"}); err != nil {
		t.Fatal(err)
	}
	// SyncReplica runs one whole cycle and returns when it has ended.
	rep, err := src.eng.SyncReplica(ctx, "pg.site-b", true)
	if err != nil {
		t.Fatal(err)
	}
	if rep.State != array.StateActive {
		t.Fatalf("the empty group's cycle: %s %s", rep.State, rep.Message)
	}
	if _, err := tg.st.GetVolume(ctx, "vol"); !errdefs.IsNotFound(err) {
		t.Fatalf("the former member's copy is still on the target after the empty group's cycle (err %v)", err)
	}
	if _, err := tg.st.GetVolume(ctx, "keep"); err != nil {
		t.Fatalf("a volume the replica did not make was removed: %v", err)
	}
}
