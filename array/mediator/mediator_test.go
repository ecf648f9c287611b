package mediator

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/goleak"
	"go.uber.org/zap"

	"github.com/volrep/volrep/errdefs"
	"github.com/volrep/volrep/internal/etcdtest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const ttl = 2 * time.Second

func newClient(t *testing.T, endpoint string) *Client {
	t.Helper()
	c, err := New([]string{endpoint}, Options{TTL: ttl, PreferDelay: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func claim(t *testing.T, c *Client, pod, owner string, preferred bool) *Claim {
	t.Helper()
	cl := c.Claim(pod, owner, preferred, nil)
	t.Cleanup(func() { cl.Close(context.Background()) })
	return cl
}

func waitFor(t *testing.T, within time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > within {
			t.Fatalf("%s: not within %s", what, within)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return time.Since(start)
}

func TestOneSideHoldsTheKey(t *testing.T) {
	e := etcdtest.Start(t, "", "")
	a, b := newClient(t, e.Endpoint()), newClient(t, e.Endpoint())
	ca := claim(t, a, "pod1", "array-a", true)
	waitFor(t, 5*time.Second, "A takes the free key", ca.Held)
	cb := claim(t, b, "pod1", "array-b", false)
	ctx := context.Background()
	err := cb.Acquire(ctx)
	if !errdefs.IsFailedPrecondition(err) {
		t.Fatalf("B asked for a key A holds: %v, want FailedPrecondition", err)
	}
	if s := cb.Status(); s.Held || s.Holder != "array-a" || !s.Reachable {
		t.Fatalf("B's status %+v, want not held, holder array-a, reachable", s)
	}
	if h, err := a.Holder(ctx, "pod1"); err != nil || h != "array-a" {
		t.Fatalf("holder %q, %v", h, err)
	}
	// A lease kept alive outlives its TTL several times over.
	time.Sleep(2 * ttl)
	if !ca.Held() || cb.Held() {
		t.Fatalf("after %s: A held %v, B held %v", 2*ttl, ca.Held(), cb.Held())
	}
	// A gives the key up on Close; B's claim takes it.
	ca.Close(ctx)
	waitFor(t, 3*ttl, "B takes the key A released", cb.Held)
	if h, _ := a.Holder(ctx, "pod1"); h != "array-b" {
		t.Fatalf("holder after the handover %q", h)
	}
}

func TestPreferredSideWinsWhenBothAsk(t *testing.T) {
	e := etcdtest.Start(t, "", "")
	a, b := newClient(t, e.Endpoint()), newClient(t, e.Endpoint())
	for i := range 3 {
		pod := "race" + string(rune('0'+i))
		// Both sides start asking at the same moment; B is not preferred.
		var wg sync.WaitGroup
		var cb, ca *Claim
		wg.Add(2)
		go func() { defer wg.Done(); cb = b.Claim(pod, "array-b", false, nil) }()
		go func() { defer wg.Done(); ca = a.Claim(pod, "array-a", true, nil) }()
		wg.Wait()
		waitFor(t, 5*time.Second, "someone holds "+pod, func() bool { return ca.Held() || cb.Held() })
		time.Sleep(time.Second) // past B's preference delay
		if !ca.Held() || cb.Held() {
			t.Errorf("%s: preferred held %v, other held %v", pod, ca.Held(), cb.Held())
		}
		ca.Close(context.Background())
		cb.Close(context.Background())
	}
}

// The other side holds the key and stops renewing it (cut off from the
// mediator): this side takes the key the moment its lease ends, not a
// preference delay or a tick later. That is what bounds a pod's takeover
// by the sync timeout plus the lease time.
func TestTakeoverFollowsTheLeaseEnd(t *testing.T) {
	e := etcdtest.Start(t, "", "")
	raw, err := clientv3.New(clientv3.Config{Endpoints: []string{e.Endpoint()}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	ctx := context.Background()
	for i := range 3 {
		pod := fmt.Sprintf("cut%d", i)
		// array-a took the key and is then cut off: its lease is never
		// renewed again.
		g, err := raw.Grant(ctx, int64(ttl/time.Second))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := raw.Put(ctx, Key(pod), "array-a", clientv3.WithLease(g.ID)); err != nil {
			t.Fatal(err)
		}
		wctx, cancel := context.WithCancel(ctx)
		deleted := make(chan time.Time, 1)
		watch := raw.Watch(wctx, Key(pod))
		go func() {
			for resp := range watch {
				for _, ev := range resp.Events {
					if ev.Type == clientv3.EventTypeDelete {
						deleted <- time.Now()
						return
					}
				}
			}
		}()
		held := make(chan time.Time, 1)
		b := newClient(t, e.Endpoint())
		cb := b.ClaimToCarry(pod, "array-b", false, func(s Status) {
			if s.Held {
				select {
				case held <- time.Now():
				default:
				}
			}
		})
		var gone, took time.Time
		select {
		case gone = <-deleted:
		case <-time.After(3 * ttl):
			t.Fatalf("%s: array-a's lease did not end", pod)
		}
		select {
		case took = <-held:
		case <-time.After(3 * ttl):
			t.Fatalf("%s: array-b never took the key", pod)
		}
		cancel()
		cb.Close(ctx)
		after := took.Sub(gone)
		t.Logf("%s: array-b held the key %s after array-a's lease ended (preference delay %s, tick %s)", pod, after, b.preferDelay, ttl/3)
		// Before, the next ask came after a tick and the preference delay:
		// 0.47-0.64 s after the lease ended here.
		if after > 300*time.Millisecond {
			t.Errorf("%s: array-b took the key %s after the lease ended; want it at once", pod, after)
		}
	}
}

// An operator gives up a carrying array for lost: its mark goes only
// while it still names that array and no array holds the key, and then
// the other array takes the pod.
func TestForgetMark(t *testing.T) {
	e := etcdtest.Start(t, "", "")
	a, b := newClient(t, e.Endpoint()), newClient(t, e.Endpoint())
	ctx := context.Background()
	cb := b.ClaimToCarry("pod1", "array-b", false, nil)
	defer cb.Close(ctx)
	waitFor(t, 5*time.Second, "B takes the key and marks the pod", cb.Held)
	for _, c := range []struct{ owner, why string }{
		{"array-x", `marked by array "array-b", not "array-x"`},
		{"array-b", `array "array-b" holds pod pod1's key`},
	} {
		if err := a.ForgetMark(ctx, "pod1", c.owner); !errdefs.IsFailedPrecondition(err) || !strings.Contains(err.Error(), c.why) {
			t.Errorf("ForgetMark(%s) while B carries the pod: %v; want FailedPrecondition saying %s", c.owner, err, c.why)
		}
	}
	// B is gone: its key is not renewed (here given up), its mark stays,
	// and A cannot take the pod over it.
	cb.Close(ctx)
	ca := claim(t, a, "pod1", "array-a", true)
	time.Sleep(ttl)
	if ca.Held() {
		t.Fatal("A took the pod over B's mark")
	}
	if err := a.ForgetMark(ctx, "pod1", "array-b"); err != nil {
		t.Fatalf("ForgetMark(array-b) with B gone: %v", err)
	}
	waitFor(t, 2*ttl, "A takes the pod once B's mark is forgotten", ca.Held)
	if err := a.ForgetMark(ctx, "pod1", "array-b"); !errdefs.IsFailedPrecondition(err) || !strings.Contains(err.Error(), "has no mark") {
		t.Errorf("ForgetMark again: %v; want FailedPrecondition, no mark", err)
	}
}

func TestHoldEndsWhenTheMediatorIsGoneAndComesBack(t *testing.T) {
	e := etcdtest.Start(t, "", "")
	c := newClient(t, e.Endpoint())
	var mu sync.Mutex
	var seen []Status
	cl := c.Claim("pod1", "array-a", true, func(s Status) { mu.Lock(); seen = append(seen, s); mu.Unlock() })
	t.Cleanup(func() { cl.Close(context.Background()) })
	waitFor(t, 5*time.Second, "the claim holds", cl.Held)
	e.Stop()
	lost := waitFor(t, 2*ttl, "the hold ends without etcd", func() bool { return !cl.Held() })
	t.Logf("the hold ended %s after etcd was killed (TTL %s)", lost, ttl)
	if lost > ttl+500*time.Millisecond {
		t.Errorf("the hold outlived the lease: %s", lost)
	}
	if s := cl.Status(); s.Reachable || !errdefs.IsUnavailable(s.Err) {
		t.Errorf("status without etcd: %+v, want unreachable with an Unavailable error", s)
	}
	e.Restart()
	back := waitFor(t, 15*time.Second, "the claim holds again", cl.Held)
	t.Logf("held again %s after etcd restarted", back)
	mu.Lock()
	defer mu.Unlock()
	var lostSeen, heldSeen bool
	for _, s := range seen {
		lostSeen = lostSeen || (!s.Held && !s.Reachable)
		heldSeen = heldSeen || s.Held
	}
	if !lostSeen || !heldSeen {
		t.Errorf("notifications %+v miss the loss or the return", seen)
	}
}

func TestUnreachableMediatorIsUnavailable(t *testing.T) {
	e := etcdtest.Start(t, "", "")
	e.Stop()
	c := newClient(t, e.Endpoint())
	cl := claim(t, c, "pod1", "array-a", true)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	start := time.Now()
	err := cl.Acquire(ctx)
	if !errdefs.IsUnavailable(err) {
		t.Fatalf("Acquire without etcd: %v, want Unavailable", err)
	}
	if took := time.Since(start); took > ttl {
		t.Errorf("Acquire took %s to give up; it is bounded by half the TTL", took)
	}
	if cl.Held() {
		t.Fatal("held without etcd")
	}
}

func TestNewRejectsBadOptions(t *testing.T) {
	if _, err := New(nil, Options{}); !errdefs.IsInvalidArgument(err) {
		t.Errorf("no endpoints: %v", err)
	}
	if _, err := New([]string{"127.0.0.1:1"}, Options{TTL: 100 * time.Millisecond}); !errdefs.IsInvalidArgument(err) {
		t.Errorf("TTL 100ms: %v", err)
	}
}

// TestMarksKeepTheKeyFromACopyThatLacksWrites: a side's mark (it
// acknowledged writes the other side lacks) keeps the other side from
// taking the key, even when the key is free; a side that carries the pod
// sets its mark as it takes the key, and Release clears both.
func TestMarksKeepTheKeyFromACopyThatLacksWrites(t *testing.T) {
	e := etcdtest.Start(t, "", "")
	a, b := newClient(t, e.Endpoint()), newClient(t, e.Endpoint())
	ctx := context.Background()
	ca := claim(t, a, "pod1", "array-a", true)
	waitFor(t, 5*time.Second, "A takes the free key", ca.Held)
	if err := ca.Mark(ctx); err != nil {
		t.Fatalf("the holder marks: %v", err)
	}
	cb := b.ClaimToCarry("pod1", "array-b", false, nil)
	t.Cleanup(func() { cb.Close(ctx) })
	// A goes away (its lease ends), its mark stays: B must not take over.
	ca.Close(ctx)
	time.Sleep(2 * ttl)
	if cb.Held() {
		t.Fatal("B took the key over A's mark")
	}
	if err := cb.Acquire(ctx); !errdefs.IsFailedPrecondition(err) || !strings.Contains(err.Error(), "array-a") {
		t.Fatalf("B asks over A's mark: %v, want FailedPrecondition naming array-a", err)
	}
	// A marks nothing it does not hold.
	if err := ca.Mark(ctx); !errdefs.IsFailedPrecondition(err) {
		t.Fatalf("a side without the key marks: %v, want FailedPrecondition", err)
	}
	// A comes back, resyncs and clears its mark: now B may carry.
	ca2 := claim(t, a, "pod1", "array-a", true)
	waitFor(t, 5*time.Second, "A takes the key again over its own mark", ca2.Held)
	if err := ca2.Unmark(ctx); err != nil {
		t.Fatal(err)
	}
	ca2.Close(ctx)
	waitFor(t, 3*ttl, "B carries the pod once A's mark is gone", cb.Held)
	if ahead, err := a.Ahead(ctx, "pod1"); err != nil || ahead != "array-b" {
		t.Fatalf("B took the key without its mark: %q %v", ahead, err)
	}
	// B's mark keeps A out, although A is preferred.
	ca3 := claim(t, a, "pod1", "array-a", true)
	cb.Close(ctx) // B's lease ends (a crash), its mark stays
	time.Sleep(2 * ttl)
	if ca3.Held() {
		t.Fatal("A took the key over B's mark")
	}
	// B restarts, takes the key again over its own mark, and releases.
	cb2 := b.ClaimToCarry("pod1", "array-b", false, nil)
	waitFor(t, 5*time.Second, "B takes the key again over its own mark", cb2.Held)
	if err := cb2.Release(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 3*ttl, "A takes the key once B released it", ca3.Held)
	if ahead, err := a.Ahead(ctx, "pod1"); err != nil || ahead != "" {
		t.Fatalf("a mark after B released: %q %v", ahead, err)
	}
}

// TestYieldHandsTheKeyToThePreferredPeer: a side that yields stops
// holding the key at once and frees it at etcd, so a preferred carrier
// takes it within moments; after the wait, the yielding side finds it
// held and stays out. A side that yields with nobody asking takes the
// key back once its wait is over, without the preference delay.
func TestYieldHandsTheKeyToThePreferredPeer(t *testing.T) {
	e := etcdtest.Start(t, "", "")
	a, b := newClient(t, e.Endpoint()), newClient(t, e.Endpoint())
	ctx := context.Background()
	ca := claim(t, a, "pod1", "array-a", false)
	waitFor(t, 5*time.Second, "A takes the free key", ca.Held)
	if ca.Yield(0) != true || ca.Held() {
		t.Fatalf("after Yield A still holds the key (held %v)", ca.Held())
	}
	// Nobody asks: A takes the key again, at once (no preference delay:
	// the yield was its deference).
	took := waitFor(t, time.Second, "A takes the key back after a yield nobody took", ca.Held)
	t.Logf("A held the key again %s after a zero-length yield", took)

	const wait = 1500 * time.Millisecond
	yielded := time.Now()
	if !ca.Yield(wait) {
		t.Fatal("Yield of a held key reported nothing to yield")
	}
	if st := ca.Status(); st.Held || !st.Yielding {
		t.Fatalf("status right after Yield: %+v, want not held and yielding", st)
	}
	waitFor(t, time.Second, "the key is free at etcd", func() bool {
		h, err := a.Holder(ctx, "pod1")
		return err == nil && h == ""
	})
	cb := b.ClaimToCarry("pod1", "array-b", true, nil)
	defer cb.Close(ctx)
	// Within the preference delay (500 ms): B, preferred, does not defer.
	waitFor(t, 400*time.Millisecond, "B, preferred, takes the yielded key", cb.Held)
	t.Logf("B held the key %s after A yielded it", time.Since(yielded).Round(time.Millisecond))
	if ahead, err := a.Ahead(ctx, "pod1"); err != nil || ahead != "array-b" {
		t.Fatalf("B's mark after taking the key to carry: %q, %v", ahead, err)
	}
	time.Sleep(time.Until(yielded.Add(wait + 2*ttl/3)))
	if ca.Held() {
		t.Fatal("A took the key back while B held it")
	}
	if st := ca.Status(); st.Yielding || st.Holder != "array-b" {
		t.Fatalf("A's status once its wait is over: %+v, want B named as the holder", st)
	}
	if ca.Yield(time.Second) {
		t.Fatal("Yield of a key this side does not hold reported a yield")
	}
}
