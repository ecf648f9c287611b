package e2e

import (
	"bytes"
	"context"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/volrep/volrep/array"
	driverv1 "github.com/volrep/volrep/proto/volrep/driver/v1"
)

// TestMediatorPartitionDrill runs three parties, each in its own network
// namespace: array A, array B, and the pod's mediator (a real etcd),
// which A reaches over a link of its own (10.79.0.2). It cuts A from B
// only, then from the mediator too, with nftables:
//   - cut from the mediator only, nothing changes;
//   - cut from B only, A holds the pod's key at the mediator and keeps
//     taking writes;
//   - cut from both, A's pod writes fail (an NBD error reply) within the sync timeout
//     plus the mediator's lease time, and nothing new is recorded;
//   - healed, A resumes by itself, resyncs exactly its dirty set and both
//     copies are byte-equal.
func TestMediatorPartitionDrill(t *testing.T) {
	nsA, nsB, a, b := startMediatedPair(t)
	qemuIO := tool(t, "qemu-io")
	ctx := t.Context()
	// startPodPair sets volrep_sync_timeout = 500; the lease is mediator.DefaultTTL.
	const syncTimeout, leaseTTL = 500 * time.Millisecond, 3 * time.Second
	dc := driverClient(t, a)
	if _, err := dc.CreateVolume(ctx, &driverv1.CreateVolumeRequest{Backend: "puredriver-1", VolumeId: "mv", SizeGb: 1, VolumeType: syncType}); err != nil {
		t.Fatal(err)
	}
	uri := attachURI(t, dc, "puredriver-1", "mv")
	run(t, false, qemuIO, "-f", "raw", "-c", "write -P 0x01 0 1M", "-c", "flush", uri)
	repl := (&sites{a: a}).replicas(t)
	const pod = "cinder-pod.pure2-sync"
	podInfo := func() *driverv1.TargetReplicationInfo { t.Helper(); return targetInfo(t, dc, "mv") }
	waitInfo := func(what string, within time.Duration, ok func(*driverv1.TargetReplicationInfo) bool) *driverv1.TargetReplicationInfo {
		t.Helper()
		return waitTarget(t, dc, "mv", what, within, ok)
	}
	waitInfo("in sync, holding the mediator's key", 20*time.Second, func(ti *driverv1.TargetReplicationInfo) bool {
		return ti.GetPrimaryPodState() == array.PodOnline && ti.GetMediatorHeld() && ti.GetMediatorState() == array.MediatorHealthy
	})

	// Cut A from the mediator only (the A–M link; the test still reaches
	// A and the mediator over their own links): nothing changes, writes
	// stay mirrored.
	nft(t, nsA, cutMediator)
	waitInfo("the mediator reported unreachable", 10*time.Second, func(ti *driverv1.TargetReplicationInfo) bool {
		return ti.GetMediatorState() == array.MediatorUnreachable
	})
	run(t, false, qemuIO, "-f", "raw", "-c", "write -P 0x06 6M 1M", "-c", "flush", uri)
	if ti := podInfo(); ti.GetPrimaryPodState() != array.PodOnline || ti.GetTargetPodState() != array.PeerOnline {
		t.Fatalf("with only the mediator cut the pod is %s / %s", ti.GetPrimaryPodState(), ti.GetTargetPodState())
	}
	peerCopy := make([]byte, 4096)
	if err := b.Array("b").ReadVolume(ctx, "volume-mv-cinder", 6<<20, peerCopy); err != nil || peerCopy[0] != 0x06 {
		t.Fatalf("a write with only the mediator cut is not on the peer: %v %x", err, peerCopy[0])
	}
	nft(t, nsA, "delete table inet med")
	waitInfo("holding the key again", 20*time.Second, func(ti *driverv1.TargetReplicationInfo) bool {
		return ti.GetMediatorHeld() && ti.GetMediatorState() == array.MediatorHealthy
	})
	t.Logf("cut from the mediator only: writes stayed mirrored, the pod stayed online")

	exp, err := b.Array("b").CreateExport(ctx, array.ExportSpec{Volume: "volume-mv-cinder", AttachmentID: "writer-b"})
	if err != nil {
		t.Fatal(err)
	}
	uriB := "nbd://10.78.1.2:10810/" + exp.Name
	waitWrite(t, qemuIO, uriB, "write -P 0x07 7M 4k", 10*time.Second)
	// bRefuses checks that B takes no write now, and that the refused
	// write changed nothing on B's copy.
	bRefuses := func(when string) {
		t.Helper()
		old := make([]byte, 4096)
		if err := b.Array("b").ReadVolume(ctx, "volume-mv-cinder", 7<<20, old); err != nil {
			t.Fatal(err)
		}
		if out, _ := run(t, true, qemuIO, "-f", "raw", "-c", "write -P 0x99 7M 4k", uriB); !strings.Contains(out, "write failed") {
			t.Fatalf("%s: B took a write: %s", when, out)
		}
		got := make([]byte, 4096)
		if err := b.Array("b").ReadVolume(ctx, "volume-mv-cinder", 7<<20, got); err != nil || !bytes.Equal(got, old) {
			t.Fatalf("%s: a write B refused changed its copy (%v)", when, err)
		}
	}

	// Cut A ↔ B both ways (the mediator stays reachable).
	cutAB(t, nsA, nsB)
	start := time.Now()
	run(t, false, qemuIO, "-f", "raw", "-c", "write -P 0x02 1M 2M", "-c", "flush", uri)
	t.Logf("cut from the peer only: A took a write %s after the cut (sync timeout %s)", time.Since(start).Round(time.Millisecond), syncTimeout)
	ti := waitInfo("degraded, holding the key", 10*time.Second, func(ti *driverv1.TargetReplicationInfo) bool {
		return ti.GetPrimaryPodState() == array.PodDegraded && ti.GetMediatorHeld()
	})
	t.Logf("replication info: primary %s, target %s, mediator %s, held %v", ti.GetPrimaryPodState(), ti.GetTargetPodState(), ti.GetMediatorState(), ti.GetMediatorHeld())
	// Exactly one side takes writes: B asks the mediator, which A holds.
	time.Sleep(syncTimeout + leaseTTL)
	bRefuses("cut from A only, with A holding the key")

	// Cut A from the mediator too.
	nft(t, nsA, cutMediator)
	cut := time.Now()
	var stopped time.Duration
	var lastOut string
	for i := 0; ; i++ {
		out, _ := run(t, true, qemuIO, "-f", "raw", "-c", fmt.Sprintf("write -P 0x03 %d 4k", (3<<20)+int64(i%256)*4096), uri)
		if strings.Contains(out, "write failed") {
			stopped, lastOut = time.Since(cut), out
			break
		}
		if time.Since(cut) > syncTimeout+leaseTTL+10*time.Second {
			t.Fatalf("A still takes writes %s after losing both its peer and the mediator: %s", time.Since(cut), out)
		}
	}
	t.Logf("cut from the peer and the mediator: A's writes fail %s after the cut (sync timeout %s + lease %s = %s)",
		stopped.Round(time.Millisecond), syncTimeout, leaseTTL, syncTimeout+leaseTTL)
	t.Logf("the first refused write: %s", strings.TrimSpace(lastOut))
	if stopped > syncTimeout+leaseTTL+time.Second {
		t.Errorf("A stopped %s after the cut; want within the sync timeout plus the lease time (%s), give or take a write", stopped, syncTimeout+leaseTTL)
	}
	ti = waitInfo("stopped by the mediator", 5*time.Second, func(ti *driverv1.TargetReplicationInfo) bool {
		return ti.GetPrimaryPodState() == array.PodStoppedByMediator
	})
	if ti.GetMediatorState() != array.MediatorUnreachable || ti.GetMediatorHeld() || ti.GetStatus() != driverv1.ReplicationHealth_REPLICATION_HEALTH_ERROR {
		t.Fatalf("stopped pod's info: %v", ti)
	}
	if out, code := volrep(t, a, "replication", "info", "mv"); code != 0 ||
		!regexp.MustCompile(`pure2-sync\s+stopped_by_mediator\s+offline\s+stopped\s+stopped\s+unreachable\s+false`).MatchString(out) {
		t.Fatalf("volrep replication info while stopped (exit %d):\n%s", code, out)
	} else {
		t.Logf("volrep replication info while stopped:\n%s", out)
	}
	r, err := repl.GetReplica(ctx, pod)
	if err != nil {
		t.Fatal(err)
	}
	dirty := r.DirtyBytes
	// A stopped pod fails writes at once and records nothing new.
	start = time.Now()
	out, _ := run(t, true, qemuIO, "-f", "raw", "-c", "write -P 0x04 4M 1M", uri)
	if !strings.Contains(out, "write failed: Input/output error") || time.Since(start) > 2*time.Second {
		t.Fatalf("a write to the stopped pod: %q after %s; want EIO at once", out, time.Since(start))
	}
	t.Logf("a write to the stopped pod failed in %s", time.Since(start).Round(time.Millisecond))
	if r, _ := repl.GetReplica(ctx, pod); r.DirtyBytes != dirty {
		t.Fatalf("the stopped pod recorded a refused write: dirty %d → %d", dirty, r.DirtyBytes)
	}
	got := make([]byte, 4096)
	if err := a.Array("a").ReadVolume(ctx, "volume-mv-cinder", 4<<20, got); err != nil || got[0] != 0 {
		t.Fatalf("a refused write reached A's copy: %v %x", err, got[0])
	}
	// A's lease has ended and the key is free, but A acknowledged writes
	// B lacks (its mark stands at the mediator): B must not carry on from
	// its stale copy, so the pod waits for A at both sides.
	time.Sleep(leaseTTL)
	bRefuses("A stopped after acknowledging writes B lacks")
	t.Logf("with A cut from both after it carried on alone, B refuses writes too: its copy lacks A's")

	// Heal both; A resumes by itself and resyncs its dirty set.
	nft(t, nsA, "delete table inet med")
	healAB(t, nsA, nsB)
	healed := time.Now()
	cctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	r, err = repl.SyncReplica(cctx, pod, true)
	if err != nil || r.PeerState != array.PeerOnline || r.DirtyBytes != 0 {
		t.Fatalf("after healing: %+v, %v", r, err)
	}
	t.Logf("healed: in sync %s later; dirty %d bytes, the resync sent %d bytes", time.Since(healed).Round(time.Millisecond), dirty, r.LastResyncBytes)
	if r.LastResyncBytes < dirty || r.LastResyncBytes > dirty*11/10 {
		t.Errorf("the resync sent %d bytes for %d dirty", r.LastResyncBytes, dirty)
	}
	waitInfo("online, holding the key again", 20*time.Second, func(ti *driverv1.TargetReplicationInfo) bool {
		return ti.GetPrimaryPodState() == array.PodOnline && ti.GetMediatorHeld()
	})
	run(t, false, qemuIO, "-f", "raw", "-c", "write -P 0x05 5M 4k", "-c", "flush", uri)
	want := make([]byte, 7<<20)
	if err := a.Array("a").ReadVolume(ctx, "volume-mv-cinder", 0, want); err != nil {
		t.Fatal(err)
	}
	have := make([]byte, 7<<20)
	if err := b.Array("b").ReadVolume(ctx, "volume-mv-cinder", 0, have); err != nil || !bytes.Equal(have, want) {
		t.Fatalf("after healing the two copies differ (%v)", err)
	}
	if want[2<<20] != 0x02 || want[5<<20] != 0x05 || want[4<<20] != 0 || want[6<<20] != 0x06 {
		t.Fatalf("content after healing: %x %x %x %x", want[2<<20], want[5<<20], want[4<<20], want[6<<20])
	}
}

// targetInfo is the replication info of volume id's one target, through
// the driver.
func targetInfo(t *testing.T, dc driverv1.DriverServiceClient, id string) *driverv1.TargetReplicationInfo {
	t.Helper()
	ri, err := dc.GetReplicationInfo(t.Context(), &driverv1.GetReplicationInfoRequest{Backend: "puredriver-1", VolumeId: id})
	if err != nil || len(ri.GetTargets()) != 1 {
		t.Fatalf("replication info: %v %v", ri, err)
	}
	return ri.GetTargets()[0]
}

// waitTarget polls targetInfo until ok, or fails the test after within.
func waitTarget(t *testing.T, dc driverv1.DriverServiceClient, id, what string, within time.Duration, ok func(*driverv1.TargetReplicationInfo) bool) *driverv1.TargetReplicationInfo {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		ti := targetInfo(t, dc, id)
		if ok(ti) {
			return ti
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s: %v", what, within, ti)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
