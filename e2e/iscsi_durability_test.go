package e2e

import (
	"bytes"
	"fmt"
	"strings"
	"testing"

	"github.com/volrep/volrep/array"
	driverv1 "github.com/volrep/volrep/proto/volrep/driver/v1"
)

// TestISCSICrashSIGKILL writes over iSCSI with qemu-io, one range with FUA
// and one followed by a flush (SYNCHRONIZE CACHE), kills volrepd with
// SIGKILL, restarts it and reads both back over iSCSI and the array API.
func TestISCSICrashSIGKILL(t *testing.T) {
	_, qemuIO := needQemuISCSI(t)
	d := startISCSIDaemon(t, 1)
	lun := hostWithLUN(t, d.Array("a"), "crash", []string{"iqn.2026-12.io.volrep.e2e:crash"}, "cv", "", 64<<20)
	run(t, false, qemuIO, append(lun.QemuArgs(), "-c", "write -f -P 0xa1 1M 3M", "-c", "write -P 0xb2 8M 5M", "-c", "flush")...)
	d.Kill()
	d.Start()
	out, _ := run(t, false, qemuIO, append(lun.QemuArgs(), "-c", "read -P 0xa1 1M 3M", "-c", "read -P 0xb2 8M 5M")...)
	if strings.Contains(out, "Pattern verification failed") || strings.Count(out, "read ") != 2 {
		t.Fatalf("FUA or flushed data lost over iSCSI after SIGKILL:\n%s", out)
	}
	got := make([]byte, 5<<20)
	if err := d.Array("a").ReadVolume(t.Context(), "cv", 8<<20, got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, bytes.Repeat([]byte{0xb2}, 5<<20)) {
		t.Fatal("flushed data differs on the array after SIGKILL")
	}
}

// TestISCSISyncWriteOnPeer: a write over iSCSI to a volume of a sync pod
// is on the peer's copy when qemu-io returns, without the dirty set.
func TestISCSISyncWriteOnPeer(t *testing.T) {
	_, qemuIO := needQemuISCSI(t)
	s := startSitesISCSI(t, "puredriver-1", strings.Replace(syncBackend, "volrep_sync_timeout = 500", "volrep_sync_timeout = 5000", 1), true)
	ctx := t.Context()
	if _, err := driverClient(t, s.a).CreateVolume(ctx, &driverv1.CreateVolumeRequest{Backend: "puredriver-1", VolumeId: "isv", SizeGb: 1, VolumeType: syncType}); err != nil {
		t.Fatal(err)
	}
	const vol = "volume-isv-cinder"
	lun := hostWithLUN(t, s.a.Array("a"), "sync-host", []string{"iqn.2026-12.io.volrep.e2e:sync"}, vol, "", 0)
	b := s.b.Array("b")
	for i, n := range []int64{4 << 10, 1 << 20, 8 << 20} {
		pat := byte(0xd0 + i)
		off := int64(i) * (32 << 20)
		// No flush: the write alone must be on the peer when it returns.
		run(t, false, qemuIO, append(lun.QemuArgs(), "-c", fmt.Sprintf("write -P %#x %d %d", pat, off, n))...)
		got := make([]byte, n)
		if err := b.ReadVolume(ctx, vol, off, got); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, bytes.Repeat([]byte{pat}, int(n))) {
			t.Fatalf("a write of %d bytes over iSCSI is not on the peer's copy when qemu-io returned", n)
		}
	}
	r, err := s.replicas(t).GetReplica(ctx, "cinder-pod.pure2-sync")
	if err != nil {
		t.Fatal(err)
	}
	if r.PeerState != array.PeerOnline || r.DirtyBytes != 0 || r.LastResyncBytes != 0 {
		t.Fatalf("the pod fell back to its dirty set: peer %s, dirty %d, resync %d (%s)", r.PeerState, r.DirtyBytes, r.LastResyncBytes, r.Message)
	}
}
