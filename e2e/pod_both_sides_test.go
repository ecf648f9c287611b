package e2e

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/volrep/volrep/array"
)

// TestPodWritersAtBothSides runs the two arrays in their own network
// namespaces and a qemu-io writer on each side of a pod volume: A's
// through the driver's attachment, B's through an NBD export of B's copy.
//   - Both write 4 KiB blocks of the same 256 KiB at once; afterwards the
//     copies are byte-identical and each block holds the last write one of
//     the two writers made to it: no acknowledged write is lost or torn.
//   - Cut A↔B: B's writes fail (EIO) and change nothing, A's carry on
//     (A is the preferred array; there is no mediator here).
//   - Healed: the resync sends the dirty set, B takes writes again, and
//     the copies are byte-identical.
func TestPodWritersAtBothSides(t *testing.T) {
	nsA, nsB := partitionable(t)
	qemuIO := tool(t, "qemu-io")
	ctx := t.Context()
	a, b := startPodPair(t, nsA, nsB, "")
	const vol, pod = "volume-pv-cinder", "cinder-pod.pure2-sync"
	uriA := podVolume(t, a, "pv")
	repl := (&sites{a: a}).replicas(t)
	cctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	if r, err := repl.SyncReplica(cctx, pod, true); err != nil || r.PeerState != array.PeerOnline {
		t.Fatalf("pod not in sync: %+v %v", r, err)
	}
	uriB := exportAtB(t, b, vol)
	// B's copy takes writes once A's forward stream is up, which may come
	// a moment after the pod reports in sync.
	waitWrite(t, qemuIO, uriB, "write -P 0x80 1M 4k", 10*time.Second)

	const blocks, writes = 64, 300
	type writer struct {
		uri   string
		base  byte
		last  [blocks]byte
		args  []string
		out   string
		err   error
		label string
	}
	ws := []*writer{{uri: uriA, base: 0x01, label: "A"}, {uri: uriB, base: 0x81, label: "B"}}
	for i, w := range ws {
		rng := rand.New(rand.NewPCG(uint64(i)+1, 7))
		w.args = []string{"-f", "raw"}
		for n := 0; n < writes; n++ {
			blk := rng.IntN(blocks)
			v := w.base + byte(n%0x7f)
			w.last[blk] = v
			w.args = append(w.args, "-c", fmt.Sprintf("write -P 0x%02x %d 4k", v, blk*4096))
		}
		w.args = append(w.args, "-c", "flush", w.uri)
	}
	start := time.Now()
	var wg sync.WaitGroup
	for _, w := range ws {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.out, w.err = run(t, true, qemuIO, w.args...)
		}()
	}
	wg.Wait()
	for _, w := range ws {
		if w.err != nil || strings.Contains(w.out, "failed") {
			t.Fatalf("writer %s: %v\n%s", w.label, w.err, w.out)
		}
	}
	t.Logf("%d writes of 4 KiB at each side to the same %d blocks in %s", writes, blocks, time.Since(start).Round(time.Millisecond))
	cpA, cpB := copies(t, a, b, vol, blocks*4096)
	if !bytes.Equal(cpA, cpB) {
		t.Fatal("after writers at both sides the two copies differ")
	}
	fromA, fromB := 0, 0
	for blk := 0; blk < blocks; blk++ {
		got := cpA[blk*4096 : (blk+1)*4096]
		if !bytes.Equal(got, bytes.Repeat(got[:1], 4096)) {
			t.Fatalf("block %d is torn: it mixes writes", blk)
		}
		switch got[0] {
		case ws[0].last[blk]:
			fromA++
		case ws[1].last[blk]:
			fromB++
		default:
			t.Fatalf("block %d holds 0x%02x; the last writes to it were 0x%02x (A) and 0x%02x (B)", blk, got[0], ws[0].last[blk], ws[1].last[blk])
		}
	}
	t.Logf("copies identical; %d blocks end with A's last write, %d with B's", fromA, fromB)

	// Cut A↔B: the preferred array carries on, B's writes fail.
	cutAB(t, nsA, nsB)
	cut := time.Now()
	run(t, false, qemuIO, "-f", "raw", "-c", "write -P 0x11 2M 64k", "-c", "flush", uriA)
	t.Logf("cut: A took a write %s after the cut", time.Since(cut).Round(time.Millisecond))
	var failed time.Duration
	for {
		out, _ := run(t, true, qemuIO, "-f", "raw", "-c", "write -P 0x99 3M 4k", uriB)
		if strings.Contains(out, "write failed") {
			failed = time.Since(cut)
			break
		}
		if time.Since(cut) > 10*time.Second {
			t.Fatalf("B still takes writes %s after the cut: %s", time.Since(cut), out)
		}
	}
	t.Logf("cut: B's writes fail %s after the cut (sync timeout 500ms)", failed.Round(time.Millisecond))
	got := make([]byte, 4096)
	if err := b.Array("b").ReadVolume(ctx, vol, 3<<20, got); err != nil || got[0] == 0x99 {
		t.Fatalf("a write B refused reached its copy: %v %x", err, got[0])
	}
	if err := a.Array("a").ReadVolume(ctx, vol, 3<<20, got); err != nil || got[0] == 0x99 {
		t.Fatalf("a write B refused reached A's copy: %v %x", err, got[0])
	}
	r, err := repl.GetReplica(ctx, pod)
	if err != nil {
		t.Fatal(err)
	}
	dirty := r.DirtyBytes
	if dirty < 64<<10 {
		t.Fatalf("A's write during the cut left %d dirty bytes, want ≥ 64 KiB", dirty)
	}

	// Heal: the resync sends the dirty set and B writes again.
	healAB(t, nsA, nsB)
	r, err = repl.SyncReplica(cctx, pod, true)
	if err != nil || r.PeerState != array.PeerOnline || r.DirtyBytes != 0 {
		t.Fatalf("after healing: %+v, %v", r, err)
	}
	if r.LastResyncBytes < dirty || r.LastResyncBytes > dirty*11/10 {
		t.Errorf("the resync sent %d bytes for %d dirty", r.LastResyncBytes, dirty)
	}
	t.Logf("healed: the resync sent %d bytes for %d dirty", r.LastResyncBytes, dirty)
	waitWrite(t, qemuIO, uriB, "write -P 0x22 4M 64k", 10*time.Second)
	cpA, cpB = copies(t, a, b, vol, 5<<20)
	if !bytes.Equal(cpA, cpB) {
		t.Fatal("after healing the two copies differ")
	}
	if cpA[2<<20] != 0x11 || cpA[4<<20] != 0x22 || cpA[3<<20] == 0x99 {
		t.Fatalf("content after healing: %x %x %x", cpA[2<<20], cpA[4<<20], cpA[3<<20])
	}
}

// waitWrite runs a qemu-io write until it succeeds, or fails the test
// after within.
func waitWrite(t *testing.T, qemuIO, uri, cmd string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		out, err := run(t, true, qemuIO, "-f", "raw", "-c", cmd, "-c", "flush", uri)
		if err == nil && !strings.Contains(out, "failed") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%q at %s: still failing after %s: %v\n%s", cmd, uri, within, err, out)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// copies reads the first n bytes of vol at both arrays.
func copies(t *testing.T, a, b *Daemon, vol string, n int) (ca, cb []byte) {
	t.Helper()
	ca, cb = make([]byte, n), make([]byte, n)
	if err := a.Array("a").ReadVolume(t.Context(), vol, 0, ca); err != nil {
		t.Fatal(err)
	}
	if err := b.Array("b").ReadVolume(t.Context(), vol, 0, cb); err != nil {
		t.Fatal(err)
	}
	return ca, cb
}

// exportAtB exports vol at array B (in its namespace) for a writer there.
func exportAtB(t *testing.T, b *Daemon, vol string) string {
	t.Helper()
	exp, err := b.Array("b").CreateExport(t.Context(), array.ExportSpec{Volume: vol, AttachmentID: "writer-b"})
	if err != nil {
		t.Fatal(err)
	}
	return "nbd://10.78.1.2:10810/" + exp.Name
}
