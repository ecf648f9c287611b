package e2e

import (
	"encoding/json"
	"strings"
	"testing"

	driverv1 "github.com/volrep/volrep/proto/volrep/driver/v1"
)

// replicaAttachment is what `volrep -o json volume attach --at` prints.
type replicaAttachment struct {
	ConnectionInfo struct {
		DriverVolumeType string            `json:"driver_volume_type"`
		Data             map[string]string `json:"data"`
	} `json:"connection_info"`
	Snapshot string `json:"snapshot"`
}

// TestAttachReplicaAtTarget is a DR test without a failover: a pattern
// written over NBD to an async volume is replicated, the CLI attaches the
// newest replicated snapshot at the target, qemu-io and nbdinfo read it
// there read-only, replication carries on while it is attached, and the
// CLI detaches it.
func TestAttachReplicaAtTarget(t *testing.T) {
	qemuIO, nbdinfo := tool(t, "qemu-io"), tool(t, "nbdinfo")
	s := startSites(t, seedBackend)
	dc := driverClient(t, s.a)
	async := &driverv1.VolumeType{Name: "replicated", ExtraSpecs: map[string]string{"replication_enabled": "<is> True", "replication_type": "<in> async"}}
	for id, vt := range map[string]*driverv1.VolumeType{"vol-dr": async, "vol-plain": nil} {
		if _, err := dc.CreateVolume(t.Context(), &driverv1.CreateVolumeRequest{Backend: "puredriver-1", VolumeId: id, SizeGb: 1, VolumeType: vt}); err != nil {
			t.Fatal(err)
		}
	}
	src := attachURI(t, dc, "puredriver-1", "vol-dr")
	run(t, false, qemuIO, "-f", "raw", src, "-c", "write -P 0x5c 0 4M", "-c", "write -P 0xa7 100M 3M", "-c", "flush")
	pg := s.replicas(t)
	rep, err := pg.SyncReplica(t.Context(), "cinder-group.pure2-async", true)
	if err != nil {
		t.Fatal(err)
	}

	// Refusals, each naming what to fix.
	for _, tc := range []struct {
		args []string
		code int // the CLI's exit status: 2 INVALID_ARGUMENT, 3 NOT_FOUND, 7 FAILED_PRECONDITION
		want string
	}{
		{[]string{"volume", "attach", "vol-dr", "--at", "nowhere"}, 2, `"nowhere" is not a replication target of backend puredriver-1`},
		{[]string{"volume", "attach", "vol-dr", "--at", "pure2-async", "--snapshot", "cinder-group.999"}, 3, `snapshot "cinder-group.999" of volume vol-dr is not at replication target pure2-async`},
		{[]string{"volume", "attach", "vol-plain", "--at", "pure2-async"}, 7, "has no replicated snapshot at replication target pure2-async yet"},
	} {
		out, code := volrep(t, s.a, tc.args...)
		if code != tc.code || !strings.Contains(out, tc.want) {
			t.Errorf("volrep %s: exit %d, want %d and a refusal with %q:\n%s", strings.Join(tc.args, " "), code, tc.code, tc.want, out)
		}
	}

	out, code := volrep(t, s.a, "-o", "json", "volume", "attach", "vol-dr", "--at", "pure2-async", "--snapshot", "latest")
	if code != 0 {
		t.Fatalf("volume attach --at (exit %d):\n%s", code, out)
	}
	var ra replicaAttachment
	if err := json.Unmarshal([]byte(out), &ra); err != nil {
		t.Fatalf("%v:\n%s", err, out)
	}
	uri := ra.ConnectionInfo.Data["uri"]
	if ra.Snapshot != rep.LastSnapshot || ra.ConnectionInfo.DriverVolumeType != "nbd" || ra.ConnectionInfo.Data["access_mode"] != "ro" ||
		!strings.Contains(uri, s.a.NBDB) {
		t.Fatalf("attached %+v; want the replica's last snapshot %s, read-only, on site-b's NBD %s", ra, rep.LastSnapshot, s.a.NBDB)
	}
	read := func(why string) {
		t.Helper()
		out, _ := run(t, false, qemuIO, "-r", "-f", "raw", uri, "-c", "read -P 0x5c 0 4M", "-c", "read -P 0 4M 1M", "-c", "read -P 0xa7 100M 3M")
		if strings.Contains(out, "failed") {
			t.Fatalf("%s: the replica at the target does not hold the pattern:\n%s", why, out)
		}
	}
	read("attached")
	if name := ra.ConnectionInfo.Data["export_name"]; name == "" || strings.Contains(s.a.Logs()+s.b.Logs(), name) {
		t.Fatalf("the export name %q is empty or in a log: it is the attachment's secret", name)
	}
	if out, err := run(t, true, nbdinfo, "--is", "read-only", uri); err != nil {
		t.Fatalf("nbdinfo --is read-only: %v\n%s", err, out)
	}
	if out, err := run(t, true, qemuIO, "-f", "raw", uri, "-c", "write -P 0xcc 0 4096"); err == nil {
		t.Fatalf("qemu-io opened the replica at the target for writing:\n%s", out)
	}

	// Replication carries on while the replica is attached, and the
	// attached snapshot keeps its content.
	run(t, false, qemuIO, "-f", "raw", src, "-c", "write -P 0x11 0 1M", "-c", "flush")
	next, err := pg.SyncReplica(t.Context(), "cinder-group.pure2-async", true)
	if err != nil || next.LastSnapshot == rep.LastSnapshot {
		t.Fatalf("the next cycle while attached: %+v, %v", next, err)
	}
	read("after the next cycle")
	out, code = volrep(t, s.a, "volume", "attach", "vol-dr", "--at", "pure2-async", "--host", "dr-2")
	if code != 0 || !strings.Contains(out, next.LastSnapshot) {
		t.Fatalf("latest after the next cycle (exit %d), want %s:\n%s", code, next.LastSnapshot, out)
	}

	out, code = volrep(t, s.a, "volume", "detach", "vol-dr", "--at", "pure2-async")
	if code != 0 || !strings.Contains(out, "detached every replicated snapshot of volume vol-dr at pure2-async from every host") {
		t.Fatalf("volume detach --at (exit %d):\n%s", code, out)
	}
	if out, err := run(t, true, qemuIO, "-r", "-f", "raw", uri, "-c", "read 0 4096"); err == nil && !strings.Contains(out, "failed") {
		t.Fatalf("the export still reads after the detach:\n%s", out)
	}
}
