package server

import (
	"math/bits"
	"sync"

	"google.golang.org/grpc/experimental"
	"google.golang.org/grpc/mem"
)

// tieredBuffers is the pool that gRPC reads messages into and marshals
// them from, in every server and client of the process. gRPC's default pool has tiers of 256 B, 4,
// 16 and 32 KiB and 1 MiB, and clears a buffer's whole capacity when it
// hands it out: a transfer's 64 KiB data message took a 1 MiB buffer and
// cleared all of it, at each end, which was the largest cost in a CPU
// profile of an incremental transfer (P1: runtime.memclrNoHeapPointers
// under sizedBufferPool.Get, 90 of 210 ms). Here every power of two from
// 256 B to 16 MiB is a tier, so a message's buffer is less than twice its
// size; what is cleared is the length asked for, which the caller then
// fills, so clearing costs what copying the message does.
//
// It is set as gRPC's default pool when the package loads, before any
// server or connection exists, rather than per connection: the proto
// codec marshals into the default pool whatever pool a connection has.
func init() { experimental.SetDefaultBufferPool(&tieredBuffers{}) }

const (
	minTier = 8  // 256 B
	maxTier = 24 // 16 MiB, DefaultMaxMsgSize
)

var _ mem.BufferPool = (*tieredBuffers)(nil)

type tieredBuffers struct {
	tiers [maxTier + 1]sync.Pool
}

// tierOf is the tier whose buffers hold n bytes: the smallest power of two
// at least n.
func tierOf(n int) int { return max(minTier, bits.Len(uint(n-1))) }

func (p *tieredBuffers) Get(n int) *[]byte {
	t := tierOf(n)
	if t > maxTier {
		b := make([]byte, n)
		return &b
	}
	if b, ok := p.tiers[t].Get().(*[]byte); ok {
		*b = (*b)[:n]
		clear(*b)
		return b
	}
	b := make([]byte, n, 1<<t)
	return &b
}

// Put files a buffer under the largest tier its capacity covers.
func (p *tieredBuffers) Put(b *[]byte) {
	t := bits.Len(uint(cap(*b))) - 1
	if t < minTier || t > maxTier {
		return
	}
	p.tiers[t].Put(b)
}
