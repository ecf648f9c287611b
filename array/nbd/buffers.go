package nbd

import (
	"math/bits"
	"sync"
)

// Payload buffers come from power-of-two size classes between minBufShift
// and maxBufShift, each with its own sync.Pool, so that a steady stream of
// requests allocates nothing. Pools hold *[]byte so that Put does not
// allocate.
const (
	minBufShift = 12 // 4 KiB
	maxBufShift = 25 // 32 MiB, MaxRequestSize
)

var bufPools [maxBufShift - minBufShift + 1]sync.Pool

func bufClass(n int) int {
	if n <= 1<<minBufShift {
		return 0
	}
	return bits.Len(uint(n-1)) - minBufShift
}

// getBuf returns a buffer of length n (n <= MaxRequestSize). Its contents
// are undefined.
func getBuf(n int) *[]byte {
	c := bufClass(n)
	if v := bufPools[c].Get(); v != nil {
		b := v.(*[]byte)
		*b = (*b)[:n]
		return b
	}
	b := make([]byte, n, 1<<(c+minBufShift))
	return &b
}

// putBuf returns a buffer obtained from getBuf.
func putBuf(b *[]byte) {
	if b == nil {
		return
	}
	c := bufClass(cap(*b))
	if cap(*b) != 1<<(c+minBufShift) {
		return // not one of ours
	}
	bufPools[c].Put(b)
}
