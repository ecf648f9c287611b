package e2e

import (
	"bytes"
	"context"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/volrep/volrep/array"
	driverv1 "github.com/volrep/volrep/proto/volrep/driver/v1"
	"github.com/volrep/volrep/server"

	"github.com/volrep/volrep/array/client"
)

// sites runs the two halves of a replicated deployment as two processes:
// site-a hosts the primary array and the driver, site-b hosts the target
// array, as an operator would run them in two places.
type sites struct {
	a, b *Daemon
}

func startSites(t *testing.T, backend string) *sites {
	t.Helper()
	return startSitesWith(t, "puredriver-1", backend)
}

// startSitesWith is startSites with enabled_backends of the test's choosing.
func startSitesWith(t *testing.T, enabled, backend string) *sites {
	t.Helper()
	return startSitesISCSI(t, enabled, backend, false)
}

// startSitesISCSI is startSitesWith, site-a serving iSCSI on one portal
// (a.ISCSIA) when iscsi is set.
func startSitesISCSI(t *testing.T, enabled, backend string, iscsi bool) *sites {
	t.Helper()
	a := NewDaemon(t)
	iscsiLine := ""
	if iscsi {
		a.ISCSIA = freePort(t)
		iscsiLine = "iscsi_listen = " + a.ISCSIA
	}
	b := &Daemon{t: t, Dir: t.TempDir(), DriverAddr: freePort(t), ArrayB: a.ArrayB, NBDB: a.NBDB, TokenB: a.TokenB}
	iscsiLineB := ""
	if iscsi {
		// The pod's peer serves its copies too (uniform access).
		b.ISCSIB = freePort(t)
		iscsiLineB = "iscsi_listen = " + b.ISCSIB
	}
	b.WriteRaw(fmt.Sprintf(`[volrep]
driver_listen = %s

[array:site-b]
data_dir = %s/site-b
listen = %s
nbd_listen = %s
api_token = %s
%s
`, b.DriverAddr, b.Dir, b.ArrayB, b.NBDB, b.TokenB, iscsiLineB))
	b.WaitFor("")
	b.Start()
	a.WriteRaw(fmt.Sprintf(`[DEFAULT]
enabled_backends = %s

[volrep]
driver_listen = %s
state_dir = %s/driver

[array:site-a]
data_dir = %s/site-a
listen = %s
nbd_listen = %s
api_token = %s
%s

[puredriver-1]
%s
`, enabled, a.DriverAddr, a.Dir, a.Dir, a.ArrayA, a.NBDA, a.TokenA, iscsiLine, strings.NewReplacer(
		"SITE_A", a.ArrayA, "TOKEN_A", a.TokenA, "SITE_B", a.ArrayB, "TOKEN_B", a.TokenB).Replace(backend)))
	a.WaitFor("backend/puredriver-1")
	a.Start()
	return &sites{a: a, b: b}
}

// attachURI attaches a volume to a host and returns its NBD URI.
func attachURI(t *testing.T, dc driverv1.DriverServiceClient, backend, vol string) string {
	t.Helper()
	r, err := dc.InitializeConnection(t.Context(), &driverv1.InitializeConnectionRequest{Backend: backend, VolumeId: vol,
		Connector: &driverv1.Connector{Host: "compute-1"}})
	if err != nil {
		t.Fatal(err)
	}
	return r.GetConnectionInfo().GetData()["uri"]
}

// seedBackend is the backend section of seed 003's lab, addresses filled in.
const seedBackend = `volume_backend_name = puredriver-1
volume_driver = cinder.volume.drivers.pure.PureISCSIDriver
san_ip = SITE_A
pure_api_token = TOKEN_A
use_multipath_for_image_xfer = True
replication_device = backend_id:pure2-async,san_ip:SITE_B,api_token:TOKEN_B,type:async
pure_replica_interval_default = 3600
pure_replica_retention_short_term_default = 86400
pure_replica_retention_long_term_per_day_default = 5
pure_replica_retention_long_term_default = 7
`

func (s *sites) replicas(t *testing.T) array.Replication {
	cc, err := server.Dial(s.a.ArrayA, s.a.TokenA)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return client.NewReplication(cc)
}

// TestSeedAsyncReplication starts the seed's lab configuration, creates a
// volume of an async volume type with grpcurl, writes to it over NBD and
// finds the bytes in the newest replicated snapshot on the target array.
func TestSeedAsyncReplication(t *testing.T) {
	grpcurl := tool(t, "grpcurl")
	qemuIO := tool(t, "qemu-io")
	s := startSites(t, seedBackend)
	out, _ := run(t, false, grpcurl, "-plaintext", "-d", `{"backend":"puredriver-1","volume_id":"vol-async","size_gb":1,
		"volume_type":{"name":"replicated","extra_specs":{"replication_enabled":"<is> True","replication_type":"<in> async"}}}`,
		s.a.DriverAddr, "volrep.driver.v1.DriverService/CreateVolume")
	if !strings.Contains(out, "REPLICATION_STATUS_ENABLED") {
		t.Fatalf("CreateVolume of an async type:\n%s", out)
	}
	dc := driverClient(t, s.a)
	uri := attachURI(t, dc, "puredriver-1", "vol-async")
	run(t, false, qemuIO, "-f", "raw", "-c", "write -P 0x5c 0 4M", "-c", "write -P 0xa7 100M 3M", "-c", "flush", uri)
	// Replicate now rather than in an hour, as an operator would.
	rep, err := s.replicas(t).SyncReplica(t.Context(), "cinder-group.pure2-async", true)
	if err != nil {
		t.Fatal(err)
	}
	if rep.State != array.StateActive || rep.Interval != time.Hour || rep.TargetRetention.AllFor != 24*time.Hour || rep.TargetRetention.PerDay != 5 {
		t.Fatalf("protection group replica: %+v", rep)
	}
	b := s.b.Array("b")
	snaps, err := b.ListSnapshots(t.Context(), "volume-vol-async-cinder")
	if err != nil || len(snaps) == 0 {
		t.Fatalf("no replicated snapshots on the target: %v", err)
	}
	newest := snaps[len(snaps)-1]
	if newest.Name != rep.LastSnapshot {
		t.Fatalf("newest target snapshot %s, replica says %s", newest.Name, rep.LastSnapshot)
	}
	src := s.a.Array("a")
	want, got := make([]byte, 4<<20), make([]byte, 4<<20)
	for _, off := range []int64{0, 100 << 20, 101 << 20} {
		if err := src.ReadVolume(t.Context(), "volume-vol-async-cinder", off, want); err != nil {
			t.Fatal(err)
		}
		if err := b.ReadSnapshot(t.Context(), "volume-vol-async-cinder", newest.Name, off, got); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(want, got) || (off == 0 && got[0] != 0x5c) {
			t.Fatalf("target snapshot %s differs from what was written at %d", newest.Name, off)
		}
	}
	info, err := dc.GetReplicationInfo(t.Context(), &driverv1.GetReplicationInfoRequest{Backend: "puredriver-1", VolumeId: "vol-async"})
	if err != nil || info.GetStatus() != driverv1.ReplicationHealth_REPLICATION_HEALTH_HEALTHY || info.GetLastSyncBytes() < 7<<20 {
		t.Fatalf("GetReplicationInfo = %v, %v", info, err)
	}
	// The stats advertise what the scheduler's filters need.
	st, err := dc.GetVolumeStats(t.Context(), &driverv1.GetVolumeStatsRequest{Backend: "puredriver-1", Refresh: true})
	if err != nil || !st.GetReplicationEnabled() || !slices.Equal(st.GetReplicationTargets(), []string{"pure2-async"}) ||
		!slices.Equal(st.GetReplicationType(), []string{"async"}) || st.GetReplicationCount() != 1 {
		t.Fatalf("stats = %v, %v", st, err)
	}
}

// TestAsyncTargetOutage stops the target array's process for three
// intervals, then starts it again: the volume's replication is DEGRADED
// meanwhile and HEALTHY again after one delta.
func TestAsyncTargetOutage(t *testing.T) {
	qemuIO := tool(t, "qemu-io")
	backend := strings.Replace(seedBackend, "pure_replica_interval_default = 3600", "pure_replica_interval_default = 2", 1)
	s := startSites(t, backend)
	dc := driverClient(t, s.a)
	spec := &driverv1.VolumeType{Name: "async", ExtraSpecs: map[string]string{"replication_enabled": "<is> True"}}
	if _, err := dc.CreateVolume(t.Context(), &driverv1.CreateVolumeRequest{Backend: "puredriver-1", VolumeId: "v", SizeGb: 1, VolumeType: spec}); err != nil {
		t.Fatal(err)
	}
	uri := attachURI(t, dc, "puredriver-1", "v")
	info := func() *driverv1.GetReplicationInfoResponse {
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		r, err := dc.GetReplicationInfo(ctx, &driverv1.GetReplicationInfoRequest{Backend: "puredriver-1", VolumeId: "v"})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	waitFor(t, func() bool { return info().GetStatus() == driverv1.ReplicationHealth_REPLICATION_HEALTH_HEALTHY })
	before, err := s.b.Array("b").ListSnapshots(t.Context(), "volume-v-cinder")
	if err != nil {
		t.Fatal(err)
	}
	s.b.Stop()
	run(t, false, qemuIO, "-f", "raw", "-c", "write -P 0x11 0 2M", "-c", "write -P 0x22 512M 1M", "-c", "flush", uri)
	wrote := time.Now()
	// The next interval's cycle finds the target gone.
	var r *driverv1.GetReplicationInfoResponse
	waitFor(t, func() bool {
		r = info()
		return r.GetStatus() == driverv1.ReplicationHealth_REPLICATION_HEALTH_DEGRADED
	})
	// The cycle that failed first may have taken its snapshot between the
	// target's stop and the write; the outage lasts until one taken after
	// the write has failed too, so what is shipped first when the target
	// is back (the newest snapshot not yet sent) must hold the write.
	waitFor(t, func() bool {
		snaps, err := s.a.Array("a").ListSnapshots(t.Context(), "volume-v-cinder")
		return err == nil && slices.ContainsFunc(snaps, func(sn array.Snapshot) bool { return sn.Created.After(wrote) })
	})
	if !strings.Contains(r.GetStatusMessage(), "unreachable") {
		t.Fatalf("during the outage: %v", r)
	}
	// The driver tells the target's story under its backend_id, the field
	// an operator filters the journal by.
	unhealthy := regexp.MustCompile(`msg="replication target unhealthy" backend=puredriver-1 backend_id=pure2-async .*problem="degraded: `)
	waitFor(t, func() bool { return unhealthy.MatchString(s.a.Logs()) })
	s.b.Start()
	waitFor(t, func() bool { return info().GetStatus() == driverv1.ReplicationHealth_REPLICATION_HEALTH_HEALTHY })
	after, err := s.b.Array("b").ListSnapshots(t.Context(), "volume-v-cinder")
	if err != nil {
		t.Fatal(err)
	}
	// Catching up is one delta: the first snapshot on the target after the
	// outage carries everything written during it.
	var first *array.Snapshot
	for i, sn := range after {
		if !slices.ContainsFunc(before, func(b array.Snapshot) bool { return b.GUID == sn.GUID }) {
			first = &after[i]
			break
		}
	}
	if first == nil {
		t.Fatal("nothing replicated after the outage")
	}
	got := make([]byte, 1<<20)
	if err := s.b.Array("b").ReadSnapshot(t.Context(), "volume-v-cinder", first.Name, 512<<20, got); err != nil || got[0] != 0x22 {
		t.Fatalf("the first snapshot after the outage (%s) lacks the outage's writes: %v %x", first.Name, err, got[0])
	}
	logs := s.a.Logs()
	if !strings.Contains(logs, "replication failed; retrying with backoff") || !strings.Contains(logs, "replication recovered") {
		t.Fatalf("the outage and recovery are not in the log:\n%s", logs)
	}
	waitFor(t, func() bool {
		return strings.Contains(s.a.Logs(), `msg="replication target healthy again" backend=puredriver-1 backend_id=pure2-async`)
	})
}
