package store_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/volrep/volrep/array"
	"github.com/volrep/volrep/array/store"
	"github.com/volrep/volrep/errdefs"
)

// qosVolume creates a volume and opens it as an NBD attachment would, so
// its requests count against the volume's QoS.
func qosVolume(t *testing.T, s *store.Store, name string) *store.Handle {
	t.Helper()
	ctx := context.Background()
	if _, err := s.CreatePool(ctx, "p"); err != nil && errdefs.KindOf(err) != errdefs.KindAlreadyExists {
		t.Fatal(err)
	}
	if _, err := s.CreateVolume(ctx, array.VolumeSpec{Name: name, Pool: "p", SizeBytes: 64 << 20}); err != nil {
		t.Fatal(err)
	}
	e, err := s.CreateExport(ctx, array.ExportSpec{Volume: name, AttachmentID: "att-" + name})
	if err != nil {
		t.Fatal(err)
	}
	h, err := s.OpenExport(ctx, e.Name)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func setQoS(t *testing.T, s *store.Store, name string, q array.QoS) {
	t.Helper()
	v, err := s.SetVolumeQoS(context.Background(), name, q)
	if err != nil {
		t.Fatal(err)
	}
	if v.QoS != q {
		t.Fatalf("SetVolumeQoS returned %+v, want %+v", v.QoS, q)
	}
}

// rate runs n requests of size bytes from 4 goroutines and returns the
// requests per second achieved.
func opsRate(t *testing.T, h *store.Handle, write bool, n, size int) float64 {
	t.Helper()
	ctx := context.Background()
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for w := range 4 {
		wg.Go(func() {
			buf := make([]byte, size)
			for i := w; i < n; i += 4 {
				off := int64(i%1024) * int64(size)
				var err error
				if write {
					err = h.WriteAt(ctx, buf, off%(32<<20), false)
				} else {
					err = h.ReadAt(ctx, buf, off%(32<<20))
				}
				if err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	return float64(n) / time.Since(start).Seconds()
}

// drain spends the one second's burst a fresh bucket holds, so what
// follows runs at the steady limit.
func drain(t *testing.T, h *store.Handle, write bool, n, size int) {
	t.Helper()
	opsRate(t, h, write, n, size)
}

// within fails unless got is within [lo, hi]. The lower bound is loose (a
// loaded machine is slow); the upper bound is what a missing limiter
// breaks: unlimited, these requests run at tens of thousands a second.
func within(t *testing.T, what string, got, lo, hi float64) {
	t.Helper()
	t.Logf("%s: %.0f/s", what, got)
	if got < lo || got > hi {
		t.Fatalf("%s: %.0f/s, want within [%.0f, %.0f]", what, got, lo, hi)
	}
}

func TestQoSTotalIOPS(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	s := openTemp(t)
	h := qosVolume(t, s, "v")
	unlimited := opsRate(t, h, false, 2000, 4096)
	setQoS(t, s, "v", array.QoS{TotalIOPS: 400})
	drain(t, h, false, 400, 4096)
	// 200 requests at 400/s take 0.5 s; reads and writes share the total.
	within(t, "reads at total_iops=400", opsRate(t, h, false, 200, 4096), 150, 480)
	within(t, "writes at total_iops=400", opsRate(t, h, true, 200, 4096), 150, 480)
	if unlimited < 1000 {
		t.Fatalf("unlimited reads ran at only %.0f/s; the machine is too slow for this test's bounds", unlimited)
	}
	// Without a limit again, the same requests run far faster.
	setQoS(t, s, "v", array.QoS{})
	if got := opsRate(t, h, false, 2000, 4096); got < 1000 {
		t.Fatalf("after removing the limit reads ran at %.0f/s, want far above 400/s", got)
	}
}

func TestQoSBytes(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	s := openTemp(t)
	h := qosVolume(t, s, "v")
	const limit = 4 << 20 // 4 MiB/s in 64 KiB requests: 64 requests a second
	setQoS(t, s, "v", array.QoS{TotalBytesPerSec: limit})
	drain(t, h, true, 64, 64<<10)
	got := opsRate(t, h, true, 32, 64<<10) * (64 << 10)
	within(t, "bytes written at total_bytes_sec=4MiB", got, limit/4, limit*1.15)

	// A request larger than the bucket's burst waits for the pieces it
	// is reserved in rather than failing.
	setQoS(t, s, "v", array.QoS{TotalBytesPerSec: 1 << 20})
	start := time.Now()
	big := make([]byte, 3<<20)
	if err := h.ReadAt(context.Background(), big, 0); err != nil {
		t.Fatal(err)
	}
	// 3 MiB at 1 MiB/s with at most 1 MiB in the bucket: at least 2 s.
	if d := time.Since(start); d < 1900*time.Millisecond {
		t.Fatalf("3 MiB at 1 MiB/s took %v, want at least 2s", d)
	}
}

func TestQoSReadVersusWrite(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	s := openTemp(t)
	h := qosVolume(t, s, "v")
	setQoS(t, s, "v", array.QoS{ReadIOPS: 300})
	drain(t, h, false, 300, 4096)
	within(t, "reads at read_iops=300", opsRate(t, h, false, 150, 4096), 100, 360)
	if got := opsRate(t, h, true, 2000, 4096); got < 900 {
		t.Fatalf("writes ran at %.0f/s under a read-only limit of 300/s, want unlimited", got)
	}

	setQoS(t, s, "v", array.QoS{WriteIOPS: 300, ReadBytesPerSec: 8 << 20})
	drain(t, h, true, 300, 4096)
	within(t, "writes at write_iops=300", opsRate(t, h, true, 150, 4096), 100, 360)
	// 4 KiB reads under 8 MiB/s are 2048/s: limited by bytes, not by the
	// write limit.
	drain(t, h, false, 3072, 4096)
	within(t, "4K reads at read_bytes_sec=8MiB", opsRate(t, h, false, 1024, 4096), 700, 2300)
}

// TestQoSLiveChange changes the limit while an attachment is open and
// busy: the new limit holds from the next requests.
func TestQoSLiveChange(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	s := openTemp(t)
	h := qosVolume(t, s, "v")
	setQoS(t, s, "v", array.QoS{TotalIOPS: 200})
	drain(t, h, false, 200, 4096)
	within(t, "at 200", opsRate(t, h, false, 100, 4096), 70, 240)

	setQoS(t, s, "v", array.QoS{TotalIOPS: 1000})
	drain(t, h, false, 1000, 4096)
	within(t, "at 1000 after a live change", opsRate(t, h, false, 500, 4096), 400, 1200)

	// A second attachment of the volume shares its bucket: the two
	// together get the limit, not each.
	h2, err := s.OpenVolume(context.Background(), "v")
	if err != nil {
		t.Fatal(err)
	}
	_ = h2 // an unattached handle (the array's own) is not limited
	e, err := s.CreateExport(context.Background(), array.ExportSpec{Volume: "v", AttachmentID: "second"})
	if err != nil {
		t.Fatal(err)
	}
	h3, err := s.OpenExport(context.Background(), e.Name)
	if err != nil {
		t.Fatal(err)
	}
	setQoS(t, s, "v", array.QoS{TotalIOPS: 300})
	drain(t, h, false, 300, 4096)
	start := time.Now()
	var wg sync.WaitGroup
	for _, hh := range []*store.Handle{h, h3} {
		wg.Go(func() { opsRate(t, hh, false, 150, 4096) })
	}
	wg.Wait()
	within(t, "two attachments at 300 together", 300/time.Since(start).Seconds(), 100, 360)
}

func TestQoSWaitEndsWithContext(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	s := openTemp(t)
	h := qosVolume(t, s, "v")
	setQoS(t, s, "v", array.QoS{WriteIOPS: 1})
	buf := make([]byte, 4096)
	if err := h.WriteAt(context.Background(), buf, 0, false); err != nil {
		t.Fatal(err) // the burst's one token
	}
	// The next write would wait a second; NoWait refuses it instead.
	if err := h.WriteAtNoWait(context.Background(), buf, 0); !errors.Is(err, store.ErrWouldBlock) {
		t.Fatalf("WriteAtNoWait over the limit = %v, want ErrWouldBlock", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	start := time.Now()
	go func() { done <- h.WriteAt(ctx, buf, 0, false) }()
	time.Sleep(50 * time.Millisecond)
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("a throttled write whose context ended returned %v, want context.Canceled", err)
		}
		if d := time.Since(start); d > 500*time.Millisecond {
			t.Fatalf("the throttled write ended %v after its context, want promptly", d)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a throttled write did not end when its context did")
	}
}

func TestQoSDurable(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	dir := t.TempDir()
	s, err := store.Open(dir, store.Options{Name: "test", NBDAddress: "127.0.0.1:10809"})
	if err != nil {
		t.Fatal(err)
	}
	qosVolume(t, s, "v")
	want := array.QoS{TotalIOPS: 500, ReadBytesPerSec: 10 << 20}
	setQoS(t, s, "v", want)
	if _, err := s.SetVolumeQoS(context.Background(), "v", array.QoS{ReadIOPS: -1}); errdefs.KindOf(err) != errdefs.KindInvalidArgument {
		t.Fatalf("a negative limit = %v, want INVALID_ARGUMENT", err)
	}
	if _, err := s.SetVolumeQoS(context.Background(), "nope", want); errdefs.KindOf(err) != errdefs.KindNotFound {
		t.Fatalf("QoS of a missing volume = %v, want NOT_FOUND", err)
	}
	s.Close()
	s, err = store.Open(dir, store.Options{Name: "test", NBDAddress: "127.0.0.1:10809"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	v, err := s.GetVolume(context.Background(), "v")
	if err != nil {
		t.Fatal(err)
	}
	if v.QoS != want {
		t.Fatalf("after a restart the volume's QoS is %+v, want %+v", v.QoS, want)
	}
	// And it is enforced, not only reported.
	e, err := s.CreateExport(context.Background(), array.ExportSpec{Volume: "v", AttachmentID: "again"})
	if err != nil {
		t.Fatal(err)
	}
	h, err := s.OpenExport(context.Background(), e.Name)
	if err != nil {
		t.Fatal(err)
	}
	drain(t, h, true, 500, 4096)
	within(t, "writes at total_iops=500 after a restart", opsRate(t, h, true, 250, 4096), 150, 600)
}
