package e2e

import (
	"bytes"
	"fmt"
	"strings"
	"testing"

	"github.com/volrep/volrep/array"
	"github.com/volrep/volrep/array/nbd"
	driverv1 "github.com/volrep/volrep/proto/volrep/driver/v1"
)

// TestSyncLargeWrites is the README's sync example at every size the NBD
// export accepts: each single qemu-io write (4, 16 and 32 MiB, the
// largest the server advertises) is on the peer's copy when qemu-io
// returns, and the pod never fell back to its dirty set to get it there.
func TestSyncLargeWrites(t *testing.T) {
	qemuIO := tool(t, "qemu-io")
	s := startSites(t, strings.Replace(syncBackend, "volrep_sync_timeout = 500", "volrep_sync_timeout = 5000", 1))
	ctx := t.Context()
	dc := driverClient(t, s.a)
	if _, err := dc.CreateVolume(ctx, &driverv1.CreateVolumeRequest{Backend: "puredriver-1", VolumeId: "big", SizeGb: 1, VolumeType: syncType}); err != nil {
		t.Fatal(err)
	}
	uri := attachURI(t, dc, "puredriver-1", "big")
	b := s.b.Array("b")
	const vol = "volume-big-cinder"
	for i, n := range []int64{4 << 20, 16 << 20, 32 << 20, nbd.MaxRequestSize} {
		pat := byte(0xc0 + i)
		off := int64(i) * (64 << 20)
		// No flush: the write alone must be on the peer when it returns.
		run(t, false, qemuIO, "-f", "raw", "-c", fmt.Sprintf("write -P %#x %d %d", pat, off, n), uri)
		got := make([]byte, n)
		if err := b.ReadVolume(ctx, vol, off, got); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, bytes.Repeat([]byte{pat}, int(n))) {
			t.Fatalf("a single write of %d bytes is not on the peer's copy when qemu-io returned", n)
		}
	}
	r, err := s.replicas(t).GetReplica(ctx, "cinder-pod.pure2-sync")
	if err != nil {
		t.Fatal(err)
	}
	if r.PeerState != array.PeerOnline || r.DirtyBytes != 0 || r.LastResyncBytes != 0 {
		t.Fatalf("the pod fell back to its dirty set for large writes: peer %s, dirty %d, resync %d (%s)",
			r.PeerState, r.DirtyBytes, r.LastResyncBytes, r.Message)
	}
	if logs := s.a.Logs(); strings.Contains(logs, "pod lost its peer") {
		t.Fatalf("the pod dropped its healthy peer during large writes:\n%s", logs)
	}
}
