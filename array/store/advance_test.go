package store_test

import (
	"bytes"
	"slices"
	"testing"
	"time"

	"github.com/volrep/volrep/array"
	"github.com/volrep/volrep/array/store"
	"github.com/volrep/volrep/errdefs"
)

// TestAdvanceSnapshots: an unchanged volume whose newest snapshot is the
// base takes the snapshot with the given identity and time; a wrong base
// or a write since the newest snapshot refuses that volume alone; and
// batched deletes leave the data readable after a restart.
func TestAdvanceSnapshots(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	s, err := store.Open(dir, store.Options{Name: "adv"})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { s.Close() }()
	noErr(t)(s.CreatePool(ctx, "p"))
	data := bytes.Repeat([]byte{7}, 64<<10)
	base := map[string]array.Snapshot{}
	for _, v := range []string{"a", "b", "c"} {
		noErr(t)(s.CreateVolume(ctx, array.VolumeSpec{Name: v, Pool: "p", SizeBytes: mib}))
		if err := s.WriteVolume(ctx, v, 0, data, false); err != nil {
			t.Fatal(err)
		}
		sn, err := s.CreateSnapshot(ctx, v, "s1", nil)
		if err != nil {
			t.Fatal(err)
		}
		base[v] = sn
	}
	// c is written after s1: it changed, so it cannot advance.
	if err := s.WriteVolume(ctx, "c", 0, []byte{9}, false); err != nil {
		t.Fatal(err)
	}
	created := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	req := func(v, baseGUID string) store.AdvanceRequest {
		return store.AdvanceRequest{BaseGUID: baseGUID, SnapshotRequest: store.SnapshotRequest{Volume: v, Name: "s2", GUID: "guid-" + v, Created: created, Labels: map[string]string{"k": v}}}
	}
	out, refused, err := s.AdvanceSnapshots(ctx, []store.AdvanceRequest{req("a", base["a"].GUID), req("b", "not-the-base"), req("c", base["c"].GUID)})
	if err != nil {
		t.Fatal(err)
	}
	if refused[0] != nil || out[0].GUID != "guid-a" || !out[0].Created.Equal(created) || out[0].Labels["k"] != "a" {
		t.Fatalf("a: %+v, refused %v", out[0], refused[0])
	}
	for i, v := range []string{"b", "c"} {
		if !errdefs.IsFailedPrecondition(refused[i+1]) {
			t.Fatalf("%s was not refused: %v", v, refused[i+1])
		}
		if _, err := s.GetSnapshot(ctx, v, "s2"); !errdefs.IsNotFound(err) {
			t.Fatalf("a refused volume %s got snapshot s2 (err %v)", v, err)
		}
	}
	// A retry is answered with the snapshot already taken.
	out, refused, err = s.AdvanceSnapshots(ctx, []store.AdvanceRequest{req("a", base["a"].GUID)})
	if err != nil || refused[0] != nil || out[0].GUID != "guid-a" {
		t.Fatalf("retry: %+v %v %v", out, refused, err)
	}
	// Deleting s1 of a and b together folds a's empty s2 layer and b's
	// live layer; the data stays.
	if err := s.DeleteSnapshots(ctx, []store.SnapshotRef{{Volume: "a", Name: "s1"}, {Volume: "b", Name: "s1"}, {Volume: "a", Name: "gone"}}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if s, err = store.Open(dir, store.Options{Name: "adv"}); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(data))
	for _, read := range []func() error{
		func() error { return s.ReadSnapshot(ctx, "a", "s2", 0, got) },
		func() error { return s.ReadVolume(ctx, "a", 0, got) },
		func() error { return s.ReadVolume(ctx, "b", 0, got) },
	} {
		clear(got)
		if err := read(); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, data) {
			t.Fatal("data changed by the batched delete")
		}
	}
	if _, err := s.GetSnapshot(ctx, "a", "s1"); !errdefs.IsNotFound(err) {
		t.Fatalf("s1 of a survived the delete (err %v)", err)
	}
}

// TestSnapshotsLabeled: retention's listing holds the volume's snapshots
// with the label's value, oldest first (by time, then name), each with
// its name, GUID and time as ListSnapshots gives them; a missing volume
// is NOT_FOUND.
func TestSnapshotsLabeled(t *testing.T) {
	ctx := t.Context()
	at := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	s, err := store.Open(t.TempDir(), store.Options{Name: "lab", Now: func() time.Time { return at }})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	noErr(t)(s.CreatePool(ctx, "p"))
	noErr(t)(s.CreateVolume(ctx, array.VolumeSpec{Name: "v", Pool: "p", SizeBytes: mib}))
	for i, name := range []string{"r.3", "x.1", "r.1", "r.2", "other.1"} {
		labels := map[string]string{"volrep.replica": "r"}
		switch name {
		case "x.1":
			labels = nil
		case "other.1":
			labels["volrep.replica"] = "other"
		}
		if name == "r.1" || name == "r.2" {
			at = time.Date(2026, 12, 6, 11, 0, 0, 0, time.UTC) // older than r.3, and equal: by name
		} else {
			at = time.Date(2026, 12, 6, 12, 0, i, 0, time.UTC)
		}
		noErr(t)(s.CreateSnapshot(ctx, "v", name, labels))
	}
	got, err := s.SnapshotsLabeled(ctx, "v", "volrep.replica", "r")
	if err != nil {
		t.Fatal(err)
	}
	all, err := s.ListSnapshots(ctx, "v")
	if err != nil {
		t.Fatal(err)
	}
	full := map[string]array.Snapshot{}
	for _, sn := range all {
		full[sn.Name] = sn
	}
	var names []string
	for _, sn := range got {
		names = append(names, sn.Name)
		if f := full[sn.Name]; sn.GUID != f.GUID || !sn.Created.Equal(f.Created) || sn.Volume != "v" || sn.SizeBytes != mib {
			t.Fatalf("%s listed as %+v; ListSnapshots has %+v", sn.Name, sn, f)
		}
	}
	if want := []string{"r.1", "r.2", "r.3"}; !slices.Equal(names, want) {
		t.Fatalf("the snapshots labeled r: %q, want %q", names, want)
	}
	if _, err := s.SnapshotsLabeled(ctx, "nope", "volrep.replica", "r"); !errdefs.IsNotFound(err) {
		t.Fatalf("a missing volume: %v, want NOT_FOUND", err)
	}
}
