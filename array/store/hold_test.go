package store_test

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/volrep/volrep/array"
	"github.com/volrep/volrep/array/store"
	"github.com/volrep/volrep/errdefs"
)

// TestHoldWrites: while a volume's writes are held, a client write waits
// (it does not fail), a snapshot taken then lacks it, and the release lets
// it land; a write whose context ends while held gives up with that error
// and changes nothing; a renewal reports the same start, and a hold whose
// lease ends lapses by itself; deleting the volume ends the hold, and the
// waiting write finds the volume gone.
func TestHoldWrites(t *testing.T) {
	ctx := t.Context()
	s, err := store.Open(t.TempDir(), store.Options{Name: "hold"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	noErr(t)(s.CreatePool(ctx, "p"))
	noErr(t)(s.CreateVolume(ctx, array.VolumeSpec{Name: "v", Pool: "p", SizeBytes: mib}))
	h, err := s.OpenVolume(ctx, "v")
	if err != nil {
		t.Fatal(err)
	}
	since, err := s.HoldWrites(ctx, "v", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- h.WriteAt(ctx, bytes.Repeat([]byte{'W'}, 4096), 0, false) }()
	select {
	case err := <-done:
		t.Fatalf("a write returned (%v) while the volume's writes were held", err)
	case <-time.After(100 * time.Millisecond):
	}
	if err := h.WriteAtNoWait(ctx, make([]byte, 4096), 4096); !errors.Is(err, store.ErrWouldBlock) {
		t.Fatalf("WriteAtNoWait while held = %v, want ErrWouldBlock", err)
	}
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if err := s.WriteVolume(short, "v", 8192, []byte("late"), false); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("a held write whose context ended = %v, want DeadlineExceeded", err)
	}
	noErr(t)(s.CreateSnapshot(ctx, "v", "during", nil))
	again, err := s.HoldWrites(ctx, "v", time.Minute)
	if err != nil || !again.Equal(since) {
		t.Fatalf("renewed hold began %v (%v), want %v", again, err, since)
	}
	if _, err := s.HoldWrites(ctx, "v", 0); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("held write after release: %v", err)
	}
	p := make([]byte, 4096)
	noErr(t)(0, s.ReadSnapshot(ctx, "v", "during", 0, p))
	if p[0] != 0 {
		t.Fatalf("the snapshot taken while writes were held has the held write")
	}
	noErr(t)(0, s.ReadVolume(ctx, "v", 0, p))
	if p[0] != 'W' {
		t.Fatalf("the held write did not land after the release")
	}
	noErr(t)(0, s.ReadVolume(ctx, "v", 8192, p[:4]))
	if string(p[:4]) == "late" {
		t.Fatalf("a write that gave up while held changed the volume")
	}

	// A lease that ends releases the hold by itself.
	if _, err := s.HoldWrites(ctx, "v", 50*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := h.WriteAt(ctx, []byte("x"), 0, false); err != nil {
		t.Fatal(err)
	}
	if el := time.Since(start); el < 40*time.Millisecond {
		t.Fatalf("the write waited %s for a 50ms hold", el)
	}
	later, err := s.HoldWrites(ctx, "v", time.Minute)
	if err != nil || !later.After(since) {
		t.Fatalf("a new hold after a lapse began %v (%v), want after %v", later, err, since)
	}

	go func() { done <- h.WriteAt(ctx, []byte("y"), 0, false) }()
	noErr(t)(0, s.DeleteSnapshot(ctx, "v", "during"))
	noErr(t)(0, s.DeleteVolume(ctx, "v"))
	if err := <-done; !errdefs.IsNotFound(err) {
		t.Fatalf("a held write on a deleted volume = %v, want NOT_FOUND", err)
	}
	if _, err := s.HoldWrites(ctx, "v", -time.Second); !errdefs.IsInvalidArgument(err) {
		t.Fatalf("a negative lease = %v, want INVALID_ARGUMENT", err)
	}
}
