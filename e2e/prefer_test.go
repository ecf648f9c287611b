package e2e

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/volrep/volrep/array"
	driverv1 "github.com/volrep/volrep/proto/volrep/driver/v1"
)

// TestMediatorPrefersTheTarget runs array A, array B and the pods'
// mediator each in a network namespace of its own, with the backend's
// volrep_preferred_array naming B (its sync replication_device), and cuts
// A from B only, both still reaching the mediator:
//   - A's writes fail within the sync timeout plus the lease time: A
//     gives the pod's key up for B instead of carrying on;
//   - B takes the key and its copy takes writes; A stays stopped and
//     says B carries the pod;
//   - healed, A takes back exactly the blocks B changed and the one A
//     changed without acknowledging it, both whole copies are
//     byte-equal, and every write B acknowledged is on A.
func TestMediatorPrefersTheTarget(t *testing.T) {
	nsA, nsB, a, b := startMediatedPairWith(t, "volrep_preferred_array = pure2-sync\n")
	qemuIO := tool(t, "qemu-io")
	ctx := t.Context()
	const syncTimeout, leaseTTL = 500 * time.Millisecond, 3 * time.Second
	const vol, pod = "volume-pv-cinder", "cinder-pod.pure2-sync"
	uriA, waitInfo := mediatedPod(t, a, "pv", qemuIO)
	repl := (&sites{a: a}).replicas(t)
	if r, err := repl.GetReplica(ctx, pod); err != nil || !r.PreferPeer {
		t.Fatalf("the pod of a backend preferring pure2-sync: prefer_peer %v, %v", r.PreferPeer, err)
	}
	uriB := exportAtB(t, b, vol)
	waitWrite(t, qemuIO, uriB, "write -P 0x80 1M 4k", 10*time.Second)

	cutAB(t, nsA, nsB)
	cut := time.Now()
	// A's write waits for B, times out, and fails: A gave the key up.
	out, _ := run(t, true, qemuIO, "-f", "raw", "-c", "write -P 0xA1 3M 4k", uriA)
	if !strings.Contains(out, "write failed") {
		t.Fatalf("A acknowledged a write without B, which the pod prefers at a partition: %s", out)
	}
	failed := time.Since(cut)
	t.Logf("A's first write after the cut failed %s after it (%s)", failed.Round(time.Millisecond), strings.TrimSpace(out))
	if failed > syncTimeout+leaseTTL+time.Second {
		t.Errorf("A's write failed %s after the cut; want within the sync timeout plus the lease (%s)", failed, syncTimeout+leaseTTL)
	}
	for {
		out, _ := run(t, true, qemuIO, "-f", "raw", "-c", "write -P 0xB1 4M 4k", "-c", "flush", uriB)
		if !strings.Contains(out, "failed") {
			break
		}
		if time.Since(cut) > syncTimeout+leaseTTL+10*time.Second {
			t.Fatalf("B does not take the pod %s after the cut: %s", time.Since(cut), out)
		}
		time.Sleep(100 * time.Millisecond)
	}
	took := time.Since(cut)
	t.Logf("B took writes %s after the cut (sync timeout %s, lease %s)", took.Round(time.Millisecond), syncTimeout, leaseTTL)
	if took > syncTimeout+leaseTTL+time.Second {
		t.Errorf("B took the pod %s after the cut; the preferred side should carry on within the sync timeout plus the lease (%s)", took, syncTimeout+leaseTTL)
	}
	if c, err := b.PodCopy("b", pod); err != nil || c.State != array.PodCarried || !c.MediatorHeld || !slices.Contains(c.Volumes, vol) {
		t.Fatalf("B's own view while it carries the pod: %+v, %v", c, err)
	}
	run(t, false, qemuIO, "-f", "raw", "-c", "write -P 0xB1 2M 1M", "-c", "flush", uriB)
	waitInfo("A stopped, seeing B carry the pod", 20*time.Second, func(ti *driverv1.TargetReplicationInfo) bool {
		return ti.GetPrimaryPodState() == array.PodStoppedByMediator && ti.GetMediatorState() == array.MediatorHealthy &&
			!ti.GetMediatorHeld() && strings.Contains(ti.GetMediatorMessage(), "carries the pod alone")
	})
	if out, _ := run(t, true, qemuIO, "-f", "raw", "-c", "write -P 0xEE 5M 4k", uriA); !strings.Contains(out, "write failed") {
		t.Fatalf("A took a write while B carries the pod: %s", out)
	}

	healAB(t, nsA, nsB)
	healed := time.Now()
	waitInfo("in sync again, A holding the key, B forwarding", 60*time.Second, func(ti *driverv1.TargetReplicationInfo) bool {
		return ti.GetPrimaryPodState() == array.PodOnline && ti.GetMediatorHeld() && ti.GetTargetOwnState() == array.PodOnline
	})
	r, err := repl.GetReplica(ctx, pod)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("healed: in sync with A holding the key %s after the heal; A took back %d bytes", time.Since(healed).Round(time.Millisecond), r.LastResyncBytes)
	if want := int64(1<<20 + 2*4096); r.LastResyncBytes != want {
		t.Errorf("A took back %d bytes; B changed 1 MiB + 4 KiB and A changed 4 KiB without acknowledging it (%d)", r.LastResyncBytes, want)
	}
	sameWhole(t, a, b, vol, 1<<30)
	cpA, _ := copies(t, a, b, vol, 8<<20)
	for _, c := range []struct {
		off  int
		want byte
		what string
	}{{0, 0x01, "A's write before the cut"}, {1 << 20, 0x80, "B's forwarded write before the cut"},
		{2 << 20, 0xB1, "B's write while it carried the pod"}, {4 << 20, 0xB1, "B's first write while it carried the pod"},
		{3 << 20, 0x01, "the block of A's write that failed"}, {5 << 20, 0x01, "the block of A's write refused while B carried the pod"}} {
		if cpA[c.off] != c.want {
			t.Errorf("%s: A's copy holds 0x%02x at %d, want 0x%02x", c.what, cpA[c.off], c.off, c.want)
		}
	}
	// Both sides write again, A ordering the writes.
	run(t, false, qemuIO, "-f", "raw", "-c", "write -P 0x06 6M 64k", "-c", "flush", uriA)
	waitWrite(t, qemuIO, uriB, "write -P 0x87 7M 64k", 10*time.Second)
	cpA, cpB := copies(t, a, b, vol, 8<<20)
	if !bytes.Equal(cpA, cpB) || cpA[6<<20] != 0x06 || cpA[7<<20] != 0x87 {
		t.Fatalf("writes at both sides after the hand-back: equal %v, %x %x", bytes.Equal(cpA, cpB), cpA[6<<20], cpA[7<<20])
	}

	// Cut the preferred side, B, from both A and the mediator: A gives
	// the key up for B, B cannot take it, and A takes it back once the
	// lease time has passed and carries on alone.
	cutAB(t, nsA, nsB)
	nft(t, nsB, cutMediatorB)
	cut = time.Now()
	var resumed time.Duration
	for i := 0; ; i++ {
		out, _ := run(t, true, qemuIO, "-f", "raw", "-c", fmt.Sprintf("write -P 0xA2 %d 4k", 9<<20+int64(i%64)*4096), "-c", "flush", uriA)
		if !strings.Contains(out, "failed") {
			resumed = time.Since(cut)
			break
		}
		if time.Since(cut) > syncTimeout+2*leaseTTL+10*time.Second {
			t.Fatalf("A does not carry on %s after B was cut from it and the mediator: %s", time.Since(cut), out)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("B cut from A and the mediator: A carried on alone %s after the cut", resumed.Round(time.Millisecond))
	if resumed > syncTimeout+leaseTTL+2*time.Second {
		t.Errorf("A carried on %s after the cut; want within the sync timeout plus the lease (%s), and the time to notice", resumed, syncTimeout+leaseTTL)
	}
	if out, _ := run(t, true, qemuIO, "-f", "raw", "-c", "write -P 0xBB 10M 4k", uriB); !strings.Contains(out, "write failed") {
		t.Fatalf("B, cut from A and the mediator, took a write: %s", out)
	}
	nft(t, nsB, "delete table inet medb")
	healAB(t, nsA, nsB)
	waitInfo("in sync after B came back", 60*time.Second, func(ti *driverv1.TargetReplicationInfo) bool {
		return ti.GetPrimaryPodState() == array.PodOnline && ti.GetMediatorHeld()
	})
	sameWhole(t, a, b, vol, 1<<30)
	cpA, _ = copies(t, a, b, vol, 11<<20)
	if cpA[9<<20] != 0xA2 || cpA[10<<20] == 0xBB {
		t.Fatalf("after the second heal: A's write while it carried on alone %x, B's refused write %x", cpA[9<<20], cpA[10<<20])
	}
}

// cutMediatorB, loaded in B's namespace, drops B's link to the mediator
// (10.79.1.0/24); "delete table inet medb" heals.
const cutMediatorB = "add table inet medb; add chain inet medb out { type filter hook output priority 0; }; add rule inet medb out ip daddr 10.79.1.0/24 drop; add chain inet medb in { type filter hook input priority 0; }; add rule inet medb in ip saddr 10.79.1.0/24 drop"
