package store

import (
	"bytes"
	"testing"
	"time"

	"github.com/volrep/volrep/array"
	"github.com/volrep/volrep/errdefs"
)

// TestQuietSnapshotsShareALayer: snapshots with nothing written between
// them read one layer (no new layer, no volume record), report no bytes of
// their own, diff as empty, and survive deletes in any order and a
// restart; a write ends the sharing, and a snapshot after a revert to an
// older snapshot does not share.
func TestQuietSnapshotsShareALayer(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	s, err := Open(dir, Options{Name: "quiet"})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { s.Close() }()
	if _, err := s.CreatePool(ctx, "p"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateVolume(ctx, array.VolumeSpec{Name: "v", Pool: "p", SizeBytes: 1 << 20}); err != nil {
		t.Fatal(err)
	}
	first := bytes.Repeat([]byte{7}, 64<<10)
	second := bytes.Repeat([]byte{9}, 64<<10)
	write := func(off int64, p []byte) {
		t.Helper()
		if err := s.WriteVolume(ctx, "v", off, p, false); err != nil {
			t.Fatal(err)
		}
	}
	snap := func(name string) array.Snapshot {
		t.Helper()
		sn, err := s.CreateSnapshot(ctx, "v", name, nil)
		if err != nil {
			t.Fatal(err)
		}
		return sn
	}
	layerOf := func(name string) *layer { t.Helper(); return snapshotLayer(t, s, "v", name) }
	layers := func() int { return layerCount(s) }
	reads := func(name string, want []byte, off int64) {
		t.Helper()
		got := make([]byte, len(want))
		if name == "" {
			err = s.ReadVolume(ctx, "v", off, got)
		} else {
			err = s.ReadSnapshot(ctx, "v", name, off, got)
		}
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("%q at %d does not read what was written", name, off)
		}
	}

	write(0, first)
	s1 := snap("s1")
	if s1.UsedBytes != int64(len(first)) {
		t.Fatalf("s1 alone holds %d bytes, want %d", s1.UsedBytes, len(first))
	}
	n := layers()
	snap("s2")
	snap("s3")
	if got := layers(); got != n {
		t.Fatalf("two snapshots of a quiet volume made %d layers", got-n)
	}
	l := layerOf("s1")
	if layerOf("s2") != l || layerOf("s3") != l || l.snaps != 3 {
		t.Fatalf("quiet snapshots do not share s1's layer (%d snapshots on it)", l.snaps)
	}
	for _, name := range []string{"s1", "s2", "s3"} {
		sn, err := s.GetSnapshot(ctx, "v", name)
		if err != nil || sn.UsedBytes != 0 {
			t.Fatalf("%s: %d bytes of its own (err %v); a shared layer is held by none alone", name, sn.UsedBytes, err)
		}
		reads(name, first, 0)
	}
	if ext, err := s.Diff(ctx, "v", "s1", "s3"); err != nil || len(ext) != 0 {
		t.Fatalf("diff of two quiet snapshots: %v %v", ext, err)
	}
	if same, err := s.Unchanged(ctx, "v", "s2", "s3"); err != nil || !same {
		t.Fatalf("Unchanged(s2, s3) = %v, %v", same, err)
	}

	// Deleting the oldest or the middle one leaves the layer to the rest.
	if err := s.DeleteSnapshot(ctx, "v", "s1"); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteSnapshots(ctx, []SnapshotRef{{Volume: "v", Name: "s2"}}); err != nil {
		t.Fatal(err)
	}
	if layerOf("s3") != l || l.snaps != 1 {
		t.Fatalf("s3 lost its layer, or the layer counts %d snapshots", l.snaps)
	}
	reads("s3", first, 0)

	// A write ends the sharing: the next snapshot freezes the live layer.
	write(64<<10, second)
	n = layers()
	snap("s4")
	if got := layers(); got != n+1 || layerOf("s4") == l {
		t.Fatalf("a snapshot after a write made %d layers and shares s3's: %v", got-n, layerOf("s4") == l)
	}
	if ext, err := s.Diff(ctx, "v", "s3", "s4"); err != nil || len(ext) != 1 || ext[0].Offset != 64<<10 || ext[0].Length != 64<<10 {
		t.Fatalf("diff s3..s4: %+v %v", ext, err)
	}

	// The counts come back from the records after a restart.
	s.Close()
	if s, err = Open(dir, Options{Name: "quiet"}); err != nil {
		t.Fatal(err)
	}
	snap("s5")
	l4 := layerOf("s4")
	if layerOf("s5") != l4 || l4.snaps != 2 || layerOf("s3").snaps != 1 {
		t.Fatalf("after a restart: s5 shares s4's layer %v, counts %d and %d", layerOf("s5") == l4, l4.snaps, layerOf("s3").snaps)
	}
	if sn, _ := s.GetSnapshot(ctx, "v", "s3"); sn.UsedBytes != int64(len(first)) {
		t.Fatalf("s3, alone on its layer, holds %d bytes", sn.UsedBytes)
	}

	// Reverting to s3 puts the live layer on s3's, which is not the
	// newest snapshot's: the next snapshot does not share it.
	if _, err := s.RevertVolume(ctx, "v", "s3"); err != nil {
		t.Fatal(err)
	}
	snap("s6")
	if layerOf("s6") == layerOf("s3") {
		t.Fatal("a snapshot after a revert shares the older snapshot's layer")
	}
	reads("s6", first, 0)
	reads("s6", make([]byte, 64<<10), 64<<10)

	// All of them deleted together, then a restart: the data stays.
	var all []SnapshotRef
	for _, name := range []string{"s3", "s4", "s5", "s6"} {
		all = append(all, SnapshotRef{Volume: "v", Name: name})
	}
	if err := s.DeleteSnapshots(ctx, all); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if s, err = Open(dir, Options{Name: "quiet"}); err != nil {
		t.Fatal(err)
	}
	reads("", first, 0)
	reads("", make([]byte, 64<<10), 64<<10)
	if _, err := s.GetSnapshot(ctx, "v", "s5"); !errdefs.IsNotFound(err) {
		t.Fatalf("s5 survived its delete (err %v)", err)
	}
	if got := layers(); got != 1 {
		t.Fatalf("%d layers left for a volume with no snapshots, want 1", got)
	}
}

// TestEmptyDeltaSharesTheBaseLayer: a transfer that changes nothing,
// from the target volume's newest snapshot, is committed as a snapshot
// on that snapshot's layer (the staging layer is dropped); one that
// changes something, or arrives after the target was written, is not.
func TestEmptyDeltaSharesTheBaseLayer(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	s, err := Open(dir, Options{Name: "target"})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { s.Close() }()
	if _, err := s.CreatePool(ctx, "p"); err != nil {
		t.Fatal(err)
	}
	data := bytes.Repeat([]byte{5}, 64<<10)
	receive := func(id, base string, write []byte) array.Snapshot {
		t.Helper()
		r, err := s.BeginReceive(ctx, ReceiveSpec{TransferID: id, Volume: "v", Pool: "p", SizeBytes: 1 << 20, BaseGUID: base,
			Snapshot: SnapshotRequest{Name: id, GUID: "guid-" + id}, Created: time.Now(), ReadOnly: true})
		if err != nil {
			t.Fatal(err)
		}
		defer r.Release()
		if write != nil {
			if err := r.WriteBlocks([]Blocks{{Off: 0, Data: write}}); err != nil {
				t.Fatal(err)
			}
		}
		sn, err := r.Commit(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return sn
	}
	layerOf := func(name string) *layer { t.Helper(); return snapshotLayer(t, s, "v", name) }
	layers := func() int { return layerCount(s) }
	read := func(name string) []byte {
		t.Helper()
		got := make([]byte, len(data))
		if err := s.ReadSnapshot(ctx, "v", name, 0, got); err != nil {
			t.Fatal(err)
		}
		return got
	}

	t1 := receive("t1", "", data)
	n := layers()
	t2 := receive("t2", t1.GUID, nil)
	if got := layers(); got != n || layerOf("t2") != layerOf("t1") {
		t.Fatalf("an empty delta left %d more layers, shares t1's layer: %v", got-n, layerOf("t2") == layerOf("t1"))
	}
	if t2.GUID != "guid-t2" || !bytes.Equal(read("t2"), data) {
		t.Fatalf("t2: %+v, or it does not read as t1", t2)
	}
	// The same transfer again is answered with the snapshot it made.
	if again := receive("t2", t1.GUID, nil); again.GUID != t2.GUID {
		t.Fatalf("a retried transfer made %+v", again)
	}
	// A delta with data freezes a layer of its own.
	other := bytes.Repeat([]byte{6}, 64<<10)
	receive("t3", t2.GUID, other)
	if layerOf("t3") == layerOf("t2") || !bytes.Equal(read("t3"), other) {
		t.Fatal("a delta with data shares its base's layer, or lost its data")
	}

	// After a restart: the records alone give the sharing back, and
	// deleting t1 leaves t2 its layer.
	s.Close()
	if s, err = Open(dir, Options{Name: "target"}); err != nil {
		t.Fatal(err)
	}
	if l := layerOf("t2"); l != layerOf("t1") || l.snaps != 2 {
		t.Fatalf("after a restart t2 does not share t1's layer (%d snapshots on t2's)", l.snaps)
	}
	if err := s.DeleteSnapshot(ctx, "v", "t1"); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(read("t2"), data) || !bytes.Equal(read("t3"), other) {
		t.Fatal("deleting t1 changed t2 or t3")
	}
	got := make([]byte, len(other))
	if err := s.ReadVolume(ctx, "v", 0, got); err != nil || !bytes.Equal(got, other) {
		t.Fatalf("the volume does not read as its newest snapshot: %v", err)
	}
}

// snapshotLayer is the layer snapshot vol@name reads.
func snapshotLayer(t *testing.T, s *Store, vol, name string) *layer {
	t.Helper()
	s.mu.RLock()
	defer s.mu.RUnlock()
	_, sn, err := s.snapshotLocked(vol, name)
	if err != nil {
		t.Fatal(err)
	}
	return sn.layer
}

// layerCount is how many layers the store holds.
func layerCount(s *Store) int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.layers)
}
