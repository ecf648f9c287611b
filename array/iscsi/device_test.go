package iscsi

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/volrep/volrep/internal/testenv"
	"golang.org/x/sys/unix"
)

// fileDevice is a PROTOCOL-TEST device only: a Device over a plain sparse
// temp file, so that this package's tests do not depend on the array
// engine. Zero punches holes. It records what the server asked of it.
type fileDevice struct {
	f    *os.File
	fd   int
	size atomic.Int64
	ro   bool
	id   Identity

	writes, fuaWrites, reads atomic.Int64
	zeroes, flushes, closes  atomic.Int64
	revoked                  atomic.Bool // every method returns ErrNotMapped
	// access is the ALUA state (low byte) and PREF (bit 8) it reports.
	access atomic.Uint32
}

func newFileDevice(t testing.TB, size int64, naaByte byte) *fileDevice {
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
	d := &fileDevice{f: f, fd: int(f.Fd())}
	d.size.Store(size)
	d.id.NAA[0] = 0x60
	d.id.NAA[15] = naaByte
	d.id.Serial = fmt.Sprintf("VOLREPTEST%02x", naaByte)
	d.id.Product = "test volume"
	return d
}

func (d *fileDevice) path() string { return d.f.Name() }

// grow extends the device (online extend).
func (d *fileDevice) grow(size int64) error {
	if err := d.f.Truncate(size); err != nil {
		return err
	}
	d.size.Store(size)
	return nil
}

func (d *fileDevice) Size() int64    { return d.size.Load() }
func (d *fileDevice) ReadOnly() bool { return d.ro }

func (d *fileDevice) ReadAt(_ context.Context, p []byte, off int64) error {
	if d.revoked.Load() {
		return ErrNotMapped
	}
	d.reads.Add(1)
	n, err := d.f.ReadAt(p, off)
	if errors.Is(err, io.EOF) {
		clear(p[n:])
		err = nil
	}
	return err
}

func (d *fileDevice) WriteAt(_ context.Context, p []byte, off int64, fua bool) error {
	if d.revoked.Load() {
		return ErrNotMapped
	}
	if d.ro {
		return ErrWriteProtected
	}
	d.writes.Add(1)
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
	if d.revoked.Load() {
		return ErrNotMapped
	}
	d.flushes.Add(1)
	return unix.Fdatasync(d.fd)
}

func (d *fileDevice) Zero(_ context.Context, off, length int64, fua bool) error {
	if d.revoked.Load() {
		return ErrNotMapped
	}
	d.zeroes.Add(1)
	return unix.Fallocate(d.fd, unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, off, length)
}

func (d *fileDevice) Identity() Identity { return d.id }

func (d *fileDevice) setAccess(a Access) {
	v := uint32(a.State)
	if a.Preferred {
		v |= 1 << 8
	}
	d.access.Store(v)
}

func (d *fileDevice) Access() Access {
	v := d.access.Load()
	return Access{State: AccessState(v), Preferred: v&(1<<8) != 0}
}
func (d *fileDevice) Close() { d.closes.Add(1) }

// memDevice is a benchmark and fuzz Device in memory.
type memDevice struct {
	mu   sync.RWMutex
	data []byte
	ro   bool
}

func (d *memDevice) Size() int64    { return int64(len(d.data)) }
func (d *memDevice) ReadOnly() bool { return d.ro }
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
func (d *memDevice) Zero(_ context.Context, off, length int64, _ bool) error {
	d.mu.Lock()
	clear(d.data[off : off+length])
	d.mu.Unlock()
	return nil
}
func (d *memDevice) Identity() Identity { return Identity{NAA: [16]byte{0x60, 1}, Serial: "MEM"} }
func (d *memDevice) Close()             {}

// testTarget is one target of testTargets.
type testTarget struct {
	auth       map[string]Auth // initiator → credentials; absent = not allowed
	luns       map[uint64]Device
	hiddenFrom map[string]bool // initiators that may log in but not discover it
}

// testTargets is the Targets of the tests: fixed maps of targets,
// initiators and LUNs, changeable while sessions run.
type testTargets struct {
	mu            sync.Mutex
	targets       map[string]*testTarget
	discoveryAuth map[string]Auth
	opens         atomic.Int64
}

func newTestTargets() *testTargets {
	return &testTargets{targets: map[string]*testTarget{}, discoveryAuth: map[string]Auth{}}
}

// add maps dev as lun of target for initiator with auth.
func (tt *testTargets) add(target, initiator string, auth Auth, lun uint64, dev Device) {
	tt.mu.Lock()
	defer tt.mu.Unlock()
	t := tt.targets[target]
	if t == nil {
		t = &testTarget{auth: map[string]Auth{}, luns: map[uint64]Device{}, hiddenFrom: map[string]bool{}}
		tt.targets[target] = t
	}
	t.auth[initiator] = auth
	if dev != nil {
		t.luns[lun] = dev
	}
}

func (tt *testTargets) unmap(target string, lun uint64) {
	tt.mu.Lock()
	defer tt.mu.Unlock()
	delete(tt.targets[target].luns, lun)
}

func (tt *testTargets) Discover(_ context.Context, initiator string) ([]Target, error) {
	tt.mu.Lock()
	defer tt.mu.Unlock()
	var out []Target
	for name, t := range tt.targets {
		if _, ok := t.auth[initiator]; ok && !t.hiddenFrom[initiator] {
			out = append(out, Target{Name: name})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

func (tt *testTargets) DiscoveryAuth(_ context.Context, initiator string) (Auth, error) {
	tt.mu.Lock()
	defer tt.mu.Unlock()
	return tt.discoveryAuth[initiator], nil
}

func (tt *testTargets) Login(_ context.Context, initiator, target string) (Auth, error) {
	tt.mu.Lock()
	defer tt.mu.Unlock()
	t := tt.targets[target]
	if t == nil {
		return Auth{}, ErrUnknownTarget
	}
	a, ok := t.auth[initiator]
	if !ok {
		return Auth{}, ErrUnknownInitiator
	}
	return a, nil
}

func (tt *testTargets) LUNs(_ context.Context, initiator, target string) ([]uint64, error) {
	tt.mu.Lock()
	defer tt.mu.Unlock()
	t := tt.targets[target]
	if t == nil {
		return nil, ErrUnknownTarget
	}
	var out []uint64
	for l := range t.luns {
		out = append(out, l)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out, nil
}

func (tt *testTargets) Open(_ context.Context, initiator, target string, lun uint64) (Device, error) {
	tt.mu.Lock()
	defer tt.mu.Unlock()
	t := tt.targets[target]
	if t == nil {
		return nil, ErrNotMapped
	}
	if _, ok := t.auth[initiator]; !ok {
		return nil, ErrNotMapped
	}
	d, ok := t.luns[lun]
	if !ok {
		return nil, ErrNotMapped
	}
	tt.opens.Add(1)
	return d, nil
}

// testServer is a Server listening on a loopback port.
type testServer struct {
	srv  *Server
	addr string // host:port
	port string
	logs *testenv.Buffer
}

func startServer(t testing.TB, targets Targets, opts Options) *testServer {
	t.Helper()
	logs := &testenv.Buffer{}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := NewServer(targets, opts)
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

// url is a libiscsi/qemu URL for lun of target, with optional CHAP.
func (s *testServer) url(user, secret, target string, lun int) string {
	cred := ""
	if user != "" {
		cred = user + "%" + secret + "@"
	}
	return fmt.Sprintf("iscsi://%s%s/%s/%d", cred, s.addr, target, lun)
}
