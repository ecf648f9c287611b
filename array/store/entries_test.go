package store

import (
	"bytes"
	"context"
	"path/filepath"
	"testing"

	"github.com/volrep/volrep/array"
)

// TestLayerEntriesDurableBeforeBitmaps: creating volumes creates no
// file and costs no directory fsync; a layer's file appears with its
// first write, and no bitmap naming its blocks is committed before one
// directory fsync has covered that file; one fsync covers every file
// created before it.
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
	if s.created.Load() != 0 || s.entries.Load() != 0 {
		t.Fatalf("after three creates: %d files created, %d entries synced; creates should do neither", s.created.Load(), s.entries.Load())
	}
	if files, _ := filepath.Glob(filepath.Join(dir, "layers", "*.dat")); len(files) != 0 {
		t.Fatalf("volumes never written have files: %v", files)
	}
	// A volume never written reads zeros.
	zeros := make([]byte, 4096)
	if err := s.ReadVolume(ctx, "v3", 0, zeros); err != nil || !bytes.Equal(zeros, make([]byte, 4096)) {
		t.Fatalf("reading a volume never written: %v", err)
	}
	p := bytes.Repeat([]byte{7}, 4096)
	for _, n := range []string{"v1", "v2"} {
		if err := s.WriteVolume(ctx, n, 0, p, false); err != nil {
			t.Fatal(err)
		}
	}
	v1 := s.vols["v1"].live
	if v1.gen.Load() == 0 || s.created.Load() != 2 || s.entries.Load() != 0 {
		t.Fatalf("after writing v1 and v2: v1 gen %d, %d files created, %d synced", v1.gen.Load(), s.created.Load(), s.entries.Load())
	}
	if err := s.FlushVolume(ctx, "v1"); err != nil {
		t.Fatal(err)
	}
	if got := s.entries.Load(); got < 2 {
		t.Fatalf("after v1's first flush, %d entries synced; want both files created before it", got)
	}
	// A file created after the sync waits for the next one.
	if _, err := s.CreateSnapshot(ctx, "v2", "s1", nil); err != nil {
		t.Fatal(err)
	}
	if err := s.WriteVolume(ctx, "v2", 4096, p, false); err != nil {
		t.Fatal(err)
	}
	if live := s.vols["v2"].live; live.gen.Load() <= s.entries.Load() {
		t.Fatalf("v2's new live layer (gen %d) counts as durable (%d) with no fsync since", live.gen.Load(), s.entries.Load())
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
		if err := s2.durableEntry(l); err != nil || l.gen.Load() != 0 {
			t.Fatalf("reopened layer %d: gen %d, %v", l.id, l.gen.Load(), err)
		}
	}
	got := make([]byte, 4096)
	if err := s2.ReadVolume(ctx, "v1", 0, got); err != nil || !bytes.Equal(got, p) {
		t.Fatalf("v1 after reopen: %v", err)
	}
	// Reopening creates no file for a layer never written.
	if s2.vols["v3"].live.data() != nil {
		t.Fatal("reopening gave v3, never written, a file")
	}
}
