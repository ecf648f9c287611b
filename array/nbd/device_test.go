package nbd

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// fileDevice is a PROTOCOL-TEST device only: a Device over a plain sparse
// temp file, so that this package's tests do not depend on the array
// engine. WriteAt/ReadAt are pwrite/pread, Flush is fdatasync, Trim and
// WriteZeroes punch holes (fallocate PUNCH_HOLE, or ZERO_RANGE for
// NO_HOLE), BlockStatus uses SEEK_DATA/SEEK_HOLE. Because every connection
// shares the one file descriptor and page cache, Flush covers writes from
// every connection, as Device requires. It also records what the server
// asked of it, and can be told to fail.
type fileDevice struct {
	f    *os.File
	fd   int
	size int64
	ro   bool

	writes, fuaWrites     atomic.Int64
	trims, fuaTrims       atomic.Int64
	zeroes, noHoleZeroes  atomic.Int64
	fuaZeroes, flushes    atomic.Int64
	reads, blockStatusReq atomic.Int64

	failReads  atomic.Bool // ReadAt returns EIO
	failWrites atomic.Bool // WriteAt returns EIO
	fastZero   atomic.Bool // CanFastZero answer (see fastZeroDevice)
}

func newFileDevice(t testing.TB, size int64) *fileDevice {
	t.Helper()
	path := filepath.Join(t.TempDir(), "disk.img")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return &fileDevice{f: f, fd: int(f.Fd()), size: size}
}

func (d *fileDevice) path() string { return d.f.Name() }

func (d *fileDevice) Size() int64    { return d.size }
func (d *fileDevice) ReadOnly() bool { return d.ro }

func (d *fileDevice) ReadAt(_ context.Context, p []byte, off int64) error {
	d.reads.Add(1)
	if d.failReads.Load() {
		return fmt.Errorf("injected read failure: %w", syscall.EIO)
	}
	n, err := d.f.ReadAt(p, off)
	if errors.Is(err, io.EOF) {
		clear(p[n:])
		err = nil
	}
	return err
}

func (d *fileDevice) WriteAt(_ context.Context, p []byte, off int64, fua bool) error {
	d.writes.Add(1)
	if d.failWrites.Load() {
		return fmt.Errorf("injected write failure: %w", syscall.EIO)
	}
	if _, err := d.f.WriteAt(p, off); err != nil {
		return err
	}
	if fua {
		d.fuaWrites.Add(1)
		return unix.Fdatasync(d.fd)
	}
	return nil
}

func (d *fileDevice) Flush(context.Context) error {
	d.flushes.Add(1)
	return unix.Fdatasync(d.fd)
}

func (d *fileDevice) Trim(_ context.Context, off, length int64, fua bool) error {
	d.trims.Add(1)
	if err := unix.Fallocate(d.fd, unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, off, length); err != nil {
		return err
	}
	if fua {
		d.fuaTrims.Add(1)
		return unix.Fdatasync(d.fd)
	}
	return nil
}

func (d *fileDevice) WriteZeroes(_ context.Context, off, length int64, noHole, fua bool) error {
	d.zeroes.Add(1)
	var err error
	if noHole {
		d.noHoleZeroes.Add(1)
		err = unix.Fallocate(d.fd, unix.FALLOC_FL_ZERO_RANGE|unix.FALLOC_FL_KEEP_SIZE, off, length)
		if errors.Is(err, unix.EOPNOTSUPP) {
			err = d.writeZeroBytes(off, length)
		}
	} else {
		err = unix.Fallocate(d.fd, unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, off, length)
	}
	if err != nil {
		return err
	}
	if fua {
		d.fuaZeroes.Add(1)
		return unix.Fdatasync(d.fd)
	}
	return nil
}

func (d *fileDevice) writeZeroBytes(off, length int64) error {
	z := make([]byte, min(length, 1<<20))
	for length > 0 {
		n := min(length, int64(len(z)))
		if _, err := d.f.WriteAt(z[:n], off); err != nil {
			return err
		}
		off += n
		length -= n
	}
	return nil
}

func (d *fileDevice) BlockStatus(_ context.Context, off, length int64) ([]Extent, error) {
	d.blockStatusReq.Add(1)
	end := off + length
	var out []Extent
	pos := off
	for pos < end {
		data, err := unix.Seek(d.fd, pos, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			data = end // nothing but hole up to EOF
		} else if err != nil {
			return nil, err
		}
		if data > pos {
			hend := min(data, end)
			out = append(out, Extent{Length: hend - pos, Hole: true, Zero: true})
			pos = hend
			if pos >= end {
				break
			}
		}
		hole, err := unix.Seek(d.fd, pos, unix.SEEK_HOLE)
		if err != nil {
			return nil, err
		}
		dend := min(hole, end)
		out = append(out, Extent{Length: dend - pos})
		pos = dend
	}
	return out, nil
}

// fastZeroDevice adds FastZeroer to a fileDevice.
type fastZeroDevice struct{ *fileDevice }

func (d fastZeroDevice) CanFastZero(off, length int64, noHole bool) bool {
	return d.fastZero.Load()
}

// describedDevice adds Describer to a fileDevice.
type describedDevice struct{ *fileDevice }

func (describedDevice) Description() string { return "a test disk" }

// memDevice is a benchmark-only Device in memory, to measure the protocol
// rather than a file system.
type memDevice struct {
	mu   sync.RWMutex
	data []byte
}

func (d *memDevice) Size() int64    { return int64(len(d.data)) }
func (d *memDevice) ReadOnly() bool { return false }
func (d *memDevice) ReadAt(_ context.Context, p []byte, off int64) error {
	d.mu.RLock()
	copy(p, d.data[off:])
	d.mu.RUnlock()
	return nil
}
func (d *memDevice) WriteAt(_ context.Context, p []byte, off int64, _ bool) error {
	d.mu.Lock()
	copy(d.data[off:], p)
	d.mu.Unlock()
	return nil
}
func (d *memDevice) Flush(context.Context) error { return nil }
func (d *memDevice) Trim(ctx context.Context, off, length int64, fua bool) error {
	return d.WriteZeroes(ctx, off, length, false, fua)
}
func (d *memDevice) WriteZeroes(_ context.Context, off, length int64, _, _ bool) error {
	d.mu.Lock()
	clear(d.data[off : off+length])
	d.mu.Unlock()
	return nil
}
func (d *memDevice) BlockStatus(_ context.Context, off, length int64) ([]Extent, error) {
	return []Extent{{Length: length}}, nil
}

// testExport is one export of testExports.
type testExport struct {
	dev    Device
	listed bool
}

// testExports is the Exports of the tests: a fixed map of names. Names not
// in it (or deleted) are refused. It counts opens and releases.
type testExports struct {
	mu       sync.Mutex
	exports  map[string]testExport
	opens    atomic.Int64
	releases atomic.Int64
	remotes  []string
}

func newTestExports() *testExports {
	return &testExports{exports: make(map[string]testExport)}
}

func (e *testExports) add(name string, dev Device, listed bool) {
	e.mu.Lock()
	e.exports[name] = testExport{dev: dev, listed: listed}
	e.mu.Unlock()
}

func (e *testExports) Open(_ context.Context, name string, remote net.Addr) (Device, func(), error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	x, ok := e.exports[name]
	if !ok {
		return nil, nil, errors.New("no such export or not authorised")
	}
	e.opens.Add(1)
	e.remotes = append(e.remotes, remote.String())
	var once sync.Once
	return x.dev, func() { once.Do(func() { e.releases.Add(1) }) }, nil
}

func (e *testExports) List(context.Context) []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	var names []string
	for name, x := range e.exports {
		if x.listed {
			names = append(names, name)
		}
	}
	return names
}

// syncBuffer is a goroutine-safe bytes.Buffer for captured logs.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// testServer is a Server listening on a loopback port.
type testServer struct {
	srv  *Server
	addr string // host:port
	port string
	logs *syncBuffer
}

func startServer(t testing.TB, exports Exports, opts Options) *testServer {
	t.Helper()
	logs := &syncBuffer{}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := NewServer(exports, opts)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(context.Background(), lis) }()
	t.Cleanup(func() {
		srv.Close()
		if err := <-done; err != nil && !errors.Is(err, ErrServerClosed) {
			t.Errorf("Serve: %v", err)
		}
	})
	_, port, _ := net.SplitHostPort(lis.Addr().String())
	return &testServer{srv: srv, addr: lis.Addr().String(), port: port, logs: logs}
}

func (s *testServer) uri(export string) string {
	return "nbd://" + s.addr + "/" + export
}
