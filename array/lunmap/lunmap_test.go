package lunmap_test

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"strings"
	"sync"
	"testing"

	"go.uber.org/goleak"

	"github.com/volrep/volrep/array"
	"github.com/volrep/volrep/array/iscsi"
	"github.com/volrep/volrep/array/lunmap"
	"github.com/volrep/volrep/array/store"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const (
	ini    = "iqn.1993-08.org.debian:01:lunmap"
	other  = "iqn.1993-08.org.debian:01:stranger"
	target = "iqn.2026-12.io.volrep:a1"
	mib    = 1 << 20
)

func open(t *testing.T) *store.Store {
	t.Helper()
	s, err := store.Open(t.TempDir(), store.Options{Name: "a1", ISCSIPortals: []string{"127.0.0.1:3260", "[::1]:3261"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	ctx := t.Context()
	if _, err := s.CreatePool(ctx, "p"); err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{"v1", "v2"} {
		if _, err := s.CreateVolume(ctx, array.VolumeSpec{Name: v, Pool: "p", SizeBytes: mib}); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

func TestAuthorisation(t *testing.T) {
	s := open(t)
	ctx := t.Context()
	tg := lunmap.New(s)
	// Before the initiator has a host, it learns nothing and gets in nowhere.
	if _, err := tg.DiscoveryAuth(ctx, ini); !errors.Is(err, iscsi.ErrUnknownInitiator) {
		t.Fatalf("DiscoveryAuth of an unknown initiator: %v", err)
	}
	if ts, err := tg.Discover(ctx, ini); err != nil || len(ts) != 0 {
		t.Fatalf("Discover of an unknown initiator = %v, %v", ts, err)
	}
	if _, err := tg.Login(ctx, ini, target); !errors.Is(err, iscsi.ErrUnknownInitiator) {
		t.Fatalf("Login of an unknown initiator: %v", err)
	}

	if _, err := s.CreateHost(ctx, array.HostSpec{Name: "h", IQNs: []string{ini}}); err != nil {
		t.Fatal(err)
	}
	h, err := s.GetHost(ctx, "h", true)
	if err != nil {
		t.Fatal(err)
	}
	want := iscsi.Auth{User: "h", Secret: h.CHAPSecret}
	if a, err := tg.DiscoveryAuth(ctx, ini); err != nil || a != want {
		t.Fatalf("DiscoveryAuth = %+v, %v; want %+v", a, err, want)
	}
	// A host entry is enough to discover: nothing is connected yet.
	ts, err := tg.Discover(ctx, ini)
	if err != nil || len(ts) != 1 || ts[0].Name != target || len(ts[0].Portals) != 2 ||
		ts[0].Portals[0] != "127.0.0.1:3260,1" || ts[0].Portals[1] != "[::1]:3261,1" {
		t.Fatalf("Discover = %+v, %v", ts, err)
	}
	// Names compare case-insensitively (RFC 3722).
	if a, err := tg.Login(ctx, "IQN.1993-08.ORG.DEBIAN:01:LUNMAP", "IQN.2026-12.IO.VOLREP:A1"); err != nil || a != want {
		t.Fatalf("Login = %+v, %v", a, err)
	}
	if _, err := tg.Login(ctx, ini, "iqn.2026-12.io.volrep:a2"); !errors.Is(err, iscsi.ErrUnknownTarget) {
		t.Fatalf("Login to another target: %v", err)
	}
	if _, err := tg.Login(ctx, other, target); !errors.Is(err, iscsi.ErrUnknownInitiator) {
		t.Fatalf("Login of another initiator: %v", err)
	}
	if luns, err := tg.LUNs(ctx, ini, target); err != nil || len(luns) != 0 {
		t.Fatalf("LUNs before a connection = %v, %v", luns, err)
	}
	// A host with mutual CHAP gets the array's name and secret to answer with.
	if _, err := s.CreateHost(ctx, array.HostSpec{Name: "m", IQNs: []string{other}, MutualCHAP: true}); err != nil {
		t.Fatal(err)
	}
	m, _ := s.GetHost(ctx, "m", true)
	if a, err := tg.Login(ctx, other, target); err != nil || a.MutualUser != target || a.MutualSecret != m.MutualCHAPSecret || a.MutualSecret == "" {
		t.Fatalf("mutual Login = %+v, %v", a, err)
	}
}

func TestDevices(t *testing.T) {
	s := open(t)
	ctx := t.Context()
	tg := lunmap.New(s)
	if _, err := s.CreateHost(ctx, array.HostSpec{Name: "h", IQNs: []string{ini}}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateSnapshot(ctx, "v1", "s", nil); err != nil {
		t.Fatal(err)
	}
	for _, spec := range []array.ConnectionSpec{{Host: "h", Volume: "v1"}, {Host: "h", Volume: "v2"}, {Host: "h", Volume: "v1", Snapshot: "s"}} {
		if _, err := s.ConnectVolume(ctx, spec); err != nil {
			t.Fatal(err)
		}
	}
	luns, err := tg.LUNs(ctx, ini, target)
	if err != nil || len(luns) != 3 || luns[0] != 1 || luns[2] != 3 {
		t.Fatalf("LUNs = %v, %v", luns, err)
	}
	d1, err := tg.Open(ctx, ini, target, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer d1.Close()
	v1, _ := s.GetVolume(ctx, "v1")
	id := d1.Identity()
	if got := hex.EncodeToString(id.NAA[:]); got != v1.WWN || len(id.Serial) != 24 || v1.WWN[8:] != strings.ToLower(id.Serial) || id.Product != "volrep" {
		t.Fatalf("Identity = %+v (NAA %s), volume WWN %s", id, got, v1.WWN)
	}
	if id.NAA[0]>>4 != 6 {
		t.Fatalf("NAA field %d, want 6", id.NAA[0]>>4)
	}
	d2, err := tg.Open(ctx, ini, target, 2)
	if err != nil {
		t.Fatal(err)
	}
	defer d2.Close()
	if d2.Identity().NAA == id.NAA {
		t.Fatal("two volumes share a WWN")
	}
	if d1.Size() != mib || d1.ReadOnly() {
		t.Fatalf("size %d, read-only %t", d1.Size(), d1.ReadOnly())
	}
	data := bytes.Repeat([]byte{0xab}, 8192)
	if err := d1.WriteAt(ctx, data, 4096, true); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 8192)
	if err := s.ReadVolume(ctx, "v1", 4096, got); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("the write is not in the volume: %v", err)
	}
	if err := d1.Zero(ctx, 4096, 4096, false); err != nil {
		t.Fatal(err)
	}
	if err := d1.ReadAt(ctx, got, 4096); err != nil || !bytes.Equal(got[:4096], make([]byte, 4096)) || !bytes.Equal(got[4096:], data[4096:]) {
		t.Fatalf("after Zero: %v", err)
	}
	if err := d1.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	// Online extend shows in the open device.
	if _, err := s.ExtendVolume(ctx, "v1", 2*mib); err != nil {
		t.Fatal(err)
	}
	if d1.Size() != 2*mib {
		t.Fatalf("size after extend = %d", d1.Size())
	}

	// The snapshot's LUN is write protected.
	ds, err := tg.Open(ctx, ini, target, 3)
	if err != nil {
		t.Fatal(err)
	}
	defer ds.Close()
	if !ds.ReadOnly() || !errors.Is(ds.WriteAt(ctx, data, 0, false), iscsi.ErrWriteProtected) {
		t.Fatal("the snapshot's LUN takes writes")
	}
	// So is a volume demoted to a replica target while open.
	if err := s.SetReadOnly(ctx, "v2", true); err != nil {
		t.Fatal(err)
	}
	if err := d2.WriteAt(ctx, data, 0, false); !errors.Is(err, iscsi.ErrWriteProtected) || !d2.ReadOnly() {
		t.Fatalf("write to a demoted volume: %v", err)
	}

	if _, err := tg.Open(ctx, ini, target, 9); !errors.Is(err, iscsi.ErrNotMapped) {
		t.Fatalf("Open of an unmapped LUN: %v", err)
	}
	if _, err := tg.Open(ctx, ini, "iqn.2026-12.io.volrep:a2", 1); !errors.Is(err, iscsi.ErrUnknownTarget) {
		t.Fatalf("Open on another target: %v", err)
	}
	// Disconnecting fails the open device's next command.
	if err := s.DisconnectVolume(ctx, array.ConnectionSpec{Host: "h", Volume: "v1"}); err != nil {
		t.Fatal(err)
	}
	if err := d1.ReadAt(ctx, got, 0); !errors.Is(err, iscsi.ErrNotMapped) {
		t.Fatalf("read after the disconnect: %v", err)
	}
	if luns, _ := tg.LUNs(ctx, ini, target); len(luns) != 2 || luns[0] != 2 {
		t.Fatalf("LUNs after the disconnect = %v", luns)
	}
	// A stopping array is unavailable, not a medium error.
	s.Close()
	if err := d2.ReadAt(ctx, got, 0); !errors.Is(err, iscsi.ErrUnavailable) {
		t.Fatalf("read from a closed array: %v", err)
	}
}

// COMPARE AND WRITE is atomic against every writer of the volume: counters
// bumped by compare-and-write through the iSCSI device and through a
// second handle of the store (as an NBD export has) lose no increment, and
// a miscompare names the first differing byte and changes nothing.
func TestCompareAndWriteIsAtomic(t *testing.T) {
	s := open(t)
	ctx := t.Context()
	tg := lunmap.New(s)
	if _, err := s.CreateHost(ctx, array.HostSpec{Name: "h", IQNs: []string{ini}}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ConnectVolume(ctx, array.ConnectionSpec{Host: "h", Volume: "v1"}); err != nil {
		t.Fatal(err)
	}
	d, err := tg.Open(ctx, ini, target, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	cw, ok := d.(iscsi.CompareWriter)
	if !ok {
		t.Fatal("the engine's device does not compare and write itself")
	}
	h, err := s.OpenVolume(ctx, "v1")
	if err != nil {
		t.Fatal(err)
	}
	block := func(n uint64) []byte {
		b := make([]byte, 512)
		binary.BigEndian.PutUint64(b, n)
		return b
	}
	const workers, each = 8, 50
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			caw := cw.CompareAndWrite
			if w%2 == 1 {
				caw = h.CompareAndWrite
			}
			cur := make([]byte, 512)
			for done := 0; done < each; {
				if err := h.ReadAt(ctx, cur, 0); err != nil {
					errs <- err
					return
				}
				n := binary.BigEndian.Uint64(cur)
				err := caw(ctx, block(n), block(n+1), 0, false)
				var me *iscsi.MiscompareError
				var se *store.MiscompareError
				switch {
				case err == nil:
					done++
				case errors.As(err, &me) || errors.As(err, &se):
				default:
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	got := make([]byte, 512)
	if err := s.ReadVolume(ctx, "v1", 0, got); err != nil {
		t.Fatal(err)
	}
	if n := binary.BigEndian.Uint64(got); n != workers*each {
		t.Fatalf("counter = %d after %d compare-and-writes: some were not atomic", n, workers*each)
	}
	want := block(workers * each)
	wrong := bytes.Clone(want)
	wrong[300] ^= 1
	err = cw.CompareAndWrite(ctx, wrong, block(0), 0, true)
	var me *iscsi.MiscompareError
	if !errors.As(err, &me) || me.Offset != 300 {
		t.Fatalf("miscompare = %v, want one at byte 300", err)
	}
	if err := s.ReadVolume(ctx, "v1", 0, got); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("a miscompare changed the volume (%v)", err)
	}
	if err := s.SetReadOnly(ctx, "v1", true); err != nil {
		t.Fatal(err)
	}
	if err := cw.CompareAndWrite(ctx, want, block(0), 0, false); !errors.Is(err, iscsi.ErrWriteProtected) {
		t.Fatalf("compare and write to a read-only volume: %v", err)
	}
}
