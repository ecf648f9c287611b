// Package bitmap is a sparse bitmap over block numbers, stored as dense
// chunks of 65536 bits. Chunks are the unit of persistence, so flushing a
// layer's allocation map costs O(chunks touched), not O(volume size), and
// scans skip untouched 256 MiB regions (at 4 KiB blocks) in O(1).
package bitmap

import (
	"encoding/binary"
	"fmt"
	"math/bits"
	"slices"
)

const (
	// ChunkBits is the number of bits in one chunk.
	ChunkBits  = 1 << 16
	chunkWords = ChunkBits / 64
	// ChunkBytes is the size of a marshalled chunk.
	ChunkBytes = chunkWords * 8
)

type chunk struct {
	w [chunkWords]uint64
	n int // bits set, so empty chunks can be dropped and counts are O(chunks)
}

// Bitmap is not safe for concurrent mutation; its owner locks.
type Bitmap struct {
	chunks map[uint32]*chunk
	dirty  map[uint32]struct{}
}

// New returns an empty bitmap.
func New() *Bitmap {
	return &Bitmap{chunks: map[uint32]*chunk{}, dirty: map[uint32]struct{}{}}
}

func split(i uint64) (uint32, int, uint64) {
	return uint32(i >> 16), int(i&(ChunkBits-1)) >> 6, 1 << (i & 63)
}

// Test reports whether bit i is set.
func (b *Bitmap) Test(i uint64) bool {
	ci, wi, m := split(i)
	c := b.chunks[ci]
	return c != nil && c.w[wi]&m != 0
}

// Set sets bit i.
func (b *Bitmap) Set(i uint64) { b.SetRange(i, i+1) }

// Clear clears bit i.
func (b *Bitmap) Clear(i uint64) { b.ClearRange(i, i+1) }

// SetRange sets bits [lo, hi).
func (b *Bitmap) SetRange(lo, hi uint64) { b.apply(lo, hi, true) }

// ClearRange clears bits [lo, hi).
func (b *Bitmap) ClearRange(lo, hi uint64) { b.apply(lo, hi, false) }

func (b *Bitmap) apply(lo, hi uint64, set bool) {
	for lo < hi {
		ci := uint32(lo >> 16)
		end := min(hi, (uint64(ci)+1)<<16)
		c := b.chunks[ci]
		if c == nil {
			if !set {
				lo = end
				continue
			}
			c = &chunk{}
			b.chunks[ci] = c
		}
		changed := false
		for lo < end {
			wi := int(lo&(ChunkBits-1)) >> 6
			bit := lo & 63
			n := min(64-bit, end-lo)
			var m uint64
			if n == 64 {
				m = ^uint64(0)
			} else {
				m = ((1 << n) - 1) << bit
			}
			old := c.w[wi]
			if set {
				c.w[wi] |= m
			} else {
				c.w[wi] &^= m
			}
			if d := bits.OnesCount64(c.w[wi]) - bits.OnesCount64(old); d != 0 {
				c.n += d
				changed = true
			}
			lo += n
		}
		if changed {
			b.dirty[ci] = struct{}{}
		}
		if c.n == 0 {
			delete(b.chunks, ci)
		}
	}
}

// Count returns the number of set bits.
func (b *Bitmap) Count() uint64 {
	var n uint64
	for _, c := range b.chunks {
		n += uint64(c.n)
	}
	return n
}

// Empty reports whether no bit is set.
func (b *Bitmap) Empty() bool { return len(b.chunks) == 0 }

// NextSet returns the first set bit at or after i.
func (b *Bitmap) NextSet(i uint64) (uint64, bool) {
	ci := uint32(i >> 16)
	if c := b.chunks[ci]; c != nil {
		if j, ok := c.nextSet(int(i & (ChunkBits - 1))); ok {
			return uint64(ci)<<16 + uint64(j), true
		}
	}
	// Find the nearest later chunk without sorting: scans cross chunks
	// rarely, and the map is small (one entry per 256 MiB touched).
	next, found := uint32(0), false
	for k := range b.chunks {
		if k > ci && (!found || k < next) {
			next, found = k, true
		}
	}
	if !found {
		return 0, false
	}
	j, _ := b.chunks[next].nextSet(0)
	return uint64(next)<<16 + uint64(j), true
}

func (c *chunk) nextSet(off int) (int, bool) {
	wi := off >> 6
	w := c.w[wi] &^ ((1 << (off & 63)) - 1)
	for {
		if w != 0 {
			return wi<<6 + bits.TrailingZeros64(w), true
		}
		wi++
		if wi == chunkWords {
			return 0, false
		}
		w = c.w[wi]
	}
}

// NextClear returns the first clear bit at or after i.
func (b *Bitmap) NextClear(i uint64) uint64 {
	for {
		ci, wi, _ := split(i)
		c := b.chunks[ci]
		if c == nil {
			return i
		}
		w := ^c.w[wi] &^ ((1 << (i & 63)) - 1)
		if w != 0 {
			return uint64(ci)<<16 + uint64(wi)<<6 + uint64(bits.TrailingZeros64(w))
		}
		i = (i | 63) + 1
	}
}

// Runs calls fn for each maximal run [lo, hi) of set bits inside
// [from, to), in order, until fn returns false.
func (b *Bitmap) Runs(from, to uint64, fn func(lo, hi uint64) bool) {
	for from < to {
		lo, ok := b.NextSet(from)
		if !ok || lo >= to {
			return
		}
		hi := min(b.NextClear(lo), to)
		if !fn(lo, hi) {
			return
		}
		from = hi
	}
}

func (b *Bitmap) sortedFrom(ci uint32) []uint32 {
	keys := make([]uint32, 0, len(b.chunks))
	for k := range b.chunks {
		if k >= ci {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	return keys
}

// Or sets every bit that is set in o.
func (b *Bitmap) Or(o *Bitmap) {
	for ci, oc := range o.chunks {
		c := b.chunks[ci]
		if c == nil {
			c = &chunk{}
			b.chunks[ci] = c
		}
		n := 0
		for wi := range c.w {
			c.w[wi] |= oc.w[wi]
			n += bits.OnesCount64(c.w[wi])
		}
		if n != c.n {
			c.n = n
			b.dirty[ci] = struct{}{}
		}
	}
}

// AndNot clears every bit that is set in o.
func (b *Bitmap) AndNot(o *Bitmap) {
	for ci, oc := range o.chunks {
		c := b.chunks[ci]
		if c == nil {
			continue
		}
		n := 0
		for wi := range c.w {
			c.w[wi] &^= oc.w[wi]
			n += bits.OnesCount64(c.w[wi])
		}
		if n != c.n {
			c.n = n
			b.dirty[ci] = struct{}{}
		}
		if n == 0 {
			delete(b.chunks, ci)
		}
	}
}

// Clone returns a copy with no dirty chunks.
func (b *Bitmap) Clone() *Bitmap {
	n := New()
	for ci, c := range b.chunks {
		cc := *c
		n.chunks[ci] = &cc
	}
	return n
}

// TakeDirty returns the chunks changed since the last call, sorted, and
// forgets them.
func (b *Bitmap) TakeDirty() []uint32 {
	keys := make([]uint32, 0, len(b.dirty))
	for k := range b.dirty {
		keys = append(keys, k)
	}
	clear(b.dirty)
	slices.Sort(keys)
	return keys
}

// MarkDirty marks chunks as changed again, after a failed persist.
func (b *Bitmap) MarkDirty(cis []uint32) {
	for _, ci := range cis {
		b.dirty[ci] = struct{}{}
	}
}

// AllChunks returns every non-empty chunk index, sorted.
func (b *Bitmap) AllChunks() []uint32 { return b.sortedFrom(0) }

// MarshalChunk encodes chunk ci; nil means the chunk is empty.
func (b *Bitmap) MarshalChunk(ci uint32) []byte {
	c := b.chunks[ci]
	if c == nil {
		return nil
	}
	buf := make([]byte, ChunkBytes)
	for wi, w := range c.w {
		binary.LittleEndian.PutUint64(buf[wi*8:], w)
	}
	return buf
}

// UnmarshalChunk replaces chunk ci with data from MarshalChunk.
func (b *Bitmap) UnmarshalChunk(ci uint32, data []byte) error {
	if len(data) != ChunkBytes {
		return fmt.Errorf("bitmap chunk %d: %d bytes, want %d", ci, len(data), ChunkBytes)
	}
	c := &chunk{}
	for wi := range c.w {
		c.w[wi] = binary.LittleEndian.Uint64(data[wi*8:])
		c.n += bits.OnesCount64(c.w[wi])
	}
	if c.n == 0 {
		delete(b.chunks, ci)
		return nil
	}
	b.chunks[ci] = c
	return nil
}
