package replication_test

import (
	"bytes"
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/volrep/volrep/array/store"
)

// resetLog stands for an array's iSCSI target (store.ResetWatcher): it
// counts the resets of the other array applied to it, and while hold is
// set, each one's drain waits for it to close, as commands still running
// on the unit would hold the drain.
type resetLog struct {
	n    atomic.Int64
	hold atomic.Pointer[chan struct{}]
}

func (r *resetLog) SharedReset(string) func(context.Context) error {
	r.n.Add(1)
	hold := r.hold.Load()
	return func(ctx context.Context) error {
		if hold == nil {
			return nil
		}
		select {
		case <-*hold:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func watchResets(st *store.Store) *resetLog {
	r := &resetLog{}
	st.WatchResets(r)
	return r
}

// TestPodResetReachesBothArrays: a host sees a pod's two copies as one
// logical unit, so a LOGICAL UNIT RESET at either array is applied at the
// other (where the iSCSI target raises its unit attention) before it is
// answered, once, with no echo back.
func TestPodResetReachesBothArrays(t *testing.T) {
	src, tg := newPod(t, 5*time.Second)
	ra, rb := watchResets(src.st), watchResets(tg.st)
	peerWritable(t, tg, "v1", 0, bytes.Repeat([]byte{1}, 4096))
	a, b := openVol(t, src.st, "v1"), openVol(t, tg.st, "v1")
	a.ShareReset(t.Context())
	if n := rb.n.Load(); n != 1 {
		t.Fatalf("once a reset at the preferred array is answered, the peer applied %d, want 1", n)
	}
	b.ShareReset(t.Context())
	if n := ra.n.Load(); n != 1 {
		t.Fatalf("once a reset at the peer is answered, the preferred array applied %d, want 1", n)
	}
	time.Sleep(200 * time.Millisecond)
	if ra.n.Load() != 1 || rb.n.Load() != 1 {
		t.Fatalf("resets applied: %d at the preferred array, %d at the peer; want 1 each (no echo)", ra.n.Load(), rb.n.Load())
	}
}

// TestPodResetWaitsForTheOtherArraysCommands: a reset at either array of
// a pod is answered only once the other array's commands that ran when
// it came are done (its drain), and the pod's writes go on meanwhile in
// both directions: the drain is waited for off the streams, which those
// very commands may wait on.
func TestPodResetWaitsForTheOtherArraysCommands(t *testing.T) {
	const timeout = 5 * time.Second
	src, tg := newPod(t, timeout)
	ra, rb := watchResets(src.st), watchResets(tg.st)
	peerWritable(t, tg, "v1", 0, bytes.Repeat([]byte{1}, 4096))
	a, b := openVol(t, src.st, "v1"), openVol(t, tg.st, "v1")
	for _, c := range []struct {
		name  string
		reset *store.Handle // where the reset is taken
		other *resetLog     // the other array's target
	}{
		{"at the preferred array", a, rb},
		{"at the peer", b, ra},
	} {
		hold := make(chan struct{})
		c.other.hold.Store(&hold)
		answered := make(chan time.Time, 1)
		go func() {
			c.reset.ShareReset(t.Context())
			answered <- time.Now()
		}()
		deadline := time.Now().Add(timeout / 2)
		for c.other.n.Load() == 0 {
			if time.Now().After(deadline) {
				t.Fatalf("reset %s: the other array did not apply it", c.name)
			}
			time.Sleep(5 * time.Millisecond)
		}
		for _, st := range []*store.Store{src.st, tg.st} {
			if err := st.WriteVolume(t.Context(), "v1", 8192, bytes.Repeat([]byte{2}, 4096), false); err != nil {
				t.Fatalf("reset %s: a write while the other array drains: %v", c.name, err)
			}
		}
		select {
		case <-answered:
			t.Fatalf("reset %s: answered while the other array's commands still ran", c.name)
		case <-time.After(200 * time.Millisecond):
		}
		released := time.Now()
		c.other.hold.Store(nil)
		close(hold)
		if at := <-answered; at.Sub(released) > timeout/2 {
			t.Fatalf("reset %s: answered %s after the other array's commands ended; want at once, not at the sync timeout", c.name, at.Sub(released))
		}
	}
	same(t, src, tg, "v1")
}
