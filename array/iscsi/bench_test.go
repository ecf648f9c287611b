package iscsi

import (
	"fmt"
	"testing"
)

// The benchmarks drive the server through the raw test client over
// loopback TCP against an in-memory device, one command at a time: they
// measure the round trip of the protocol path (framing, R2T-less
// immediate data, Data-In, the writer).

const benchDevSize = 64 << 20

func benchSetup(b *testing.B) *rawClient {
	dev := &memDevice{data: make([]byte, benchDevSize)}
	c := loggedIn(b, dev)
	return c
}

func BenchmarkRoundTrip(b *testing.B) {
	for _, size := range []int{4 << 10, 64 << 10} {
		for _, write := range []bool{false, true} {
			name := "read"
			if write {
				name = "write"
			}
			b.Run(fmt.Sprintf("%s/%dKiB", name, size>>10), func(b *testing.B) {
				c := benchSetup(b)
				buf := make([]byte, size)
				blocks := uint16(size / BlockSize)
				slots := uint32(benchDevSize / size)
				b.SetBytes(int64(size))
				b.ReportAllocs()
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					lba := uint32(i) % slots * uint32(blocks)
					var r scsiReply
					var err error
					if write {
						r, err = c.do(0, write10(lba, blocks, false), size, buf)
					} else {
						r, err = c.do(0, read10(lba, blocks), size, nil)
					}
					if err != nil || r.status != statusGood {
						b.Fatalf("status %#x: %v", r.status, err)
					}
				}
			})
		}
	}
}
