package store

import (
	"bytes"
	"context"
	"testing"

	"github.com/volrep/volrep/array"
)

// TestLayerEntriesDurableBeforeBitmaps: creating volumes costs no
// directory fsync, and no bitmap naming a layer's blocks is committed
// before one directory fsync has covered that layer's file; one fsync
// covers every layer created before it.
func TestLayerEntriesDurableBeforeBitmaps(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, err := Open(dir, Options{Name: "entries"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.CreatePool(ctx, "cinder"); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"v1", "v2", "v3"} {
		if _, err := s.CreateVolume(ctx, array.VolumeSpec{Name: n, Pool: "cinder", SizeBytes: 1 << 20}); err != nil {
			t.Fatal(err)
		}
	}
	if got, want := s.entries.Load(), uint64(0); got != want {
		t.Fatalf("after three creates %d layer entries were synced; creates should sync none", got)
	}
	v1 := s.vols["v1"].live
	if v1.gen == 0 || s.created.Load() != 3 {
		t.Fatalf("layer generations: v1 %d, created %d", v1.gen, s.created.Load())
	}
	p := bytes.Repeat([]byte{7}, 4096)
	if err := s.WriteVolume(ctx, "v1", 0, p, false); err != nil {
		t.Fatal(err)
	}
	if err := s.FlushVolume(ctx, "v1"); err != nil {
		t.Fatal(err)
	}
	if got := s.entries.Load(); got < 3 {
		t.Fatalf("after v1's first flush, %d entries synced; want all 3 created before it", got)
	}
	// A layer created after the sync waits for the next one.
	if _, err := s.CreateSnapshot(ctx, "v2", "s1", nil); err != nil {
		t.Fatal(err)
	}
	if live := s.vols["v2"].live; live.gen <= s.entries.Load() {
		t.Fatalf("v2's new live layer (gen %d) counts as durable (%d) with no fsync since", live.gen, s.entries.Load())
	}
	// After a restart every layer found counts as durable (Open syncs the directory).
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s2, err := Open(dir, Options{Name: "entries"})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	for _, l := range s2.layers {
		if err := s2.durableEntry(l); err != nil || l.gen != 0 {
			t.Fatalf("reopened layer %d: gen %d, %v", l.id, l.gen, err)
		}
	}
	got := make([]byte, 4096)
	if err := s2.ReadVolume(ctx, "v1", 0, got); err != nil || !bytes.Equal(got, p) {
		t.Fatalf("v1 after reopen: %v", err)
	}
}
