package nbd

import (
	"context"
	"encoding/binary"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// fuzzDevice is a Device (and QuickDevice and FastZeroer) for the fuzz
// target that fails the test on anything the server must never ask of a
// device: a range outside [0, Size()) or empty, a write to a read-only
// export, any call after release.
type fuzzDevice struct {
	t        *testing.T
	name     string
	ro       bool
	released atomic.Bool

	mu   sync.Mutex
	data []byte
}

func (d *fuzzDevice) check(op string, off, n int64) bool {
	d.t.Helper()
	if d.released.Load() {
		d.t.Errorf("%s on export %q after its release", op, d.name)
		return false
	}
	if off < 0 || n <= 0 || off > int64(len(d.data)) || n > int64(len(d.data))-off {
		d.t.Errorf("%s [%d, +%d) on export %q outside its %d bytes", op, off, n, d.name, len(d.data))
		return false
	}
	return true
}

func (d *fuzzDevice) checkWritable(op string, off, n int64) bool {
	d.t.Helper()
	if d.ro {
		d.t.Errorf("%s on read-only export %q", op, d.name)
		return false
	}
	return d.check(op, off, n)
}

func (d *fuzzDevice) Size() int64    { return int64(len(d.data)) }
func (d *fuzzDevice) ReadOnly() bool { return d.ro }

func (d *fuzzDevice) ReadAt(_ context.Context, p []byte, off int64) error {
	if d.check("ReadAt", off, int64(len(p))) {
		d.mu.Lock()
		copy(p, d.data[off:])
		d.mu.Unlock()
	}
	return nil
}

func (d *fuzzDevice) WriteAt(_ context.Context, p []byte, off int64, _ bool) error {
	if d.checkWritable("WriteAt", off, int64(len(p))) {
		d.mu.Lock()
		copy(d.data[off:], p)
		d.mu.Unlock()
	}
	return nil
}

// The quick paths decline every other 4 KiB block, so that both the
// reader's and the workers' paths are fuzzed.
func (d *fuzzDevice) ReadAtNoWait(ctx context.Context, p []byte, off int64) error {
	if off/4096%2 == 1 {
		return ErrWouldBlock
	}
	return d.ReadAt(ctx, p, off)
}

func (d *fuzzDevice) WriteAtNoWait(ctx context.Context, p []byte, off int64) error {
	if off/4096%2 == 1 {
		return ErrWouldBlock
	}
	return d.WriteAt(ctx, p, off, false)
}

func (d *fuzzDevice) Flush(context.Context) error {
	if d.released.Load() {
		d.t.Errorf("Flush on export %q after its release", d.name)
	}
	return nil
}

func (d *fuzzDevice) Trim(_ context.Context, off, length int64, _ bool) error {
	d.checkWritable("Trim", off, length)
	return nil
}

func (d *fuzzDevice) WriteZeroes(_ context.Context, off, length int64, _, _ bool) error {
	if d.checkWritable("WriteZeroes", off, length) {
		d.mu.Lock()
		clear(d.data[off : off+length])
		d.mu.Unlock()
	}
	return nil
}

func (d *fuzzDevice) CanFastZero(off, length int64, _ bool) bool {
	d.checkWritable("CanFastZero", off, length)
	return off%2 == 0
}

// BlockStatus describes the range as alternating 1 KiB data and hole
// extents, some with lengths the server must merge or clip.
func (d *fuzzDevice) BlockStatus(_ context.Context, off, length int64) ([]Extent, error) {
	if !d.check("BlockStatus", off, length) {
		return nil, nil
	}
	var out []Extent
	for pos := off; pos < off+length && len(out) < 64; {
		n := 1024 - pos%1024
		out = append(out, Extent{Length: n, Hole: pos/1024%2 == 1, Zero: pos/1024%3 == 0})
		pos += n
	}
	return out, nil
}

// fuzzExports serves "disk" (read-write, quick, fast zero) and "ro"
// (read-only), both of odd sizes so that ranges meet the end unaligned.
type fuzzExports struct {
	t              *testing.T
	opens, release atomic.Int64
	mu             sync.Mutex
	devs           []*fuzzDevice
}

func (e *fuzzExports) Open(_ context.Context, name string, _ net.Addr) (Device, func(), error) {
	var d *fuzzDevice
	switch name {
	case "disk":
		d = &fuzzDevice{t: e.t, name: name, data: make([]byte, 64<<10+3)}
	case "ro":
		d = &fuzzDevice{t: e.t, name: name, ro: true, data: make([]byte, 8<<10+1)}
	default:
		return nil, nil, io.ErrUnexpectedEOF
	}
	e.opens.Add(1)
	e.mu.Lock()
	e.devs = append(e.devs, d)
	e.mu.Unlock()
	var once sync.Once
	return d, func() {
		once.Do(func() {
			d.released.Store(true)
			e.release.Add(1)
		})
	}, nil
}

func (e *fuzzExports) List(context.Context) []string { return []string{"disk", "ro"} }

// stream builds what a client sends, for the seeds.
type stream []byte

func (s stream) u16(v uint16) stream { return binary.BigEndian.AppendUint16(s, v) }
func (s stream) u32(v uint32) stream { return binary.BigEndian.AppendUint32(s, v) }
func (s stream) u64(v uint64) stream { return binary.BigEndian.AppendUint64(s, v) }

func (s stream) opt(opt uint32, data []byte) stream {
	return append(s.u64(ihaveOpt).u32(opt).u32(uint32(len(data))), data...)
}

func (s stream) req(typ, flags uint16, handle, off uint64, length uint32, payload []byte) stream {
	return append(s.u32(requestMagic).u16(flags).u16(typ).u64(handle).u64(off).u32(length), payload...)
}

// fuzzSeeds are sessions a real client could send, for the fuzzer to
// mutate: every option, every command with and without flags, ranges at
// and past the end.
func fuzzSeeds() []stream {
	fixed := stream(nil).u32(flagCFixedNewstyle | flagCNoZeroes)
	const size = 64<<10 + 3
	requests := func(s stream) stream {
		s = s.req(cmdWrite, 0, 1, 0, 8, []byte("abcdefgh"))
		s = s.req(cmdWrite, cmdFlagFUA, 2, 4090, 300, make([]byte, 300))
		s = s.req(cmdRead, 0, 3, 0, 4096, nil)
		s = s.req(cmdRead, cmdFlagDF, 4, size-10, 10, nil)
		s = s.req(cmdRead, 0, 5, size-10, 11, nil)
		s = s.req(cmdRead, 0, 6, 0, 0, nil)
		s = s.req(cmdWrite, 0, 7, size-1, 1, []byte("x"))
		s = s.req(cmdWrite, 0, 18, size-1, 2, []byte("yz"))
		s = s.req(cmdTrim, cmdFlagFUA, 8, 100, 9000, nil)
		s = s.req(cmdWriteZeroes, cmdFlagNoHole|cmdFlagFastZero, 9, 1, 4096, nil)
		s = s.req(cmdWriteZeroes, cmdFlagFastZero, 10, 2, 4096, nil)
		s = s.req(cmdBlockStatus, cmdFlagReqOne, 11, 0, size, nil)
		s = s.req(cmdBlockStatus, 0, 12, 3000, 40000, nil)
		s = s.req(cmdCache, 0, 13, 0, size, nil)
		s = s.req(cmdFlush, 0, 14, 0, 0, nil)
		s = s.req(99, 0, 15, 0, 0, nil)
		s = s.req(cmdRead, 0, 16, 1<<63, 1<<25, nil)
		return s.req(cmdDisc, 0, 17, 0, 0, nil)
	}
	return []stream{
		// Structured replies, base:allocation, GO with every info.
		requests(fixed.opt(optStructuredReply, nil).
			opt(optSetMetaContext, metaData("disk", metaBaseAllocation)).
			opt(optGo, infoGoData("disk", infoName, infoDescription, infoBlockSize))),
		// Simple replies, the old way in.
		requests(stream(nil).u32(flagCFixedNewstyle).opt(optExportName, []byte("disk"))),
		// Writes to a read-only export.
		requests(fixed.opt(optStructuredReply, nil).opt(optGo, infoGoData("ro"))),
		// Options that do not start transmission, then GO.
		requests(fixed.opt(optList, nil).opt(optInfo, infoGoData("disk")).opt(optInfo, infoGoData("nope")).
			opt(optStructuredReply, nil).opt(optListMetaContext, metaData("disk", "base:")).
			opt(optStartTLS, nil).opt(77, []byte("x")).opt(optGo, infoGoData("disk"))),
		fixed.opt(optAbort, nil),
	}
}

const maxFuzzInput = 2 << 10

// FuzzSession drives one client session, handshake and transmission, from
// the fuzzer's bytes against a server whose devices fail the test on any
// access the server should have refused. The server must also end the
// session when the client stops sending, release every device it opened,
// and leave no goroutine behind (TestMain checks the last).
func FuzzSession(f *testing.F) {
	for _, s := range fuzzSeeds() {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		// Long inputs make minimizing slow and find nothing that shorter
		// ones with large lengths in their headers do not (oversized
		// options have TestOversizedOptionAnsweredAtOnce).
		if len(data) > maxFuzzInput {
			return
		}
		runSession(t, data)
	})
}

// runSession sends data as a client's whole side of a session and reads
// everything the server answers until it closes the connection.
func runSession(t *testing.T, data []byte) *fuzzExports {
	ex := &fuzzExports{t: t}
	// A socket pair rather than TCP: cheaper per run, and it can be
	// half-closed like a TCP connection.
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	client, server := fileConn(t, fds[0]), fileConn(t, fds[1])
	defer client.Close()
	lis := &oneConnListener{conns: make(chan net.Conn, 1), closed: make(chan struct{})}
	lis.conns <- server
	srv := NewServer(ex, Options{Logger: slog.New(slog.DiscardHandler), Workers: 4,
		MaxInflightBytes: 1 << 20, MaxQueuedRequests: 64})
	served := make(chan error, 1)
	go func() { served <- srv.Serve(context.Background(), lis) }()
	defer func() {
		srv.Close()
		<-served
		if o, r := ex.opens.Load(), ex.release.Load(); o != r {
			t.Errorf("%d devices opened, %d released", o, r)
		}
	}()

	drained := make(chan struct{})
	go func() {
		defer close(drained)
		io.Copy(io.Discard, client)
	}()
	client.Write(data) // fails once the server drops the connection
	client.CloseWrite()
	select {
	case <-drained:
	case <-time.After(10 * time.Second):
		t.Fatalf("the server did not end the session 10 s after the client stopped sending")
	}
	return ex
}

func fileConn(t *testing.T, fd int) *net.UnixConn {
	f := os.NewFile(uintptr(fd), "socketpair")
	defer f.Close() // net.FileConn dups it
	c, err := net.FileConn(f)
	if err != nil {
		t.Fatal(err)
	}
	return c.(*net.UnixConn)
}

// oneConnListener hands out one connection, then waits for Close.
type oneConnListener struct {
	conns     chan net.Conn
	closed    chan struct{}
	closeOnce sync.Once
}

func (l *oneConnListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

func (l *oneConnListener) Close() error {
	l.closeOnce.Do(func() { close(l.closed) })
	return nil
}

func (l *oneConnListener) Addr() net.Addr { return &net.UnixAddr{Name: "socketpair", Net: "unix"} }

// TestFuzzSeedsReachTheDevice keeps the seeds honest: the sessions get
// through the handshake and their requests reach the device.
func TestFuzzSeedsReachTheDevice(t *testing.T) {
	seeds := fuzzSeeds()
	for i, s := range seeds {
		if len(s) > maxFuzzInput {
			t.Fatalf("seed %d has %d bytes, over the %d the fuzz target takes", i, len(s), maxFuzzInput)
		}
	}
	for i, s := range seeds[:4] {
		ex := runSession(t, s)
		if len(ex.devs) == 0 {
			t.Fatalf("seed %d opened no device", i)
		}
		d := ex.devs[len(ex.devs)-1]
		if d.ro {
			continue
		}
		if d.data[0] != 'a' || d.data[len(d.data)-1] != 'x' {
			t.Fatalf("seed %d: writes did not reach the device (first byte %q, last %q)", i, d.data[0], d.data[len(d.data)-1])
		}
	}
}
