package store_test

import (
	"bytes"
	"testing"

	"github.com/volrep/volrep/array"
	"github.com/volrep/volrep/array/store"
)

// TestRenameSurvivesReopen checks that a rename is durable: after a
// restart the volume, its snapshots and its clone's source are found
// under the new names only.
func TestRenameSurvivesReopen(t *testing.T) {
	dir := t.TempDir()
	ctx := t.Context()
	s, err := store.Open(dir, store.Options{Name: "rn"})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { s.Close() }()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	_, err = s.CreatePool(ctx, "p")
	must(err)
	_, err = s.CreateVolume(ctx, array.VolumeSpec{Name: "a", Pool: "p", SizeBytes: 1 << 20})
	must(err)
	data := bytes.Repeat([]byte{7}, array.BlockSize)
	must(s.WriteVolume(ctx, "a", 0, data, true))
	_, err = s.CreateSnapshot(ctx, "a", "s", nil)
	must(err)
	_, err = s.CloneSnapshot(ctx, array.CloneSpec{Volume: "a", Snapshot: "s", Name: "c"})
	must(err)
	_, err = s.RenameVolume(ctx, "a", "b", map[string]string{"x": "y"})
	must(err)
	_, err = s.RenameSnapshot(ctx, "b", "s", "t", nil)
	must(err)
	must(s.Close())
	if s, err = store.Open(dir, store.Options{Name: "rn"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetVolume(ctx, "a"); err == nil {
		t.Fatal("the old name is back after a restart")
	}
	v, err := s.GetVolume(ctx, "b")
	must(err)
	if v.Labels["x"] != "y" || v.SnapshotCount != 1 {
		t.Fatalf("renamed volume after a restart = %+v", v)
	}
	got := make([]byte, array.BlockSize)
	must(s.ReadSnapshot(ctx, "b", "t", 0, got))
	if !bytes.Equal(got, data) {
		t.Fatal("the renamed snapshot lost its data across a restart")
	}
	c, err := s.GetVolume(ctx, "c")
	must(err)
	if c.Source != "b@t" {
		t.Fatalf("clone source after a restart = %q, want b@t", c.Source)
	}
}

// TestRenameWhileWriting renames a volume back and forth while another
// goroutine writes and reads it through the array API by whichever name
// it has: every write lands in the one volume (under the race detector,
// the rename and the I/O share no unguarded state).
func TestRenameWhileWriting(t *testing.T) {
	ctx := t.Context()
	s := openTemp(t)
	if _, err := s.CreatePool(ctx, "p"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateVolume(ctx, array.VolumeSpec{Name: "x", Pool: "p", SizeBytes: 1 << 20}); err != nil {
		t.Fatal(err)
	}
	names := [2]string{"x", "y"}
	done := make(chan struct{})
	var wrote []int
	go func() {
		defer close(done)
		buf := make([]byte, array.BlockSize)
		for i := range 200 {
			buf[0] = byte(i)
			for _, n := range names {
				if s.WriteVolume(ctx, n, int64(i%256)*array.BlockSize, buf, false) == nil {
					wrote = append(wrote, i)
					break
				}
			}
		}
	}()
	for i := range 100 {
		from, to := names[i%2], names[(i+1)%2]
		if _, err := s.RenameVolume(ctx, from, to, nil); err != nil {
			t.Fatal(err)
		}
	}
	<-done
	if len(wrote) == 0 {
		t.Fatal("no write found the volume under either name")
	}
	got := make([]byte, array.BlockSize)
	last := wrote[len(wrote)-1]
	if err := s.ReadVolume(ctx, "x", int64(last%256)*array.BlockSize, got); err != nil {
		t.Fatal(err)
	}
	if got[0] != byte(last) {
		t.Fatalf("block %d reads %d after the renames, want %d", last%256, got[0], byte(last))
	}
}
