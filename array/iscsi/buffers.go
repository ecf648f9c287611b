package iscsi

import "sync"

// Data buffers come from pools by power-of-two size class (4 KiB up to
// 8 MiB), so that steady I/O does not allocate.
const (
	minBufShift = 12
	maxBufShift = 23
)

var bufPools [maxBufShift - minBufShift + 1]sync.Pool

func bufClass(n int) int {
	c := 0
	for size := 1 << minBufShift; size < n; size <<= 1 {
		c++
	}
	return c
}

// getBuffer returns a buffer of n bytes (contents undefined).
func getBuffer(n int) []byte {
	c := bufClass(n)
	if c >= len(bufPools) {
		return make([]byte, n)
	}
	if b, ok := bufPools[c].Get().(*[]byte); ok {
		return (*b)[:n]
	}
	return make([]byte, n, 1<<(minBufShift+c))
}

// putBuffer recycles a buffer from getBuffer.
func putBuffer(b []byte) {
	c := bufClass(cap(b))
	if c >= len(bufPools) || cap(b) != 1<<(minBufShift+c) {
		return
	}
	b = b[:cap(b)]
	bufPools[c].Put(&b)
}
