package store_test

import (
	"bytes"
	"context"
	"sync"
	"testing"

	"github.com/volrep/volrep/array"
	"github.com/volrep/volrep/array/store"
)

// rangeRecorder is a Mirror that records the ranges it is told diverged.
type rangeRecorder struct {
	mu       sync.Mutex
	diverged [][2]int64
}

func (r *rangeRecorder) Write(int64, []byte) store.Wait { return nil }
func (r *rangeRecorder) Zero(int64, int64) store.Wait   { return nil }
func (r *rangeRecorder) Flush(context.Context) error    { return nil }
func (r *rangeRecorder) Diverged(off, length int64) {
	r.mu.Lock()
	r.diverged = append(r.diverged, [2]int64{off, length})
	r.mu.Unlock()
}

// TestRevertOpenHandleAndReopen: a handle opened before the revert (an
// NBD or iSCSI session) reads the snapshot's content on its next read and
// writes on top of it; the sync mirror is told exactly the changed blocks;
// and the reverted volume survives a restart.
func TestRevertOpenHandleAndReopen(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	s, err := store.Open(dir, store.Options{Name: "rv"})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { s.Close() }()
	noErr(t)(s.CreatePool(ctx, "p"))
	noErr(t)(s.CreateVolume(ctx, array.VolumeSpec{Name: "v", Pool: "p", SizeBytes: mib}))
	h, err := s.OpenVolume(ctx, "v")
	if err != nil {
		t.Fatal(err)
	}
	a := bytes.Repeat([]byte{'A'}, 8192)
	if err := h.WriteAt(ctx, a, 0, false); err != nil {
		t.Fatal(err)
	}
	noErr(t)(s.CreateSnapshot(ctx, "v", "snap", nil))
	rec := &rangeRecorder{}
	if err := s.SetMirror(ctx, "v", rec); err != nil {
		t.Fatal(err)
	}
	if err := h.WriteAt(ctx, bytes.Repeat([]byte{'B'}, 4096), 4096, false); err != nil {
		t.Fatal(err)
	}
	if err := h.WriteAt(ctx, bytes.Repeat([]byte{'B'}, 4096), 40960, false); err != nil {
		t.Fatal(err)
	}
	noErr(t)(s.RevertVolume(ctx, "v", "snap"))
	got := make([]byte, 8192)
	if err := h.ReadAt(ctx, got, 0); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, a) {
		t.Fatalf("open handle reads %q... after the revert, want the snapshot's A", got[4096:4100])
	}
	rec.mu.Lock()
	div := rec.diverged
	rec.mu.Unlock()
	if len(div) != 2 || div[0] != [2]int64{4096, 4096} || div[1] != [2]int64{40960, 4096} {
		t.Fatalf("mirror told %v diverged, want the two blocks written since the snapshot", div)
	}
	if err := s.SetMirror(ctx, "v", nil); err != nil {
		t.Fatal(err)
	}
	// The handle writes into the new layer; the snapshot is untouched.
	if err := h.WriteAt(ctx, []byte("C"), 0, true); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if s, err = store.Open(dir, store.Options{Name: "rv"}); err != nil {
		t.Fatal(err)
	}
	want := append([]byte("C"), a[1:]...)
	if err := s.ReadVolume(ctx, "v", 0, got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("after reopen the volume reads %q..., want C then A", got[:4])
	}
	if err := s.ReadSnapshot(ctx, "v", "snap", 0, got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, a) {
		t.Fatal("the snapshot changed")
	}
}
