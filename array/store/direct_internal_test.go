package store

import (
	"bytes"
	"os"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// TestReceivedDataSkipsThePageCache: a receiver writes aligned data
// straight to its staging file, which then holds none of it in the page
// cache; data O_DIRECT cannot take (a buffer off the alignment) goes
// through the page cache instead. Both read back after the commit, and
// after a restart.
func TestReceivedDataSkipsThePageCache(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	probe, err := os.OpenFile(dir+"/probe", os.O_CREATE|os.O_WRONLY|unix.O_DIRECT, 0o600)
	if err != nil {
		t.Fatalf("the test directory's file system refuses O_DIRECT (%v); run the tests on one that takes it (ext4, xfs)", err)
	}
	probe.Close()
	const mib = 1 << 20
	s, r := receiving(t, dir, 4*mib)
	defer func() { s.Close() }()
	// aligned holds 2 MiB at a page-aligned address; unaligned is 64 KiB
	// at an address 512 bytes past one.
	backing := make([]byte, 3*mib+2*directAlign)
	at := int(directAlign - uintptr(unsafe.Pointer(&backing[0]))%directAlign)
	aligned := backing[at : at+2*mib]
	unaligned := backing[at+2*mib+512 : at+2*mib+512+64<<10]
	for i := range aligned {
		aligned[i] = byte(i/4096 + 1)
	}
	for i := range unaligned {
		unaligned[i] = byte(i/4096 + 100)
	}
	if err := r.WriteBlocks([]Blocks{{Off: 0, Data: aligned}}); err != nil {
		t.Fatal(err)
	}
	if err := r.WriteBlocks([]Blocks{{Off: 3 * mib, Data: unaligned}}); err != nil {
		t.Fatal(err)
	}
	cached := residentPages(t, r.l.path, 4*mib)
	if n := count(cached[:2*mib/4096]); n != 0 {
		t.Errorf("%d of the %d pages written aligned are in the page cache, want none", n, 2*mib/4096)
	}
	if n := count(cached[3*mib/4096 : (3*mib+64<<10)/4096]); n != 16 {
		t.Errorf("%d of the 16 pages written from an unaligned buffer are in the page cache, want all (written buffered)", n)
	}
	if _, err := r.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	r.Release()
	check := func(s *Store) {
		t.Helper()
		for _, w := range []struct {
			off  int64
			want []byte
		}{{0, aligned}, {3 * mib, unaligned}, {2 * mib, make([]byte, mib)}} {
			got := make([]byte, len(w.want))
			if err := s.ReadSnapshot(ctx, "v", "s1", w.off, got); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, w.want) {
				t.Fatalf("snapshot s1 at %d does not read back what was received", w.off)
			}
		}
	}
	check(s)
	s.Close()
	if s, err = Open(dir, Options{Name: "target"}); err != nil {
		t.Fatal(err)
	}
	check(s)
}

// receiving opens a store in dir with a pool "p" and begins receiving
// snapshot s1 of read-only volume "v", of size bytes.
func receiving(t *testing.T, dir string, size int64) (*Store, *Receiver) {
	t.Helper()
	s, err := Open(dir, Options{Name: "target"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreatePool(t.Context(), "p"); err != nil {
		s.Close()
		t.Fatal(err)
	}
	r, err := s.BeginReceive(t.Context(), ReceiveSpec{TransferID: "t1", Volume: "v", Pool: "p", SizeBytes: size,
		Snapshot: SnapshotRequest{Name: "s1", GUID: "guid-s1"}, Created: time.Now(), ReadOnly: true})
	if err != nil {
		s.Close()
		t.Fatal(err)
	}
	return s, r
}

// residentPages reports, page by page, whether the first size bytes of
// the file at path are in the page cache.
func residentPages(t *testing.T, path string, size int) []byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	m, err := unix.Mmap(int(f.Fd()), 0, size, unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(m)
	vec := make([]byte, size/os.Getpagesize())
	if _, _, errno := unix.Syscall(unix.SYS_MINCORE, uintptr(unsafe.Pointer(&m[0])), uintptr(len(m)), uintptr(unsafe.Pointer(&vec[0]))); errno != 0 {
		t.Fatal(errno)
	}
	return vec
}

func count(vec []byte) int {
	n := 0
	for _, v := range vec {
		n += int(v & 1)
	}
	return n
}

// TestWriteBlocksStagesEveryRange: ranges written together all land, a
// batch with a range outside the snapshot writes nothing, and an empty
// batch is no error.
func TestWriteBlocksStagesEveryRange(t *testing.T) {
	ctx := t.Context()
	const size, blk = 8 << 20, 64 << 10
	s, r := receiving(t, t.TempDir(), size)
	defer s.Close()
	offs := []int64{7 * blk * 16, 3 * blk, 40 * blk, 100 * blk} // out of order, past each other's ends
	var batch []Blocks
	for i, off := range offs {
		batch = append(batch, Blocks{Off: off, Data: bytes.Repeat([]byte{byte(i + 1)}, blk)})
	}
	if err := r.WriteBlocks(append(batch[:len(batch):len(batch)], Blocks{Off: size, Data: make([]byte, blk)})); err == nil {
		t.Fatal("a batch with a range past the snapshot's end was taken")
	}
	if got := r.Bytes(); got != 0 {
		t.Fatalf("a refused batch staged %d bytes", got)
	}
	if err := r.WriteBlocks(nil); err != nil {
		t.Fatalf("an empty batch: %v", err)
	}
	if err := r.WriteBlocks(batch); err != nil {
		t.Fatal(err)
	}
	if got := r.Bytes(); got != int64(len(offs))*blk {
		t.Errorf("staged %d bytes, want %d", got, len(offs)*blk)
	}
	if _, err := r.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	r.Release()
	for _, b := range append(batch, Blocks{Off: 41 * blk, Data: make([]byte, blk)}) {
		got := make([]byte, len(b.Data))
		if err := s.ReadSnapshot(ctx, "v", "s1", b.Off, got); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, b.Data) {
			t.Errorf("snapshot s1 at %d reads %d..., want %d...", b.Off, got[0], b.Data[0])
		}
	}
}
