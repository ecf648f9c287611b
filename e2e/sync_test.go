package e2e

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/volrep/volrep/array"
	driverv1 "github.com/volrep/volrep/proto/volrep/driver/v1"
)

const syncBackend = `volume_backend_name = puredriver-1
san_ip = SITE_A
pure_api_token = TOKEN_A
replication_device = backend_id:pure2-sync,san_ip:SITE_B,api_token:TOKEN_B,type:sync
volrep_sync_timeout = 500
`

var syncType = &driverv1.VolumeType{Name: "sync", ExtraSpecs: map[string]string{
	"replication_enabled": "<is> True", "replication_type": "<in> sync"}}

// TestSyncWriteOnPeerAtOnce writes over NBD on the primary with qemu-io and
// a flush, and reads the same bytes from the peer's copy right away, with
// no snapshot in between; a write at the peer is on the primary at once.
func TestSyncWriteOnPeerAtOnce(t *testing.T) {
	qemuIO := tool(t, "qemu-io")
	s := startSites(t, syncBackend)
	ctx := t.Context()
	dc := driverClient(t, s.a)
	r, err := dc.CreateVolume(ctx, &driverv1.CreateVolumeRequest{Backend: "puredriver-1", VolumeId: "sv", SizeGb: 1, VolumeType: syncType})
	if err != nil || r.GetModelUpdate().GetReplicationStatus() != driverv1.ReplicationStatus_REPLICATION_STATUS_ENABLED {
		t.Fatalf("CreateVolume of a sync type: %v, %v", r, err)
	}
	uri := attachURI(t, dc, "puredriver-1", "sv")
	b := s.b.Array("b")
	for i, w := range []struct {
		off, n int64
		pat    byte
	}{{0, 4096, 0x11}, {1000, 3000, 0x22}, {7 << 20, 1 << 20, 0x33}, {(1 << 30) - 512, 512, 0x44}} {
		run(t, false, qemuIO, "-f", "raw", "-c", fmt.Sprintf("write -P %#x %d %d", w.pat, w.off, w.n), "-c", "flush", uri)
		got := make([]byte, w.n)
		if err := b.ReadVolume(ctx, "volume-sv-cinder", w.off, got); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, bytes.Repeat([]byte{w.pat}, int(w.n))) {
			t.Fatalf("write %d is not on the peer's copy right after qemu-io returned", i)
		}
	}
	snaps, _ := b.ListSnapshots(ctx, "volume-sv-cinder")
	for _, sn := range snaps {
		if !strings.Contains(sn.Name, ".sync.") {
			t.Fatalf("unexpected snapshot %s on the peer: the data came some other way", sn.Name)
		}
	}
	info, err := dc.GetReplicationInfo(ctx, &driverv1.GetReplicationInfoRequest{Backend: "puredriver-1", VolumeId: "sv"})
	if err != nil || info.GetStatus() != driverv1.ReplicationHealth_REPLICATION_HEALTH_HEALTHY || info.GetTargets()[0].GetType() != "sync" {
		t.Fatalf("GetReplicationInfo = %v, %v", info, err)
	}
	st, err := dc.GetVolumeStats(ctx, &driverv1.GetVolumeStatsRequest{Backend: "puredriver-1"})
	if err != nil || !strings.Contains(strings.Join(st.GetReplicationType(), ","), "sync") {
		t.Fatalf("stats = %v, %v", st, err)
	}
	// A client write at the peer's copy goes through the preferred array
	// (active/active): once acknowledged it is on both copies.
	// The peer learns the pod is in sync from the preferred array's
	// forward stream, a moment after the pod reports it.
	deadline := time.Now().Add(10 * time.Second)
	for err := b.WriteVolume(ctx, "volume-sv-cinder", 0, []byte{0x55}, false); err != nil; err = b.WriteVolume(ctx, "volume-sv-cinder", 0, []byte{0x55}, false) {
		if time.Now().After(deadline) {
			t.Fatalf("a client write at the in-sync peer's copy: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	got := make([]byte, 4096)
	if err := s.a.Array("a").ReadVolume(ctx, "volume-sv-cinder", 0, got); err != nil || got[0] != 0x55 || got[1] != 0x11 {
		t.Fatalf("a write at the peer is not on the preferred array's copy: %v %x %x", err, got[0], got[1])
	}

	// QoS: a retype to a sync type with a limit gives the peer's copy the
	// limit too, by the time it returns, and fio through the peer's own
	// export is held to it there.
	limited := &driverv1.VolumeType{Name: "sync-300", ExtraSpecs: syncType.ExtraSpecs, QosSpecs: map[string]string{"total_iops_sec": "300"}}
	if _, err := dc.Retype(ctx, &driverv1.RetypeRequest{Backend: "puredriver-1", VolumeId: "sv", NewType: limited}); err != nil {
		t.Fatalf("Retype to a sync type with total_iops_sec=300: %v", err)
	}
	if v, err := b.GetVolume(ctx, "volume-sv-cinder"); err != nil || v.QoS.TotalIOPS != 300 {
		t.Fatalf("the peer's copy after the retype: QoS %+v, %v; want total IOPS 300", v.QoS, err)
	}
	iops := fioIOPS(t, tool(t, "fio"), nbdExport(t, b, "volume-sv-cinder"))
	t.Logf("fio over NBD at the peer's copy, total_iops_sec=300: %.0f IOPS", iops)
	if iops > 330 || iops < 150 {
		t.Fatalf("fio at the peer's copy at total_iops_sec=300 measured %.0f IOPS, want at most 330 (and not starved)", iops)
	}
}

// TestSyncFaultDrill writes continuously to a pod volume, SIGKILLs the
// peer's process, checks the writes go on after the timeout, restarts the
// peer and checks the resync sent only the dirty blocks and every
// acknowledged write is on both sides. Every 8th write is FUA, which
// flushes the peer too: the writes those flushes covered are not resent,
// so the drill shows they survive the peer's SIGKILL.
func TestSyncFaultDrill(t *testing.T) {
	s := startSites(t, syncBackend)
	ctx := t.Context()
	dc := driverClient(t, s.a)
	if _, err := dc.CreateVolume(ctx, &driverv1.CreateVolumeRequest{Backend: "puredriver-1", VolumeId: "fd", SizeGb: 1, VolumeType: syncType}); err != nil {
		t.Fatal(err)
	}
	a, repl := s.a.Array("a"), s.replicas(t)
	const size = 64 << 20 // the region written
	want := make([]byte, size)
	var mu sync.Mutex
	var stop atomic.Bool
	var acked atomic.Int64
	var slowest atomic.Int64
	// When each block was last acknowledged, to set a lost one against the
	// daemons' logs.
	ackedAt := map[int64]time.Time{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		r := rand.New(rand.NewPCG(5, 6))
		for i := 0; !stop.Load(); i++ {
			off := r.Int64N(size/4096) * 4096
			p := bytes.Repeat([]byte{byte(i%250 + 1)}, 4096)
			start := time.Now()
			if err := a.WriteVolume(ctx, "volume-fd-cinder", off, p, i%8 == 7); err != nil {
				t.Error(err)
				return
			}
			if d := time.Since(start); d > time.Duration(slowest.Load()) {
				slowest.Store(int64(d))
			}
			mu.Lock()
			copy(want[off:], p)
			ackedAt[off] = time.Now()
			mu.Unlock()
			acked.Add(1)
			time.Sleep(500 * time.Microsecond)
		}
	}()
	// Mirrored writes are flowing before the peer dies...
	waitFor(t, func() bool { return acked.Load() >= 50 })
	s.b.cmd.Process.Signal(syscall.SIGKILL)
	killed := time.Now()
	<-s.b.exited
	peerLog := s.b.Logs()
	// ...and keep flowing after (a stalled write is caught by slowest below).
	before := acked.Load()
	waitFor(t, func() bool { return acked.Load() >= before+50 })
	rep, err := repl.GetReplica(ctx, "cinder-pod.pure2-sync")
	if err != nil || rep.PeerState != array.PeerOffline || rep.DirtyBytes == 0 {
		t.Fatalf("with the peer killed: %+v, %v", rep, err)
	}
	stop.Store(true)
	<-done
	if err := a.FlushVolume(ctx, "volume-fd-cinder"); err != nil {
		t.Fatal(err)
	}
	rep, _ = repl.GetReplica(ctx, "cinder-pod.pure2-sync")
	dirty := rep.DirtyBytes
	t.Logf("%d writes acknowledged, the slowest in %s (timeout 500ms); %d dirty bytes", acked.Load(), time.Duration(slowest.Load()), dirty)
	if time.Duration(slowest.Load()) > 2*time.Second {
		t.Fatalf("a write waited %s for a dead peer", time.Duration(slowest.Load()))
	}
	s.b.Start()
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	rep, err = repl.SyncReplica(cctx, "cinder-pod.pure2-sync", true)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("the resync sent %d bytes for %d dirty (%.2fx)", rep.LastResyncBytes, dirty, float64(rep.LastResyncBytes)/float64(dirty))
	if rep.LastResyncBytes > dirty*11/10 || rep.LastResyncBytes < dirty || rep.PeerState != array.PeerOnline {
		t.Fatalf("resync: %+v", rep)
	}
	if dirty >= acked.Load()*4096 {
		t.Fatalf("%d dirty bytes for %d writes: no write was flushed at the peer before the kill, so the drill did not test what a flush keeps", dirty, acked.Load())
	}
	b := s.b.Array("b")
	got := make([]byte, 4<<20)
	var lost, lostBefore int
	for off := int64(0); off < size; off += int64(len(got)) {
		if err := b.ReadVolume(ctx, "volume-fd-cinder", off, got); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want[off:off+int64(len(got))]) {
			ag := make([]byte, len(got))
			a.ReadVolume(ctx, "volume-fd-cinder", off, ag)
			// Which blocks, and what each side holds, say which path lost
			// them; all of them, across the whole region, say how many.
			for i := 0; i < len(got); i += 4096 {
				if !bytes.Equal(got[i:i+4096], want[off+int64(i):off+int64(i)+4096]) {
					at := ackedAt[off+int64(i)]
					lost++
					if at.Before(killed) {
						lostBefore++
					}
					t.Logf("block at %d: the peer holds %#x, the primary %#x, the last acknowledged write %#x at %s (%s before the kill)",
						off+int64(i), got[i], ag[i], want[off+int64(i)], at.UTC().Format("15:04:05.000000"), killed.Sub(at))
				}
			}
		}
		if err := a.ReadVolume(ctx, "volume-fd-cinder", off, got); err != nil || !bytes.Equal(got, want[off:off+int64(len(got))]) {
			t.Fatalf("the primary lacks acknowledged writes in the 4 MiB at %d (%v)", off, err)
		}
	}
	if lost > 0 {
		t.Logf("the preferred array's log:\n%s\nthe peer's log before the kill:\n%s", s.a.Logs(), peerLog)
		t.Fatalf("the peer's copy lacks %d acknowledged writes, %d of them acknowledged before the kill (%d writes in all)", lost, lostBefore, acked.Load())
	}
}
