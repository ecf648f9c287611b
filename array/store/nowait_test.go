package store_test

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/volrep/volrep/array"
	"github.com/volrep/volrep/array/store"
	"github.com/volrep/volrep/errdefs"
)

// storeWithVolume opens a store in dir, closed when the test ends, with
// volume "v" of size bytes in pool "p".
func storeWithVolume(t *testing.T, dir, name string, size int64) *store.Store {
	t.Helper()
	s, err := store.Open(dir, store.Options{Name: name})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if _, err := s.CreatePool(t.Context(), "p"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateVolume(t.Context(), array.VolumeSpec{Name: "v", Pool: "p", SizeBytes: size}); err != nil {
		t.Fatal(err)
	}
	return s
}

type nopMirror struct{}

func (nopMirror) Write(int64, []byte) store.Wait { return func(context.Context) error { return nil } }
func (nopMirror) Zero(int64, int64) store.Wait   { return func(context.Context) error { return nil } }
func (nopMirror) Flush(context.Context) error    { return nil }
func (nopMirror) Diverged(int64, int64)          {}

// The NoWait methods serve what needs no waiting, refuse the rest with
// ErrWouldBlock before changing anything, and otherwise behave like
// ReadAt and WriteAt.
func TestNoWait(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	s := storeWithVolume(t, dir, "nowait", 8<<20)
	h, err := s.OpenVolume(ctx, "v")
	if err != nil {
		t.Fatal(err)
	}

	data := bytes.Repeat([]byte{7}, 64<<10)
	if err := h.WriteAtNoWait(ctx, data, 1<<20); err != nil {
		t.Fatalf("whole-block write: %v", err)
	}
	// A partial block may need a read from the disk first.
	for _, w := range []struct{ off, n int64 }{{1<<20 + 100, 4096}, {2 << 20, 100}} {
		if err := h.WriteAtNoWait(ctx, make([]byte, w.n), w.off); !errors.Is(err, store.ErrWouldBlock) {
			t.Fatalf("unaligned write at %d+%d: %v, want ErrWouldBlock", w.off, w.n, err)
		}
	}
	got := make([]byte, 2<<20)
	if err := h.ReadAtNoWait(ctx, got, 0); err != nil {
		t.Fatalf("read of cached and unwritten blocks: %v", err)
	}
	want := make([]byte, 2<<20)
	copy(want[1<<20:], data)
	if !bytes.Equal(got, want) {
		t.Fatal("ReadAtNoWait does not read what WriteAtNoWait wrote, or a refused write changed the volume")
	}
	if err := h.ReadAtNoWait(ctx, got[:100], 8<<20-50); !errdefs.IsInvalidArgument(err) {
		t.Fatalf("read past the end: %v", err)
	}

	// Snapshots refuse writes as usual; a mirrored volume's writes wait.
	if _, err := s.CreateSnapshot(ctx, "v", "s", nil); err != nil {
		t.Fatal(err)
	}
	sh, err := s.OpenSnapshot(ctx, "v", "s")
	if err != nil {
		t.Fatal(err)
	}
	if err := sh.WriteAtNoWait(ctx, data, 0); !errdefs.IsFailedPrecondition(err) {
		t.Fatalf("write to a snapshot: %v, want FAILED_PRECONDITION", err)
	}
	if err := s.SetMirror(ctx, "v", nopMirror{}); err != nil {
		t.Fatal(err)
	}
	if err := h.WriteAtNoWait(ctx, data, 0); !errors.Is(err, store.ErrWouldBlock) {
		t.Fatalf("write to a mirrored volume: %v, want ErrWouldBlock", err)
	}
	if err := s.SetMirror(ctx, "v", nil); err != nil {
		t.Fatal(err)
	}

	// Data that is not in the page cache would wait for the disk.
	if err := h.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	if st.Type == unix.TMPFS_MAGIC {
		t.Log("on tmpfs the page cache is the storage: not checking reads after eviction")
		return
	}
	// FADV_DONTNEED is advice: a page the kernel is still busy with stays
	// cached, so evict until the read finds it gone (a few tries at most).
	evict := func() {
		filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
			if err == nil && d.Type().IsRegular() {
				if f, err := os.Open(path); err == nil {
					unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED)
					f.Close()
				}
			}
			return nil
		})
	}
	for try := 0; try < 5; try++ {
		evict()
		if err = h.ReadAtNoWait(ctx, got[:64<<10], 1<<20); errors.Is(err, store.ErrWouldBlock) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !errors.Is(err, store.ErrWouldBlock) {
		t.Fatalf("read of evicted data: %v, want ErrWouldBlock", err)
	}
	if err := h.ReadAt(ctx, got[:64<<10], 1<<20); err != nil || !bytes.Equal(got[:64<<10], data) {
		t.Fatalf("ReadAt after ErrWouldBlock: %v", err)
	}
}
