package driver

import (
	"math/rand/v2"
	"testing"

	"github.com/volrep/volrep/array"
	"github.com/volrep/volrep/errdefs"
)

// TestSnapshotsReplicateNewest sends the 3 newest snapshots of a volume,
// each with its own changes, to a target that holds none, in one
// operation: the first goes in full, the next two as deltas on the one
// before, and the target ends with all three, verified block by block.
func TestSnapshotsReplicateNewest(t *testing.T) {
	ctx := t.Context()
	peer, primary := newTestArray(t, "site-b"), newTestArray(t, "site-a")
	d := startDriver(t, backendConf(map[string][]string{"b1": {
		"san_ip = " + primary.addr, "pure_api_token = " + primary.token,
		device("site-b", peer.addr, peer, "async"),
	}}), primary)
	b := testBackend(t, d, "b1")
	if _, err := b.CreateVolume(ctx, "v1", 1, VolumeType{}, ""); err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(5, 6))
	write := func(off, n int64) {
		p := make([]byte, n) // random: compression cannot shrink it
		for i := range p {
			p[i] = byte(r.Uint32())
		}
		if err := primary.st.WriteVolume(ctx, volumeName("v1"), off, p, false); err != nil {
			t.Fatal(err)
		}
	}
	const mib = 1 << 20
	// s0 is older than the three sent and is not sent.
	write(0, mib)
	for i, c := range []struct{ off, n int64 }{{8 * mib, 4 * mib}, {0, 256 << 10}, {20 * mib, 512 << 10}} {
		if i == 0 {
			if _, err := b.CreateSnapshot(ctx, "s0", "v1"); err != nil {
				t.Fatal(err)
			}
		}
		write(c.off, c.n)
		if _, err := b.CreateSnapshot(ctx, []string{"s1", "s2", "s3"}[i], "v1"); err != nil {
			t.Fatal(err)
		}
	}
	ids, err := d.NewestSnapshots(ctx, "b1", "v1", "", 3)
	if err != nil {
		t.Fatal(err)
	}
	if len(ids) != 3 || ids[0] != "s1" || ids[2] != "s3" {
		t.Fatalf("the 3 newest snapshots = %v, want s1 s2 s3", ids)
	}
	if _, err := d.NewestSnapshots(ctx, "b1", "v1", "s2", 4); !errdefs.IsFailedPrecondition(err) {
		t.Fatalf("4 snapshots up to s2 (there are 3): %v, want FAILED_PRECONDITION", err)
	}
	id, err := d.SnapshotsReplicate(ctx, "b1", "v1", "site-b", ids, false)
	if err != nil {
		t.Fatal(err)
	}
	ops, err := b.Operations()
	if err != nil {
		t.Fatal(err)
	}
	var op array.Operation
	phases := map[string]bool{}
	if err := ops.WatchOperation(ctx, id, func(o array.Operation) error { op = o; phases[o.Phase] = true; return nil }); err != nil {
		t.Fatal(err)
	}
	if op.State != array.OpSucceeded || len(op.Result.Steps) != 3 {
		t.Fatalf("operation = %+v", op)
	}
	// s1 holds everything written up to it: 1 MiB + 4 MiB; s2 and s3 only
	// their own change.
	want := []struct {
		snap, base string
		bytes      int64
	}{{"snapshot-s1", "", 5 * mib}, {"snapshot-s2", "snapshot-s1", 256 << 10}, {"snapshot-s3", "snapshot-s2", 512 << 10}}
	var sum int64
	for i, st := range op.Result.Steps {
		w := want[i]
		t.Logf("step %d: %s base %q incremental=%v bytes_sent=%d (changed %d)", i+1, st.RemoteSnapshot, st.BaseSnapshot, st.Incremental, st.BytesSent, w.bytes)
		if st.RemoteSnapshot != w.snap || st.BaseSnapshot != w.base || st.Incremental != (w.base != "") {
			t.Fatalf("step %d = %+v, want %s from %q", i+1, st, w.snap, w.base)
		}
		if st.BytesSent < w.bytes || st.BytesSent > w.bytes+w.bytes/10 {
			t.Fatalf("step %d sent %d bytes for %d", i+1, st.BytesSent, w.bytes)
		}
		sum += st.BytesSent
	}
	if op.Result.BytesSent != sum || op.Result.RemoteSnapshot != "snapshot-s3" || op.Result.Incremental {
		t.Fatalf("operation result = %+v", op.Result)
	}
	t.Logf("phases seen: %v", phases)
	for _, s := range ids {
		v, err := d.VerifySnapshot(ctx, "b1", s, "v1", "site-b")
		if err != nil {
			t.Fatal(err)
		}
		if !v.Match || v.Blocks == 0 {
			t.Fatalf("VerifySnapshot %s = %+v", s, v)
		}
	}
	if _, err := peer.st.GetSnapshot(ctx, volumeName("v1"), snapshotName("s0")); !errdefs.IsNotFound(err) {
		t.Fatalf("s0 was not asked for but the target has it: %v", err)
	}
}
