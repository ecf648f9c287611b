package store

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/volrep/volrep/array"
	"github.com/volrep/volrep/errdefs"
	"github.com/volrep/volrep/internal/testenv"
)

// smallFS mounts an 8 MiB tmpfs for the test. It needs root; under
// `make test` (VOLREP_E2E_REQUIRE) not being root fails the test.
func smallFS(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "small")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size=8m"); err != nil {
		testenv.Skip(t, "mounting an 8 MiB tmpfs needs root: %v", err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	return dir
}

type logSink struct{ testenv.Buffer }

// count returns the records whose message contains msg.
func (l *logSink) count(t *testing.T, msg string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(l.String()), "\n") {
		var rec map[string]any
		if line == "" {
			continue
		}
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		if m, _ := rec["msg"].(string); strings.Contains(m, msg) {
			out = append(out, rec)
		}
	}
	return out
}

const (
	msgFull  = "filesystem is full"
	msgAgain = "accepts writes again"
)

// fill writes 1 MiB pieces until the filesystem refuses one, and checks
// the refusal is typed and still ENOSPC underneath (the NBD server's errno).
func fill(t *testing.T, h *Handle, dir string) {
	t.Helper()
	p := bytes.Repeat([]byte{0xab}, 1<<20)
	for off := int64(0); off < 64<<20; off += 1 << 20 {
		err := h.WriteAt(context.Background(), p, off, true)
		if err == nil {
			continue
		}
		if !errdefs.IsResourceExhausted(err) || !errors.Is(err, syscall.ENOSPC) {
			t.Fatalf("write at %d: %v (%T); want RESOURCE_EXHAUSTED wrapping ENOSPC", off, err, err)
		}
		if want := "free space on " + dir + " or grow the filesystem"; !strings.Contains(err.Error(), want) {
			t.Fatalf("error %q does not say %q", err, want)
		}
		return
	}
	t.Fatal("64 MiB went into an 8 MiB filesystem")
}

// TestFullDisk (issue 12, item 18) fills a real 8 MiB filesystem: data
// writes and metadata updates fail as RESOURCE_EXHAUSTED (not INTERNAL)
// saying what to do, and the log says so once per episode, with the array
// and the path, until a write succeeds again.
func TestFullDisk(t *testing.T) {
	dir := filepath.Join(smallFS(t), "array")
	logs := &logSink{}
	s, err := Open(dir, Options{Name: "tiny", Logger: slog.New(slog.NewJSONHandler(logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	if _, err := s.CreatePool(ctx, "p"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateVolume(ctx, array.VolumeSpec{Name: "v", Pool: "p", SizeBytes: 64 << 20}); err != nil {
		t.Fatal(err)
	}
	h, err := s.OpenVolume(ctx, "v")
	if err != nil {
		t.Fatal(err)
	}

	fill(t, h, dir)
	// More refused writes in the same episode log nothing more.
	for range 5 {
		if err := h.WriteAt(ctx, make([]byte, 1<<20), 32<<20, true); !errdefs.IsResourceExhausted(err) {
			t.Fatalf("write on a full disk: %v, want RESOURCE_EXHAUSTED", err)
		}
	}
	// Metadata too: bbolt's commit hits the same full disk.
	var metaErr error
	for i := range 64 {
		if metaErr = s.PutRecord(ctx, "fill", strings.Repeat("k", i+1), make([]byte, 256<<10)); metaErr != nil {
			break
		}
	}
	if !errdefs.IsResourceExhausted(metaErr) || !strings.Contains(metaErr.Error(), "or grow the filesystem") {
		t.Fatalf("metadata update on a full disk: %v (kind %v), want RESOURCE_EXHAUSTED saying what to do", metaErr, errdefs.KindOf(metaErr))
	}
	full := logs.count(t, msgFull)
	if len(full) != 1 {
		t.Fatalf("%d %q records in one episode, want 1", len(full), msgFull)
	}
	if full[0]["array"] != "tiny" || !strings.HasPrefix(full[0]["path"].(string), dir) || full[0]["level"] != "ERROR" {
		t.Fatalf("record %v lacks the array, the path under %s or the ERROR level", full[0], dir)
	}

	// Freeing space (punching the volume's blocks out) is a write that
	// succeeds: the episode ends, and the next full disk is a new one.
	if err := h.Zero(ctx, 0, 64<<20, true); err != nil {
		t.Fatalf("zeroing to free space: %v", err)
	}
	if n := len(logs.count(t, msgAgain)); n != 1 {
		t.Fatalf("%d %q records after a write succeeded, want 1", n, msgAgain)
	}
	if err := s.DeleteRecord(ctx, "fill", "k"); err != nil {
		t.Fatal(err)
	}
	fill(t, h, dir)
	if n := len(logs.count(t, msgFull)); n != 2 {
		t.Fatalf("%d %q records after two episodes, want 2", n, msgFull)
	}
}

func TestIsNoSpace(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{nil, false},
		{syscall.ENOSPC, true},
		{&os.PathError{Op: "write", Path: "/x", Err: syscall.EDQUOT}, true},
		// bbolt's grow flattens the cause into text.
		{errors.New("file resize error: no space left on device"), true},
		{errors.New("file sync error: disk quota exceeded"), true},
		{syscall.EIO, false},
	} {
		if got := isNoSpace(tc.err); got != tc.want {
			t.Errorf("isNoSpace(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}
