package driver

import (
	"context"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/volrep/volrep/array"
	"github.com/volrep/volrep/config"
	"github.com/volrep/volrep/driver/extraspecs"
	"github.com/volrep/volrep/errdefs"
)

// memArray keeps volumes and groups in maps: enough of an array for the
// driver's bookkeeping of which volume replicates how.
type memArray struct {
	array.Array
	mu     sync.Mutex
	vols   map[string]array.Volume
	groups map[string]array.Group
}

func newMemArray() *memArray {
	return &memArray{vols: map[string]array.Volume{}, groups: map[string]array.Group{}}
}

func (a *memArray) CreateVolume(_ context.Context, spec array.VolumeSpec) (array.Volume, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	v := array.Volume{Name: spec.Name, Pool: spec.Pool, SizeBytes: spec.SizeBytes, Labels: spec.Labels}
	a.vols[spec.Name] = v
	return v, nil
}

func (a *memArray) GetVolume(_ context.Context, name string) (array.Volume, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	v, ok := a.vols[name]
	if !ok {
		return v, errdefs.NotFound("volume %s not found", name)
	}
	return v, nil
}

func (a *memArray) ListVolumes(_ context.Context, pool string) ([]array.Volume, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []array.Volume
	for _, v := range a.vols {
		if pool == "" || v.Pool == pool {
			out = append(out, v)
		}
	}
	return out, nil
}

func (a *memArray) CreateGroup(_ context.Context, name, pool string, labels map[string]string) (array.Group, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if g, ok := a.groups[name]; ok {
		return g, nil
	}
	a.groups[name] = array.Group{Name: name, Pool: pool, Labels: labels}
	return a.groups[name], nil
}

func (a *memArray) GetGroup(_ context.Context, name string) (array.Group, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	g, ok := a.groups[name]
	if !ok {
		return g, errdefs.NotFound("group %s not found", name)
	}
	return g, nil
}

func (a *memArray) ListGroups(context.Context) ([]array.Group, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []array.Group
	for _, g := range a.groups {
		out = append(out, g)
	}
	return out, nil
}

func (a *memArray) AddMembers(_ context.Context, group string, names []string) (array.Group, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	g := a.groups[group]
	g.Members = append(g.Members, names...)
	a.groups[group] = g
	return g, nil
}

// pod is a Replication whose pod cannot reach its peer: SyncReplica fails
// and GetReplica tells the state and why.
type podRepl struct {
	array.Replication
	syncErr error
	rep     array.Replica
}

func (r podRepl) SyncReplica(context.Context, string, bool) (array.Replica, error) {
	return array.Replica{}, r.syncErr
}

func (r podRepl) GetReplica(_ context.Context, name string) (array.Replica, error) {
	rep := r.rep
	rep.Name = name
	return rep, nil
}

func upBackend(cfg config.Backend, primary Conn) *Backend {
	opts := Options{}
	opts.defaults()
	b := newBackend(config.Backend{Problems: config.Problems{{Message: "not dialled in tests"}}}, opts)
	b.cfg, b.primary, b.up, b.reason = cfg, primary, true, ""
	b.log = slog.New(slog.DiscardHandler)
	return b
}

var syncSpecs = VolumeType{Name: "sync", ExtraSpecs: map[string]string{"replication_enabled": "<is> True", "replication_type": "<in> sync"}}

// TestFirstSyncFailedIsNotEnabled: a pod volume whose first copy did not
// reach the peer is not reported enabled: error while nothing copies it,
// enabling while the pod is copying, and GetReplicationInfo says why.
func TestFirstSyncFailedIsNotEnabled(t *testing.T) {
	cfg := config.Backend{Section: "b1", PGName: "cinder-group", PodName: "cinder-pod", Pool: "cinder",
		ReplicationDevices: []config.ReplicationDevice{{BackendID: "site-b", SanIP: "b:7401", Type: "sync"}}}
	const reason = "link site-b to 10.0.0.2:7401: connection refused"
	for _, tc := range []struct {
		peer, want, why string
	}{
		{array.PeerOffline, ReplError, reason},
		{array.PeerResyncing, ReplEnabling, "resyncing the peer: 1048576 bytes to go"},
	} {
		arr := newMemArray()
		b := upBackend(cfg, Conn{Array: arr, Replication: podRepl{syncErr: errdefs.Unavailable("%s", reason),
			rep: array.Replica{State: array.StateDegraded, PeerState: tc.peer, Message: reason, DirtyBytes: 1 << 20}}})
		mu, err := b.CreateVolume(t.Context(), "v1", 1, syncSpecs, "")
		if err != nil {
			t.Fatal(err)
		}
		if mu.ReplicationStatus != tc.want {
			t.Errorf("peer %s: CreateVolume reports %q, want %q", tc.peer, mu.ReplicationStatus, tc.want)
		}
		info, err := b.GetReplicationInfo(t.Context(), "v1")
		if err != nil {
			t.Fatal(err)
		}
		if info.Status == Healthy || !strings.Contains(info.Message, tc.why) {
			t.Errorf("peer %s: GetReplicationInfo %s %q, want the reason %q", tc.peer, info.Status, info.Message, tc.why)
		}
	}
}

// TestListVolumesSeesReplicatingGroups: a member of a replicating Cinder
// group is replicated (async), as GetVolume and GetReplicationInfo say.
func TestListVolumesSeesReplicatingGroups(t *testing.T) {
	cfg := config.Backend{Section: "b1", PGName: "cinder-group", PodName: "cinder-pod", Pool: "cinder"}
	arr := newMemArray()
	ctx := t.Context()
	for _, id := range []string{"in-pg", "in-pod", "in-group", "plain", "other-backends-group"} {
		arr.CreateVolume(ctx, array.VolumeSpec{Name: volumeName(id), Pool: "cinder", SizeBytes: gib})
	}
	arr.CreateGroup(ctx, "cinder-group", "cinder", nil)
	arr.AddMembers(ctx, "cinder-group", []string{volumeName("in-pg")})
	arr.CreateGroup(ctx, "cinder-pod", "cinder", nil)
	arr.AddMembers(ctx, "cinder-pod", []string{volumeName("in-pod")})
	arr.CreateGroup(ctx, groupName("g1"), "cinder", map[string]string{labelBackend: "b1", labelGroupReplication: "true"})
	arr.AddMembers(ctx, groupName("g1"), []string{volumeName("in-group")})
	arr.CreateGroup(ctx, groupName("g2"), "cinder", map[string]string{labelBackend: "b2", labelGroupReplication: "true"})
	arr.AddMembers(ctx, groupName("g2"), []string{volumeName("other-backends-group")})
	b := upBackend(cfg, Conn{Array: arr})
	vols, err := b.ListVolumes(ctx)
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
		one, err := b.GetVolume(ctx, v.ID)
		if err != nil || one.ReplicationStatus != v.ReplicationStatus {
			t.Errorf("GetVolume(%s) = %q, %v; ListVolumes said %q", v.ID, one.ReplicationStatus, err, v.ReplicationStatus)
		}
	}
	if ids := func() (out []string) {
		for _, v := range vols {
			out = append(out, v.ID)
		}
		slices.Sort(out)
		return
	}(); len(ids) != len(want) {
		t.Errorf("ListVolumes listed %v", ids)
	}
}
