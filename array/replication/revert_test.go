package replication_test

import (
	"bytes"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/volrep/volrep/array"
	"github.com/volrep/volrep/clock"
)

// TestRevertAsyncSendsOnlyDifferingBlocks: after a revert, the next cycle
// is a delta from the last replicated snapshot (which the revert left on
// a branch) holding only the blocks that differ between it and the new
// head, and the target ends with the reverted content.
func TestRevertAsyncSendsOnlyDifferingBlocks(t *testing.T) {
	clk := clock.NewFake(t0)
	src, tg := newSource(t, clk), newTarget(t)
	ctx := t.Context()
	const size = 64 * mib
	if _, err := src.st.CreateVolume(ctx, array.VolumeSpec{Name: "vol", Pool: "cinder", SizeBytes: size}); err != nil {
		t.Fatal(err)
	}
	if err := src.st.WriteVolume(ctx, "vol", 0, bytes.Repeat([]byte{1}, 8*mib), false); err != nil {
		t.Fatal(err)
	}
	if _, err := src.st.CreateSnapshot(ctx, "vol", "base", nil); err != nil {
		t.Fatal(err)
	}
	protect(t, src, tg, "r", array.ReplicaSpec{Kind: array.KindVolume, Local: "vol", Interval: time.Hour})
	waitCycle(t, src.eng, "r", "r.1")
	r := rand.New(rand.NewPCG(3, 4))
	write := func(n int, b byte) map[int]bool {
		blocks := map[int]bool{}
		for len(blocks) < n {
			blocks[r.IntN(size/4096)] = true
		}
		for blk := range blocks {
			p := make([]byte, 4096) // random, so compression cannot hide extra blocks
			for i := range p {
				p[i] = byte(r.Uint32()) ^ b
			}
			if err := src.st.WriteVolume(ctx, "vol", int64(blk)*4096, p, false); err != nil {
				t.Fatal(err)
			}
		}
		return blocks
	}
	replicated := write(200, 2) // shipped in r.2
	clk.Advance(time.Hour)
	waitCycle(t, src.eng, "r", "r.2")
	write(300, 3) // discarded by the revert, never shipped
	if _, err := src.st.RevertVolume(ctx, "vol", "base"); err != nil {
		t.Fatal(err)
	}
	clk.Advance(time.Hour)
	rep := waitCycle(t, src.eng, "r", "r.3")
	// Blocks that go back to base's data are sent as data; those that go
	// back to never written are zero extents, which cost no data bytes.
	differ, toData := int64(len(replicated))*4096, int64(0)
	for blk := range replicated {
		if blk < 8*mib/4096 {
			toData += 4096
		}
	}
	t.Logf("revert: %d blocks differ between r.2 and the reverted head (%d back to data); the next cycle sent %d bytes (%.3fx of the %d bytes of data)",
		len(replicated), toData/4096, rep.LastSyncBytes, float64(rep.LastSyncBytes)/float64(toData), toData)
	if rep.LastSyncBytes > differ || rep.LastSyncBytes > toData*11/10+4096 || rep.LastSyncBytes < toData {
		t.Fatalf("after the revert the cycle sent %d bytes; want about the %d bytes of data of the %d differing", rep.LastSyncBytes, toData, differ)
	}
	a, b := make([]byte, size), make([]byte, size)
	if err := src.st.ReadSnapshot(ctx, "vol", "base", 0, a); err != nil {
		t.Fatal(err)
	}
	if err := tg.st.ReadSnapshot(ctx, "vol", "r.3", 0, b); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a, b) {
		t.Fatal("the target's r.3 is not the content reverted to")
	}
}

// TestRevertPodResyncsPeer: reverting a pod member marks the blocks the
// revert changed dirty, and the peer is resynced to the reverted content.
func TestRevertPodResyncsPeer(t *testing.T) {
	src, tg := newPod(t, 2*time.Second)
	ctx := t.Context()
	if _, err := src.st.CreateSnapshot(ctx, "v1", "before", nil); err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		if err := src.st.WriteVolume(ctx, "v1", int64(i)*300_000, bytes.Repeat([]byte{byte(i + 7)}, 6000), false); err != nil {
			t.Fatal(err)
		}
	}
	same(t, src, tg, "v1") // mirrored
	if _, err := src.st.RevertVolume(ctx, "v1", "before"); err != nil {
		t.Fatal(err)
	}
	if rep := syncNow(t, src); rep.SyncState != array.SyncInSync {
		t.Fatalf("pod after a revert: %+v", rep)
	}
	same(t, src, tg, "v1")
	want := make([]byte, 16*mib)
	if err := src.st.ReadSnapshot(ctx, "v1", "before", 0, want); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 16*mib)
	if err := tg.st.ReadVolume(ctx, "v1", 0, got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("the peer's copy is not the content reverted to")
	}
}

// TestExtendPodAndAsync: extending a pod member grows the peer's copy at
// once and the pod stays in sync (a write to the new range is mirrored);
// extending an async-replicated volume grows its target on the next cycle.
func TestExtendPodAndAsync(t *testing.T) {
	t.Run("pod", func(t *testing.T) {
		src, tg := newPod(t, 2*time.Second)
		ctx := t.Context()
		if _, err := src.st.ExtendVolume(ctx, "v1", 32*mib); err != nil {
			t.Fatal(err)
		}
		pv, err := tg.st.GetVolume(ctx, "v1")
		if err != nil {
			t.Fatal(err)
		}
		if pv.SizeBytes != 32*mib {
			t.Fatalf("peer's copy is %d bytes after the extend, want %d", pv.SizeBytes, 32*mib)
		}
		p := bytes.Repeat([]byte{0x5a}, 8192)
		if err := src.st.WriteVolume(ctx, "v1", 30*mib, p, false); err != nil {
			t.Fatal(err)
		}
		got := make([]byte, len(p))
		if err := tg.st.ReadVolume(ctx, "v1", 30*mib, got); err != nil || !bytes.Equal(got, p) {
			t.Fatalf("a write to the new range is not on the peer when acknowledged (%v)", err)
		}
		if rep := syncNow(t, src); rep.SyncState != array.SyncInSync {
			t.Fatalf("pod after an extend: %+v", rep)
		}
	})
	t.Run("pod peer away", func(t *testing.T) {
		src, tg := newPod(t, time.Second)
		ctx := t.Context()
		tg.halt()
		if _, err := src.st.ExtendVolume(ctx, "v1", 32*mib); err != nil {
			t.Fatalf("extending with the pod's peer away: %v", err)
		}
		p := bytes.Repeat([]byte{0x6b}, 8192)
		if err := src.st.WriteVolume(ctx, "v1", 30*mib, p, false); err != nil {
			t.Fatal(err)
		}
		tg.start()
		if rep := syncNow(t, src); rep.SyncState != array.SyncInSync {
			t.Fatalf("pod after the peer came back: %+v", rep)
		}
		pv, err := tg.st.GetVolume(ctx, "v1")
		if err != nil || pv.SizeBytes != 32*mib {
			t.Fatalf("peer's copy after the resync: %+v, %v; want %d bytes", pv, err, 32*mib)
		}
		got := make([]byte, len(p))
		if err := tg.st.ReadVolume(ctx, "v1", 30*mib, got); err != nil || !bytes.Equal(got, p) {
			t.Fatalf("the write to the new range did not reach the peer (%v)", err)
		}
	})
	t.Run("async", func(t *testing.T) {
		clk := clock.NewFake(t0)
		src, tg := newSource(t, clk), newTarget(t)
		ctx := t.Context()
		if _, err := src.st.CreateVolume(ctx, array.VolumeSpec{Name: "vol", Pool: "cinder", SizeBytes: 8 * mib}); err != nil {
			t.Fatal(err)
		}
		protect(t, src, tg, "r", array.ReplicaSpec{Kind: array.KindVolume, Local: "vol", Interval: time.Hour})
		waitCycle(t, src.eng, "r", "r.1")
		if _, err := src.st.ExtendVolume(ctx, "vol", 24*mib); err != nil {
			t.Fatal(err)
		}
		if err := src.st.WriteVolume(ctx, "vol", 20*mib, bytes.Repeat([]byte{7}, 4096), false); err != nil {
			t.Fatal(err)
		}
		if v, err := tg.st.GetVolume(ctx, "vol"); err != nil || v.SizeBytes != 8*mib {
			t.Fatalf("target before the next cycle: %+v, %v", v, err)
		}
		clk.Advance(time.Hour)
		rep := waitCycle(t, src.eng, "r", "r.2")
		v, err := tg.st.GetVolume(ctx, "vol")
		if err != nil || v.SizeBytes != 24*mib {
			t.Fatalf("target after the next cycle: %+v, %v; want %d bytes", v, err, 24*mib)
		}
		got := make([]byte, 4096)
		if err := tg.st.ReadSnapshot(ctx, "vol", "r.2", 20*mib, got); err != nil || got[0] != 7 {
			t.Fatalf("the write to the new range on the target: %v, %v", got[:1], err)
		}
		if rep.State != array.StateActive {
			t.Fatalf("replica after an extend: %+v", rep)
		}
	})
}
