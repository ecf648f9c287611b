package e2e

import (
	"bytes"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/volrep/volrep/array"
	"github.com/volrep/volrep/array/mediator"
	"github.com/volrep/volrep/errdefs"
	driverv1 "github.com/volrep/volrep/proto/volrep/driver/v1"
)

// TestMediatorPeerCarriesPod runs array A, array B and the pods' mediator
// (a real etcd) each in a network namespace of its own, with both arrays
// configured with the mediator, and cuts the preferred array A from both
// B and the mediator at once:
//   - A's writes fail at once: it cannot record at the mediator that it
//     carries on alone, so it acknowledges nothing B lacks;
//   - B takes the pod's key once A's lease ends, and its copy takes
//     writes; A, back at the mediator but not at B, stays stopped and
//     reports that B carries the pod;
//   - healed, A takes back exactly the blocks B changed and the one A
//     changed without acknowledging it, B gives the key up, and the pod
//     is in sync with both whole copies byte-equal and every write B
//     acknowledged on A; both sides take writes again.
//
// A second round kills B (SIGKILL) while it carries the pod: restarted,
// it takes writes again, and on healing A takes back the 4 MiB runs B
// recorded before it changed them, not its whole copy.
func TestMediatorPeerCarriesPod(t *testing.T) {
	nsA, nsB, a, b := startMediatedPair(t)
	qemuIO := tool(t, "qemu-io")
	ctx := t.Context()
	// startPodPair sets volrep_sync_timeout = 500; the lease is mediator.DefaultTTL.
	const syncTimeout, leaseTTL = 500 * time.Millisecond, 3 * time.Second
	const vol, pod = "volume-cv-cinder", "cinder-pod.pure2-sync"
	uriA := podVolume(t, a, "cv")
	infoA, err := a.Array("a").Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	aID := infoA.ID
	dc := driverClient(t, a)
	repl := (&sites{a: a}).replicas(t)
	waitInfo := func(what string, within time.Duration, ok func(*driverv1.TargetReplicationInfo) bool) {
		t.Helper()
		waitTarget(t, dc, "cv", what, within, ok)
	}
	run(t, false, qemuIO, "-f", "raw", "-c", "write -P 0x01 0 8M", "-c", "flush", uriA)
	waitInfo("in sync, A holding the key, and B saying so itself", 20*time.Second, func(ti *driverv1.TargetReplicationInfo) bool {
		return ti.GetPrimaryPodState() == array.PodOnline && ti.GetMediatorHeld() && ti.GetTargetWrites() == array.WritesOnline &&
			ti.GetTargetOwnState() == array.PodOnline && ti.GetTargetOwnWrites() == array.WritesOnline && !ti.GetTargetMediatorHeld()
	})
	uriB := exportAtB(t, b, vol)
	waitWrite(t, qemuIO, uriB, "write -P 0x80 1M 4k", 10*time.Second)

	// round cuts A from B and the mediator at once, has B take the pod
	// and write (after a SIGKILL and restart of B when crash is set),
	// heals, and returns the bytes A took back. Each round writes its own
	// pattern byte p into blocks of its own.
	round := func(p byte, crash bool) int64 {
		t.Helper()
		cutAB(t, nsA, nsB)
		nft(t, nsA, cutMediator)
		cut := time.Now()
		out, _ := run(t, true, qemuIO, "-f", "raw", "-c", fmt.Sprintf("write -P 0x%02x 3M 4k", p), uriA)
		if !strings.Contains(out, "write failed") {
			t.Fatalf("A acknowledged a write after losing both B and the mediator: %s", out)
		}
		t.Logf("A's first write after the cut failed %s after it (%s)", time.Since(cut).Round(time.Millisecond), strings.TrimSpace(out))
		// B takes the pod over once A's lease at the mediator ends.
		for {
			out, _ := run(t, true, qemuIO, "-f", "raw", "-c", fmt.Sprintf("write -P 0x%02x 4M 4k", p), "-c", "flush", uriB)
			if !strings.Contains(out, "failed") {
				break
			}
			if time.Since(cut) > syncTimeout+2*leaseTTL+10*time.Second {
				t.Fatalf("B does not take the pod %s after A was cut from it and the mediator: %s", time.Since(cut), out)
			}
			time.Sleep(100 * time.Millisecond)
		}
		// B says so itself, over its own API, which the test reaches
		// while A cannot.
		if c, err := b.PodCopy("b", pod); err != nil || c.State != array.PodCarried || c.Writes != array.WritesOnline ||
			!c.MediatorHeld || c.MediatorState != array.MediatorHealthy || !slices.Contains(c.Volumes, vol) {
			t.Fatalf("B's own view while it carries the pod: %+v, %v", c, err)
		}
		took := time.Since(cut)
		t.Logf("B took writes %s after the cut (sync timeout %s, lease %s)", took.Round(time.Millisecond), syncTimeout, leaseTTL)
		// A's lease ends within the lease time of its last renewal; B
		// watches the key and takes it then. The slack covers etcd's
		// expiry sweep (every 500 ms), B's record commit and qemu-io
		// starts on a loaded machine.
		if limit := syncTimeout + leaseTTL + 2500*time.Millisecond; took > limit {
			t.Errorf("B took the pod %s after the cut; want within the sync timeout plus the lease, %s with slack", took, limit)
		}
		run(t, false, qemuIO, "-f", "raw", "-c", fmt.Sprintf("write -P 0x%02x 2M 1M", p), "-c", "flush", uriB)
		if out, _ := run(t, true, qemuIO, "-f", "raw", "-c", "write -P 0xEE 5M 4k", uriA); !strings.Contains(out, "write failed") {
			t.Fatalf("A took a write while B carries the pod: %s", out)
		}
		if crash {
			// Restarted, B takes the key again over its own mark. Its
			// record names every block it changed, flushed or not: it
			// records a 4 MiB run before the run's first change.
			b.Kill()
			b.Start()
			restarted := time.Now()
			waitWrite(t, qemuIO, uriB, fmt.Sprintf("write -P 0x%02x 4100k 4k", p), 20*time.Second)
			t.Logf("killed and restarted while it carried the pod, B took writes again %s after its restart", time.Since(restarted).Round(time.Millisecond))
			if !strings.Contains(b.Logs(), "this array carried the pod when it stopped") {
				t.Errorf("B's log does not say it carried the pod when it stopped:\n%s", b.Logs())
			}
		}
		// A reaches the mediator again, not B: it stays stopped (B holds
		// the key and its mark), and says that B carries the pod.
		nft(t, nsA, "delete table inet med")
		waitInfo("A sees B carrying the pod", 20*time.Second, func(ti *driverv1.TargetReplicationInfo) bool {
			return ti.GetPrimaryPodState() == array.PodStoppedByMediator && ti.GetMediatorState() == array.MediatorHealthy &&
				!ti.GetMediatorHeld() && ti.GetTargetWrites() == array.WritesOnline && strings.Contains(ti.GetMediatorMessage(), "carries the pod alone")
		})
		if out, _ := run(t, true, qemuIO, "-f", "raw", "-c", "write -P 0xEE 5M 4k", uriA); !strings.Contains(out, "write failed") {
			t.Fatalf("A took a write while B carries the pod, with the mediator back: %s", out)
		}
		// Neither side grows the volume while B carries it: the hosts
		// would see one size on one path and another on the other.
		if !crash {
			_, err := dc.ExtendVolume(ctx, &driverv1.ExtendVolumeRequest{Backend: "puredriver-1", VolumeId: "cv", NewSizeGb: 2})
			if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "once the pod is back in sync") {
				t.Fatalf("extending the volume through the driver while B carries the pod: %v, want UNAVAILABLE saying when to retry", err)
			}
			if _, err := b.Array("b").ExtendVolume(ctx, vol, 2<<30); !errdefs.IsFailedPrecondition(err) || !strings.Contains(err.Error(), "extend it at the preferred array") {
				t.Fatalf("extending B's copy while B carries the pod: %v, want FAILED_PRECONDITION", err)
			}
		}
		// The driver, beside A, cannot ask B either: B's own view is
		// unknown, and says why.
		// The pod's name at the mediator is scoped by A, and B carries it
		// under that name: A reads B as the holder of A's own key.
		if out, code := volrep(t, a, "replication", "info", "cv"); code != 0 ||
			!regexp.MustCompile(`pure2-sync\s+stopped_by_mediator\s+offline\s+stopped\s+online\s+healthy\s+false\s+`+regexp.QuoteMeta(mediator.Scoped(aID, pod))+`\s`).MatchString(out) ||
			!regexp.MustCompile(`pure2-sync\s+unknown\s+-\s+-\s+asking the target array: `).MatchString(out) {
			t.Fatalf("volrep replication info while B carries the pod (exit %d):\n%s", code, out)
		} else if !crash {
			t.Logf("volrep replication info at A while B carries the pod:\n%s", out)
		}
		// Heal: A takes the pod back.
		healAB(t, nsA, nsB)
		healed := time.Now()
		// B's own view too: B asks the mediator for the pod at the next
		// cut only if it knew itself in sync, which A tells it a moment
		// after A knows it.
		waitInfo("in sync again, A holding the key, B forwarding and saying so", 60*time.Second, func(ti *driverv1.TargetReplicationInfo) bool {
			return ti.GetPrimaryPodState() == array.PodOnline && ti.GetMediatorHeld() && ti.GetTargetWrites() == array.WritesOnline &&
				ti.GetTargetOwnState() == array.PodOnline
		})
		r, err := repl.GetReplica(ctx, pod)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("healed: in sync with A holding the key %s after the heal; A took back %d bytes", time.Since(healed).Round(time.Millisecond), r.LastResyncBytes)
		if m := regexp.MustCompile(`pod handed back to its preferred array.*writes_stopped_ms=(\d+)`).FindAllStringSubmatch(b.Logs(), -1); len(m) > 0 {
			t.Logf("B stopped its writes for the last round of the hand-back for %s ms", m[len(m)-1][1])
		} else {
			t.Errorf("B's log does not record the hand-back:\n%s", b.Logs())
		}
		sameWhole(t, a, b, vol, 1<<30)
		cpA, _ := copies(t, a, b, vol, 8<<20)
		checks := []struct {
			off  int
			want byte
			what string
		}{{0, 0x01, "A's write before the cut"}, {1 << 20, 0x80, "B's forwarded write before the cut"},
			{2 << 20, p, "B's write while it carried the pod"}, {4 << 20, p, "B's first write while it carried the pod"},
			{3 << 20, 0x01, "the block A's failed write touched"}, {5 << 20, 0x01, "the block of A's write refused while B carried the pod"}}
		if crash {
			checks = append(checks, struct {
				off  int
				want byte
				what string
			}{4<<20 + 4096, p, "B's write after its restart"})
		}
		for _, c := range checks {
			if cpA[c.off] != c.want {
				t.Errorf("%s: A's copy holds 0x%02x at %d, want 0x%02x", c.what, cpA[c.off], c.off, c.want)
			}
		}
		return r.LastResyncBytes
	}
	// B changed 1 MiB + 4 KiB; A changed the block at 3M without
	// acknowledging it (the write at 5M, refused while A was stopped,
	// changed nothing).
	if got, want := round(0xB1, false), int64(1<<20+2*4096); got != want {
		t.Errorf("A took back %d bytes; B changed %d and A asked for 4096", got, want-4096)
	}
	// B changed blocks in the runs [0, 4M) and [4M, 8M), then crashed:
	// A takes back those two runs, not B's whole copy.
	if got, want := round(0xB2, true), int64(8<<20); got != want {
		t.Errorf("A took back %d bytes after B crashed while it carried the pod; want the %d of the two 4 MiB runs B recorded before changing them", got, want)
	}

	// Both sides write again.
	run(t, false, qemuIO, "-f", "raw", "-c", "write -P 0x06 6M 64k", "-c", "flush", uriA)
	waitWrite(t, qemuIO, uriB, "write -P 0x87 7M 64k", 10*time.Second)
	cpA, cpB := copies(t, a, b, vol, 8<<20)
	if !bytes.Equal(cpA, cpB) || cpA[6<<20] != 0x06 || cpA[7<<20] != 0x87 {
		t.Fatalf("writes at both sides after the hand-back: equal %v, %x %x", bytes.Equal(cpA, cpB), cpA[6<<20], cpA[7<<20])
	}
	// In sync again, the volume grows at both sides, and a write at B to
	// the new range is on A.
	if _, err := dc.ExtendVolume(ctx, &driverv1.ExtendVolumeRequest{Backend: "puredriver-1", VolumeId: "cv", NewSizeGb: 2}); err != nil {
		t.Fatalf("extending the volume once the pod is back in sync: %v", err)
	}
	for _, arr := range []array.Array{a.Array("a"), b.Array("b")} {
		if v, err := arr.GetVolume(ctx, vol); err != nil || v.SizeBytes != 2<<30 {
			t.Fatalf("after the extend the copy is %d bytes (%v), want 2 GiB at both arrays", v.SizeBytes, err)
		}
	}
	waitWrite(t, qemuIO, uriB, "write -P 0x88 1536M 64k", 10*time.Second)
	grown := make([]byte, 64<<10)
	if err := a.Array("a").ReadVolume(ctx, vol, 1536<<20, grown); err != nil || !bytes.Equal(grown, bytes.Repeat([]byte{0x88}, len(grown))) {
		t.Fatalf("B's write to the grown range is not on A (%v)", err)
	}
}

// sameWhole compares the whole of vol at both arrays by the CRC-32C of
// each 4 KiB block, computed by each array over a snapshot of its copy
// (the pod takes no writes meanwhile), then deleted.
func sameWhole(t *testing.T, a, b *Daemon, vol string, size int64) {
	t.Helper()
	ctx := t.Context()
	var sums [2][]uint32
	for i, arr := range []array.Array{a.Array("a"), b.Array("b")} {
		if _, err := arr.CreateSnapshot(ctx, vol, "compare", nil); err != nil {
			t.Fatal(err)
		}
		for off := int64(0); off < size; off += 64 << 20 {
			cs, err := arr.Checksums(ctx, vol, "compare", off, 64<<20)
			if err != nil {
				t.Fatal(err)
			}
			sums[i] = append(sums[i], cs...)
		}
		if err := arr.DeleteSnapshot(ctx, vol, "compare"); err != nil {
			t.Fatal(err)
		}
	}
	if len(sums[0]) != int(size/4096) || len(sums[1]) != len(sums[0]) {
		t.Fatalf("checksums of %d and %d blocks for a %d-byte volume", len(sums[0]), len(sums[1]), size)
	}
	for i := range sums[0] {
		if sums[0][i] != sums[1][i] {
			t.Fatalf("the copies differ at block %d (byte %d): CRC-32C %08x at A, %08x at B", i, int64(i)*4096, sums[0][i], sums[1][i])
		}
	}
}

// TestHandBackWithoutTheMediator: B carries the pod (A cut from B and the
// mediator), then loses the mediator too; when A and B see each other
// again, B hands the pod back although neither reaches the mediator, so
// the pod is in sync and both sides take writes (the mediator alone being
// away changes nothing); once the mediator is back, B clears its mark
// there and A holds the pod's key again.
func TestHandBackWithoutTheMediator(t *testing.T) {
	nsA, nsB, a, b := startMediatedPair(t)
	qemuIO := tool(t, "qemu-io")
	const syncTimeout, leaseTTL = 500 * time.Millisecond, 3 * time.Second
	const vol = "volume-hv-cinder"
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("A:\n%s\nB:\n%s", a.Logs(), b.Logs())
		}
	})
	uriA, waitInfo := mediatedPod(t, a, "hv", qemuIO)
	uriB := exportAtB(t, b, vol)
	waitWrite(t, qemuIO, uriB, "write -P 0x80 1M 4k", 10*time.Second)

	cutAB(t, nsA, nsB)
	nft(t, nsA, cutMediator)
	waitWrite(t, qemuIO, uriB, "write -P 0xB1 2M 1M", syncTimeout+leaseTTL+10*time.Second)
	// B loses the mediator too, then A and B see each other again.
	nft(t, nsB, cutMediatorB)
	healAB(t, nsA, nsB)
	healed := time.Now()
	waitInfo("in sync again with no side reaching the mediator", 60*time.Second, func(ti *driverv1.TargetReplicationInfo) bool {
		return ti.GetPrimaryPodState() == array.PodOnline && ti.GetMediatorState() == array.MediatorUnreachable && ti.GetTargetOwnState() == array.PodOnline
	})
	t.Logf("B handed the pod back %s after the heal, neither array reaching the mediator", time.Since(healed).Round(time.Millisecond))
	if !strings.Contains(b.Logs(), "handing the pod back without the mediator") {
		t.Errorf("B's log does not say it handed the pod back without the mediator:\n%s", b.Logs())
	}
	run(t, false, qemuIO, "-f", "raw", "-c", "write -P 0x06 6M 64k", "-c", "flush", uriA)
	waitWrite(t, qemuIO, uriB, "write -P 0x87 7M 64k", 10*time.Second)

	// The mediator back: B clears its mark, and A takes the pod's key.
	nft(t, nsA, "delete table inet med")
	nft(t, nsB, "delete table inet medb")
	back := time.Now()
	waitInfo("A holding the key once the mediator is back", 20*time.Second, func(ti *driverv1.TargetReplicationInfo) bool {
		return ti.GetPrimaryPodState() == array.PodOnline && ti.GetMediatorHeld() && ti.GetMediatorState() == array.MediatorHealthy
	})
	t.Logf("A held the key %s after the mediator came back", time.Since(back).Round(time.Millisecond))
	if !strings.Contains(b.Logs(), "cleared this array's mark at the mediator") {
		t.Errorf("B's log does not say it cleared its mark:\n%s", b.Logs())
	}
	sameWhole(t, a, b, vol, 1<<30)
	cpA, _ := copies(t, a, b, vol, 8<<20)
	for _, c := range []struct {
		off  int
		want byte
		what string
	}{{1 << 20, 0x80, "B's forwarded write before the cut"}, {2 << 20, 0xB1, "B's write while it carried the pod"},
		{6 << 20, 0x06, "A's write after the hand-back"}, {7 << 20, 0x87, "B's forwarded write after the hand-back"}} {
		if cpA[c.off] != c.want {
			t.Errorf("%s: A's copy holds 0x%02x at %d, want 0x%02x", c.what, cpA[c.off], c.off, c.want)
		}
	}
}

// infoWait waits until a volume's replication info, through the driver,
// satisfies ok.
type infoWait func(what string, within time.Duration, ok func(*driverv1.TargetReplicationInfo) bool)

// mediatedPod makes pod volume id at A, writes 8 MiB there, and waits
// until the pod is in sync with A holding the key and B saying so
// itself. It returns A's URI for the volume and the wait on its info.
func mediatedPod(t *testing.T, a *Daemon, id, qemuIO string) (string, infoWait) {
	t.Helper()
	uriA := podVolume(t, a, id)
	dc := driverClient(t, a)
	waitInfo := func(what string, within time.Duration, ok func(*driverv1.TargetReplicationInfo) bool) {
		t.Helper()
		waitTarget(t, dc, id, what, within, ok)
	}
	run(t, false, qemuIO, "-f", "raw", "-c", "write -P 0x01 0 8M", "-c", "flush", uriA)
	waitInfo("in sync, A holding the key, B saying so itself", 20*time.Second, func(ti *driverv1.TargetReplicationInfo) bool {
		return ti.GetPrimaryPodState() == array.PodOnline && ti.GetMediatorHeld() && ti.GetTargetOwnState() == array.PodOnline
	})
	return uriA, waitInfo
}
