package testsuite

import (
	"testing"

	"github.com/volrep/volrep/array"
	"github.com/volrep/volrep/errdefs"
)

// testQoS sets, reads back, changes and removes a volume's QoS limit, and
// checks that an extend keeps it and a clone does not inherit it. That
// the limit is enforced is tested where it is enforced (array/store) and
// end to end (e2e), since it takes timing.
func testQoS(t *testing.T, a array.Array) {
	ctx := setup(t, a)
	mVol(t)(a.CreateVolume(ctx, array.VolumeSpec{Name: "q", Pool: "p1", SizeBytes: mib}))
	if v := mVol(t)(a.GetVolume(ctx, "q")); !v.QoS.IsZero() {
		t.Fatalf("a new volume has QoS %+v, want none", v.QoS)
	}
	want := array.QoS{TotalIOPS: 500, ReadBytesPerSec: 10 << 20, WriteIOPS: 200}
	if v := mVol(t)(a.SetVolumeQoS(ctx, "q", want)); v.QoS != want || v.Name != "q" {
		t.Fatalf("SetVolumeQoS = %+v, want QoS %+v", v, want)
	}
	if v := mVol(t)(a.GetVolume(ctx, "q")); v.QoS != want {
		t.Fatalf("GetVolume QoS = %+v, want %+v", v.QoS, want)
	}
	// Setting the same limit again is a no-op.
	mVol(t)(a.SetVolumeQoS(ctx, "q", want))
	if v := mVol(t)(a.ExtendVolume(ctx, "q", 2*mib)); v.QoS != want {
		t.Fatalf("after an extend QoS = %+v, want it kept: %+v", v.QoS, want)
	}
	mSnap(t)(a.CreateSnapshot(ctx, "q", "s", nil))
	if c := mVol(t)(a.CloneSnapshot(ctx, array.CloneSpec{Volume: "q", Snapshot: "s", Name: "qc", Pool: "p1"})); !c.QoS.IsZero() {
		t.Fatalf("a clone inherited QoS %+v; it has none until one is set", c.QoS)
	}
	changed := array.QoS{TotalBytesPerSec: 1 << 20}
	mVol(t)(a.SetVolumeQoS(ctx, "q", changed))
	found := false
	for _, v := range mVols(t)(a.ListVolumes(ctx, "p1")) {
		if v.Name == "q" {
			found = true
			if v.QoS != changed {
				t.Fatalf("ListVolumes QoS = %+v, want %+v", v.QoS, changed)
			}
		}
	}
	if !found {
		t.Fatal("ListVolumes lost volume q")
	}
	if v := mVol(t)(a.SetVolumeQoS(ctx, "q", array.QoS{})); !v.QoS.IsZero() {
		t.Fatalf("after removing the limit QoS = %+v", v.QoS)
	}
	_, err := a.SetVolumeQoS(ctx, "q", array.QoS{ReadIOPS: -5})
	wantKind(t, err, errdefs.KindInvalidArgument, "a negative limit")
	_, err = a.SetVolumeQoS(ctx, "missing", want)
	wantKind(t, err, errdefs.KindNotFound, "QoS of a missing volume")
}
