package nbd

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
)

// quickDevice is a memDevice that is also a QuickDevice: requests for odd
// 4 KiB blocks would block (a read first scribbles over part of p, as a
// partial read from the page cache may), and a write at errOff fails.
type quickDevice struct {
	memDevice
	quickReads, quickWrites atomic.Int64
	reads, writes           atomic.Int64
}

const errOff = 40 << 10

func (d *quickDevice) ReadAt(ctx context.Context, p []byte, off int64) error {
	d.reads.Add(1)
	return d.memDevice.ReadAt(ctx, p, off)
}

func (d *quickDevice) WriteAt(ctx context.Context, p []byte, off int64, fua bool) error {
	d.writes.Add(1)
	return d.memDevice.WriteAt(ctx, p, off, fua)
}

func (d *quickDevice) ReadAtNoWait(ctx context.Context, p []byte, off int64) error {
	if (off/4096)%2 == 1 {
		for i := range p[:len(p)/2] {
			p[i] = 0xee
		}
		return ErrWouldBlock
	}
	d.quickReads.Add(1)
	return d.memDevice.ReadAt(ctx, p, off)
}

func (d *quickDevice) WriteAtNoWait(ctx context.Context, p []byte, off int64) error {
	if off == errOff {
		return syscall.EPERM
	}
	if (off/4096)%2 == 1 {
		return ErrWouldBlock
	}
	d.quickWrites.Add(1)
	return d.memDevice.WriteAt(ctx, p, off, false)
}

var _ QuickDevice = (*quickDevice)(nil)

// Requests a QuickDevice serves get the same replies as those it hands
// to the workers, and FUA, errors and out-of-range requests keep their
// usual paths.
func TestQuickDevice(t *testing.T) {
	for _, structured := range []bool{false, true} {
		t.Run(fmt.Sprintf("structured=%v", structured), func(t *testing.T) {
			dev := &quickDevice{memDevice: memDevice{data: make([]byte, 1<<20)}}
			ex := newTestExports()
			ex.add("q", dev, true)
			ts := startServer(t, ex, Options{})
			c := connect(t, ts.addr, "q", clientOpts{structured: structured})
			defer c.shutdown()

			block := func(i int) []byte { return bytes.Repeat([]byte{byte(0x10 + i)}, 4096) }
			for i := range 4 {
				if cl := c.write(uint64(i*4096), block(i), 0); cl.errno != 0 {
					t.Fatalf("write block %d: errno %d", i, cl.errno)
				}
			}
			if q, w := dev.quickWrites.Load(), dev.writes.Load(); q != 2 || w != 2 {
				t.Fatalf("writes served quickly %d, by workers %d; want 2 and 2", q, w)
			}
			// FUA always goes to a worker.
			if cl := c.write(0, block(0), cmdFlagFUA); cl.errno != 0 || dev.writes.Load() != 3 {
				t.Fatalf("FUA write: errno %d, worker writes %d", cl.errno, dev.writes.Load())
			}
			for i := range 4 {
				buf := make([]byte, 4096)
				if cl := c.read(uint64(i*4096), buf, 0); cl.errno != 0 || !bytes.Equal(buf, block(i)) {
					t.Fatalf("read block %d: errno %d, data %x…", i, cl.errno, buf[:8])
				}
			}
			if q, r := dev.quickReads.Load(), dev.reads.Load(); q != 2 || r != 2 {
				t.Fatalf("reads served quickly %d, by workers %d; want 2 and 2", q, r)
			}
			// A read across both kinds of block is re-read whole by a worker.
			buf := make([]byte, 3*4096)
			if cl := c.read(4096, buf, 0); cl.errno != 0 || !bytes.Equal(buf, bytes.Join([][]byte{block(1), block(2), block(3)}, nil)) {
				t.Fatalf("read of blocks 1-3: errno %d", cl.errno)
			}
			// A device error from the quick path is the client's error, and
			// the connection goes on.
			if cl := c.write(errOff, block(9), 0); cl.errno != errPerm {
				t.Fatalf("write the device refuses: errno %d, want EPERM", cl.errno)
			}
			if cl := c.read(1<<20-4096, make([]byte, 8192), 0); cl.errno != errInval {
				t.Fatalf("read past the end: errno %d, want EINVAL", cl.errno)
			}
			if cl := c.read(0, make([]byte, 4096), 0); cl.errno != 0 {
				t.Fatalf("read after errors: errno %d", cl.errno)
			}
			c.checkProto()
		})
	}
}

// Concurrent reads and writes, some served quickly and some by workers,
// read back what was written.
func TestQuickDeviceConcurrent(t *testing.T) {
	dev := &quickDevice{memDevice: memDevice{data: make([]byte, 8<<20)}}
	ex := newTestExports()
	ex.add("q", dev, true)
	ts := startServer(t, ex, Options{})
	c := connect(t, ts.addr, "q", clientOpts{structured: true})
	defer c.shutdown()
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(g), 1))
			base := uint64(g+1) << 19 // each goroutine owns 512 KiB, past errOff
			model := make([]byte, 1<<19)
			for range 300 {
				off := uint64(r.IntN(120)) * 4096
				n := 4096 * (1 + r.IntN(4))
				if r.IntN(2) == 0 {
					p := bytes.Repeat([]byte{byte(r.Uint32())}, n)
					if cl := c.write(base+off, p, 0); cl.errno != 0 {
						t.Errorf("write: errno %d", cl.errno)
						return
					}
					copy(model[off:], p)
				} else {
					buf := make([]byte, n)
					if cl := c.read(base+off, buf, 0); cl.errno != 0 || !bytes.Equal(buf, model[off:off+uint64(n)]) {
						t.Errorf("read at %d+%d: errno %d, data differs", base, off, cl.errno)
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	if dev.quickReads.Load() == 0 || dev.reads.Load() == 0 || dev.quickWrites.Load() == 0 || dev.writes.Load() == 0 {
		t.Fatalf("not both paths taken: quick reads %d, worker reads %d, quick writes %d, worker writes %d",
			dev.quickReads.Load(), dev.reads.Load(), dev.quickWrites.Load(), dev.writes.Load())
	}
	c.checkProto()
}
