package e2e

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/volrep/volrep/array"
	"github.com/volrep/volrep/errdefs"
	driverv1 "github.com/volrep/volrep/proto/volrep/driver/v1"
)

// threeSites runs production's layout: array A and array B each in their
// own process, and the driver in a third, so an array can die while the
// driver lives on.
type threeSites struct {
	a, b, d *Daemon
}

func arrayOnly(t *testing.T, name, listen, nbd, token string) *Daemon {
	d := &Daemon{t: t, Dir: t.TempDir(), DriverAddr: freePort(t)}
	d.WriteRaw(fmt.Sprintf("[volrep]\ndriver_listen = %s\n\n[array:%s]\ndata_dir = %s/%s\nlisten = %s\nnbd_listen = %s\napi_token = %s\n",
		d.DriverAddr, name, d.Dir, name, listen, nbd, token))
	d.WaitFor("")
	return d
}

func startThreeSites(t *testing.T) *threeSites {
	t.Helper()
	addrA, addrB := freePort(t), freePort(t)
	s := &threeSites{
		a: arrayOnly(t, "site-a", addrA, freePort(t), "ta"),
		b: arrayOnly(t, "site-b", addrB, freePort(t), "tb"),
		d: &Daemon{t: t, Dir: t.TempDir(), DriverAddr: freePort(t)},
	}
	s.a.ArrayA, s.a.TokenA = addrA, "ta"
	s.b.ArrayB, s.b.TokenB = addrB, "tb"
	s.a.Start()
	s.b.Start()
	s.d.WriteRaw(fmt.Sprintf(`[DEFAULT]
enabled_backends = puredriver-1

[volrep]
driver_listen = %s
state_dir = %s/state

[puredriver-1]
san_ip = %s
pure_api_token = ta
replication_device = backend_id:site-b,san_ip:%s,api_token:tb,type:async
replication_device = backend_id:site-b-sync,san_ip:%s,api_token:tb,type:sync
pure_replica_interval_default = 2
pure_replica_retention_short_term_default = 3600
volrep_sync_timeout = 500
`, s.d.DriverAddr, s.d.Dir, addrA, addrB, addrB))
	s.d.WaitFor("backend/puredriver-1")
	s.d.Start()
	return s
}

var asyncType = &driverv1.VolumeType{Name: "async", ExtraSpecs: map[string]string{"replication_enabled": "<is> True", "replication_type": "<in> async"}}

func qio(t *testing.T, uri string, cmds ...string) {
	t.Helper()
	args := []string{"-f", "raw"}
	for _, c := range cmds {
		args = append(args, "-c", c)
	}
	out, err := run(t, false, tool(t, "qemu-io"), append(args, uri)...)
	if strings.Contains(out, "Pattern verification failed") {
		t.Fatalf("qemu-io %v: %s", cmds, out)
	}
	_ = err
}

// TestDRDrill: write to async and sync volumes, let them replicate, kill
// the primary array, fail over, read and write on the secondary, bring the
// primary back, fail back, and check everything is home having sent only
// what was written since the failover.
func TestDRDrill(t *testing.T) {
	s := startThreeSites(t)
	ctx := t.Context()
	dc := driverClient(t, s.d)
	const be = "puredriver-1"
	for _, v := range []struct {
		id string
		vt *driverv1.VolumeType
	}{{"av", asyncType}, {"sv", syncType}, {"plain", nil}} {
		if _, err := dc.CreateVolume(ctx, &driverv1.CreateVolumeRequest{Backend: be, VolumeId: v.id, SizeGb: 1, VolumeType: v.vt}); err != nil {
			t.Fatal(err)
		}
	}
	qio(t, attachURI(t, dc, be, "av"), "write -P 0x11 0 4M", "flush")
	qio(t, attachURI(t, dc, be, "sv"), "write -P 0x22 0 4M", "flush")
	healthy := func(id string) bool {
		r, err := dc.GetReplicationInfo(ctx, &driverv1.GetReplicationInfoRequest{Backend: be, VolumeId: id})
		return err == nil && r.GetStatus() == driverv1.ReplicationHealth_REPLICATION_HEALTH_HEALTHY
	}
	waitFor(t, func() bool { return healthy("av") && healthy("sv") })
	// The async volume's first replicated snapshot must hold the write.
	waitFor(t, func() bool {
		snaps, err := s.b.Array("b").ListSnapshots(ctx, "volume-av-cinder")
		if err != nil || len(snaps) == 0 {
			return false
		}
		got := make([]byte, 4096)
		return s.b.Array("b").ReadSnapshot(ctx, "volume-av-cinder", snaps[len(snaps)-1].Name, 0, got) == nil && got[0] == 0x11
	})
	qio(t, attachURI(t, dc, be, "sv"), "write -P 0x23 8M 1M", "flush") // sync: on B before the ack

	s.a.Kill()
	fo, err := dc.FailoverHost(ctx, &driverv1.FailoverHostRequest{Backend: be, VolumeIds: []string{"av", "sv", "plain"}})
	if err != nil {
		t.Fatal(err)
	}
	if fo.GetActiveBackendId() != "site-b-sync" {
		t.Fatalf("failover chose %q, want the sync target whose pod was in sync", fo.GetActiveBackendId())
	}
	updates := map[string]*driverv1.ModelUpdate{}
	for _, u := range fo.GetVolumeUpdates() {
		updates[u.GetVolumeId()] = u.GetUpdates()
	}
	for _, id := range []string{"av", "sv"} {
		if updates[id].GetReplicationStatus() != driverv1.ReplicationStatus_REPLICATION_STATUS_FAILED_OVER {
			t.Fatalf("%s after failover: %v", id, updates[id])
		}
	}
	if updates["plain"].GetStatus() != "error" {
		t.Fatalf("unreplicated volume after failover: %v", updates["plain"])
	}

	// The secondary serves the data over NBD.
	svURI, avURI := attachURI(t, dc, be, "sv"), attachURI(t, dc, be, "av")
	if !strings.Contains(svURI, s.b.NBDAddr()) {
		t.Fatalf("after failover the volume is attached at %s, not on the secondary %s", svURI, s.b.NBDAddr())
	}
	qio(t, svURI, "read -P 0x22 0 4M", "read -P 0x23 8M 1M")
	qio(t, avURI, "read -P 0x11 0 4M")
	// The async volume is its newest replicated snapshot, nothing partial.
	b := s.b.Array("b")
	snaps, _ := b.ListSnapshots(ctx, "volume-av-cinder")
	newest := snaps[len(snaps)-1]
	want, got := make([]byte, 16<<20), make([]byte, 16<<20)
	b.ReadSnapshot(ctx, "volume-av-cinder", newest.Name, 0, want)
	b.ReadVolume(ctx, "volume-av-cinder", 0, got)
	if !bytes.Equal(want, got) {
		t.Fatalf("the promoted async volume differs from its newest replicated snapshot %s", newest.Name)
	}

	// A restarted driver is still failed over.
	s.d.Stop()
	s.d.Start()
	dc = driverClient(t, s.d)
	bl, err := dc.ListBackends(ctx, &driverv1.ListBackendsRequest{})
	if err != nil || bl.GetBackends()[0].GetActiveBackendId() != "site-b-sync" {
		t.Fatalf("after a restart: %v, %v", bl, err)
	}

	// Write on the secondary: 3 MiB in all.
	qio(t, attachURI(t, dc, be, "sv"), "write -P 0x44 16M 2M", "flush")
	qio(t, attachURI(t, dc, be, "av"), "write -P 0x55 20M 1M", "flush")

	s.a.Start()
	cctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	fb, err := dc.FailoverHost(cctx, &driverv1.FailoverHostRequest{Backend: be, VolumeIds: []string{"av", "sv", "plain"}, SecondaryId: "default"})
	if err != nil {
		t.Fatal(err)
	}
	written := int64(3 << 20)
	t.Logf("failback sent %d bytes for %d written since the failover (%.2fx)", fb.GetFailbackBytes(), written, float64(fb.GetFailbackBytes())/float64(written))
	if fb.GetActiveBackendId() != "default" || fb.GetFailbackBytes() > written*11/10 || fb.GetFailbackBytes() < written {
		t.Fatalf("failback: %v", fb)
	}
	// Everything is home, and served from there.
	a := s.a.Array("a")
	check := func(vol string, off, n int64, pat byte) {
		t.Helper()
		got := make([]byte, n)
		if err := a.ReadVolume(ctx, vol, off, got); err != nil || !bytes.Equal(got, bytes.Repeat([]byte{pat}, int(n))) {
			t.Fatalf("%s [%d,+%d) on the primary is not %#x (%v)", vol, off, n, pat, err)
		}
	}
	check("volume-sv-cinder", 0, 4<<20, 0x22)
	check("volume-sv-cinder", 8<<20, 1<<20, 0x23)
	check("volume-sv-cinder", 16<<20, 2<<20, 0x44)
	check("volume-av-cinder", 0, 4<<20, 0x11)
	check("volume-av-cinder", 20<<20, 1<<20, 0x55)
	if v, err := a.GetVolume(ctx, "volume-sv-cinder"); err != nil || v.ReadOnly {
		t.Fatalf("the primary's copy is not writable after failback: %+v %v", v, err)
	}
	if v, err := b.GetVolume(ctx, "volume-sv-cinder"); err != nil || !v.ReadOnly {
		t.Fatalf("the secondary's copy is not a replica target again: %+v %v", v, err)
	}
	uri := attachURI(t, dc, be, "sv")
	if !strings.Contains(uri, s.a.NBDAddr()) {
		t.Fatalf("after failback the volume is attached at %s, not at home %s", uri, s.a.NBDAddr())
	}
	qio(t, uri, "write -P 0x66 30M 1M", "flush")
	// The pod mirrors again.
	cctx2, cancel2 := context.WithTimeout(ctx, 30*time.Second)
	defer cancel2()
	if _, err := s.replicasOf(t).SyncReplica(cctx2, "cinder-pod.site-b-sync", true); err != nil {
		t.Fatal(err)
	}
	got = make([]byte, 1<<20)
	if err := b.ReadVolume(ctx, "volume-sv-cinder", 30<<20, got); err != nil || got[0] != 0x66 {
		t.Fatalf("the pod does not mirror after failback (%v, %#x)", err, got[0])
	}
	_ = array.PeerOnline
}

// TestFailoverHostErrors is the table of refusals.
func TestFailoverHostErrors(t *testing.T) {
	s := startThreeSites(t)
	ctx := t.Context()
	dc := driverClient(t, s.d)
	refuse := func(t *testing.T, secondary string, want errdefs.Kind, msg string) {
		t.Helper()
		_, err := dc.FailoverHost(ctx, &driverv1.FailoverHostRequest{Backend: "puredriver-1", SecondaryId: secondary})
		if got := errdefs.KindOf(err); got != want || !strings.Contains(err.Error(), msg) {
			t.Fatalf("failover to %q: got %v (%v), want %v mentioning %q", secondary, got, err, want, msg)
		}
	}
	// Refusals must leave the backend where it was, so each is asked
	// in the state it guards.
	refuse(t, "default", errdefs.KindFailedPrecondition, "not failed over")
	refuse(t, "nowhere", errdefs.KindInvalidArgument, "configured: [site-b, site-b-sync]")
	if _, err := dc.FailoverHost(ctx, &driverv1.FailoverHostRequest{Backend: "puredriver-1", SecondaryId: "site-b"}); err != nil {
		t.Fatal(err)
	}
	refuse(t, "site-b", errdefs.KindInvalidArgument, "already serves")
	refuse(t, "site-b-sync", errdefs.KindFailedPrecondition, "fail back to \"default\" before")
	if _, err := dc.FailoverHost(ctx, &driverv1.FailoverHostRequest{Backend: "puredriver-1", SecondaryId: "default"}); err != nil {
		t.Fatal(err)
	}
	refuse(t, "default", errdefs.KindFailedPrecondition, "not failed over")
}

func (s *threeSites) replicasOf(t *testing.T) array.Replication {
	return (&sites{a: s.a}).replicas(t)
}

// NBDAddr is the NBD address of the daemon's one array.
func (d *Daemon) NBDAddr() string {
	cfg, _ := readFile(d.Conf)
	for _, line := range strings.Split(cfg, "\n") {
		if strings.HasPrefix(line, "nbd_listen = ") {
			return strings.TrimPrefix(line, "nbd_listen = ")
		}
	}
	return ""
}
