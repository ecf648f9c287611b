package driver

import (
	"errors"
	"testing"

	"github.com/volrep/volrep/array"
	"github.com/volrep/volrep/errdefs"
)

// TestQoSFromVolumeType sets, recomputes and changes a volume's QoS
// limit through the driver against a real array over gRPC: on create,
// clone and from-snapshot, on extend (per GB), on retype; bad specs are
// refused before anything is created; the replica target takes the
// limit with the next cycle, so a failover finds it in place.
func TestQoSFromVolumeType(t *testing.T) {
	ctx := t.Context()
	b, primary, peer := pairedBackend(t, "async")
	qosOf := func(a *testArray, id string) array.QoS {
		t.Helper()
		v, err := a.st.GetVolume(ctx, volumeName(id))
		if err != nil {
			t.Fatal(err)
		}
		return v.QoS
	}
	gold := asyncSpecs
	gold.QoSSpecs = map[string]string{"total_iops_sec": "500", "read_bytes_sec_per_gb": "1048576"}
	if _, err := b.CreateVolume(ctx, "v1", 2, gold, ""); err != nil {
		t.Fatal(err)
	}
	if got, want := qosOf(primary, "v1"), (array.QoS{TotalIOPS: 500, ReadBytesPerSec: 2 << 20}); got != want {
		t.Fatalf("created with QoS %+v, want %+v", got, want)
	}
	if err := b.ExtendVolume(ctx, "v1", 5, &gold); err != nil {
		t.Fatal(err)
	}
	if got, want := qosOf(primary, "v1"), (array.QoS{TotalIOPS: 500, ReadBytesPerSec: 5 << 20}); got != want {
		t.Fatalf("after extending to 5 GiB QoS is %+v, want the per-GB limit recomputed: %+v", got, want)
	}
	// An extend without the type leaves the limit alone.
	if err := b.ExtendVolume(ctx, "v1", 6, nil); err != nil {
		t.Fatal(err)
	}
	if got := qosOf(primary, "v1"); got.ReadBytesPerSec != 5<<20 {
		t.Fatalf("an extend without the volume type changed QoS to %+v", got)
	}

	silver := asyncSpecs
	silver.QoSSpecs = map[string]string{"write_iops_sec_per_gb": "10"}
	if ok, _, err := b.Retype(ctx, "v1", silver); err != nil || !ok {
		t.Fatalf("Retype = %v, %v", ok, err)
	}
	if got, want := qosOf(primary, "v1"), (array.QoS{WriteIOPS: 60}); got != want {
		t.Fatalf("after a retype QoS is %+v, want %+v", got, want)
	}
	if ok, _, err := b.Retype(ctx, "v1", asyncSpecs); err != nil || !ok {
		t.Fatalf("Retype = %v, %v", ok, err)
	}
	if got := qosOf(primary, "v1"); !got.IsZero() {
		t.Fatalf("retyped to a type without QoS, the volume still has %+v", got)
	}

	if _, err := b.CreateSnapshot(ctx, "s1", "v1"); err != nil {
		t.Fatal(err)
	}
	if _, err := b.CreateVolumeFromSnapshot(ctx, "v2", "s1", "v1", 0, silver); err != nil {
		t.Fatal(err)
	}
	if got := qosOf(primary, "v2"); got != (array.QoS{WriteIOPS: 60}) {
		t.Fatalf("from a 6 GiB snapshot at write_iops_sec_per_gb=10: %+v, want 60 write IOPS", got)
	}
	if _, err := b.CreateClonedVolume(ctx, "v3", "v1", 8, gold); err != nil {
		t.Fatal(err)
	}
	if got := qosOf(primary, "v3"); got != (array.QoS{TotalIOPS: 500, ReadBytesPerSec: 8 << 20}) {
		t.Fatalf("clone QoS %+v", got)
	}

	bad := asyncSpecs
	bad.QoSSpecs = map[string]string{"total_iops_sec": "lots"}
	var e *errdefs.Error
	if _, err := b.CreateVolume(ctx, "v4", 1, bad, ""); !errdefsField(err, &e, "volume_type.qos_specs.total_iops_sec") {
		t.Fatalf("CreateVolume with total_iops_sec=lots: %v, want INVALID_ARGUMENT naming the key", err)
	}
	if _, err := primary.st.GetVolume(ctx, volumeName("v4")); !errdefs.IsNotFound(err) {
		t.Fatalf("a refused create left volume v4 behind: %v", err)
	}
	bad.QoSSpecs = map[string]string{"maxIOPS": "5"}
	if _, _, err := b.Retype(ctx, "v1", bad); !errdefsField(err, &e, "new_type.qos_specs.maxIOPS") {
		t.Fatalf("Retype to maxIOPS: %v, want INVALID_ARGUMENT naming the key", err)
	}

	// The replica target of v1 (async) takes its limit with the cycle.
	if err := b.ExtendVolume(ctx, "v1", 6, &gold); err != nil {
		t.Fatal(err)
	}
	if _, err := primary.eng.SyncReplica(ctx, b.pgReplica("site-b"), true); err != nil {
		t.Fatal(err)
	}
	if got, want := qosOf(peer, "v1"), (array.QoS{TotalIOPS: 500, ReadBytesPerSec: 6 << 20}); got != want {
		t.Fatalf("after a cycle the replica target has QoS %+v, want the source's %+v", got, want)
	}

	st, err := b.GetVolumeStats(ctx, false)
	if err != nil || !st.QoS {
		t.Fatalf("stats QoS support = %v, %v; want true", st.QoS, err)
	}
}

func errdefsField(err error, e **errdefs.Error, field string) bool {
	return errdefs.IsInvalidArgument(err) && errors.As(err, e) && (*e).Field == field
}
