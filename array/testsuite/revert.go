package testsuite

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/volrep/volrep/array"
	"github.com/volrep/volrep/errdefs"
)

// testRevert reverts a volume to an older snapshot and then to one on the
// branch it left, and checks content, the delta replication would send
// after a revert, and the refusals.
func testRevert(t *testing.T, a array.Array) {
	ctx := setup(t, a)
	const blk = array.BlockSize
	mVol(t)(a.CreateVolume(ctx, array.VolumeSpec{Name: "r", Pool: "p1", SizeBytes: mib}))
	fill := func(b byte, n int) []byte { return bytes.Repeat([]byte{b}, n*blk) }
	ok(t, a.WriteVolume(ctx, "r", 0, fill('A', 2), false))
	ok(t, a.WriteVolume(ctx, "r", 8*blk, fill('A', 1), false))
	mSnap(t)(a.CreateSnapshot(ctx, "r", "s1", nil))
	want1 := make([]byte, mib)
	ok(t, a.ReadVolume(ctx, "r", 0, want1))
	ok(t, a.WriteVolume(ctx, "r", 0, fill('B', 1), false))
	ok(t, a.WriteVolume(ctx, "r", 16*blk, fill('B', 1), false))
	mSnap(t)(a.CreateSnapshot(ctx, "r", "s2", nil))
	want2 := make([]byte, mib)
	ok(t, a.ReadVolume(ctx, "r", 0, want2))
	ok(t, a.WriteVolume(ctx, "r", 0, fill('C', 1), false))
	ok(t, a.WriteVolume(ctx, "r", 32*blk, fill('C', 1), false))

	v := mVol(t)(a.RevertVolume(ctx, "r", "s1"))
	if v.Name != "r" || v.SizeBytes != mib || v.SnapshotCount != 2 {
		t.Fatalf("RevertVolume = %+v", v)
	}
	got := make([]byte, mib)
	ok(t, a.ReadVolume(ctx, "r", 0, got))
	if !bytes.Equal(got, want1) {
		t.Fatal("after reverting to s1 the volume does not read as s1")
	}
	// A snapshot after the revert differs from s2 (the newest snapshot a
	// replica target would hold) in exactly the blocks s2 changed since
	// s1: block 0 (back to A) and block 16 (back to zeros). The writes
	// the revert discarded (C) are not in it.
	mSnap(t)(a.CreateSnapshot(ctx, "r", "s3", nil))
	delta := mExts(t)(a.Diff(ctx, "r", "s2", "s3"))
	wantExt := []array.Extent{{Offset: 0, Length: blk}, {Offset: 16 * blk, Length: blk, Zero: true}}
	if fmt.Sprint(delta) != fmt.Sprint(wantExt) {
		t.Fatalf("delta s2..s3 after revert = %v, want %v", delta, wantExt)
	}

	// Back to s2, on the branch the first revert left.
	ok(t, a.WriteVolume(ctx, "r", 40*blk, fill('D', 1), false))
	mVol(t)(a.RevertVolume(ctx, "r", "s2"))
	ok(t, a.ReadVolume(ctx, "r", 0, got))
	if !bytes.Equal(got, want2) {
		t.Fatal("after reverting to s2 the volume does not read as s2")
	}

	_, err := a.RevertVolume(ctx, "r", "ghost")
	wantKind(t, err, errdefs.KindNotFound, "revert to an unknown snapshot")
	mVol(t)(a.CreateVolume(ctx, array.VolumeSpec{Name: "other", Pool: "p1", SizeBytes: mib}))
	_, err = a.RevertVolume(ctx, "other", "s1")
	wantKind(t, err, errdefs.KindNotFound, "revert to another volume's snapshot")
	_, err = a.RevertVolume(ctx, "r", "bad/name")
	wantKind(t, err, errdefs.KindInvalidArgument, "revert to a bad snapshot name")
	ok(t, a.SetReadOnly(ctx, "r", true))
	_, err = a.RevertVolume(ctx, "r", "s1")
	wantKind(t, err, errdefs.KindFailedPrecondition, "revert a read-only replica target")
	ok(t, a.SetReadOnly(ctx, "r", false))
	mVol(t)(a.ExtendVolume(ctx, "r", 2*mib))
	_, err = a.RevertVolume(ctx, "r", "s1")
	wantKind(t, err, errdefs.KindFailedPrecondition, "revert to a snapshot smaller than the volume")

	// Every snapshot and the volume still delete: the branch's layers
	// are collected.
	for _, s := range []string{"s1", "s3", "s2"} {
		ok(t, a.DeleteSnapshot(ctx, "r", s))
	}
	ok(t, a.DeleteVolume(ctx, "r"))
}
