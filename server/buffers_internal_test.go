package server

import (
	"bytes"
	"testing"
)

// TestTieredBuffersFitAndClear: a buffer holds what was asked in less than
// twice the room (the 64 KiB message that took a 1 MiB buffer from gRPC's
// default pool), and one handed out again holds nothing of the message
// that used it before.
func TestTieredBuffersFitAndClear(t *testing.T) {
	p := &tieredBuffers{}
	for _, n := range []int{1, 255, 256, 257, 4096, 64<<10 + 600, 1 << 20, 16 << 20} {
		b := p.Get(n)
		if len(*b) != n || cap(*b) < n || (n > 1<<minTier && cap(*b) >= 2*n) {
			t.Errorf("Get(%d): len %d cap %d; want len %d, cap in [%d, %d)", n, len(*b), cap(*b), n, n, 2*n)
		}
		p.Put(b)
	}
	if b := p.Get(16<<20 + 1); len(*b) != 16<<20+1 {
		t.Errorf("Get past the largest tier: len %d", len(*b))
	}
	// sync.Pool may drop what it is given; try until a buffer comes back.
	for range 100 {
		b := p.Get(64 << 10)
		copy(*b, bytes.Repeat([]byte{0xa5}, len(*b)))
		first := &(*b)[0]
		p.Put(b)
		again := p.Get(40 << 10) // the same tier
		if &(*again)[0] != first {
			continue
		}
		if !bytes.Equal(*again, make([]byte, len(*again))) {
			t.Fatal("a buffer handed out again still holds the bytes of the message before")
		}
		return
	}
	t.Fatal("no buffer came back from the pool in 100 tries")
}
