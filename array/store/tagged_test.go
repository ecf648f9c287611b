package store_test

import (
	"bytes"
	"testing"

	"github.com/volrep/volrep/array/store"
	"github.com/volrep/volrep/errdefs"
)

// TestTaggedWaitIsAlwaysCallable: the preferred array calls the wait of a
// forwarded write whatever its error, so a refused write (a volume that is
// read-only here, a COMPARE AND WRITE whose halves differ in length) must
// still return a wait that can be called, not nil.
func TestTaggedWaitIsAlwaysCallable(t *testing.T) {
	s := storeWithVolume(t, t.TempDir(), "a", 1<<20)
	ctx := t.Context()
	h, err := s.OpenVolume(ctx, "v")
	if err != nil {
		t.Fatal(err)
	}
	p := bytes.Repeat([]byte{7}, 4096)
	wait, err := h.CompareAndWriteTagged(ctx, p[:512], p, 0, store.MirrorTag{})
	if !errdefs.IsInvalidArgument(err) || wait == nil || wait(t.Context()) != nil {
		t.Fatalf("a COMPARE AND WRITE with halves of different lengths: wait %v, %v; want INVALID_ARGUMENT and a callable wait", wait != nil, err)
	}
	if err := s.SetReadOnly(ctx, "v", true); err != nil {
		t.Fatal(err)
	}
	for name, write := range map[string]func() (store.Wait, error){
		"write":             func() (store.Wait, error) { return h.WriteTagged(ctx, p, 0, store.MirrorTag{}) },
		"compare and write": func() (store.Wait, error) { return h.CompareAndWriteTagged(ctx, p, p, 0, store.MirrorTag{}) },
	} {
		wait, err := write()
		if !errdefs.IsFailedPrecondition(err) || wait == nil || wait(t.Context()) != nil {
			t.Fatalf("a tagged %s to a read-only volume: wait %v, %v; want FAILED_PRECONDITION and a callable wait", name, wait != nil, err)
		}
	}
}
