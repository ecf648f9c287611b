package driver

import (
	"crypto/rand"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/volrep/volrep/array"
	"github.com/volrep/volrep/driver/extraspecs"
	"github.com/volrep/volrep/internal/netfault"
)

var (
	syncSpecs  = VolumeType{Name: "sync", ExtraSpecs: map[string]string{"replication_enabled": "<is> True", "replication_type": "<in> sync"}}
	asyncSpecs = VolumeType{Name: "async", ExtraSpecs: map[string]string{"replication_enabled": "<is> True", "replication_type": "<in> async"}}
	replGroup  = GroupType{Name: "replicated", Specs: map[string]string{extraspecs.KeyGroupReplication: "<is> True"}}
)

// device is a replication_device line for a target reached at addr.
func device(id, addr string, a *testArray, typ string) string {
	return fmt.Sprintf("replication_device = backend_id:%s,san_ip:%s,api_token:%s,type:%s", id, addr, a.token, typ)
}

// waitPeer waits until the primary's pod replica sees its peer in state.
func waitPeer(t *testing.T, primary *testArray, pod, state string) array.Replica {
	t.Helper()
	var r array.Replica
	waitFor(t, 30*time.Second, func() string {
		var err error
		if r, err = primary.eng.GetReplica(t.Context(), pod); err != nil {
			return err.Error()
		}
		if r.PeerState != state {
			return fmt.Sprintf("pod %s: peer %s (%s %s), want %s", pod, r.PeerState, r.State, r.Message, state)
		}
		return ""
	})
	return r
}

// TestFirstSyncFailedIsNotEnabled: a pod volume whose first copy did not
// reach the peer is not reported enabled: error while nothing copies it
// (the peer's array is down), enabling while the pod is copying (the peer
// is reachable but slow, and the pod is resyncing it), and
// GetReplicationInfo says why. Each case waits out the driver's 30 s wait
// for the first copy, so they run in parallel.
func TestFirstSyncFailedIsNotEnabled(t *testing.T) {
	const pod = "cinder-pod.site-b"
	t.Run("peer offline", func(t *testing.T) {
		t.Parallel()
		ctx := t.Context()
		peer, primary := newTestArray(t, "site-b"), newTestArray(t, "site-a")
		b := oneBackend(t, primary, device("site-b", peer.addr, peer, "sync"))

		// The peer's array goes down: its API server stops and its port
		// refuses connections.
		peer.halt()
		waitPeer(t, primary, pod, array.PeerOffline)
		mu, err := b.CreateVolume(ctx, "v1", 1, syncSpecs, "")
		if err != nil {
			t.Fatal(err)
		}
		if mu.ReplicationStatus != ReplError {
			t.Errorf("peer offline: CreateVolume reports %q, want %q", mu.ReplicationStatus, ReplError)
		}
		info, err := b.GetReplicationInfo(ctx, "v1")
		if err != nil {
			t.Fatal(err)
		}
		// The pod's own reason, as the engine records it: the peer's
		// address refused the connection.
		for _, why := range []string{"the peer is out of sync", peer.addr, "connection refused"} {
			if info.Status == Healthy || !strings.Contains(info.Message, why) {
				t.Errorf("peer offline: GetReplicationInfo %s %q, want the reason %q", info.Status, info.Message, why)
			}
		}
		if len(info.Targets) != 1 || info.Targets[0].BackendID != "site-b" || info.Targets[0].Type != extraspecs.Sync {
			t.Errorf("peer offline: GetReplicationInfo targets %+v, want the one sync target site-b", info.Targets)
		}
	})

	t.Run("peer resyncing", func(t *testing.T) {
		t.Parallel()
		ctx := t.Context()
		peer, primary := newTestArray(t, "site-b"), newTestArray(t, "site-a")
		px := netfault.New(t, peer.addr)
		// A pod timeout well over the 4 s a 1 MiB resync piece takes
		// through the throttled proxy, so the pod keeps its slow peer.
		d := startDriver(t, backendConf(map[string][]string{"b1": {
			"san_ip = " + primary.addr, "pure_api_token = " + primary.token,
			device("site-b", px.Addr(), peer, "sync"), "volrep_sync_timeout = 20000",
		}}), primary)
		b := testBackend(t, d, "b1")

		// A pod volume whose copy is on the peer...
		mu, err := b.CreateVolume(ctx, "seed", 1, syncSpecs, "")
		if err != nil {
			t.Fatal(err)
		}
		if mu.ReplicationStatus != ReplEnabled {
			t.Fatalf("peer online: CreateVolume reports %q, want %q", mu.ReplicationStatus, ReplEnabled)
		}
		// ...takes 16 MiB of writes while the peer is away, so the pod
		// records them dirty...
		px.Cut()
		waitPeer(t, primary, pod, array.PeerOffline)
		const dirty = 16 << 20
		data := make([]byte, 1<<20)
		for off := int64(0); off < dirty; off += int64(len(data)) {
			rand.Read(data) // incompressible
			if err := primary.st.WriteVolume(ctx, volumeName("seed"), off, data, false); err != nil {
				t.Fatal(err)
			}
		}
		if r, err := primary.eng.GetReplica(ctx, pod); err != nil || r.DirtyBytes != dirty {
			t.Fatalf("pod with the peer away: %d dirty bytes (%v), want %d", r.DirtyBytes, err, dirty)
		}
		// ...and resyncs them when the peer is back, slowly: 16 MiB at
		// 256 KiB/s is about 64 s, longer than the new volume's wait.
		px.Throttle(throttleRate)
		waitPeer(t, primary, pod, array.PeerResyncing)
		start := time.Now()
		mu, err = b.CreateVolume(ctx, "v1", 1, syncSpecs, "")
		if err != nil {
			t.Fatal(err)
		}
		if mu.ReplicationStatus != ReplEnabling {
			r, _ := primary.eng.GetReplica(ctx, pod)
			t.Errorf("peer resyncing: CreateVolume reports %q after %s, want %q (pod: peer %s, %s %q)",
				mu.ReplicationStatus, time.Since(start).Round(time.Second), ReplEnabling, r.PeerState, r.State, r.Message)
		}
		info, err := b.GetReplicationInfo(ctx, "v1")
		if err != nil {
			t.Fatal(err)
		}
		why := fmt.Sprintf("resyncing the peer: %d bytes to go", dirty)
		if info.Status != Degraded || !strings.Contains(info.Message, why) {
			t.Errorf("peer resyncing: GetReplicationInfo %s %q, want %s with the reason %q", info.Status, info.Message, Degraded, why)
		}
	})
}

// TestListVolumesSeesReplicatingGroups: a member of a replicating Cinder
// group is replicated (async), as GetVolume and GetReplicationInfo say;
// a member of another backend's replicating group in the same pool is not
// this backend's to report replicated.
func TestListVolumesSeesReplicatingGroups(t *testing.T) {
	ctx := t.Context()
	siteB, siteC, primary := newTestArray(t, "site-b"), newTestArray(t, "site-c"), newTestArray(t, "site-a")
	d := startDriver(t, backendConf(map[string][]string{
		"b1": {
			"san_ip = " + primary.addr, "pure_api_token = " + primary.token,
			device("site-b", siteB.addr, siteB, "async"), device("site-c", siteC.addr, siteC, "sync"),
		},
		// Another backend on the same array and pool, with its own
		// protection group.
		"b2": {
			"san_ip = " + primary.addr, "pure_api_token = " + primary.token,
			device("site-b", siteB.addr, siteB, "async"),
			"pure_replication_pg_name = b2-group", "pure_replication_pod_name = b2-pod",
		},
	}), primary)
	b1, b2 := testBackend(t, d, "b1"), testBackend(t, d, "b2")

	create := func(b *Backend, id string, vt VolumeType, group, want string) {
		t.Helper()
		mu, err := b.CreateVolume(ctx, id, 1, vt, group)
		if err != nil {
			t.Fatalf("CreateVolume(%s): %v", id, err)
		}
		if mu.ReplicationStatus != want {
			t.Fatalf("CreateVolume(%s) reports %q, want %q", id, mu.ReplicationStatus, want)
		}
	}
	enableGroup := func(b *Backend, group string, ids ...string) {
		t.Helper()
		if _, err := b.CreateGroup(ctx, group, replGroup); err != nil {
			t.Fatal(err)
		}
		for _, id := range ids {
			create(b, id, asyncSpecs, group, ReplEnabled)
		}
		res, err := b.EnableReplication(ctx, group, ids)
		if err != nil {
			t.Fatalf("EnableReplication(%s): %v", group, err)
		}
		if res.Group.ReplicationStatus != ReplEnabled {
			t.Fatalf("EnableReplication(%s) reports %q", group, res.Group.ReplicationStatus)
		}
	}
	create(b1, "in-pg", asyncSpecs, "", ReplEnabled)
	create(b1, "in-pod", syncSpecs, "", ReplEnabled)
	create(b1, "plain", VolumeType{Name: "plain"}, "", ReplDisabled)
	enableGroup(b1, "g1", "in-group")
	enableGroup(b2, "g2", "other-backends-group")

	vols, err := b1.ListVolumes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][2]string{
		"in-pg": {ReplEnabled, extraspecs.Async}, "in-pod": {ReplEnabled, extraspecs.Sync},
		"in-group": {ReplEnabled, extraspecs.Async}, "plain": {ReplDisabled, extraspecs.None},
		"other-backends-group": {ReplDisabled, extraspecs.None},
	}
	for _, v := range vols {
		if got := [2]string{v.ReplicationStatus, v.ReplicationType}; got != want[v.ID] {
			t.Errorf("ListVolumes: %s is %q, want %q", v.ID, got, want[v.ID])
		}
		one, err := b1.GetVolume(ctx, v.ID)
		if err != nil || one.ReplicationStatus != v.ReplicationStatus || one.ReplicationType != v.ReplicationType {
			t.Errorf("GetVolume(%s) = %q %q, %v; ListVolumes said %q %q", v.ID, one.ReplicationStatus, one.ReplicationType, err,
				v.ReplicationStatus, v.ReplicationType)
		}
		// GetReplicationInfo answers for exactly the volumes listed as
		// replicated, on the targets of their type.
		info, err := b1.GetReplicationInfo(ctx, v.ID)
		switch {
		case v.ReplicationStatus == ReplDisabled && err == nil:
			t.Errorf("GetReplicationInfo(%s) answers %+v; ListVolumes said it is not replicated", v.ID, info)
		case v.ReplicationStatus != ReplDisabled && err != nil:
			t.Errorf("GetReplicationInfo(%s): %v; ListVolumes said it is replicated", v.ID, err)
		case err == nil && (len(info.Targets) != 1 || info.Targets[0].Type != v.ReplicationType):
			t.Errorf("GetReplicationInfo(%s) targets %+v; ListVolumes said %s", v.ID, info.Targets, v.ReplicationType)
		}
	}
	ids := make([]string, 0, len(vols))
	for _, v := range vols {
		ids = append(ids, v.ID)
	}
	slices.Sort(ids)
	if len(ids) != len(want) || len(slices.Compact(slices.Clone(ids))) != len(want) {
		t.Errorf("ListVolumes listed %v, want each of %d volumes once", ids, len(want))
	}
}

// TestNewVolumeMakesMissingReplicas: a replicated volume created before
// the backend's setup made its protection group's or pod's replica (as
// right after start-up) gets the replica made there and then, and is
// protected, rather than reported in error until the next setup pass.
func TestNewVolumeMakesMissingReplicas(t *testing.T) {
	ctx := t.Context()
	peer, primary := newTestArray(t, "site-b"), newTestArray(t, "site-a")
	d := startDriver(t, backendConf(map[string][]string{"b1": {
		"san_ip = " + primary.addr, "pure_api_token = " + primary.token,
		device("site-b-async", peer.addr, peer, "async"),
		device("site-b", peer.addr, peer, "sync"),
	}}), primary)
	b := testBackend(t, d, "b1")
	asyncSpecs := VolumeType{Name: "async", ExtraSpecs: map[string]string{"replication_enabled": "<is> True", "replication_type": "<in> async"}}
	for _, tc := range []struct {
		replica string
		vt      VolumeType
	}{{"cinder-pod.site-b", syncSpecs}, {"cinder-group.site-b-async", asyncSpecs}} {
		if err := primary.eng.DeleteReplica(ctx, tc.replica, false); err != nil {
			t.Fatal(err)
		}
		mu, err := b.CreateVolume(ctx, "v-"+tc.vt.Name, 1, tc.vt, "")
		if err != nil {
			t.Fatal(err)
		}
		if mu.ReplicationStatus != ReplEnabled {
			t.Errorf("%s volume with its replica missing: %q, want %q", tc.vt.Name, mu.ReplicationStatus, ReplEnabled)
		}
		if _, err := primary.eng.GetReplica(ctx, tc.replica); err != nil {
			t.Errorf("replica %s was not made for the new volume: %v", tc.replica, err)
		}
	}
}

// TestReplicationInfoShowsThePeersOwnView: GetReplicationInfo of a pod
// volume shows the pod as the peer array itself reports it, beside the
// primary's view; with the primary's API down it still answers, from the
// peer alone.
func TestReplicationInfoShowsThePeersOwnView(t *testing.T) {
	ctx := t.Context()
	peer, primary := newTestArray(t, "site-b"), newTestArray(t, "site-a")
	b := oneBackend(t, primary, device("site-b", peer.addr, peer, "sync"))
	if mu, err := b.CreateVolume(ctx, "v1", 1, syncSpecs, ""); err != nil || mu.ReplicationStatus != ReplEnabled {
		t.Fatalf("CreateVolume of a sync type: %+v, %v", mu, err)
	}
	info, err := b.GetReplicationInfo(ctx, "v1")
	if err != nil {
		t.Fatal(err)
	}
	own := info.Targets[0].TargetOwn
	if info.Status != Healthy || own.State != array.PodOnline || own.Writes != array.WritesOnline || !slices.Contains(own.Volumes, volumeName("v1")) {
		t.Fatalf("in sync, GetReplicationInfo: %s, the peer's own view %+v", info.Status, own)
	}
	// The primary's API goes away; its engine, and so the pod's streams
	// to the peer, go on.
	primary.halt()
	info, err = b.GetReplicationInfo(ctx, "v1")
	if err != nil {
		t.Fatalf("GetReplicationInfo with the primary's API down: %v", err)
	}
	own = info.Targets[0].TargetOwn
	if len(info.Targets) != 1 || info.Status != Error || own.State != array.PodOnline ||
		!strings.Contains(info.Message, "the primary array cannot be reached") || !strings.Contains(info.Message, own.Message) {
		t.Fatalf("with the primary's API down, GetReplicationInfo: %s %q, the peer's own view %+v", info.Status, info.Message, own)
	}
	// A volume the peer holds no copy of is not answered for.
	if _, err := b.GetReplicationInfo(ctx, "v2"); err == nil {
		t.Fatal("GetReplicationInfo of a volume that exists nowhere, with the primary down: no error")
	}
}

// With the primary array down, GetReplicationInfo of a protection group
// volume answers from the async target: its newest copy and how old it
// is, which is what a failover would bring back now.
func TestReplicationInfoFromTheTargetWhenThePrimaryIsDown(t *testing.T) {
	ctx := t.Context()
	b, primary, peer := pairedBackend(t, "async")
	if _, err := b.CreateVolume(ctx, "v1", 1, asyncSpecs, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := primary.eng.SyncReplica(ctx, b.pgReplica("site-b"), true); err != nil {
		t.Fatal(err)
	}
	snaps, err := peer.st.ListSnapshots(ctx, volumeName("v1"))
	if err != nil || len(snaps) == 0 {
		t.Fatalf("the target's copies of v1 after a cycle: %v, %v", snaps, err)
	}
	newest := snaps[0]
	for _, s := range snaps {
		if s.Created.After(newest.Created) {
			newest = s
		}
	}
	primary.halt()
	info, err := b.GetReplicationInfo(ctx, "v1")
	if err != nil {
		t.Fatalf("GetReplicationInfo with the primary's API down: %v", err)
	}
	if len(info.Targets) != 1 || info.Status != Error || info.LastSnapshot != newest.Name || !info.LastSyncTime.Equal(newest.Created) ||
		info.Lag <= 0 || !strings.Contains(info.Message, "the primary array cannot be reached") || !strings.Contains(info.Message, "a failover to site-b") {
		t.Fatalf("with the primary's API down, GetReplicationInfo: %+v; want error, the target's newest copy %s from %s", info, newest.Name, newest.Created)
	}
	// A volume the target holds no copy of is not answered for.
	if _, err := b.GetReplicationInfo(ctx, "v2"); err == nil {
		t.Fatal("GetReplicationInfo of a volume that exists nowhere, with the primary down: no error")
	}
}
