package bitmap

import (
	"math/rand/v2"
	"testing"
)

// NextClear must not trust roaring's NextAbsentValue at a chunk's last bit
// (an array container holding 65535 used to answer the chunk's first bit,
// which sent readers of the last 4 KiB of a 256 MiB region into an endless,
// allocating loop) nor where a run crosses a 64-bit word of a bitmap
// container.
func TestNextClearRoaringEdges(t *testing.T) {
	b := New()
	b.Set(3<<16 + 65535) // the last block of chunk 3 only: an array container
	if got, want := b.NextClear(3<<16+65535), uint64(4<<16); got != want {
		t.Fatalf("NextClear(last bit of a chunk) = %d, want %d", got, want)
	}
	b.Set(3<<16 + 65530)
	if got, want := b.NextClear(3<<16+65530), uint64(3<<16+65531); got != want {
		t.Fatalf("NextClear = %d, want %d", got, want)
	}

	// A bitmap container (more than 4096 scattered bits) with a run across
	// the 64-bit word boundary at 30080.
	b = New()
	for i := uint64(0); i < 20000; i += 2 {
		b.Set(i)
	}
	b.SetRange(30070, 30090)
	if got := b.NextClear(30075); got != 30090 {
		t.Fatalf("NextClear inside a run across a word boundary = %d, want 30090", got)
	}
}

// NextClear agrees with a plain bool slice on random bitmaps of every
// container kind, around chunk ends in particular.
func TestNextClearMatchesModel(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 7))
	const n = 3 * ChunkBits
	for round := range 40 {
		b := New()
		model := make([]bool, n+1) // model[n] stays clear
		for range 1 + r.IntN(200) {
			lo := uint64(r.IntN(n))
			hi := min(lo+1+uint64(r.IntN([]int{2, 70, 5000}[round%3])), n)
			if r.IntN(4) == 0 {
				lo = ChunkBits*uint64(r.IntN(3)) + ChunkBits - 1 - uint64(r.IntN(3))
				hi = min(lo+1+uint64(r.IntN(3)), n)
			}
			b.SetRange(lo, hi)
			for i := lo; i < hi; i++ {
				model[i] = true
			}
		}
		for range 2000 {
			i := uint64(r.IntN(n))
			want := i
			for model[want] {
				want++
			}
			if got := b.NextClear(i); got != want {
				t.Fatalf("round %d: NextClear(%d) = %d, want %d", round, i, got, want)
			}
		}
	}
}
