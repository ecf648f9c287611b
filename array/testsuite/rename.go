package testsuite

import (
	"bytes"
	"testing"

	"github.com/volrep/volrep/array"
	"github.com/volrep/volrep/errdefs"
)

// testRename renames a volume with snapshots and a clone, then a
// snapshot, and checks that data, snapshots, clone sources and labels
// follow, and the refusals.
func testRename(t *testing.T, a array.Array) {
	ctx := setup(t, a)
	mVol(t)(a.CreateVolume(ctx, array.VolumeSpec{Name: "old", Pool: "p1", SizeBytes: mib, Labels: map[string]string{"k": "v"}}))
	data := bytes.Repeat([]byte{'R'}, array.BlockSize)
	ok(t, a.WriteVolume(ctx, "old", 0, data, false))
	mSnap(t)(a.CreateSnapshot(ctx, "old", "s1", map[string]string{"s": "1"}))
	mVol(t)(a.CloneSnapshot(ctx, array.CloneSpec{Volume: "old", Snapshot: "s1", Name: "clone"}))

	v := mVol(t)(a.RenameVolume(ctx, "old", "new", nil))
	if v.Name != "new" || v.SnapshotCount != 1 || v.Labels["k"] != "v" {
		t.Fatalf("RenameVolume keeping labels = %+v", v)
	}
	_, err := a.GetVolume(ctx, "old")
	wantKind(t, err, errdefs.KindNotFound, "the old name after a rename")
	got := make([]byte, array.BlockSize)
	ok(t, a.ReadVolume(ctx, "new", 0, got))
	if !bytes.Equal(got, data) {
		t.Fatal("the renamed volume does not read as before")
	}
	sn := mSnap(t)(a.GetSnapshot(ctx, "new", "s1"))
	if sn.Volume != "new" || sn.Labels["s"] != "1" {
		t.Fatalf("snapshot after its volume's rename = %+v", sn)
	}
	ok(t, a.ReadSnapshot(ctx, "new", "s1", 0, got))
	if c := mVol(t)(a.GetVolume(ctx, "clone")); c.Source != "new@s1" {
		t.Fatalf("clone source after the rename = %q, want new@s1", c.Source)
	}

	v = mVol(t)(a.RenameVolume(ctx, "new", "new", map[string]string{"owner": "x"}))
	if len(v.Labels) != 1 || v.Labels["owner"] != "x" {
		t.Fatalf("labels after replacing them = %v", v.Labels)
	}

	s := mSnap(t)(a.RenameSnapshot(ctx, "new", "s1", "s2", map[string]string{}))
	if s.Name != "s2" || len(s.Labels) != 0 {
		t.Fatalf("RenameSnapshot = %+v", s)
	}
	_, err = a.GetSnapshot(ctx, "new", "s1")
	wantKind(t, err, errdefs.KindNotFound, "the old snapshot name after a rename")
	if c := mVol(t)(a.GetVolume(ctx, "clone")); c.Source != "new@s2" {
		t.Fatalf("clone source after the snapshot's rename = %q, want new@s2", c.Source)
	}

	_, err = a.RenameVolume(ctx, "new", "clone", nil)
	wantKind(t, err, errdefs.KindAlreadyExists, "renaming onto another volume")
	_, err = a.RenameVolume(ctx, "missing", "x", nil)
	wantKind(t, err, errdefs.KindNotFound, "renaming a missing volume")
	mSnap(t)(a.CreateSnapshot(ctx, "new", "s3", nil))
	_, err = a.RenameSnapshot(ctx, "new", "s2", "s3", nil)
	wantKind(t, err, errdefs.KindAlreadyExists, "renaming onto another snapshot")

	// Things that reach a volume by name keep it from being renamed.
	mustT[array.Group](t)(a.CreateGroup(ctx, "g", "p1", nil))
	mustT[array.Group](t)(a.AddMembers(ctx, "g", []string{"clone"}))
	// A member names its group (the driver reads a volume's protection
	// from it).
	if v := mVol(t)(a.GetVolume(ctx, "clone")); v.Group != "g" {
		t.Fatalf("GetVolume of a member of group g: group %q", v.Group)
	}
	_, err = a.RenameVolume(ctx, "clone", "c2", nil)
	wantKind(t, err, errdefs.KindFailedPrecondition, "renaming a group member")
	mustT[array.Group](t)(a.RemoveMembers(ctx, "g", []string{"clone"}))
	if v := mVol(t)(a.RenameVolume(ctx, "clone", "c2", nil)); v.Group != "" {
		t.Fatalf("a volume out of every group reports group %q", v.Group)
	}

	e, err := a.CreateExport(ctx, array.ExportSpec{Volume: "new", Snapshot: "s2", AttachmentID: "h"})
	ok(t, err)
	_, err = a.RenameSnapshot(ctx, "new", "s2", "s4", nil)
	wantKind(t, err, errdefs.KindFailedPrecondition, "renaming an exported snapshot")
	_, err = a.RenameVolume(ctx, "new", "n2", nil)
	wantKind(t, err, errdefs.KindFailedPrecondition, "renaming a volume whose snapshot is exported")
	_, err = a.DeleteExport(ctx, e.Name, "", "")
	ok(t, err)
	mSnap(t)(a.RenameSnapshot(ctx, "new", "s2", "s4", nil))

	ok(t, a.SetReadOnly(ctx, "c2", true))
	_, err = a.RenameVolume(ctx, "c2", "c3", nil)
	wantKind(t, err, errdefs.KindFailedPrecondition, "renaming a read-only replica target")
}
