// Package bitmap is a sparse bitmap over block numbers, split into chunks
// of 65536 bits. Each chunk is a roaring bitmap, so its cost follows the
// bits set (or the runs they form), not the range it covers; chunks are the
// unit of persistence, so flushing a layer's allocation map costs
// O(chunks touched), and a scan skips untouched 256 MiB regions (at 4 KiB
// blocks) without looking at them.
package bitmap

import (
	"encoding/json"
	"fmt"
	"slices"

	"github.com/RoaringBitmap/roaring/v2"
)

// ChunkBits is the number of bits in one chunk.
const ChunkBits = 1 << 16

// Bitmap is not safe for concurrent mutation; its owner locks.
type Bitmap struct {
	chunks map[uint32]*roaring.Bitmap
	keys   []uint32 // sorted keys of chunks, for ordered scans
	dirty  map[uint32]struct{}
}

// New returns an empty bitmap.
func New() *Bitmap {
	return &Bitmap{chunks: map[uint32]*roaring.Bitmap{}, dirty: map[uint32]struct{}{}}
}

func (b *Bitmap) chunk(ci uint32, create bool) *roaring.Bitmap {
	c := b.chunks[ci]
	if c == nil && create {
		c = roaring.New()
		b.chunks[ci] = c
		i, _ := slices.BinarySearch(b.keys, ci)
		b.keys = slices.Insert(b.keys, i, ci)
	}
	return c
}

func (b *Bitmap) dropIfEmpty(ci uint32, c *roaring.Bitmap) {
	if c.IsEmpty() {
		delete(b.chunks, ci)
		if i, ok := slices.BinarySearch(b.keys, ci); ok {
			b.keys = slices.Delete(b.keys, i, i+1)
		}
	}
}

// Test reports whether bit i is set.
func (b *Bitmap) Test(i uint64) bool {
	c := b.chunks[uint32(i>>16)]
	return c != nil && c.Contains(uint32(i&(ChunkBits-1)))
}

// Set sets bit i.
func (b *Bitmap) Set(i uint64) { b.SetRange(i, i+1) }

// Clear clears bit i.
func (b *Bitmap) Clear(i uint64) { b.ClearRange(i, i+1) }

// SetRange sets bits [lo, hi).
func (b *Bitmap) SetRange(lo, hi uint64) {
	for lo < hi {
		ci := uint32(lo >> 16)
		base := uint64(ci) << 16
		end := min(hi, base+ChunkBits)
		c := b.chunk(ci, true)
		n := c.GetCardinality()
		c.AddRange(lo-base, end-base)
		if c.GetCardinality() != n {
			b.dirty[ci] = struct{}{}
		}
		lo = end
	}
}

// ClearRange clears bits [lo, hi).
func (b *Bitmap) ClearRange(lo, hi uint64) {
	for lo < hi {
		ci := uint32(lo >> 16)
		base := uint64(ci) << 16
		end := min(hi, base+ChunkBits)
		if c := b.chunks[ci]; c != nil {
			n := c.GetCardinality()
			c.RemoveRange(lo-base, end-base)
			if c.GetCardinality() != n {
				b.dirty[ci] = struct{}{}
			}
			b.dropIfEmpty(ci, c)
		}
		lo = end
	}
}

// Count returns the number of set bits.
func (b *Bitmap) Count() uint64 {
	var n uint64
	for _, c := range b.chunks {
		n += c.GetCardinality()
	}
	return n
}

// Empty reports whether no bit is set.
func (b *Bitmap) Empty() bool { return len(b.chunks) == 0 }

// NextSet returns the first set bit at or after i.
func (b *Bitmap) NextSet(i uint64) (uint64, bool) {
	ci := uint32(i >> 16)
	if c := b.chunks[ci]; c != nil {
		if v := c.NextValue(uint32(i & (ChunkBits - 1))); v >= 0 {
			return uint64(ci)<<16 + uint64(v), true
		}
	}
	k, _ := slices.BinarySearch(b.keys, ci+1)
	if k == len(b.keys) || (ci == ^uint32(0)) {
		return 0, false
	}
	next := b.keys[k]
	return uint64(next)<<16 + uint64(b.chunks[next].Minimum()), true
}

// NextClear returns the first clear bit at or after i.
//
// roaring's NextAbsentValue is only a hint here: in v2.30 an array
// container holding 65535 answers 0 (a uint16 overflow), and a bitmap
// container whose run of set bits crosses a 64-bit word answers the first
// bit of the next word even when it is set. So an answer below the query
// means "none left in this chunk", and a set answer means "look again from
// there"; i only grows, so the loop ends.
func (b *Bitmap) NextClear(i uint64) uint64 {
	for {
		ci := uint32(i >> 16)
		c := b.chunks[ci]
		if c == nil {
			return i
		}
		q := uint32(i & (ChunkBits - 1))
		v := c.NextAbsentValue(q)
		switch {
		case v < int64(q) || v >= ChunkBits:
			i = (uint64(ci) + 1) << 16
		case c.Contains(uint32(v)):
			i = uint64(ci)<<16 + uint64(max(v, int64(q)+1))
		default:
			return uint64(ci)<<16 + uint64(v)
		}
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

// Or sets every bit that is set in o.
func (b *Bitmap) Or(o *Bitmap) {
	for ci, oc := range o.chunks {
		c := b.chunk(ci, true)
		n := c.GetCardinality()
		c.Or(oc)
		if c.GetCardinality() != n {
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
		n := c.GetCardinality()
		c.AndNot(oc)
		if c.GetCardinality() != n {
			b.dirty[ci] = struct{}{}
		}
		b.dropIfEmpty(ci, c)
	}
}

// Clone returns a copy with no dirty chunks.
func (b *Bitmap) Clone() *Bitmap {
	n := New()
	for ci, c := range b.chunks {
		n.chunks[ci] = c.Clone()
	}
	n.keys = slices.Clone(b.keys)
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
func (b *Bitmap) AllChunks() []uint32 { return slices.Clone(b.keys) }

// MarshalChunk encodes chunk ci; nil means the chunk is empty.
func (b *Bitmap) MarshalChunk(ci uint32) []byte {
	c := b.chunks[ci]
	if c == nil {
		return nil
	}
	c.RunOptimize()
	data, err := c.ToBytes()
	if err != nil {
		// ToBytes only fails writing to a failing writer; a bytes.Buffer does not fail.
		panic(fmt.Sprintf("bitmap: encoding chunk %d: %v", ci, err))
	}
	return data
}

// UnmarshalChunk replaces chunk ci with data from MarshalChunk.
func (b *Bitmap) UnmarshalChunk(ci uint32, data []byte) error {
	c := roaring.New()
	if err := c.UnmarshalBinary(data); err != nil {
		return fmt.Errorf("bitmap chunk %d: %w", ci, err)
	}
	if c.GetCardinality() > 0 && c.Maximum() >= ChunkBits {
		return fmt.Errorf("bitmap chunk %d: bit %d is out of range", ci, c.Maximum())
	}
	if old := b.chunks[ci]; old != nil {
		delete(b.chunks, ci)
		if i, ok := slices.BinarySearch(b.keys, ci); ok {
			b.keys = slices.Delete(b.keys, i, i+1)
		}
	}
	if c.IsEmpty() {
		return nil
	}
	b.chunks[ci] = c
	i, _ := slices.BinarySearch(b.keys, ci)
	b.keys = slices.Insert(b.keys, i, ci)
	return nil
}

// record is a whole bitmap as a record stores it: its chunks by index.
type record struct {
	Chunks map[uint32][]byte `json:"chunks"`
}

// Encode returns the whole bitmap as one record (JSON), for a bitmap
// kept in a metadata record rather than chunk by chunk.
func (b *Bitmap) Encode() ([]byte, error) {
	rec := record{Chunks: make(map[uint32][]byte, len(b.keys))}
	for _, ci := range b.keys {
		rec.Chunks[ci] = b.MarshalChunk(ci)
	}
	return json.Marshal(rec)
}

// Decode reads a bitmap from Encode's record.
func Decode(data []byte) (*Bitmap, error) {
	var rec record
	if err := json.Unmarshal(data, &rec); err != nil {
		return nil, err
	}
	b := New()
	for ci, chunk := range rec.Chunks {
		if err := b.UnmarshalChunk(ci, chunk); err != nil {
			return nil, err
		}
	}
	b.TakeDirty()
	return b, nil
}
