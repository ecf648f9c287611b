package replication_test

import (
	"bytes"
	"fmt"
	"testing"
	"time"

	"github.com/volrep/volrep/array"
	"github.com/volrep/volrep/array/replication"
	"github.com/volrep/volrep/clock"
	"github.com/volrep/volrep/errdefs"
)

// advanceGroup makes a protection group of n 4 MiB members, each written
// with its own pattern, and replicates it once in full.
func advanceGroup(t *testing.T, n int) (*source, *target, []string) {
	t.Helper()
	clk := clock.NewFake(t0)
	src, tg := newSource(t, clk), newTarget(t)
	ctx := t.Context()
	vols := make([]string, n)
	for i := range vols {
		vols[i] = fmt.Sprintf("m%d", i)
		if _, err := src.st.CreateVolume(ctx, array.VolumeSpec{Name: vols[i], Pool: "cinder", SizeBytes: 4 * mib}); err != nil {
			t.Fatal(err)
		}
		if err := src.st.WriteVolume(ctx, vols[i], 0, bytes.Repeat([]byte{byte(i + 1)}, mib), false); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := src.st.CreateGroup(ctx, "pg", "cinder", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := src.st.AddMembers(ctx, "pg", vols); err != nil {
		t.Fatal(err)
	}
	protect(t, src, tg, "pg.site-b", array.ReplicaSpec{Kind: array.KindGroup, Local: "pg", Interval: time.Hour,
		SourceRetention: array.Retention{AllFor: 90 * time.Minute}, TargetRetention: array.Retention{AllFor: 150 * time.Minute}})
	waitCycle(t, src.eng, "pg.site-b", "pg.site-b.1")
	return src, tg, vols
}

// nextCycle advances the fake clock one interval and waits for snapshot
// seq to be shipped.
func nextCycle(t *testing.T, src *source, seq int) array.Replica {
	t.Helper()
	src.clk.Advance(time.Hour)
	return waitCycle(t, src.eng, "pg.site-b", fmt.Sprintf("pg.site-b.%d", seq))
}

// sameSnapshots fails unless the target holds snapshot name of every
// member with the source's GUID, time and labels.
func sameSnapshots(t *testing.T, src *source, tg *target, vols []string, name string) {
	t.Helper()
	ctx := t.Context()
	for _, v := range vols {
		s, err := src.st.GetSnapshot(ctx, v, name)
		if err != nil {
			t.Fatal(err)
		}
		r, err := tg.st.GetSnapshot(ctx, v, name)
		if err != nil {
			t.Fatalf("target snapshot %s@%s: %v", v, name, err)
		}
		if r.GUID != s.GUID || !r.Created.Equal(s.Created) || r.Labels[replication.LabelReplica] != s.Labels[replication.LabelReplica] || len(r.Labels) != len(s.Labels) {
			t.Fatalf("%s@%s: target %+v, source %+v", v, name, r, s)
		}
	}
}

// TestAdvanceUnchangedMembers: a cycle in which one member of five
// changed transfers that one and advances the other four at the target
// with the source's snapshot identities; a later change is sent as a
// delta from an advanced snapshot, so only the changed bytes travel.
func TestAdvanceUnchangedMembers(t *testing.T) {
	src, tg, vols := advanceGroup(t, 5)
	ctx := t.Context()
	const change = 64 << 10
	if err := src.st.WriteVolume(ctx, "m0", 2*mib, bytes.Repeat([]byte{0xa0}, change), false); err != nil {
		t.Fatal(err)
	}
	before := tg.commit.Load()
	rep := nextCycle(t, src, 2)
	if n := tg.commit.Load() - before; n != 1 {
		t.Fatalf("a cycle with one changed member of five committed %d transfers, want 1", n)
	}
	if rep.LastSyncBytes < change || rep.LastSyncBytes > change*11/10 {
		t.Fatalf("the cycle sent %d bytes for %d changed", rep.LastSyncBytes, change)
	}
	sameSnapshots(t, src, tg, vols, "pg.site-b.2")

	// A quiet cycle transfers nothing at all.
	before = tg.commit.Load()
	rep = nextCycle(t, src, 3)
	if n := tg.commit.Load() - before; n != 0 || rep.LastSyncBytes != 0 {
		t.Fatalf("a cycle with no change committed %d transfers and sent %d bytes", n, rep.LastSyncBytes)
	}
	sameSnapshots(t, src, tg, vols, "pg.site-b.3")

	// m3 was advanced twice; its change now goes as a delta from .3.
	if err := src.st.WriteVolume(ctx, "m3", 0, bytes.Repeat([]byte{0xb3}, 2*change), false); err != nil {
		t.Fatal(err)
	}
	before = tg.commit.Load()
	rep = nextCycle(t, src, 4)
	if n := tg.commit.Load() - before; n != 1 {
		t.Fatalf("committed %d transfers, want 1", n)
	}
	if rep.LastSyncBytes < 2*change || rep.LastSyncBytes > 2*change*11/10 {
		t.Fatalf("the delta from an advanced snapshot sent %d bytes for %d changed", rep.LastSyncBytes, 2*change)
	}
	sameSnapshots(t, src, tg, vols, "pg.site-b.4")
	// Retention ran on both sides: the oldest snapshots are gone.
	if _, err := src.st.GetSnapshot(ctx, "m1", "pg.site-b.1"); !errdefs.IsNotFound(err) {
		t.Fatalf("source retention kept pg.site-b.1 of m1 (err %v)", err)
	}
	if _, err := tg.st.GetSnapshot(ctx, "m1", "pg.site-b.1"); !errdefs.IsNotFound(err) {
		t.Fatalf("target retention kept pg.site-b.1 of m1 (err %v)", err)
	}
}

// TestAdvanceRefusedFallsBack: a member whose copy's newest snapshot is
// not the last cycle's is refused by the target and gets a transfer
// instead; it ends with the source's data and snapshot.
func TestAdvanceRefusedFallsBack(t *testing.T) {
	src, tg, vols := advanceGroup(t, 3)
	ctx := t.Context()
	// An extra snapshot on m1's copy: it no longer ends at pg.site-b.1.
	if _, err := tg.st.CreateSnapshot(ctx, "m1", "local-extra", nil); err != nil {
		t.Fatal(err)
	}
	before := tg.commit.Load()
	nextCycle(t, src, 2)
	if n := tg.commit.Load() - before; n != 1 {
		t.Fatalf("committed %d transfers, want 1 (the refused member's)", n)
	}
	sameSnapshots(t, src, tg, vols, "pg.site-b.2")
	got := make([]byte, mib)
	if err := tg.st.ReadSnapshot(ctx, "m1", "pg.site-b.2", 0, got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, bytes.Repeat([]byte{2}, mib)) {
		t.Fatal("the refused member's copy does not hold its data")
	}
}

// TestFailoverAfterAdvancedCycles: after cycles that advanced most
// members, promoting the target's copies gives the last cycle's data.
func TestFailoverAfterAdvancedCycles(t *testing.T) {
	src, tg, vols := advanceGroup(t, 4)
	ctx := t.Context()
	for seq := 2; seq <= 4; seq++ {
		if err := src.st.WriteVolume(ctx, vols[seq%len(vols)], int64(seq)*mib/2, bytes.Repeat([]byte{byte(0x10 * seq)}, 4096), false); err != nil {
			t.Fatal(err)
		}
		nextCycle(t, src, seq)
	}
	for _, v := range vols {
		want := make([]byte, 4*mib)
		if err := src.st.ReadSnapshot(ctx, v, "pg.site-b.4", 0, want); err != nil {
			t.Fatal(err)
		}
		if err := tg.st.SetReadOnly(ctx, v, false); err != nil {
			t.Fatal(err)
		}
		got := make([]byte, 4*mib)
		if err := tg.st.ReadVolume(ctx, v, 0, got); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("the promoted copy of %s differs from the source's last cycle", v)
		}
		// A promoted copy takes writes on top of the advanced snapshot.
		if err := tg.st.WriteVolume(ctx, v, 0, []byte{0xee}, false); err != nil {
			t.Fatal(err)
		}
		if err := tg.st.ReadSnapshot(ctx, v, "pg.site-b.4", 0, got[:1]); err != nil || got[0] == 0xee {
			t.Fatalf("a write to the promoted copy changed snapshot pg.site-b.4 (%v)", err)
		}
	}
}
