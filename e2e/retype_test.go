package e2e

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/volrep/volrep/array"
	"github.com/volrep/volrep/array/client"
	"github.com/volrep/volrep/server"

	driverv1 "github.com/volrep/volrep/proto/volrep/driver/v1"
)

// TestRetypeSyncLegs retypes one volume none → sync → async → sync through
// the driver API, on a backend with an async target (site-b) and a sync
// one (site-c), and checks on the arrays themselves where the volume is
// replicated after each leg: in the pod with its writes on the peer at
// once, or in the protection group with its data in the target's snapshot.
func TestRetypeSyncLegs(t *testing.T) {
	ctx := t.Context()
	peers := &Daemon{t: t, Dir: t.TempDir(), DriverAddr: freePort(t)}
	addrB, addrC := freePort(t), freePort(t)
	peers.WriteRaw(fmt.Sprintf(`[volrep]
driver_listen = %s

[array:site-b]
data_dir = %s/b
listen = %s
api_token = tb

[array:site-c]
data_dir = %s/c
listen = %s
api_token = tc
`, peers.DriverAddr, peers.Dir, addrB, peers.Dir, addrC))
	peers.WaitFor("")
	peers.Start()
	a := NewDaemon(t)
	a.WriteRaw(fmt.Sprintf(`[DEFAULT]
enabled_backends = puredriver-1

[volrep]
driver_listen = %s
state_dir = %s/driver

[array:site-a]
data_dir = %s/site-a
listen = %s
api_token = %s

[puredriver-1]
volume_backend_name = puredriver-1
san_ip = %s
pure_api_token = %s
replication_device = backend_id:pure2-async,san_ip:%s,api_token:tb,type:async
replication_device = backend_id:pure3-sync,san_ip:%s,api_token:tc,type:sync
volrep_sync_timeout = 2000
`, a.DriverAddr, a.Dir, a.Dir, a.ArrayA, a.TokenA, a.ArrayA, a.TokenA, addrB, addrC))
	a.WaitFor("backend/puredriver-1")
	a.Start()

	dc := driverClient(t, a)
	primary := a.Array("a")
	dial := func(addr, token string) array.Array {
		cc, err := server.Dial(addr, token)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cc.Close() })
		return client.New(cc)
	}
	siteB, siteC := dial(addrB, "tb"), dial(addrC, "tc")
	const vol = "volume-rv-cinder"
	if _, err := dc.CreateVolume(ctx, &driverv1.CreateVolumeRequest{Backend: "puredriver-1", VolumeId: "rv", SizeGb: 1}); err != nil {
		t.Fatal(err)
	}
	write := func(off int64, b byte) []byte {
		t.Helper()
		p := bytes.Repeat([]byte{b}, 64<<10)
		if err := primary.WriteVolume(ctx, vol, off, p, false); err != nil {
			t.Fatalf("write at %d: %v", off, err)
		}
		return p
	}
	readOn := func(arr array.Array, off int64, n int) []byte {
		t.Helper()
		p := make([]byte, n)
		if err := arr.ReadVolume(ctx, vol, off, p); err != nil {
			t.Fatalf("read %s at %d: %v", vol, off, err)
		}
		return p
	}
	members := func(group string) []string {
		t.Helper()
		g, err := primary.GetGroup(ctx, group)
		if err != nil {
			t.Fatalf("group %s on the primary: %v", group, err)
		}
		return g.Members
	}
	retype := func(to *driverv1.VolumeType) {
		t.Helper()
		r, err := dc.Retype(ctx, &driverv1.RetypeRequest{Backend: "puredriver-1", VolumeId: "rv", NewType: to})
		if err != nil || !r.GetRetyped() || r.GetModelUpdate().GetReplicationStatus() != driverv1.ReplicationStatus_REPLICATION_STATUS_ENABLED {
			t.Fatalf("retype to %s: %v, %v\n%s", to.GetName(), r, err, a.Logs())
		}
	}
	// inPod checks the volume is a pod member and mirrored: the peer holds
	// what was written before, and a new write is there when it returns.
	inPod := func(leg string, before []byte) {
		t.Helper()
		if !slices.Contains(members("cinder-pod"), vol) || slices.Contains(members("cinder-group"), vol) {
			t.Fatalf("%s: pod %v, protection group %v", leg, members("cinder-pod"), members("cinder-group"))
		}
		if got := readOn(siteC, 0, len(before)); !bytes.Equal(got, before) {
			t.Fatalf("%s: the sync peer lacks what was written before the retype", leg)
		}
		p := write(1<<20, before[0]+1)
		if got := readOn(siteC, 1<<20, len(p)); !bytes.Equal(got, p) {
			t.Fatalf("%s: a write acknowledged on the primary is not on the sync peer", leg)
		}
	}

	first := write(0, 0x31)
	retype(syncType)
	inPod("none → sync", first)

	asyncType := &driverv1.VolumeType{Name: "async", ExtraSpecs: map[string]string{
		"replication_enabled": "<is> True", "replication_type": "<in> async"}}
	retype(asyncType)
	if slices.Contains(members("cinder-pod"), vol) || !slices.Contains(members("cinder-group"), vol) {
		t.Fatalf("sync → async: pod %v, protection group %v", members("cinder-pod"), members("cinder-group"))
	}
	second := write(0, 0x51)
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	rep, err := (&sites{a: a}).replicas(t).SyncReplica(sctx, "cinder-group.pure2-async", true)
	if err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(second))
	if err := siteB.ReadSnapshot(ctx, vol, rep.LastSnapshot, 0, got); err != nil || !bytes.Equal(got, second) {
		t.Fatalf("sync → async: the async target's %s lacks the volume's data (%v)", rep.LastSnapshot, err)
	}

	third := write(0, 0x71)
	retype(syncType)
	inPod("async → sync", third)
	if slices.Contains(members("cinder-group"), vol) {
		t.Fatalf("async → sync left the volume in the protection group: %v", members("cinder-group"))
	}
}
