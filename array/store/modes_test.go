package store

import (
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/volrep/volrep/array"
)

// TestDataDirModes: meta.db holds the peer arrays' API tokens, so it and
// everything else in the data directory is the owner's alone (issue 12,
// item 19), also for a directory an older version made group-readable.
func TestDataDirModes(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "array")
	s, err := Open(dir, Options{Name: "modes"})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := s.CreatePool(ctx, "p"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateVolume(ctx, array.VolumeSpec{Name: "v", Pool: "p", SizeBytes: 1 << 20}); err != nil {
		t.Fatal(err)
	}
	// A layer's file appears with its first write.
	if err := s.WriteVolume(ctx, "v", 0, make([]byte, 4096), false); err != nil {
		t.Fatal(err)
	}
	if err := s.PutRecord(ctx, "links", "peer", []byte(`{"token":"s3cret"}`)); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	checkModes(t, dir)

	// As an older version left it: group-readable directory and files.
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		mode := os.FileMode(0o640)
		if d.IsDir() {
			mode = 0o750
		}
		return os.Chmod(p, mode)
	})
	if err != nil {
		t.Fatal(err)
	}
	s, err = Open(dir, Options{Name: "modes"})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	for p, want := range map[string]os.FileMode{dir: 0o700, filepath.Join(dir, "layers"): 0o700, filepath.Join(dir, "meta.db"): 0o600} {
		if got := mode(t, p); got != want {
			t.Errorf("after reopening an old data dir, %s is %v, want %v", p, got, want)
		}
	}
}

// checkModes wants every directory under dir 0700 and every file 0600.
func checkModes(t *testing.T, dir string) {
	t.Helper()
	files := 0
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		want := os.FileMode(0o600)
		if d.IsDir() {
			want = 0o700
		} else {
			files++
		}
		if got := mode(t, p); got != want {
			t.Errorf("%s is %v, want %v", p, got, want)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// meta.db, lock, clean and the volume's layer at least.
	if files < 4 {
		t.Fatalf("found %d files under %s; the walk missed some", files, dir)
	}
}

func mode(t *testing.T, p string) os.FileMode {
	t.Helper()
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode().Perm()
}
