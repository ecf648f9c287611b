package store

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"github.com/volrep/volrep/array/bitmap"
)

const bs = 4096 // array.BlockSize, repeated to keep the hot path free of conversions

// layer is one level of a volume's chain. Frozen layers change only during
// merges, which exclude I/O; the writable layer's bitmaps change under mu.
type layer struct {
	id     uint64
	file   string
	parent *layer
	frozen bool

	// fd is the open layer file. A new volume's layer has none until its
	// first write (writable): creating a file costs more than the rest of
	// a create, and a volume never written needs none. A layer with data
	// always has one.
	fd      atomic.Pointer[os.File]
	path    string         // of the file, for writable
	created *atomic.Uint64 // the store's count of files created, for gen
	fmu     sync.Mutex     // serialises writable's creation

	// children and snaps are guarded by Store.mu.
	children map[*layer]struct{}
	// snaps counts the snapshots that read this layer: more than one when
	// nothing was written between them, as in a protection group's quiet
	// members, whose snapshots then cost a record and no layer.
	snaps   int
	volume  bool // some volume writes into this layer
	staging bool // an incoming transfer writes into this layer

	mu      sync.RWMutex
	present *bitmap.Bitmap
	zero    *bitmap.Bitmap

	flushMu sync.Mutex
	// unsynced is set by every write and cleared by fdatasync, so a flush
	// with nothing new costs no system call.
	unsynced atomic.Bool

	// gen orders the layer files this process created (0: found at Open);
	// see Store.durableEntry.
	gen atomic.Uint64
}

// data returns l's file, nil if nothing was ever written to l.
func (l *layer) data() *os.File { return l.fd.Load() }

// writable returns l's file, creating it for the first write. The new
// file's directory entry is made durable by durableEntry before any
// bitmap naming its blocks is committed.
func (l *layer) writable() (*os.File, error) {
	if f := l.fd.Load(); f != nil {
		return f, nil
	}
	l.fmu.Lock()
	defer l.fmu.Unlock()
	if f := l.fd.Load(); f != nil {
		return f, nil
	}
	f, err := os.OpenFile(l.path, os.O_CREATE|os.O_RDWR, fileMode)
	if err != nil {
		return nil, err
	}
	l.gen.Store(l.created.Add(1))
	l.fd.Store(f)
	return f, nil
}

// closeFile closes l's file if it has one.
func (l *layer) closeFile() {
	if f := l.fd.Load(); f != nil {
		f.Close()
	}
}

// piece is a resolved part of a block range: data in l, or zeros when l is nil.
type piece struct {
	lo, hi uint64
	l      *layer
}

// resolve maps blocks [lo, hi) of the view whose newest layer is top onto the
// layers that hold them, in order.
func resolve(top *layer, lo, hi uint64, out []piece) []piece {
	if top == nil {
		return appendPiece(out, piece{lo, hi, nil})
	}
	type gap struct{ lo, hi uint64 }
	var own []piece
	var gaps []gap
	var order []bool // true: next own piece, false: next gap
	top.mu.RLock()
	for i := lo; i < hi; {
		next := hi
		if p, ok := top.present.NextSet(i); ok && p < next {
			next = p
		}
		if z, ok := top.zero.NextSet(i); ok && z < next {
			next = z
		}
		if next > i {
			gaps = append(gaps, gap{i, next})
			order = append(order, false)
		}
		if next >= hi {
			break
		}
		var end uint64
		if top.present.Test(next) {
			end = min(top.present.NextClear(next), hi)
			own = append(own, piece{next, end, top})
		} else {
			end = min(top.zero.NextClear(next), hi)
			own = append(own, piece{next, end, nil})
		}
		order = append(order, true)
		i = end
	}
	top.mu.RUnlock()
	oi, gi := 0, 0
	for _, isOwn := range order {
		if isOwn {
			out = appendPiece(out, own[oi])
			oi++
		} else {
			out = resolve(top.parent, gaps[gi].lo, gaps[gi].hi, out)
			gi++
		}
	}
	return out
}

func appendPiece(out []piece, p piece) []piece {
	if n := len(out); n > 0 && out[n-1].hi == p.lo && out[n-1].l == p.l {
		out[n-1].hi = p.hi
		return out
	}
	return append(out, p)
}

// readView fills p from the view whose newest layer is top.
func readView(top *layer, p []byte, off int64) error {
	return readViewWith(top, p, off, readFull)
}

// readViewWith is readView reading layer files with read.
func readViewWith(top *layer, p []byte, off int64, read func(*os.File, []byte, int64) error) error {
	if len(p) == 0 {
		return nil
	}
	end := off + int64(len(p))
	lo, hi := uint64(off/bs), uint64((end+bs-1)/bs)
	var buf [8]piece
	for _, pc := range resolve(top, lo, hi, buf[:0]) {
		s := max(int64(pc.lo)*bs, off)
		e := min(int64(pc.hi)*bs, end)
		dst := p[s-off : e-off]
		if pc.l == nil {
			clear(dst)
			continue
		}
		f := pc.l.data()
		if f == nil {
			return fmt.Errorf("layer %d holds blocks but has no file", pc.l.id)
		}
		if err := read(f, dst, s); err != nil {
			if err == ErrWouldBlock {
				return err
			}
			return fmt.Errorf("read layer %d at %d: %w", pc.l.id, s, err)
		}
	}
	return nil
}

// readFull reads like ReadAt but treats the sparse file's end as zeros,
// since a layer file is only as long as its last written block.
func readFull(f *os.File, p []byte, off int64) error {
	n, err := f.ReadAt(p, off)
	if errors.Is(err, io.EOF) {
		clear(p[n:])
		return nil
	}
	return err
}

// readFullNoWait is readFull taking only what the page cache holds
// (preadv2 with RWF_NOWAIT): it returns ErrWouldBlock, with p possibly
// partly filled, as soon as a part of p would have to come from the disk.
func readFullNoWait(f *os.File, p []byte, off int64) error {
	iov := [][]byte{p}
	for len(p) > 0 {
		iov[0] = p
		n, err := unix.Preadv2(int(f.Fd()), iov, off, unix.RWF_NOWAIT)
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN || err == unix.EOPNOTSUPP || err == unix.ENOSYS:
			return ErrWouldBlock
		case err != nil:
			return &os.PathError{Op: "preadv2", Path: f.Name(), Err: err}
		case n == 0:
			clear(p) // the sparse file's end reads as zeros
			return nil
		}
		p, off = p[n:], off+int64(n)
	}
	return nil
}

func punchHole(f *os.File, off, length int64) error {
	if length <= 0 {
		return nil
	}
	err := unix.Fallocate(int(f.Fd()), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, off, length)
	if errors.Is(err, unix.EOPNOTSUPP) {
		return writeZeros(f, off, length)
	}
	return err
}

var zeroBlock [1 << 20]byte

func writeZeros(f *os.File, off, length int64) error {
	for length > 0 {
		n := min(length, int64(len(zeroBlock)))
		if _, err := f.WriteAt(zeroBlock[:n], off); err != nil {
			return err
		}
		off += n
		length -= n
	}
	return nil
}

// copyRange copies bytes at the same offsets from one layer file to
// another, letting the kernel share extents where the filesystem can.
func copyRange(dst, src *os.File, off, length int64) error {
	for length > 0 {
		roff, woff := off, off
		n, err := unix.CopyFileRange(int(src.Fd()), &roff, int(dst.Fd()), &woff, int(min(length, 1<<30)), 0)
		if err != nil || n == 0 {
			return copyRangeSlow(dst, src, off, length)
		}
		off += int64(n)
		length -= int64(n)
	}
	return nil
}

func copyRangeSlow(dst, src *os.File, off, length int64) error {
	buf := make([]byte, min(length, 1<<20))
	for length > 0 {
		n := min(length, int64(len(buf)))
		if err := readFull(src, buf[:n], off); err != nil {
			return err
		}
		if _, err := dst.WriteAt(buf[:n], off); err != nil {
			return err
		}
		off += n
		length -= n
	}
	return nil
}

func fdatasync(f *os.File) error { return unix.Fdatasync(int(f.Fd())) }

// takeDirty copies the layer's changed bitmap chunks so they can be written
// to bbolt after the data they describe is on disk.
func (l *layer) takeDirty() []chunkSet {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []chunkSet
	for _, kb := range []struct {
		kind byte
		bm   *bitmap.Bitmap
	}{{kindPresent, l.present}, {kindZero, l.zero}} {
		cs := chunkSet{kind: kb.kind, chunks: kb.bm.TakeDirty()}
		for _, ci := range cs.chunks {
			cs.data = append(cs.data, kb.bm.MarshalChunk(ci))
		}
		out = append(out, cs)
	}
	return out
}

func (l *layer) remarkDirty(sets []chunkSet) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, cs := range sets {
		if cs.kind == kindPresent {
			l.present.MarkDirty(cs.chunks)
		} else {
			l.zero.MarkDirty(cs.chunks)
		}
	}
}

func (l *layer) usedBytes() int64 {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return int64(l.present.Count()) * bs
}
