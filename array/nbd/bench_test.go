package nbd

import (
	"fmt"
	"sync/atomic"
	"testing"
)

// The benchmarks drive the server through the raw test client over
// loopback TCP, against an in-memory device, with 8 requests in flight per
// CPU. They measure the protocol path: framing, buffers, workers, writev.

const benchDevSize = 256 << 20

func benchSetup(b *testing.B, structured bool) *rawClient {
	dev := &memDevice{data: make([]byte, benchDevSize)}
	ex := newTestExports()
	ex.add("mem", dev, true)
	ts := startServer(b, ex, Options{Logger: nil})
	return connect(b, ts.addr, "mem", clientOpts{structured: structured})
}

func BenchmarkRead(b *testing.B) {
	for _, size := range []int{4 << 10, 1 << 20} {
		for _, structured := range []bool{false, true} {
			b.Run(fmt.Sprintf("%s/structured=%v", sizeName(size), structured), func(b *testing.B) {
				c := benchSetup(b, structured)
				benchLoop(b, c, cmdRead, size)
			})
		}
	}
}

func BenchmarkWrite(b *testing.B) {
	for _, size := range []int{4 << 10, 1 << 20} {
		b.Run(sizeName(size), func(b *testing.B) {
			c := benchSetup(b, false)
			benchLoop(b, c, cmdWrite, size)
		})
	}
}

func benchLoop(b *testing.B, c *rawClient, typ uint16, size int) {
	var next atomic.Uint64
	slots := uint64(benchDevSize / size)
	b.SetBytes(int64(size))
	b.SetParallelism(8)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		buf := make([]byte, size)
		for pb.Next() {
			off := (next.Add(1) % slots) * uint64(size)
			var cl *call
			if typ == cmdRead {
				cl = c.wait(c.send(cmdRead, 0, off, uint32(size), nil, buf))
			} else {
				cl = c.wait(c.send(cmdWrite, 0, off, uint32(size), buf, nil))
			}
			if cl.errno != 0 {
				b.Errorf("errno %d", cl.errno)
				return
			}
			recycle(cl)
		}
	})
	b.StopTimer()
	c.checkProto()
}

func sizeName(n int) string {
	if n >= 1<<20 {
		return fmt.Sprintf("%dMiB", n>>20)
	}
	return fmt.Sprintf("%dKiB", n>>10)
}
