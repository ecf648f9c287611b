package driver

import (
	"bytes"
	"strings"
	"testing"

	"github.com/volrep/volrep/array"
	"github.com/volrep/volrep/array/store"
	"github.com/volrep/volrep/errdefs"
)

// TestAttachReplica attaches a volume's replicated snapshot at its async
// target, read-only, checks the refusals, that replication carries on
// while it is attached, and detaches it.
func TestAttachReplica(t *testing.T) {
	ctx := t.Context()
	peer := newTestArrayOpts(t, store.Options{Name: "site-b", NBDAddress: "127.0.0.1:10809"})
	primary := newTestArray(t, "site-a")
	d := startDriver(t, backendConf(map[string][]string{"b1": {
		"san_ip = " + primary.addr, "pure_api_token = " + primary.token,
		device("site-b", peer.addr, peer, "async"),
	}}), primary)
	b := testBackend(t, d, "b1")
	if _, err := b.CreateVolume(ctx, "v1", 1, asyncSpecs, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := b.CreateVolume(ctx, "plain", 1, VolumeType{}, ""); err != nil {
		t.Fatal(err)
	}
	dr := Connector{Host: "dr-test"}
	pattern := bytes.Repeat([]byte{'R'}, 8192)
	if err := primary.st.WriteVolume(ctx, volumeName("v1"), 0, pattern, false); err != nil {
		t.Fatal(err)
	}
	pg := b.pgReplica("site-b")
	rep, err := primary.eng.SyncReplica(ctx, pg, true)
	if err != nil {
		t.Fatal(err)
	}

	// Refusals.
	if _, err := b.AttachReplica(ctx, "v1", "site-x", LatestSnapshot, dr); !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), "backend_id") {
		t.Fatalf("attach at an unknown backend_id: %v, want INVALID_ARGUMENT on backend_id", err)
	}
	if _, err := b.AttachReplica(ctx, "plain", "site-b", LatestSnapshot, dr); !errdefs.IsFailedPrecondition(err) {
		t.Fatalf("attach a volume that does not replicate: %v, want FAILED_PRECONDITION", err)
	}
	if _, err := b.AttachReplica(ctx, "ghost", "site-b", LatestSnapshot, dr); !errdefs.IsNotFound(err) {
		t.Fatalf("attach an unknown volume: %v, want NOT_FOUND", err)
	}
	if _, err := b.AttachReplica(ctx, "v1", "site-b", "pg.nope", dr); !errdefs.IsNotFound(err) {
		t.Fatalf("attach an unknown snapshot: %v, want NOT_FOUND", err)
	}

	ra, err := b.AttachReplica(ctx, "v1", "site-b", LatestSnapshot, dr)
	if err != nil {
		t.Fatal(err)
	}
	if ra.Snapshot != rep.LastSnapshot || ra.DriverVolumeType != "nbd" || ra.Data["access_mode"] != "ro" || ra.Data["read_only"] != "true" {
		t.Fatalf("attached %s (%s %v), want the replica's last snapshot %s read-only over nbd", ra.Snapshot, ra.DriverVolumeType, ra.Data, rep.LastSnapshot)
	}
	again, err := b.AttachReplica(ctx, "v1", "site-b", ra.Snapshot, dr)
	if err != nil || again.Data["export_name"] != ra.Data["export_name"] {
		t.Fatalf("attaching the same snapshot by name again: %v, %v; want the same export", again.Data, err)
	}
	exports, err := peer.st.ListExports(ctx, volumeName("v1"))
	if err != nil {
		t.Fatal(err)
	}
	if len(exports) != 1 || !exports[0].ReadOnly || exports[0].Snapshot != ra.Snapshot {
		t.Fatalf("exports at the target: %+v, want one read-only export of %s", exports, ra.Snapshot)
	}
	got := make([]byte, len(pattern))
	if err := peer.st.ReadSnapshot(ctx, volumeName("v1"), ra.Snapshot, 0, got); err != nil || !bytes.Equal(got, pattern) {
		t.Fatalf("the attached snapshot reads %q..., %v", got[:4], err)
	}

	// Replication carries on while the replica is attached.
	if err := primary.st.WriteVolume(ctx, volumeName("v1"), 0, bytes.Repeat([]byte{'S'}, 4096), false); err != nil {
		t.Fatal(err)
	}
	next, err := primary.eng.SyncReplica(ctx, pg, true)
	if err != nil || next.LastSnapshot == rep.LastSnapshot || next.State != array.StateActive {
		t.Fatalf("the next cycle while attached: %+v, %v", next, err)
	}
	if err := peer.st.ReadSnapshot(ctx, volumeName("v1"), ra.Snapshot, 0, got); err != nil || !bytes.Equal(got, pattern) {
		t.Fatalf("after the next cycle the attached snapshot reads %q..., %v", got[:4], err)
	}
	newer, err := b.AttachReplica(ctx, "v1", "site-b", "", Connector{Host: "dr-test-2"})
	if err != nil || newer.Snapshot != next.LastSnapshot {
		t.Fatalf("latest after the next cycle: %s, %v; want %s", newer.Snapshot, err, next.LastSnapshot)
	}

	// Detach: one host's, then everyone's; the replica volume is untouched.
	if err := b.DetachReplica(ctx, "v1", "site-b", "", dr); err != nil {
		t.Fatal(err)
	}
	if exports, _ = peer.st.ListExports(ctx, volumeName("v1")); len(exports) != 1 || exports[0].AttachmentID != "dr-test-2" {
		t.Fatalf("after detaching dr-test: %+v, want dr-test-2's export only", exports)
	}
	if err := b.DetachReplica(ctx, "v1", "site-b", "", Connector{}); err != nil {
		t.Fatal(err)
	}
	if exports, _ = peer.st.ListExports(ctx, volumeName("v1")); len(exports) != 0 {
		t.Fatalf("after detaching every host: %+v", exports)
	}
	if v, err := peer.st.GetVolume(ctx, volumeName("v1")); err != nil || !v.ReadOnly {
		t.Fatalf("the replica volume at the target: %+v, %v; want it still read-only", v, err)
	}

	// Failed over, the target's volumes are live, not replicas: no new
	// replica attachment there, but one made before can be detached.
	if _, err := b.AttachReplica(ctx, "v1", "site-b", LatestSnapshot, dr); err != nil {
		t.Fatal(err)
	}
	if _, err := b.FailoverHost(ctx, []string{"v1"}, "site-b"); err != nil {
		t.Fatal(err)
	}
	if _, err := b.AttachReplica(ctx, "v1", "site-b", LatestSnapshot, dr); !errdefs.IsFailedPrecondition(err) {
		t.Fatalf("attach a replica at the array the backend serves from: %v, want FAILED_PRECONDITION", err)
	}
	if err := b.DetachReplica(ctx, "v1", "site-b", "", dr); err != nil {
		t.Fatalf("detach after the failover: %v", err)
	}
	if exports, _ = peer.st.ListExports(ctx, volumeName("v1")); len(exports) != 0 {
		t.Fatalf("after the detach that followed the failover: %+v", exports)
	}
}

// TestAttachReplicaISCSI attaches a replicated snapshot at a target that
// serves iSCSI (the primary serves NBD only): the target decides the
// protocol, the LUN is read-only, and the detach deletes the host the
// driver created there.
func TestAttachReplicaISCSI(t *testing.T) {
	ctx := t.Context()
	peer := iscsiArray(t, "site-b", "0.0.0.0:3260")
	primary := newTestArray(t, "site-a")
	d := startDriver(t, backendConf(map[string][]string{"b1": {
		"san_ip = " + primary.addr, "pure_api_token = " + primary.token,
		device("site-b", peer.addr, peer, "async"),
	}}), primary)
	b := testBackend(t, d, "b1")
	if _, err := b.CreateVolume(ctx, "v1", 1, asyncSpecs, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := primary.eng.SyncReplica(ctx, b.pgReplica("site-b"), true); err != nil {
		t.Fatal(err)
	}
	if _, err := b.AttachReplica(ctx, "v1", "site-b", LatestSnapshot, Connector{Host: "dr-test"}); !errdefs.IsInvalidArgument(err) ||
		!strings.Contains(err.Error(), "connector.initiator") {
		t.Fatalf("attach over iSCSI without an initiator: %v, want INVALID_ARGUMENT on connector.initiator", err)
	}
	dr := Connector{Host: "dr-test", Initiator: iqnA}
	ra, err := b.AttachReplica(ctx, "v1", "site-b", LatestSnapshot, dr)
	if err != nil {
		t.Fatal(err)
	}
	if ra.DriverVolumeType != "iscsi" || ra.ISCSI == nil || len(ra.ISCSI.Paths) != 1 || ra.Data["access_mode"] != "ro" {
		t.Fatalf("attachment %+v (%+v), want one read-only iSCSI path", ra.ConnectionInfo, ra.ISCSI)
	}
	// The portal listens on every address: the host reaches the target
	// where the driver does.
	if host, _, _ := strings.Cut(peer.addr, ":"); ra.ISCSI.Paths[0].Portal != host+":3260" {
		t.Fatalf("portal %s, want the target's address", ra.ISCSI.Paths[0].Portal)
	}
	conns, err := peer.st.ListConnections(ctx, "", volumeName("v1"))
	if err != nil || len(conns) != 1 || conns[0].Snapshot != ra.Snapshot {
		t.Fatalf("connections at the target: %+v, %v; want one of snapshot %s", conns, err, ra.Snapshot)
	}
	if primaryConns, _ := primary.st.ListConnections(ctx, "", ""); len(primaryConns) != 0 {
		t.Fatalf("the primary has connections: %+v", primaryConns)
	}
	if err := b.DetachReplica(ctx, "v1", "site-b", ra.Snapshot, dr); err != nil {
		t.Fatal(err)
	}
	if conns, _ = peer.st.ListConnections(ctx, "", volumeName("v1")); len(conns) != 0 {
		t.Fatalf("after the detach: %+v", conns)
	}
	if hosts, _ := peer.st.ListHosts(ctx); len(hosts) != 0 {
		t.Fatalf("the driver's host at the target outlived its last connection: %+v", hosts)
	}
}

// TestAttachReplicaSyncTarget: a sync target keeps no snapshots, and the
// refusal says so rather than asking to wait for a cycle.
func TestAttachReplicaSyncTarget(t *testing.T) {
	ctx := t.Context()
	peer, primary := newTestArray(t, "site-b"), newTestArray(t, "site-a")
	b := oneBackend(t, primary, device("site-b", peer.addr, peer, "sync"))
	if _, err := b.CreateVolume(ctx, "v1", 1, VolumeType{Name: "sync", ExtraSpecs: map[string]string{
		"replication_enabled": "<is> True", "replication_type": "<in> sync"}}, ""); err != nil {
		t.Fatal(err)
	}
	_, err := b.AttachReplica(ctx, "v1", "site-b", LatestSnapshot, Connector{Host: "dr-test"})
	if !errdefs.IsFailedPrecondition(err) || !strings.Contains(err.Error(), "is sync") {
		t.Fatalf("attach at a sync target: %v, want FAILED_PRECONDITION saying it is sync", err)
	}
}
