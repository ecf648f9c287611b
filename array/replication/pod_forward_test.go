package replication_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/volrep/volrep/array"
	"github.com/volrep/volrep/array/replication"
	"github.com/volrep/volrep/array/store"
	"github.com/volrep/volrep/array/transfer"
	"github.com/volrep/volrep/clock"
	"github.com/volrep/volrep/errdefs"
	"github.com/volrep/volrep/internal/testenv"
)

// peerWritable waits until the pod's copy at the peer takes client writes
// (the forward stream is open and the pod in sync), writing p at off.
func peerWritable(t testing.TB, tg *target, vol string, off int64, p []byte) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		err := tg.st.WriteVolume(t.Context(), vol, off, p, false)
		if err == nil {
			return
		}
		if !errdefs.IsUnavailable(err) && !errdefs.IsFailedPrecondition(err) || time.Now().After(deadline) {
			t.Fatalf("the pod's copy at the peer does not take writes: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func openVol(t testing.TB, st *store.Store, vol string) *store.Handle {
	t.Helper()
	h, err := st.OpenVolume(t.Context(), vol)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// TestPodWriteAtPeer: a write, a zeroed range and a FUA write made at the
// non-preferred array are readable at both arrays once acknowledged.
func TestPodWriteAtPeer(t *testing.T) {
	src, tg := newPod(t, 5*time.Second)
	ctx := t.Context()
	p := bytes.Repeat([]byte{0xb7}, 3*4096+100)
	peerWritable(t, tg, "v1", 2*mib+17, p)
	check := func(what string, off int64, want []byte) {
		t.Helper()
		a, b := make([]byte, len(want)), make([]byte, len(want))
		if err := src.st.ReadVolume(ctx, "v1", off, a); err != nil {
			t.Fatal(err)
		}
		if err := tg.st.ReadVolume(ctx, "v1", off, b); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(a, want) || !bytes.Equal(b, want) {
			t.Fatalf("%s made at the peer: on the preferred array %v, on the peer %v", what, bytes.Equal(a, want), bytes.Equal(b, want))
		}
	}
	check("a write", 2*mib+17, p)
	h := openVol(t, tg.st, "v1")
	if h.ReadOnly() {
		t.Fatal("the peer's copy of an in-sync pod reports itself read-only to its exports")
	}
	// ALUA: the preferred array's path is optimized, the peer's works at
	// the cost of a round trip.
	wantPath(t, "the preferred array", openVol(t, src.st, "v1"), array.Path{State: array.PathOptimized, Preferred: true})
	wantPath(t, "the in-sync peer", h, array.Path{State: array.PathNonOptimized})
	if err := h.Zero(ctx, 0, 64<<10, false); err != nil {
		t.Fatal(err)
	}
	check("a zeroed range", 0, make([]byte, 64<<10))
	q := bytes.Repeat([]byte{0x3c}, 8192)
	if err := h.WriteAt(ctx, q, 5*mib, true); err != nil {
		t.Fatal(err)
	}
	check("a FUA write", 5*mib, q)
	if err := h.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	// COMPARE AND WRITE is compared at the preferred array, which
	// sequences the pod's writes: a match writes at both copies, a
	// miscompare names the first differing byte and writes nothing.
	r := bytes.Repeat([]byte{0x5d}, 8192)
	if err := h.CompareAndWrite(ctx, q, r, 5*mib, false); err != nil {
		t.Fatalf("compare and write of the bytes the volume holds, at the peer: %v", err)
	}
	check("a COMPARE AND WRITE", 5*mib, r)
	wrong := bytes.Clone(r)
	wrong[4096+3] ^= 1
	var me *store.MiscompareError
	if err := h.CompareAndWrite(ctx, wrong, q, 5*mib, true); !errors.As(err, &me) || me.Offset != 4096+3 {
		t.Fatalf("compare and write of other bytes at the peer: %v, want a miscompare at byte %d", err, 4096+3)
	}
	check("a miscompared COMPARE AND WRITE", 5*mib, r)
	if err := h.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	same(t, src, tg, "v1")
}

// TestPodCompareAndWriteAtBothSides: clients at both arrays increment one
// counter with COMPARE AND WRITE (read, then compare and write the next
// value, again on a miscompare), as a cluster file system takes a lock.
// Every increment that succeeded counts: none is lost to one made at the
// other array in between, and both copies end with the total.
func TestPodCompareAndWriteAtBothSides(t *testing.T) {
	src, tg := newPod(t, 5*time.Second)
	ctx := t.Context()
	const off, perClient = 6 * mib, 40
	peerWritable(t, tg, "v1", off, make([]byte, 4096))
	block := func(n uint64) []byte {
		b := make([]byte, 4096)
		binary.LittleEndian.PutUint64(b, n)
		return b
	}
	var wg sync.WaitGroup
	var miscompares sync.Map
	for side, st := range []*store.Store{src.st, tg.st} {
		for c := 0; c < 2; c++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				h := openVol(t, st, "v1")
				cur := make([]byte, 4096)
				lost := 0
				for done := 0; done < perClient; {
					if err := h.ReadAt(ctx, cur, off); err != nil {
						t.Errorf("read at side %d: %v", side, err)
						return
					}
					n := binary.LittleEndian.Uint64(cur)
					err := h.CompareAndWrite(ctx, cur, block(n+1), off, false)
					var me *store.MiscompareError
					switch {
					case err == nil:
						done++
					case errors.As(err, &me):
						lost++
					default:
						t.Errorf("compare and write at side %d: %v", side, err)
						return
					}
				}
				miscompares.Store([2]int{side, c}, lost)
			}()
		}
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	var lost []int
	miscompares.Range(func(_, v any) bool { lost = append(lost, v.(int)); return true })
	t.Logf("miscompares per client (retried): %v", lost)
	want := block(4 * perClient)
	for name, st := range map[string]*store.Store{"preferred array": src.st, "peer": tg.st} {
		got := make([]byte, 4096)
		if err := st.ReadVolume(ctx, "v1", off, got); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("the counter at the %s is %d after %d increments by COMPARE AND WRITE", name, binary.LittleEndian.Uint64(got), 4*perClient)
		}
	}
	same(t, src, tg, "v1")
}

// TestPodWritesAtBothSides: writers at both arrays to the same 64 KiB
// leave both copies byte-identical, each block holding the last value
// of some acknowledged write to it (or zeros).
func TestPodWritesAtBothSides(t *testing.T) {
	src, tg := newPod(t, 5*time.Second)
	ctx := t.Context()
	const region, blocks, perWriter = 4 * mib, 16, 150
	peerWritable(t, tg, "v1", region, make([]byte, 4096))
	var mu sync.Mutex
	written := map[int64]map[uint32]bool{} // block -> ids acknowledged there
	var wg sync.WaitGroup
	for side, st := range []*store.Store{src.st, tg.st} {
		for w := 0; w < 4; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				h := openVol(t, st, "v1")
				for i := 0; i < perWriter; i++ {
					id := uint32(side<<24 | w<<16 | i + 1)
					blk := int64((i*7 + w*3 + side) % blocks)
					n := int64(1 + i%3) // one to three blocks
					n = min(n, blocks-blk)
					if i%10 == 9 {
						if err := h.Zero(ctx, region+blk*4096, n*4096, false); err != nil {
							t.Errorf("zero at side %d: %v", side, err)
							return
						}
						continue
					}
					p := make([]byte, n*4096)
					for o := 0; o < len(p); o += 4 {
						binary.LittleEndian.PutUint32(p[o:], id)
					}
					if err := h.WriteAt(ctx, p, region+blk*4096, false); err != nil {
						t.Errorf("write at side %d: %v", side, err)
						return
					}
					mu.Lock()
					for b := blk; b < blk+n; b++ {
						if written[b] == nil {
							written[b] = map[uint32]bool{}
						}
						written[b][id] = true
					}
					mu.Unlock()
				}
			}()
		}
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	a, b := make([]byte, blocks*4096), make([]byte, blocks*4096)
	if err := src.st.ReadVolume(ctx, "v1", region, a); err != nil {
		t.Fatal(err)
	}
	if err := tg.st.ReadVolume(ctx, "v1", region, b); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a, b) {
		t.Fatal("after writers at both arrays the two copies differ")
	}
	for blk := int64(0); blk < blocks; blk++ {
		data := a[blk*4096 : (blk+1)*4096]
		id := binary.LittleEndian.Uint32(data)
		if !bytes.Equal(data, bytes.Repeat(data[:4], 1024)) || (id != 0 && !written[blk][id]) {
			t.Fatalf("block %d holds %x..., which no acknowledged write put there", blk, data[:8])
		}
	}
	same(t, src, tg, "v1")
}

// TestPodPeerWritesFailWhenCut: with the link between the arrays cut,
// writes at the peer fail at once (UNAVAILABLE) and change nothing; once
// it is back they succeed again, and the copies do not diverge.
func TestPodPeerWritesFailWhenCut(t *testing.T) {
	const timeout = time.Second
	src, tg := newPod(t, timeout)
	ctx := t.Context()
	peerWritable(t, tg, "v1", 0, bytes.Repeat([]byte{1}, 4096))
	tg.halt()
	// The forward stream ends with the server: no wait for a timeout.
	var err error
	deadline := time.Now().Add(10 * time.Second)
	for err == nil && time.Now().Before(deadline) {
		err = tg.st.WriteVolume(ctx, "v1", 8192, bytes.Repeat([]byte{9}, 4096), false)
	}
	if !errdefs.IsUnavailable(err) {
		t.Fatalf("a write at the peer with the link cut: %v, want UNAVAILABLE", err)
	}
	// The writes keep failing, each at once.
	for i := 0; i < 5; i++ {
		start := time.Now()
		err := tg.st.WriteVolume(ctx, "v1", 3*4096, bytes.Repeat([]byte{0xee}, 4096), false)
		if !errdefs.IsUnavailable(err) || time.Since(start) > timeout/2 {
			t.Fatalf("a write at the cut peer took %v and returned %v; want UNAVAILABLE at once", time.Since(start), err)
		}
	}
	got := make([]byte, 4096)
	if err := tg.st.ReadVolume(ctx, "v1", 3*4096, got); err != nil {
		t.Fatalf("reads at the cut peer: %v", err)
	}
	if bytes.Contains(got, []byte{0xee}) {
		t.Fatal("a refused write at the peer changed its copy")
	}
	cut := openVol(t, tg.st, "v1")
	wantPath(t, "the cut peer", cut, array.Path{State: array.PathUnavailable})
	// The preferred array learns of the cut from its own streams, a moment
	// after the peer (whose server stopped) does.
	for deadline := time.Now().Add(5 * timeout); ; time.Sleep(20 * time.Millisecond) {
		r, _ := src.eng.GetReplica(ctx, "pod")
		if r.PeerWrites == array.WritesStopped && r.Writes == array.WritesOnline {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("with the link cut the pod reports writes %q here and %q at the peer", r.Writes, r.PeerWrites)
		}
	}
	// The preferred side carries on meanwhile.
	if err := src.st.WriteVolume(ctx, "v1", 4*4096, bytes.Repeat([]byte{0xaa}, 4096), false); err != nil {
		t.Fatal(err)
	}
	tg.start()
	syncNow(t, src)
	peerWritable(t, tg, "v1", 5*4096, bytes.Repeat([]byte{0x55}, 4096))
	wantPath(t, "the peer back in sync", cut, array.Path{State: array.PathNonOptimized})
	if r, _ := src.eng.GetReplica(ctx, "pod"); r.PeerWrites != array.WritesOnline {
		t.Fatalf("with the link back and a write at the peer acknowledged, the pod reports the peer's writes %q", r.PeerWrites)
	}
	same(t, src, tg, "v1")
}

func wantPath(t *testing.T, side string, h *store.Handle, want array.Path) {
	t.Helper()
	if got := h.Path(); got != want {
		t.Fatalf("%s reports its path %s (preferred %v), want %s (preferred %v)", side, got.State, got.Preferred, want.State, want.Preferred)
	}
}

// TestPodPeerTooOldForForwarding: a peer that does not report
// FeatureForwardOwnCopy (a volrep from before it answered a forwarded
// write only once its own copy held it) gets no forward stream. The pod
// still mirrors to it and comes in sync, but its copy refuses client
// writes, so nothing is acknowledged there that one copy might lack; the
// preferred array says why, once.
func TestPodPeerTooOldForForwarding(t *testing.T) {
	logs := &testenv.Buffer{}
	src := newSource(t, clock.NewFake(t0), func(o *replication.Options) {
		o.Logger = slog.New(slog.NewTextHandler(logs, nil))
	})
	tg := newTargetOf(t, true, &[]string{})
	podOn(t, src, tg, 5*time.Second)
	ctx := t.Context()
	// Nor is it sent a LOGICAL UNIT RESET, which it would not know.
	resets := watchResets(tg.st)
	openVol(t, src.st, "v1").ShareReset(t.Context())
	if n := resets.n.Load(); n != 0 {
		t.Fatalf("the old peer recorded %d resets taken at the preferred array", n)
	}
	p := bytes.Repeat([]byte{0x3c}, 8192)
	if err := src.st.WriteVolume(ctx, "v1", 4*mib, p, false); err != nil {
		t.Fatal(err)
	}
	// Past several of the pod's steps: the peer's copy must stay closed.
	for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		// Refused as a replica target is (it never had a forward stream).
		if err := tg.st.WriteVolume(ctx, "v1", 0, p, false); !errdefs.IsFailedPrecondition(err) && !errdefs.IsUnavailable(err) {
			t.Fatalf("a write at a peer too old to forward safely: %v; want it refused", err)
		}
	}
	got := make([]byte, len(p))
	if err := tg.st.ReadVolume(ctx, "v1", 4*mib, got); err != nil || !bytes.Equal(got, p) {
		t.Fatalf("the preferred array's write is not mirrored to the old peer (%v)", err)
	}
	if n := strings.Count(logs.String(), "too old to take its clients' writes safely"); n != 1 {
		t.Fatalf("the preferred array logged the old peer %d times; want once:\n%s", n, logs)
	}
	if !strings.Contains(logs.String(), array.FeatureForwardOwnCopy) {
		t.Fatalf("the log does not name the missing feature:\n%s", logs)
	}
	if r, err := src.eng.GetReplica(ctx, "pod"); err != nil || r.PeerWrites != array.WritesStopped || !strings.Contains(r.Message, array.FeatureForwardOwnCopy) {
		t.Fatalf("the replica with a peer too old to forward: peer writes %s, message %q (%v); want stopped, naming the feature", r.PeerWrites, r.Message, err)
	}
	// A peer that never forwarded keeps no copies as the pod's: the
	// release owed to it when the pod is deleted is dropped, not retried.
	if err := src.eng.DeleteReplica(ctx, "pod", false); err != nil {
		t.Fatal(err)
	}
	waitNoneOwed(t, src.st, "to a peer too old to forward")
	if strings.Contains(logs.String(), "retrying at each link check") {
		t.Fatalf("the release owed to a peer too old to forward was retried:\n%s", logs)
	}
}

// TestPodPeerRestartKeepsItsCopiesThePods: the peer restarts while the
// preferred array cannot reach it. Its copies must answer as the pod's
// copies do when the preferred array is away (path unavailable, writes
// refused as UNAVAILABLE), not as plain read-only replicas (an optimized
// path whose writes fail as write-protected, which a host's multipath
// does not retry on its path to the preferred array). Once the preferred
// array is back, they take writes again.
func TestPodPeerRestartKeepsItsCopiesThePods(t *testing.T) {
	_, tg := newPod(t, 5*time.Second)
	ctx := t.Context()
	p := bytes.Repeat([]byte{0x4d}, 8192)
	peerWritable(t, tg, "v1", 0, p)

	tg.halt()
	restartPeerStore(t, tg)
	// The restarted peer's transfer service, not yet reachable.
	ts, err := transfer.NewService(ctx, tg.st, slog.New(slog.DiscardHandler), transfer.ServiceOptions{})
	if err != nil {
		t.Fatal(err)
	}
	wantPath(t, "the restarted peer", openVol(t, tg.st, "v1"), array.Path{State: array.PathUnavailable})
	if err := tg.st.WriteVolume(ctx, "v1", 0, p, false); !errdefs.IsUnavailable(err) {
		t.Fatalf("a write at the restarted peer, the preferred array away: %v; want UNAVAILABLE", err)
	}
	ts.Close()

	tg.start()
	peerWritable(t, tg, "v1", 4096, p)
}

// restartPeerStore closes a halted peer's store and opens it again, as a
// restarted volrepd would, keeping its raw stream port.
func restartPeerStore(t *testing.T, tg *target) {
	t.Helper()
	dir := tg.st.Dir()
	_, ps, err := net.SplitHostPort(tg.streams)
	if err != nil {
		t.Fatal(err)
	}
	port, err := strconv.Atoi(ps)
	if err != nil {
		t.Fatal(err)
	}
	if err := tg.st.Close(); err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(dir, store.Options{Name: "site-b", NBDAddress: "127.0.0.1:10809", StreamPort: port})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tg.halt(); st.Close() })
	tg.st = st
}

// TestPodRemovedWhilePeerIsDown: a pod deleted while its peer is down
// cannot tell the peer at once, so the release is owed: recorded at the
// preferred array, and delivered by its link checks once the peer is
// back, restarted or not. Until then the peer's copies answer as the
// pod's; after it, they are plain replicas, and stay so across the peer's
// next restart.
func TestPodRemovedWhilePeerIsDown(t *testing.T) {
	src := newSource(t, clock.NewFake(t0), func(o *replication.Options) { o.LinkCheckInterval = 50 * time.Millisecond })
	tg := newTarget(t)
	podOn(t, src, tg, 2*time.Second)
	ctx := t.Context()
	peerWritable(t, tg, "v1", 0, bytes.Repeat([]byte{0x5a}, 4096))

	tg.halt()
	if err := src.eng.DeleteReplica(ctx, "pod", false); err != nil {
		t.Fatal(err)
	}
	if got := owedReleases(t, src.st); !slices.Equal(got, []string{"pod"}) {
		t.Fatalf("with the peer down, the releases owed are %q; want [pod]", got)
	}
	if l, err := src.eng.GetLink(ctx, "site-b"); err != nil || !slices.Equal(l.PodsOwedRelease, []string{"pod"}) {
		t.Fatalf("the link shows %q owed (%v); want [pod]", l.PodsOwedRelease, err)
	}
	restartPeerStore(t, tg)
	// Restarted before it heard, the peer's copy is still the pod's.
	ts, err := transfer.NewService(ctx, tg.st, slog.New(slog.DiscardHandler), transfer.ServiceOptions{})
	if err != nil {
		t.Fatal(err)
	}
	wantPath(t, "the restarted peer, not yet told", openVol(t, tg.st, "v1"), array.Path{State: array.PathUnavailable})
	ts.Close()

	tg.start()
	h := openVol(t, tg.st, "v1")
	for deadline := time.Now().Add(10 * time.Second); h.Path().State != array.PathOptimized; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the peer's copy of the removed pod reports %s, not a plain replica's optimized path, 10 s after the peer came back", h.Path().State)
		}
	}
	if err := tg.st.WriteVolume(ctx, "v1", 0, []byte{1}, false); err == nil || errdefs.IsUnavailable(err) {
		t.Fatalf("a write to the released copy: %v; want it refused as a replica's (read-only), not as the pod's", err)
	}
	waitNoneOwed(t, src.st, "after the peer applied it")
	// A release leaves the view before its record does.
	if ls, err := src.eng.ListLinks(ctx); err != nil || len(ls) != 1 || len(ls[0].PodsOwedRelease) != 0 {
		t.Fatalf("the links after the release: %+v (%v); want site-b with nothing owed", ls, err)
	}
	tg.halt()
	restartPeerStore(t, tg)
	tg.start()
	wantPath(t, "the released copy after the peer's next restart", openVol(t, tg.st, "v1"), array.Path{State: array.PathOptimized})
}

// TestPodReleaseDroppedWithItsLink: a release owed to a peer whose link
// is then deleted cannot be delivered; the next link check drops it and
// says that the peer's copies stay the pod's until handled there.
func TestPodReleaseDroppedWithItsLink(t *testing.T) {
	logs := &testenv.Buffer{}
	src := newSource(t, clock.NewFake(t0), func(o *replication.Options) {
		o.LinkCheckInterval = 50 * time.Millisecond
		o.Logger = slog.New(slog.NewTextHandler(logs, nil))
	})
	tg := newTarget(t)
	podOn(t, src, tg, 2*time.Second)
	ctx := t.Context()
	tg.halt()
	if err := src.eng.DeleteReplica(ctx, "pod", false); err != nil {
		t.Fatal(err)
	}
	if got := owedReleases(t, src.st); !slices.Equal(got, []string{"pod"}) {
		t.Fatalf("with the peer down, the releases owed are %q; want [pod]", got)
	}
	if err := src.eng.DeleteLink(ctx, "site-b"); err != nil {
		t.Fatal(err)
	}
	waitNoneOwed(t, src.st, "over a deleted link")
	if !strings.Contains(logs.String(), "the link to a removed pod's peer was deleted") {
		t.Fatalf("the dropped release was not logged:\n%s", logs.String())
	}
}

// owedReleases names the pods whose peer is owed a release at st.
func owedReleases(t *testing.T, st *store.Store) []string {
	t.Helper()
	return recordKeys(t, st, "pod-releases")
}

// recordKeys lists the keys of a bucket of st's records, in order.
func recordKeys(t *testing.T, st *store.Store, bucket string) []string {
	t.Helper()
	var keys []string
	if err := st.Records(t.Context(), bucket, "", func(k string, _ []byte) error { keys = append(keys, k); return nil }); err != nil {
		t.Fatal(err)
	}
	return keys
}

// waitNoneOwed waits up to 5 s until st owes no peer a release.
func waitNoneOwed(t *testing.T, st *store.Store, what string) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); len(owedReleases(t, st)) > 0; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("releases still owed %s: %q", what, owedReleases(t, st))
		}
	}
}

// TestPodOfTheSameNameFromAnotherArray: a second array stretches a pod of
// the same name to the same peer (two backends sharing a replication
// target and the default pod name). The peer refuses the second array's
// forward stream rather than let the two take the copies from each other
// stream by stream: the first pod's copies keep taking writes, the
// second's mirror but take none, and the second array logs the peer's
// reason, naming the setting to change, once.
func TestPodOfTheSameNameFromAnotherArray(t *testing.T) {
	src, tg := newPod(t, 5*time.Second)
	ctx := t.Context()
	peerWritable(t, tg, "v1", 0, bytes.Repeat([]byte{1}, 4096))

	logs := &testenv.Buffer{}
	other := newSource(t, clock.NewFake(t0), func(o *replication.Options) {
		o.Logger = slog.New(slog.NewTextHandler(logs, nil))
	})
	podGroupOf(t, other, "u1")
	protect(t, other, tg, "pod", array.ReplicaSpec{Kind: array.KindGroup, Local: "cinder-pod", Type: array.TypeSync, SyncTimeout: 5 * time.Second})
	syncNow(t, other)
	p := bytes.Repeat([]byte{0x2e}, 8192)
	if err := other.st.WriteVolume(ctx, "u1", mib, p, false); err != nil {
		t.Fatal(err)
	}
	// Past two of the second pod's idle steps (5 s), each asking again.
	for deadline := time.Now().Add(11 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		if err := tg.st.WriteVolume(ctx, "v1", 4096, p, false); err != nil {
			t.Fatalf("the first pod's copy at the peer, with a second array's pod of the same name: %v", err)
		}
		if err := tg.st.WriteVolume(ctx, "u1", 0, p, false); err == nil {
			t.Fatal("the second array's copy takes client writes, its forward stream refused")
		}
	}
	got := make([]byte, len(p))
	if err := tg.st.ReadVolume(ctx, "u1", mib, got); err != nil || !bytes.Equal(got, p) {
		t.Fatalf("the second pod's write is not mirrored to the peer (%v)", err)
	}
	const refused = "the peer refused the pod's forward stream"
	if n := strings.Count(logs.String(), refused); n != 1 || !strings.Contains(logs.String(), "pure_replication_pod_name") {
		t.Fatalf("the second array logged the refusal %d times; want once, naming pure_replication_pod_name:\n%s", n, logs)
	}
	r, err := other.eng.GetReplica(ctx, "pod")
	if err != nil {
		t.Fatal(err)
	}
	if r.State != array.StateActive || r.PeerWrites != array.WritesStopped || !strings.Contains(r.Message, "pure_replication_pod_name") {
		t.Fatalf("the second array's replica: %s, peer writes %s, message %q; want active, the peer's writes stopped and why", r.State, r.PeerWrites, r.Message)
	}
	same(t, src, tg, "v1")
}
