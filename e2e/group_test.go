package e2e

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/volrep/volrep/array"
	driverv1 "github.com/volrep/volrep/proto/volrep/driver/v1"
)

const groupBackend = "puredriver-1"

var replicatedGroupType = &driverv1.GroupType{Name: "replicated", GroupSpecs: map[string]string{"consistent_group_replication_enabled": "<is> True"}}

func newVolumes(t *testing.T, dc driverv1.DriverServiceClient, vt *driverv1.VolumeType, ids ...string) {
	t.Helper()
	for _, id := range ids {
		if _, err := dc.CreateVolume(t.Context(), &driverv1.CreateVolumeRequest{Backend: groupBackend, VolumeId: id, SizeGb: 1, VolumeType: vt}); err != nil {
			t.Fatalf("CreateVolume %s: %v", id, err)
		}
	}
}

func fill(t *testing.T, a array.Array, vol string, off int64, b byte, n int) {
	t.Helper()
	if err := a.WriteVolume(t.Context(), vol, off, bytes.Repeat([]byte{b}, n), true); err != nil {
		t.Fatalf("writing %#x to %s at %d: %v", b, vol, off, err)
	}
}

// holds fails unless vol (or its snapshot snap) reads as n bytes of b at off.
func holds(t *testing.T, a array.Array, vol, snap string, off int64, b byte, n int) {
	t.Helper()
	got := make([]byte, n)
	var err error
	if snap == "" {
		err = a.ReadVolume(t.Context(), vol, off, got)
	} else {
		err = a.ReadSnapshot(t.Context(), vol, snap, off, got)
	}
	if err != nil || !bytes.Equal(got, bytes.Repeat([]byte{b}, n)) {
		t.Fatalf("%s@%s [%d,+%d) is not %#x (first byte %#x, %v)", vol, snap, off, n, b, got[0], err)
	}
}

func wantCode(t *testing.T, err error, code codes.Code, msg string) {
	t.Helper()
	if status.Code(err) != code || !strings.Contains(err.Error(), msg) {
		t.Fatalf("got %v, want %v mentioning %q", err, code, msg)
	}
}

func members(t *testing.T, a array.Array, group string) []string {
	t.Helper()
	g, err := a.GetGroup(t.Context(), group)
	if err != nil {
		t.Fatal(err)
	}
	return g.Members
}

// TestGroupSnapshotCrashConsistent snapshots two volumes while a writer
// puts a counter on each in turn: a set taken at one write barrier shows
// the first volume equal to the second or one ahead, never behind and
// never further; one snapshot after the other would show many writes
// between them.
func TestGroupSnapshotCrashConsistent(t *testing.T) {
	s := startThreeSites(t)
	ctx := t.Context()
	dc := driverClient(t, s.d)
	a := s.a.Array("a")
	newVolumes(t, dc, nil, "v1", "v2")
	if out, code := volrep(t, s.d, "group", "create", "g1"); code != 0 || !strings.Contains(out, "consisgroup-g1-cinder") {
		t.Fatalf("group create (exit %d):\n%s", code, out)
	}
	if out, code := volrep(t, s.d, "group", "update", "g1", "--add", "v1", "--add", "v2"); code != 0 {
		t.Fatalf("group update (exit %d):\n%s", code, out)
	}
	fill(t, a, "volume-v1-cinder", 1<<20, 0xa1, 64<<10)
	fill(t, a, "volume-v2-cinder", 1<<20, 0xb2, 64<<10)

	// The writer goes over NBD, which acknowledges a write in tens of
	// microseconds: far less than a snapshot takes, so snapshots taken one
	// after the other would see many writes between them.
	var nbds []*nbdClient
	for _, vol := range []string{"v1", "v2"} {
		u, err := url.Parse(attachURI(t, dc, groupBackend, vol))
		if err != nil {
			t.Fatal(err)
		}
		n, err := dialNBD(u.Host, strings.TrimPrefix(u.Path, "/"))
		if err != nil {
			t.Fatal(err)
		}
		nbds = append(nbds, n)
	}
	var written atomic.Uint64
	var stopped atomic.Bool
	done := make(chan error, 1)
	go func() {
		block := make([]byte, 4096)
		for i := uint64(1); !stopped.Load(); i++ {
			binary.LittleEndian.PutUint64(block, i)
			for _, n := range nbds {
				if err := n.WriteAt(block, 0); err != nil {
					done <- err
					return
				}
			}
			written.Store(i)
		}
		done <- nil
	}()
	waitFor(t, func() bool { return written.Load() > 1000 })
	counter := func(vol, snap string) uint64 {
		buf := make([]byte, 8)
		if err := a.ReadSnapshot(ctx, vol, snap, 0, buf); err != nil {
			t.Fatal(err)
		}
		return binary.LittleEndian.Uint64(buf)
	}
	var last uint64
	for k := range 5 {
		gs := fmt.Sprintf("gs%d", k)
		r, err := dc.CreateGroupSnapshot(ctx, &driverv1.CreateGroupSnapshotRequest{Backend: groupBackend, GroupId: "g1", GroupSnapshotId: gs, VolumeIds: []string{"v1", "v2"}})
		if err != nil {
			t.Fatal(err)
		}
		if len(r.GetSnapshots()) != 2 || r.GetSnapshots()[0].GetProviderId() != "volume-v1-cinder@snapshot-"+gs {
			t.Fatalf("group snapshot %s: %v", gs, r)
		}
		c1, c2 := counter("volume-v1-cinder", "snapshot-"+gs), counter("volume-v2-cinder", "snapshot-"+gs)
		t.Logf("%s: v1 at %d, v2 at %d", gs, c1, c2)
		if c2 == 0 || c1 < c2 || c1 > c2+1 || c1 <= last {
			t.Fatalf("group snapshot %s is not crash-consistent: v1 at %d, v2 at %d (previous set at %d)", gs, c1, c2, last)
		}
		last = c1
		time.Sleep(20 * time.Millisecond)
	}
	stopped.Store(true)
	if err := <-done; err != nil {
		t.Fatalf("writer: %v", err)
	}
	for _, n := range nbds {
		n.Close()
	}
	if written.Load() <= last+1 {
		t.Fatalf("the writer stopped at %d, so the snapshots did not race it", written.Load())
	}
	holds(t, a, "volume-v1-cinder", "snapshot-gs0", 1<<20, 0xa1, 64<<10)
	holds(t, a, "volume-v2-cinder", "snapshot-gs0", 1<<20, 0xb2, 64<<10)

	// A group from the group snapshot: each volume a clone of its member.
	fr, err := dc.CreateGroupFromSrc(ctx, &driverv1.CreateGroupFromSrcRequest{Backend: groupBackend, GroupId: "g2", GroupSnapshotId: "gs4",
		Volumes: []*driverv1.GroupVolumeSource{{VolumeId: "c1", SourceVolumeId: "v1"}, {VolumeId: "c2", SourceVolumeId: "v2"}}})
	if err != nil || len(fr.GetVolumeUpdates()) != 2 {
		t.Fatalf("CreateGroupFromSrc: %v %v", fr, err)
	}
	holds(t, a, "volume-c2-cinder", "", 1<<20, 0xb2, 64<<10)
	if got := counter("volume-v1-cinder", "snapshot-gs4"); got != last {
		t.Fatalf("clone source moved: %d, want %d", got, last)
	}

	// Volumes with group snapshots are not deleted with their group.
	_, err = dc.DeleteGroup(ctx, &driverv1.DeleteGroupRequest{Backend: groupBackend, GroupId: "g1", VolumeIds: []string{"v1", "v2"}})
	wantCode(t, err, codes.FailedPrecondition, "delete its snapshots and group snapshots first")
	for k := range 4 {
		d, err := dc.DeleteGroupSnapshot(ctx, &driverv1.DeleteGroupSnapshotRequest{Backend: groupBackend, GroupId: "g1", GroupSnapshotId: fmt.Sprintf("gs%d", k)})
		if err != nil || !slices.Equal(d.GetVolumeIds(), []string{"v1", "v2"}) {
			t.Fatalf("DeleteGroupSnapshot gs%d: %v %v", k, d, err)
		}
	}
	if out, code := volrep(t, s.d, "group", "snapshot", "delete", "gs4", "--group", "g1", "--volume", "v1", "--volume", "v2"); code != 0 || !strings.Contains(out, "v1,v2") {
		t.Fatalf("group snapshot delete (exit %d):\n%s", code, out)
	}
	out, code := volrep(t, s.d, "-o", "json", "group", "delete", "g1", "--volume", "v1", "--volume", "v2")
	var del struct {
		ModelUpdate   struct{ Status string } `json:"model_update"`
		VolumeUpdates []struct {
			VolumeID string `json:"volume_id"`
			Updates  struct{ Status string }
		} `json:"volume_updates"`
	}
	if err := json.Unmarshal([]byte(out), &del); code != 0 || err != nil || del.ModelUpdate.Status != "deleted" ||
		len(del.VolumeUpdates) != 2 || del.VolumeUpdates[1].VolumeID != "v2" || del.VolumeUpdates[1].Updates.Status != "deleted" {
		t.Fatalf("group delete (exit %d, %v):\n%s", code, err, out)
	}
	for _, id := range []string{"v1", "v2"} {
		_, err := dc.GetVolume(ctx, &driverv1.GetVolumeRequest{Backend: groupBackend, VolumeId: id})
		wantCode(t, err, codes.NotFound, "not found")
	}
	if _, err := a.GetGroup(ctx, "consisgroup-g1-cinder"); status.Code(err) != codes.NotFound {
		t.Fatalf("the group's consistency group is still on the array: %v", err)
	}
	if _, err := dc.DeleteGroup(ctx, &driverv1.DeleteGroupRequest{Backend: groupBackend, GroupId: "g2", VolumeIds: []string{"c1", "c2"}}); err != nil {
		t.Fatal(err)
	}
}

// TestGroupUpdate adds and removes volumes, and checks what a group refuses.
func TestGroupUpdate(t *testing.T) {
	s := startThreeSites(t)
	// A second backend on the same array and pool, so that a volume of
	// another backend is at hand.
	conf, err := readFile(s.d.Conf)
	if err != nil {
		t.Fatal(err)
	}
	s.d.Stop()
	s.d.WriteRaw(strings.Replace(conf, "enabled_backends = puredriver-1", "enabled_backends = puredriver-1, other", 1) +
		fmt.Sprintf("\n[other]\nsan_ip = %s\npure_api_token = ta\n", s.a.ArrayA))
	s.d.Start()
	ctx := t.Context()
	dc := driverClient(t, s.d)
	a := s.a.Array("a")
	newVolumes(t, dc, asyncType, "av1", "av2")
	newVolumes(t, dc, syncType, "sv")
	newVolumes(t, dc, nil, "plain")
	if _, err := dc.CreateVolume(ctx, &driverv1.CreateVolumeRequest{Backend: "other", VolumeId: "foreign", SizeGb: 1}); err != nil {
		t.Fatal(err)
	}
	for id, gt := range map[string]*driverv1.GroupType{"pg": nil, "rg": replicatedGroupType} {
		if _, err := dc.CreateGroup(ctx, &driverv1.CreateGroupRequest{Backend: groupBackend, GroupId: id, GroupType: gt}); err != nil {
			t.Fatal(err)
		}
	}
	update := func(group string, add, remove []string) error {
		_, err := dc.UpdateGroup(ctx, &driverv1.UpdateGroupRequest{Backend: groupBackend, GroupId: group, AddVolumeIds: add, RemoveVolumeIds: remove})
		return err
	}
	for _, tc := range []struct {
		name string
		call func() error
		code codes.Code
		msg  string
	}{
		{"unknown group", func() error { return update("nope", []string{"av1"}, nil) }, codes.NotFound, "group nope not found on backend puredriver-1"},
		{"another backend's volume", func() error { return update("pg", []string{"foreign"}, nil) }, codes.InvalidArgument, "volume foreign is not a volume of backend puredriver-1"},
		{"no such volume", func() error { return update("pg", []string{"ghost"}, nil) }, codes.InvalidArgument, "add_volume_ids: volume ghost is not a volume"},
		{"unreplicated into replicated", func() error { return update("rg", []string{"av1", "plain"}, nil) }, codes.InvalidArgument, "volume plain is not replicated"},
		{"sync into replicated", func() error { return update("rg", []string{"sv"}, nil) }, codes.InvalidArgument, "volume sv is replicated synchronously"},
		{"add and remove", func() error { return update("pg", []string{"av1"}, []string{"av1"}) }, codes.InvalidArgument, "remove_volume_ids"},
		{"same group, other type", func() error {
			_, err := dc.CreateGroup(ctx, &driverv1.CreateGroupRequest{Backend: groupBackend, GroupId: "rg"})
			return err
		}, codes.AlreadyExists, "with another group type"},
		{"enable a plain group", func() error {
			_, err := dc.EnableReplication(ctx, &driverv1.EnableReplicationRequest{Backend: groupBackend, GroupId: "pg", VolumeIds: []string{"av1"}})
			return err
		}, codes.FailedPrecondition, "does not enable consistent_group_replication_enabled"},
		{"enable with an unreplicated volume", func() error {
			_, err := dc.EnableReplication(ctx, &driverv1.EnableReplicationRequest{Backend: groupBackend, GroupId: "rg", VolumeIds: []string{"plain"}})
			return err
		}, codes.InvalidArgument, "volume_ids: volume plain is not replicated"},
		{"snapshot without volumes", func() error {
			_, err := dc.CreateGroupSnapshot(ctx, &driverv1.CreateGroupSnapshotRequest{Backend: groupBackend, GroupId: "pg", GroupSnapshotId: "s"})
			return err
		}, codes.InvalidArgument, "list the group's volumes"},
		{"fail over before any copy", func() error {
			_, err := dc.FailoverReplication(ctx, &driverv1.FailoverReplicationRequest{Backend: groupBackend, GroupId: "rg", VolumeIds: []string{"av1"}})
			return err
		}, codes.FailedPrecondition, "group rg does not replicate; enable its replication"},
		{"fail over elsewhere", func() error {
			_, err := dc.FailoverReplication(ctx, &driverv1.FailoverReplicationRequest{Backend: groupBackend, GroupId: "rg", SecondaryBackendId: "nowhere"})
			return err
		}, codes.InvalidArgument, "choose one of [site-b]"},
		{"fail back when home", func() error {
			_, err := dc.FailoverReplication(ctx, &driverv1.FailoverReplicationRequest{Backend: groupBackend, GroupId: "rg", SecondaryBackendId: "default"})
			return err
		}, codes.FailedPrecondition, "not failed over"},
	} {
		t.Run(tc.name, func(t *testing.T) { wantCode(t, tc.call(), tc.code, tc.msg) })
	}

	// A group that does not replicate keeps nothing on the array.
	if err := update("pg", []string{"av1", "plain"}, nil); err != nil {
		t.Fatal(err)
	}
	if m := members(t, a, "consisgroup-pg-cinder"); len(m) != 0 {
		t.Fatalf("a plain group holds %v on the array", m)
	}
	// A replicating group takes its volumes out of the backend's
	// protection group, and gives them back.
	if err := update("rg", []string{"av1"}, nil); err != nil {
		t.Fatal(err)
	}
	en, err := dc.EnableReplication(ctx, &driverv1.EnableReplicationRequest{Backend: groupBackend, GroupId: "rg", VolumeIds: []string{"av1"}})
	if err != nil || en.GetModelUpdate().GetReplicationStatus() != driverv1.ReplicationStatus_REPLICATION_STATUS_ENABLED {
		t.Fatalf("EnableReplication: %v %v", en, err)
	}
	check := func(rg, pg []string) {
		t.Helper()
		gotRG, gotPG := members(t, a, "consisgroup-rg-cinder"), members(t, a, "cinder-group")
		if !slices.Equal(gotRG, rg) || !slices.Equal(gotPG, pg) {
			t.Fatalf("group holds %v, protection group %v; want %v and %v", gotRG, gotPG, rg, pg)
		}
	}
	check([]string{"volume-av1-cinder"}, []string{"volume-av2-cinder"})
	if err := update("rg", []string{"av2"}, []string{"av1"}); err != nil {
		t.Fatal(err)
	}
	check([]string{"volume-av2-cinder"}, []string{"volume-av1-cinder"})
	wantCode(t, update("rg", []string{"sv"}, nil), codes.InvalidArgument, "replicated synchronously")
	if err := update("rg", []string{"av1"}, nil); err != nil {
		t.Fatal(err)
	}
	check([]string{"volume-av1-cinder", "volume-av2-cinder"}, nil)
	if out, code := volrep(t, s.d, "-b", groupBackend, "group", "disable-replication", "rg"); code != 0 || !strings.Contains(out, "replication_status  disabled") {
		t.Fatalf("group disable-replication (exit %d):\n%s", code, out)
	}
	check(nil, []string{"volume-av1-cinder", "volume-av2-cinder"})
	if reps, err := s.replicasOf(t).ListReplicas(ctx, "consisgroup-rg-cinder"); err != nil || len(reps) != 0 {
		t.Fatalf("the group's replicas outlive DisableReplication: %v %v", reps, err)
	}

	// A replicating group is deleted with its replicas and its volumes.
	if _, err := dc.EnableReplication(ctx, &driverv1.EnableReplicationRequest{Backend: groupBackend, GroupId: "rg", VolumeIds: []string{"av1", "av2"}}); err != nil {
		t.Fatal(err)
	}
	del, err := dc.DeleteGroup(ctx, &driverv1.DeleteGroupRequest{Backend: groupBackend, GroupId: "rg"})
	if err != nil || len(del.GetVolumeUpdates()) != 2 {
		t.Fatalf("DeleteGroup: %v %v", del, err)
	}
	if reps, err := s.replicasOf(t).ListReplicas(ctx, "consisgroup-rg-cinder"); err != nil || len(reps) != 0 {
		t.Fatalf("the group's replicas outlive DeleteGroup: %v %v", reps, err)
	}
	for _, vol := range []string{"volume-av1-cinder", "volume-av2-cinder", "consisgroup-rg-cinder"} {
		_, verr := a.GetVolume(ctx, vol)
		_, gerr := a.GetGroup(ctx, vol)
		if status.Code(verr) != codes.NotFound || status.Code(gerr) != codes.NotFound {
			t.Fatalf("%s outlives DeleteGroup: %v %v", vol, verr, gerr)
		}
	}
}

const groupReplicaName = "consisgroup-rg-cinder.site-b"

// replicatedRG creates async volumes av1 and av2 with distinct data, puts
// them in replicating group rg, and waits until a group snapshot holding
// the data is on site-b.
func replicatedRG(t *testing.T, s *threeSites, dc driverv1.DriverServiceClient) {
	t.Helper()
	ctx := t.Context()
	a, b := s.a.Array("a"), s.b.Array("b")
	newVolumes(t, dc, asyncType, "av1", "av2")
	fill(t, a, "volume-av1-cinder", 0, 0x11, 1<<20)
	fill(t, a, "volume-av2-cinder", 0, 0x22, 1<<20)
	if _, err := dc.CreateGroup(ctx, &driverv1.CreateGroupRequest{Backend: groupBackend, GroupId: "rg", GroupType: replicatedGroupType}); err != nil {
		t.Fatal(err)
	}
	out, code := volrep(t, s.d, "group", "enable-replication", "rg", "--volume", "av1", "--volume", "av2")
	if code != 0 || strings.Count(out, "enabled") != 3 {
		t.Fatalf("group enable-replication (exit %d):\n%s", code, out)
	}
	waitFor(t, func() bool {
		for vol, b0 := range map[string]byte{"volume-av1-cinder": 0x11, "volume-av2-cinder": 0x22} {
			s := newestGroupSnapshot(t, b, vol)
			got := make([]byte, 1)
			if s == "" || b.ReadSnapshot(ctx, vol, s, 0, got) != nil || got[0] != b0 {
				return false
			}
		}
		return true
	})
}

// newestGroupSnapshot is vol's newest snapshot on a that rg's replica took.
func newestGroupSnapshot(t *testing.T, a array.Array, vol string) string {
	snaps, _ := a.ListSnapshots(t.Context(), vol)
	newest := ""
	for _, s := range snaps {
		if s.Labels["volrep.replica"] == groupReplicaName {
			newest = s.Name
		}
	}
	return newest
}

// TestGroupReplicationFailover fails a replicating group over to its
// target and back: the target serves the data at the group's point, the
// failback sends only what was written there, and the group replicates
// again afterwards.
func TestGroupReplicationFailover(t *testing.T) {
	s := startThreeSites(t)
	ctx := t.Context()
	dc := driverClient(t, s.d)
	a, b := s.a.Array("a"), s.b.Array("b")
	replicatedRG(t, s, dc)
	// A member reports its group's replication.
	info, err := dc.GetReplicationInfo(ctx, &driverv1.GetReplicationInfoRequest{Backend: groupBackend, VolumeId: "av1"})
	if err != nil || info.GetStatus() != driverv1.ReplicationHealth_REPLICATION_HEALTH_HEALTHY ||
		len(info.GetTargets()) != 1 || info.GetTargets()[0].GetLastSnapshot() != newestGroupSnapshot(t, b, "volume-av1-cinder") {
		t.Fatalf("replication info of a member: %v, %v", info, err)
	}
	// A volume created in the replicating group joins its protection group.
	if _, err := dc.CreateVolume(ctx, &driverv1.CreateVolumeRequest{Backend: groupBackend, VolumeId: "av3", SizeGb: 1, VolumeType: asyncType, GroupId: "rg"}); err != nil {
		t.Fatal(err)
	}
	if got := members(t, a, "consisgroup-rg-cinder"); !slices.Contains(got, "volume-av3-cinder") {
		t.Fatalf("members of the group after creating av3 in it: %v", got)
	}
	_, err = dc.CreateVolume(ctx, &driverv1.CreateVolumeRequest{Backend: groupBackend, VolumeId: "plain-in-rg", SizeGb: 1, GroupId: "rg"})
	wantCode(t, err, codes.InvalidArgument, "replicates asynchronously")
	if _, err := dc.UpdateGroup(ctx, &driverv1.UpdateGroupRequest{Backend: groupBackend, GroupId: "rg", RemoveVolumeIds: []string{"av3"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := dc.DeleteVolume(ctx, &driverv1.DeleteVolumeRequest{Backend: groupBackend, VolumeId: "av3"}); err != nil {
		t.Fatal(err)
	}
	fill(t, a, "volume-av1-cinder", 2<<20, 0x33, 1<<20) // shipped by the failover's last cycle

	fo, err := dc.FailoverReplication(ctx, &driverv1.FailoverReplicationRequest{Backend: groupBackend, GroupId: "rg", SecondaryBackendId: "site-b"})
	if err != nil {
		t.Fatal(err)
	}
	if fo.GetActiveBackendId() != "site-b" || fo.GetGroupSnapshot() == "" ||
		fo.GetModelUpdate().GetReplicationStatus() != driverv1.ReplicationStatus_REPLICATION_STATUS_FAILED_OVER || len(fo.GetVolumeUpdates()) != 2 {
		t.Fatalf("failover: %v", fo)
	}
	for _, u := range fo.GetVolumeUpdates() {
		if u.GetUpdates().GetReplicationStatus() != driverv1.ReplicationStatus_REPLICATION_STATUS_FAILED_OVER {
			t.Fatalf("failover: %v", u)
		}
	}
	holds(t, b, "volume-av1-cinder", "", 0, 0x11, 1<<20)
	holds(t, b, "volume-av1-cinder", "", 2<<20, 0x33, 1<<20)
	holds(t, b, "volume-av2-cinder", "", 0, 0x22, 1<<20)
	for _, vol := range []string{"volume-av1-cinder", "volume-av2-cinder"} {
		va, _ := a.GetVolume(ctx, vol)
		vb, _ := b.GetVolume(ctx, vol)
		if !va.ReadOnly || vb.ReadOnly {
			t.Fatalf("%s after failover: primary read-only %v, target read-only %v", vol, va.ReadOnly, vb.ReadOnly)
		}
	}
	// Attaching a member now exports the target's promoted copy.
	ic, err := dc.InitializeConnection(ctx, &driverv1.InitializeConnectionRequest{Backend: groupBackend, VolumeId: "av2", Connector: &driverv1.Connector{Host: "h1"}})
	if err != nil {
		t.Fatal(err)
	}
	nd := ic.GetConnectionInfo().GetData()
	if addr := net.JoinHostPort(nd["host"], nd["port"]); addr != s.b.NBDAddr() || nd["read_only"] != "false" {
		t.Fatalf("attach of a failed-over member: %v, want a writable export on %s", nd, s.b.NBDAddr())
	}
	nc, err := dialNBD(s.b.NBDAddr(), nd["export_name"])
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.WriteAt(pattern(0x44, 1<<20), 4<<20); err != nil {
		t.Fatal(err)
	}
	if err := errors.Join(nc.Flush(), nc.Close()); err != nil {
		t.Fatal(err)
	}
	holds(t, b, "volume-av2-cinder", "", 4<<20, 0x44, 1<<20)
	if _, err := dc.TerminateConnection(ctx, &driverv1.TerminateConnectionRequest{Backend: groupBackend, VolumeId: "av2"}); err != nil {
		t.Fatal(err)
	}
	_, err = dc.UpdateGroup(ctx, &driverv1.UpdateGroupRequest{Backend: groupBackend, GroupId: "rg", RemoveVolumeIds: []string{"av1"}})
	wantCode(t, err, codes.FailedPrecondition, "fail it back")
	_, err = dc.DeleteGroup(ctx, &driverv1.DeleteGroupRequest{Backend: groupBackend, GroupId: "rg"})
	wantCode(t, err, codes.FailedPrecondition, "before deleting it")
	_, err = dc.FailoverReplication(ctx, &driverv1.FailoverReplicationRequest{Backend: groupBackend, GroupId: "rg", SecondaryBackendId: "site-b"})
	wantCode(t, err, codes.FailedPrecondition, "is failed over to site-b")

	fb, err := dc.FailoverReplication(ctx, &driverv1.FailoverReplicationRequest{Backend: groupBackend, GroupId: "rg", SecondaryBackendId: "default"})
	if err != nil {
		t.Fatal(err)
	}
	written := int64(1 << 20)
	t.Logf("failback sent %d bytes for %d written on the target", fb.GetFailbackBytes(), written)
	if fb.GetActiveBackendId() != "default" || fb.GetFailbackBytes() < written || fb.GetFailbackBytes() > written*11/10 ||
		fb.GetModelUpdate().GetReplicationStatus() != driverv1.ReplicationStatus_REPLICATION_STATUS_ENABLED {
		t.Fatalf("failback: %v", fb)
	}
	holds(t, a, "volume-av2-cinder", "", 4<<20, 0x44, 1<<20)
	holds(t, a, "volume-av1-cinder", "", 2<<20, 0x33, 1<<20)
	for _, vol := range []string{"volume-av1-cinder", "volume-av2-cinder"} {
		va, _ := a.GetVolume(ctx, vol)
		vb, _ := b.GetVolume(ctx, vol)
		if va.ReadOnly || !vb.ReadOnly {
			t.Fatalf("%s after failback: primary read-only %v, target read-only %v", vol, va.ReadOnly, vb.ReadOnly)
		}
	}
	// The group replicates again, from where the failback left it.
	fill(t, a, "volume-av1-cinder", 6<<20, 0x55, 1<<20)
	waitFor(t, func() bool {
		got := make([]byte, 1)
		s := newestGroupSnapshot(t, b, "volume-av1-cinder")
		return b.ReadSnapshot(ctx, "volume-av1-cinder", s, 6<<20, got) == nil && got[0] == 0x55
	})

	dis, err := dc.DisableReplication(ctx, &driverv1.DisableReplicationRequest{Backend: groupBackend, GroupId: "rg", VolumeIds: []string{"av1", "av2"}})
	if err != nil || dis.GetModelUpdate().GetReplicationStatus() != driverv1.ReplicationStatus_REPLICATION_STATUS_DISABLED {
		t.Fatalf("DisableReplication: %v %v", dis, err)
	}
	if m := members(t, a, "cinder-group"); !slices.Equal(m, []string{"volume-av1-cinder", "volume-av2-cinder"}) {
		t.Fatalf("the volumes are not back in the protection group: %v", m)
	}
	for _, vol := range []string{"volume-av1-cinder", "volume-av2-cinder"} {
		if s := newestGroupSnapshot(t, a, vol); s != "" {
			t.Fatalf("group snapshot %s of %s outlives DisableReplication", s, vol)
		}
	}
	// The protection group carries on with the remote copies.
	fill(t, a, "volume-av2-cinder", 8<<20, 0x66, 1<<20)
	if _, err := s.replicasOf(t).SyncReplica(ctx, "cinder-group.site-b", true); err != nil {
		t.Fatal(err)
	}
	snaps, err := b.ListSnapshots(ctx, "volume-av2-cinder")
	if err != nil || len(snaps) == 0 {
		t.Fatal(snaps, err)
	}
	holds(t, b, "volume-av2-cinder", snaps[len(snaps)-1].Name, 8<<20, 0x66, 1<<20)
	holds(t, b, "volume-av2-cinder", snaps[len(snaps)-1].Name, 4<<20, 0x44, 1<<20)

	// Again, with replication disabled while failed over: the failback
	// returns the volumes to the protection group.
	if _, err := dc.EnableReplication(ctx, &driverv1.EnableReplicationRequest{Backend: groupBackend, GroupId: "rg", VolumeIds: []string{"av1", "av2"}}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return newestGroupSnapshot(t, b, "volume-av2-cinder") != "" })
	if _, err := dc.FailoverReplication(ctx, &driverv1.FailoverReplicationRequest{Backend: groupBackend, GroupId: "rg"}); err != nil {
		t.Fatal(err)
	}
	holds(t, b, "volume-av2-cinder", "", 8<<20, 0x66, 1<<20)
	dis, err = dc.DisableReplication(ctx, &driverv1.DisableReplicationRequest{Backend: groupBackend, GroupId: "rg"})
	if err != nil || dis.GetVolumeUpdates()[0].GetUpdates().GetReplicationStatus() != driverv1.ReplicationStatus_REPLICATION_STATUS_FAILED_OVER {
		t.Fatalf("DisableReplication while failed over: %v %v", dis, err)
	}
	fill(t, b, "volume-av1-cinder", 10<<20, 0x77, 1<<20)
	fb, err = dc.FailoverReplication(ctx, &driverv1.FailoverReplicationRequest{Backend: groupBackend, GroupId: "rg", SecondaryBackendId: "default"})
	if err != nil || fb.GetModelUpdate().GetReplicationStatus() != driverv1.ReplicationStatus_REPLICATION_STATUS_DISABLED {
		t.Fatalf("failback of a disabled group: %v %v", fb, err)
	}
	holds(t, a, "volume-av1-cinder", "", 10<<20, 0x77, 1<<20)
	if m := members(t, a, "cinder-group"); !slices.Equal(m, []string{"volume-av1-cinder", "volume-av2-cinder"}) {
		t.Fatalf("after the failback the volumes are not in the protection group: %v", m)
	}
}

// TestGroupFailoverRewinds fails a group over after its primary died in
// the middle of a cycle: one member's newer snapshot reached the target,
// the other's did not. Both are promoted at the snapshot they share.
func TestGroupFailoverRewinds(t *testing.T) {
	s := startThreeSites(t)
	ctx := t.Context()
	dc := driverClient(t, s.d)
	a, b := s.a.Array("a"), s.b.Array("b")
	replicatedRG(t, s, dc)
	r := s.replicasOf(t)
	if _, err := r.SuspendReplica(ctx, groupReplicaName); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool {
		rep, err := r.GetReplica(ctx, groupReplicaName)
		return err == nil && rep.SyncState != array.SyncInProgress
	})
	point := newestGroupSnapshot(t, b, "volume-av1-cinder")
	if point != newestGroupSnapshot(t, b, "volume-av2-cinder") {
		t.Fatal("the members' newest group snapshots differ before the test made them")
	}
	// Half a cycle: a newer group snapshot of av1 only.
	fill(t, a, "volume-av1-cinder", 0, 0x99, 1<<20)
	if _, err := a.CreateSnapshot(ctx, "volume-av1-cinder", groupReplicaName+".9999", map[string]string{"volrep.replica": groupReplicaName}); err != nil {
		t.Fatal(err)
	}
	id, err := r.ReplicateSnapshot(ctx, array.SnapshotReplicateSpec{Volume: "volume-av1-cinder", Snapshot: groupReplicaName + ".9999", Link: "site-b", RemotePool: "cinder"})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.WatchOperation(ctx, id, func(o array.Operation) error {
		if o.State == array.OpFailed {
			return fmt.Errorf("%s", o.Err)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	holds(t, b, "volume-av1-cinder", "", 0, 0x99, 1<<20)
	s.a.Kill()

	// The primary is gone, so the CLI names the group's volumes.
	out, code := volrep(t, s.d, "-o", "json", "group", "failover", "rg", "--to", "site-b", "--volume", "av1", "--volume", "av2")
	var fo struct {
		GroupSnapshot string `json:"group_snapshot"`
	}
	if err := json.Unmarshal([]byte(out), &fo); code != 0 || err != nil {
		t.Fatalf("group failover (exit %d, %v):\n%s", code, err, out)
	}
	if fo.GroupSnapshot != point {
		t.Fatalf("promoted at %q, want %q, the newest group snapshot both members hold", fo.GroupSnapshot, point)
	}
	holds(t, b, "volume-av1-cinder", "", 0, 0x11, 1<<20)
	holds(t, b, "volume-av2-cinder", "", 0, 0x22, 1<<20)
	if s := newestGroupSnapshot(t, b, "volume-av1-cinder"); s != point {
		t.Fatalf("av1's newest group snapshot on the target is %s after the failover, want %s", s, point)
	}
	if vols, _ := b.ListVolumes(ctx, "cinder"); slices.ContainsFunc(vols, func(v array.Volume) bool { return strings.HasPrefix(v.Name, "rewind-") }) {
		t.Fatalf("scratch volumes left on the target: %v", vols)
	}
	fill(t, b, "volume-av1-cinder", 0, 0x77, 4096) // promoted: writable
}
