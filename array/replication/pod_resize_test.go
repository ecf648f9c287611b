package replication_test

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/volrep/volrep/array"
	"github.com/volrep/volrep/array/store"
	"github.com/volrep/volrep/errdefs"
)

// TestPodResize: a pod volume grows at its peer before it grows here, so
// a write to the new range is mirrored at once; with the peer away it
// grows here alone and the resync grows the peer's copy first; and a pod
// its mediator stopped refuses to grow, as it refuses writes.
func TestPodResize(t *testing.T) {
	const timeout = 500 * time.Millisecond
	var states podStates
	src, tg, etcd := newMediatedPod(t, timeout, &states)
	ctx := t.Context()
	replicaUntil(t, src, 10*time.Second, "the primary holds the pod's key", func(r array.Replica) bool { return r.MediatorHeld })
	size := func(st *store.Store) int64 {
		t.Helper()
		v, err := st.GetVolume(ctx, "v1")
		if err != nil {
			t.Fatal(err)
		}
		return v.SizeBytes
	}
	grow := func(to int64) {
		t.Helper()
		v, err := src.st.ExtendVolume(ctx, "v1", to)
		if err != nil || v.SizeBytes != to {
			t.Fatalf("extending v1 to %d bytes: %d, %v", to, v.SizeBytes, err)
		}
	}
	write := func(off int64, b byte) []byte {
		t.Helper()
		p := bytes.Repeat([]byte{b}, 64<<10)
		if err := src.st.WriteVolume(ctx, "v1", off, p, false); err != nil {
			t.Fatalf("writing %d bytes at %d: %v", len(p), off, err)
		}
		return p
	}
	peerHas := func(what string, off int64, want []byte) {
		t.Helper()
		got := make([]byte, len(want))
		if err := tg.st.ReadVolume(ctx, "v1", off, got); err != nil || !bytes.Equal(got, want) {
			t.Fatalf("%s: the peer's copy lacks it (%v)", what, err)
		}
	}

	// 1. In sync: the peer's copy is grown by the time the extend returns,
	// and a write to the new range is on it when acknowledged.
	grow(20 * mib)
	if got := size(tg.st); got != 20*mib {
		t.Fatalf("after extending an in-sync pod volume to 20 MiB the peer's copy is %d bytes", got)
	}
	peerHas("a write to the new range", 18*mib, write(18*mib, 0xA1))

	// 2. The peer away, the primary holding the key: it grows here alone,
	// and takes writes to the new range.
	tg.halt()
	replicaUntil(t, src, 5*time.Second, "degraded, holding the key", func(r array.Replica) bool {
		return r.PodState == array.PodDegraded && r.MediatorHeld
	})
	grow(24 * mib)
	late := write(22*mib, 0xA2)

	// 3. The mediator away too: the pod stops, and neither a write nor an
	// extend changes anything here.
	etcd.Stop()
	replicaUntil(t, src, timeout+mediatorTTL+2*time.Second, "stopped by the mediator", func(r array.Replica) bool {
		return r.PodState == array.PodStoppedByMediator
	})
	_, err := src.st.ExtendVolume(ctx, "v1", 28*mib)
	if !errdefs.IsUnavailable(err) || !strings.Contains(err.Error(), "once the pod is back in sync") {
		t.Fatalf("extending a stopped pod's volume: %v, want UNAVAILABLE saying when to retry", err)
	}
	if got := size(src.st); got != 24*mib {
		t.Fatalf("a refused extend left the volume %d bytes, want 24 MiB", got)
	}

	// 4. Both back: the resync grows the peer's copy, then sends the
	// blocks it missed, the new range's included.
	etcd.Restart()
	tg.start()
	r := syncNow(t, src)
	if r.PodState != array.PodOnline || r.DirtyBytes != 0 {
		t.Fatalf("after healing: pod %s, %d dirty", r.PodState, r.DirtyBytes)
	}
	peerHas("the write to the range grown while the peer was away", 22*mib, late)
	same(t, src, tg, "v1")
}
