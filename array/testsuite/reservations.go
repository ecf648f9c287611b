package testsuite

import (
	"testing"

	"github.com/volrep/volrep/array"
	"github.com/volrep/volrep/errdefs"
)

// testReservations needs an array whose iSCSI target keeps persistent
// reservations. Hosts register through SCSI, which the suite does not
// speak: array/iscsi tests what a clear does to registrations; here, the
// API's answers and refusals.
func testReservations(t *testing.T, a array.Array) {
	ctx := setup(t, a)
	_, err := a.VolumeReservations(ctx, "nope")
	wantKind(t, err, errdefs.KindNotFound, "reservations of a missing volume")
	_, err = a.ClearVolumeReservations(ctx, "nope")
	wantKind(t, err, errdefs.KindNotFound, "clearing a missing volume's reservations")
	_, err = a.VolumeReservations(ctx, "")
	wantKind(t, err, errdefs.KindInvalidArgument, "reservations of an unnamed volume")

	mVol(t)(a.CreateVolume(ctx, array.VolumeSpec{Name: "v1", Pool: "p1", SizeBytes: mib}))
	r := mustT[array.Reservations](t)(a.VolumeReservations(ctx, "v1"))
	if r.Generation != 0 || r.Type != array.ReservationNone || len(r.Registrations) != 0 {
		t.Fatalf("a new volume's reservations: %+v; want none", r)
	}
	if r = mustT[array.Reservations](t)(a.ClearVolumeReservations(ctx, "v1")); r.Generation != 0 || len(r.Registrations) != 0 {
		t.Fatalf("clearing a volume without reservations: %+v; want nothing changed", r)
	}

	// A replica target's hosts have none here: its writes, and so its
	// reservations, are decided at its source.
	ok(t, a.SetReadOnly(ctx, "v1", true))
	_, err = a.VolumeReservations(ctx, "v1")
	wantKind(t, err, errdefs.KindFailedPrecondition, "reservations of a replica target")
	_, err = a.ClearVolumeReservations(ctx, "v1")
	wantKind(t, err, errdefs.KindFailedPrecondition, "clearing a replica target's reservations")

	ok(t, a.DeleteVolume(ctx, "v1"))
	_, err = a.VolumeReservations(ctx, "v1")
	wantKind(t, err, errdefs.KindNotFound, "reservations of a deleted volume")
}
