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
	"time"
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

// Replies the reader holds while more requests are buffered reach the
// client: after a pipelined burst, before a request that goes to a worker,
// and when the in-flight budget runs out (held READ replies hold budget).
func TestQuickHeldRepliesAreSent(t *testing.T) {
	dev := &quickDevice{memDevice: memDevice{data: make([]byte, 1<<20)}}
	ex := newTestExports()
	ex.add("q", dev, true)
	// A budget of two 4 KiB reads: the reader must send what it holds to
	// get more.
	ts := startServer(t, ex, Options{MaxInflightBytes: 8 << 10})
	c := connect(t, ts.addr, "q", clientOpts{structured: true})
	defer c.shutdown()
	done := make(chan struct{})
	go func() {
		defer close(done)
		for round := range 20 {
			var calls []*call
			for i := range 64 {
				off := uint64(2*i+12) * 4096 // even blocks past errOff: served quickly
				if round%2 == 0 {
					calls = append(calls, c.send(cmdWrite, 0, off, 4096, bytes.Repeat([]byte{byte(i)}, 4096), nil))
				} else {
					calls = append(calls, c.send(cmdRead, 0, off, 4096, nil, make([]byte, 4096)))
				}
			}
			// A FLUSH goes to a worker; the client waits for it alone.
			calls = append(calls, c.send(cmdFlush, 0, 0, 0, nil, nil))
			for i, cl := range calls {
				c.wait(cl)
				if cl.errno != 0 {
					t.Errorf("round %d request %d: errno %d", round, i, cl.errno)
					return
				}
				if round%2 == 1 && i < 64 && cl.buf[0] != byte(i) {
					t.Errorf("round %d read %d: %#x, want %#x", round, i, cl.buf[0], i)
					return
				}
			}
		}
	}()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("replies held by the server never arrived")
	}
	if dev.quickWrites.Load() == 0 || dev.quickReads.Load() == 0 {
		t.Fatalf("quick writes %d, quick reads %d: the quick path was not taken", dev.quickWrites.Load(), dev.quickReads.Load())
	}
	c.checkProto()
}

// flushGate is a quickDevice whose Flush waits until the test opens it.
type flushGate struct {
	*quickDevice
	open chan struct{}
}

func (d flushGate) Flush(ctx context.Context) error {
	select {
	case <-d.open:
	case <-ctx.Done():
	}
	return nil
}

// The reader sends what it holds before it waits for the client, even
// while a worker is busy: here the FLUSH behind a burst of writes waits
// until the client has every WRITE reply.
func TestQuickHeldRepliesNotStuckBehindWorker(t *testing.T) {
	for round := range 10 {
		dev := flushGate{&quickDevice{memDevice: memDevice{data: make([]byte, 1<<20)}}, make(chan struct{})}
		ex := newTestExports()
		ex.add("q", dev, true)
		ts := startServer(t, ex, Options{})
		c := connect(t, ts.addr, "q", clientOpts{})
		var writes []*call
		for i := range 32 {
			writes = append(writes, c.send(cmdWrite, 0, uint64(2*i+12)*4096, 4096, make([]byte, 4096), nil))
		}
		flush := c.send(cmdFlush, 0, 0, 0, nil, nil)
		got := make(chan struct{})
		go func() {
			for _, cl := range writes {
				c.wait(cl)
			}
			close(got)
		}()
		select {
		case <-got:
		case <-time.After(10 * time.Second):
			t.Fatalf("round %d: WRITE replies held while a worker waits", round)
		}
		close(dev.open)
		if c.wait(flush); flush.errno != 0 {
			t.Fatalf("flush: errno %d", flush.errno)
		}
		c.shutdown()
	}
}
