package store_test

import (
	"bytes"
	"encoding/hex"
	"strings"
	"testing"

	"github.com/volrep/volrep/array"
	"github.com/volrep/volrep/array/iscsi"
	"github.com/volrep/volrep/array/lunmap"
	"github.com/volrep/volrep/array/store"
	"github.com/volrep/volrep/errdefs"
)

// TestReservationsKeptWithTheVolume: the iSCSI target's reservations of a
// volume's unit (by its NAA) outlive a reopen of the array, and go with
// the volume: a volume deleted leaves none behind.
func TestReservationsKeptWithTheVolume(t *testing.T) {
	dir := t.TempDir()
	ctx := t.Context()
	s := openISCSI(t, dir)
	must[array.Pool](t)(s.CreatePool(ctx, "p"))
	v := must[array.Volume](t)(s.CreateVolume(ctx, array.VolumeSpec{Name: "v1", Pool: "p", SizeBytes: 1 << 20}))
	var naa [16]byte
	if b, err := hex.DecodeString(v.WWN); err != nil || len(b) != 16 {
		t.Fatalf("WWN %q: %v", v.WWN, err)
	} else {
		copy(naa[:], b)
	}
	if got, err := s.LoadReservations(ctx, naa); err != nil || got != nil {
		t.Fatalf("a new volume's kept reservations: %x, %v; want none", got, err)
	}
	state := []byte("state-1")
	if err := s.SaveReservations(ctx, naa, state); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s = openISCSI(t, dir)
	defer func() { s.Close() }()
	if got, err := s.LoadReservations(ctx, naa); err != nil || !bytes.Equal(got, state) {
		t.Fatalf("after a reopen: %q, %v; want %q", got, err, state)
	}
	if err := s.DeleteVolume(ctx, "v1"); err != nil {
		t.Fatal(err)
	}
	if got, err := s.LoadReservations(ctx, naa); err != nil || got != nil {
		t.Fatalf("after the volume's delete: %q, %v; want none", got, err)
	}
}

// TestReservationsNeedATarget: an array that serves no iSCSI target keeps
// no reservations, and says so to the operator who asks for them.
func TestReservationsNeedATarget(t *testing.T) {
	ctx := t.Context()
	s := openTemp(t)
	must[array.Pool](t)(s.CreatePool(ctx, "p"))
	must[array.Volume](t)(s.CreateVolume(ctx, array.VolumeSpec{Name: "v1", Pool: "p", SizeBytes: 1 << 20}))
	for what, call := range map[string]func() (array.Reservations, error){
		"VolumeReservations":      func() (array.Reservations, error) { return s.VolumeReservations(ctx, "v1") },
		"ClearVolumeReservations": func() (array.Reservations, error) { return s.ClearVolumeReservations(ctx, "v1") },
	} {
		if _, err := call(); !errdefs.IsFailedPrecondition(err) || !strings.Contains(err.Error(), "no iSCSI target") {
			t.Errorf("%s without an iSCSI target: %v; want FAILED_PRECONDITION saying why", what, err)
		}
	}
}

// forgetting is the iSCSI target's watcher, noting what it was told to
// forget.
type forgetting struct {
	store.ReservationWatcher
	forgot []string
}

func (f *forgetting) ForgetReservations(serial string) {
	f.forgot = append(f.forgot, serial)
	f.ReservationWatcher.ForgetReservations(serial)
}

// TestDeletedVolumeForgetsReservations: deleting a volume tells the
// iSCSI target to drop its unit's reservations, so a volume made later
// with the same serial (a replica takes its source's) has none.
func TestDeletedVolumeForgetsReservations(t *testing.T) {
	ctx := t.Context()
	s := openTemp(t)
	srv := lunmap.NewServer(s, iscsi.Options{})
	t.Cleanup(func() { srv.Close() })
	w := &forgetting{ReservationWatcher: lunmap.Reservations(srv)}
	s.WatchReservations(w)
	must[array.Pool](t)(s.CreatePool(ctx, "p"))
	must[array.Volume](t)(s.CreateVolume(ctx, array.VolumeSpec{Name: "v1", Pool: "p", SizeBytes: 1 << 20}))
	serial, err := s.VolumeSerial(ctx, "v1")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteVolume(ctx, "v1"); err != nil {
		t.Fatal(err)
	}
	if len(w.forgot) != 1 || w.forgot[0] != serial {
		t.Fatalf("forgotten %q; want the deleted volume's serial %q", w.forgot, serial)
	}
}
