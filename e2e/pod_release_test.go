package e2e

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/volrep/volrep/array"
	"github.com/volrep/volrep/errdefs"
)

// TestPodMadeAsyncWhilePeerIsDown kills array B, a pod's peer (SIGKILL),
// makes the pod async at array A while B is down, and starts B again:
//   - restarted, B's copy is still the pod's (it kept its record of the
//     copies), so it tells its host the path is unavailable, and A's link
//     to B lists the release it owes;
//   - once A's link check reaches B, A delivers the release: B's copy is
//     a plain replica (an active/optimized path, for a DR test's reads),
//     A owes nothing and says so in its log, and after another restart of
//     B the copy stays a plain replica.
func TestPodMadeAsyncWhilePeerIsDown(t *testing.T) {
	nsA, nsB := partitionable(t)
	a, b := startPodPairWith(t, nsA, nsB, "", "iscsi_listen = 0.0.0.0:3262\n")
	ctx := t.Context()
	const vol, pod, link = "volume-rv-cinder", "cinder-pod.pure2-sync", "pure2-sync"
	podVolume(t, a, "rv")
	// A host at B with the copy connected: its path state is what B
	// reports to that host for the LUN.
	arrB := b.Array("b")
	if _, err := arrB.CreateHost(ctx, array.HostSpec{Name: "compute-b1", IQNs: []string{"iqn.2026-12.org.example:compute-b1"}}); err != nil {
		t.Fatal(err)
	}
	path := func() array.PathState {
		t.Helper()
		cs, err := b.Array("b").ListConnections(ctx, "compute-b1", vol)
		if err != nil || len(cs) != 1 || cs[0].Path == nil {
			t.Fatalf("B's connections of %s: %+v, %v", vol, cs, err)
		}
		return cs[0].Path.State
	}
	waitPath := func(what string, want array.PathState) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for got := path(); got != want; got = path() {
			if time.Now().After(deadline) {
				t.Fatalf("%s: B reports the path %s, want %s", what, got, want)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, err := arrB.ConnectVolume(ctx, array.ConnectionSpec{Host: "compute-b1", Volume: vol})
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("connecting B's copy of the pod volume: %v", err)
		}
		time.Sleep(100 * time.Millisecond) // the copy is made by the pod's first sync
	}
	waitPath("the pod in sync", array.PathNonOptimized)

	b.Kill()
	repl := (&sites{a: a}).replicas(t)
	if _, err := repl.ChangeReplicaType(ctx, pod, array.TypeAsync); err != nil {
		t.Fatal(err)
	}
	if l, err := repl.GetLink(ctx, link); err != nil || !slices.Equal(l.PodsOwedRelease, []string{pod}) {
		t.Fatalf("A's link to the killed peer lists %q owed (%v); want [%s]", l.PodsOwedRelease, err, pod)
	}

	b.Start()
	// Until A reaches B, B's copy is the pod's, as B's record says. A may
	// already have delivered the release by the time this looks.
	if st := path(); st != array.PathUnavailable && st != array.PathOptimized {
		t.Fatalf("restarted B reports the path %s, want unavailable (the pod's) or optimized (released)", st)
	}
	waitPath("the release delivered", array.PathOptimized)
	// B applies the release before it ends the stream; A drops it from
	// its record once it sees that end, a moment later.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		l, err := repl.GetLink(ctx, link)
		if err == nil && len(l.PodsOwedRelease) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("10 s after B released its copy A's link lists %q owed (%v); want none", l.PodsOwedRelease, err)
		}
	}
	if !strings.Contains(a.Logs(), "the peer released its copies of a pod removed here") {
		t.Errorf("A's log does not record the release:\n%s", a.Logs())
	}

	b.Kill()
	b.Start()
	waitPath("the released copy after another restart of B", array.PathOptimized)
}

// TestCarriedPodMadeAsyncAtPreferred: B carries the pod (A cut from B and
// the mediator) and acknowledges writes A lacks; meanwhile the pod is
// made async at A. Once A and B see each other again, B keeps what it
// carries: it refuses both the release A owes it and A's async cycle,
// whose snapshot would overwrite B's writes. So B's writes survive and
// B still takes new ones; A keeps the release owed (listed on its link)
// and logs B's refusal once, however many link checks retry it.
func TestCarriedPodMadeAsyncAtPreferred(t *testing.T) {
	nsA, nsB, a, b := startMediatedPair(t)
	qemuIO := tool(t, "qemu-io")
	const syncTimeout, leaseTTL = 500 * time.Millisecond, 3 * time.Second
	const vol, pod, link = "volume-ca-cinder", "cinder-pod.pure2-sync", "pure2-sync"
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("A:\n%s\nB:\n%s", a.Logs(), b.Logs())
		}
	})
	ctx := t.Context()
	mediatedPod(t, a, "ca", qemuIO)
	uriB := exportAtB(t, b, vol)
	waitWrite(t, qemuIO, uriB, "write -P 0x80 1M 4k", 10*time.Second)

	cutAB(t, nsA, nsB)
	nft(t, nsA, cutMediator)
	waitWrite(t, qemuIO, uriB, "write -P 0xB1 2M 1M", syncTimeout+leaseTTL+10*time.Second)
	repl := (&sites{a: a}).replicas(t)
	if _, err := repl.ChangeReplicaType(ctx, pod, array.TypeAsync); err != nil {
		t.Fatal(err)
	}
	healAB(t, nsA, nsB)
	nft(t, nsA, "delete table inet med")

	// A's cycle sends a snapshot of its copy, which lacks B's writes.
	_, err := repl.SyncReplica(ctx, pod, true)
	if !errdefs.IsFailedPrecondition(err) || !strings.Contains(err.Error(), "which this array carries") {
		t.Fatalf("A's async cycle onto B's carried copy: %v; want FAILED_PRECONDITION, B carrying the pod", err)
	}
	const refused = "telling the peer that a pod removed here names no copies there"
	for deadline := time.Now().Add(20 * time.Second); !strings.Contains(a.Logs(), refused); time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("A's log does not record B refusing the release")
		}
	}
	// Past two more link checks (5 s apart): still owed, logged once.
	time.Sleep(11 * time.Second)
	if n := strings.Count(a.Logs(), refused); n != 1 {
		t.Errorf("A logged B's refusal %d times; want once", n)
	}
	if l, err := repl.GetLink(ctx, link); err != nil || !slices.Equal(l.PodsOwedRelease, []string{pod}) {
		t.Errorf("A's link lists %q owed (%v); want [%s], B refusing it", l.PodsOwedRelease, err, pod)
	}
	if out, err := run(t, true, qemuIO, "-f", "raw", "-c", "read -P 0xB1 2M 1M", uriB); err != nil || strings.Contains(out, "Pattern verification failed") {
		t.Fatalf("B's copy lost the writes it acknowledged while it carried the pod: %v\n%s", err, out)
	}
	waitWrite(t, qemuIO, uriB, "write -P 0xB2 3M 4k", 10*time.Second)
}
