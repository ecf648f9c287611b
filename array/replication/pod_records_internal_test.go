package replication

import (
	"bytes"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/volrep/volrep/array/bitmap"
	"github.com/volrep/volrep/array/store"
	"github.com/volrep/volrep/clock"
)

// TestLeftCopyOfAnEarlierLeave: a volume left the pod, rejoined it and
// left again while the pod was deleting the copy of its first leave. The
// end of that deletion must not forget the copy of the second leave, in
// memory or in its record, whatever the copies are named.
func TestLeftCopyOfAnEarlierLeave(t *testing.T) {
	ctx := t.Context()
	p, st := storeOnlyPod(t)
	refused := errors.New("the peer did not answer")

	p.recordLeft(ctx, "v", "v", refused)
	first := p.left["v"].gen
	if err := p.rejoined(ctx, "v"); err != nil {
		t.Fatal(err)
	}
	p.recordLeft(ctx, "v", "v", refused)
	p.settleLeft(ctx, "v", first, nil)

	if p.left["v"] == nil {
		t.Fatal("the copy of the second leave was forgotten by the deletion begun for the first")
	}
	var records []string
	if err := st.Records(ctx, recPodLeft, "", func(k string, _ []byte) error { records = append(records, k); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(records) != 1 || records[0] != "pod/v" {
		t.Fatalf("records of copies left: %q; want [pod/v]", records)
	}

	p.settleLeft(ctx, "v", p.left["v"].gen, nil)
	if p.left["v"] != nil {
		t.Fatal("the copy's own deletion did not forget it")
	}
}

// TestLeftCopyKeepsWhenItWasLeft: a copy left at the peer keeps the time
// its member left through a restart of the array, and the warning about
// a copy the peer keeps refusing names that time, not the restart's. A
// record from before the time was kept loads as left at the restart.
func TestLeftCopyKeepsWhenItWasLeft(t *testing.T) {
	ctx := t.Context()
	p, st := storeOnlyPod(t)
	clk := p.e.opts.Clock.(*clock.Fake)
	left := clk.Now()
	p.recordLeft(ctx, "v", "peer-v", errors.New("the peer did not answer"))
	if err := st.PutRecord(ctx, recPodLeft, "pod/w", []byte("peer-w")); err != nil {
		t.Fatal(err)
	}

	clk.Advance(3 * time.Hour)
	var logs bytes.Buffer
	e := &Engine{s: st, log: slog.New(slog.NewTextHandler(&logs, nil)), opts: p.e.opts}
	restarted := &pod{e: e, name: "pod", members: map[string]*podMember{}, left: map[string]*leftCopy{}}
	if err := restarted.loadLeft(ctx); err != nil {
		t.Fatal(err)
	}
	v, w := restarted.left["v"], restarted.left["w"]
	if v == nil || v.remote != "peer-v" || !v.since.Equal(left) {
		t.Fatalf("copy of v after the restart: %+v; want peer-v, left at %s", v, left)
	}
	if w == nil || w.remote != "peer-w" || !w.since.Equal(clk.Now()) {
		t.Fatalf("copy of w, recorded the old way, after the restart: %+v; want peer-w, left at the restart", w)
	}

	clk.Advance(leftWarnEvery)
	restarted.settleLeft(ctx, "v", v.gen, errors.New("volume is exported"))
	if want := "since=" + left.UTC().Format(time.RFC3339); !strings.Contains(logs.String(), want) {
		t.Fatalf("warning about the refused copy:\n%s\nwant %s", logs.String(), want)
	}
}

// storeOnlyPod is a pod named "pod" of an engine that has only its store,
// for the pod's bookkeeping: no peer, no goroutine.
func storeOnlyPod(t *testing.T) (*pod, *store.Store) {
	t.Helper()
	st, err := store.Open(t.TempDir(), store.Options{Name: "site-a"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	e := &Engine{s: st, log: slog.New(slog.DiscardHandler), opts: Options{Clock: clock.NewFake(time.Unix(0, 0))}}
	return &pod{e: e, name: "pod", members: map[string]*podMember{}, left: map[string]*leftCopy{}}, st
}

// TestPersistDirtyKeepsWhatItCouldNotSave: the dirty bitmaps that changed
// are saved together and read back by member; a save that fails leaves
// them to be saved by the next, instead of forgetting that they changed.
func TestPersistDirtyKeepsWhatItCouldNotSave(t *testing.T) {
	ctx := t.Context()
	p, st := storeOnlyPod(t)
	for i, v := range []string{"v1", "v2", "v3"} {
		bm := bitmap.New()
		bm.SetRange(uint64(i), uint64(i)+10)
		p.members[v] = &podMember{p: p, local: v, dirty: bm, dirtyChanged: v != "v3"}
	}
	if err := p.persistDirty(); err != nil {
		t.Fatal(err)
	}
	got, err := p.loadDirty(ctx, []string{"v1", "v2", "v3"})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got["v1"].Count() != 10 || !got["v2"].Test(1) || got["v2"].Test(0) {
		t.Fatalf("bitmaps read back: %v; want v1 (blocks 0-9) and v2 (1-10), not v3, which did not change", got)
	}
	only, err := p.loadDirty(ctx, []string{"v2"})
	if err != nil || len(only) != 1 || only["v2"] == nil {
		t.Fatalf("reading v2's bitmap alone: %v, %v", only, err)
	}

	p.members["v1"].dirty.Set(100)
	p.members["v1"].dirtyChanged = true
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	if err := p.persistDirty(); err == nil {
		t.Fatal("saving to a closed store succeeded")
	}
	var changed []string
	for v, m := range p.members {
		if m.dirtyChanged {
			changed = append(changed, v)
		}
	}
	if !slices.Equal(changed, []string{"v1"}) {
		t.Fatalf("members left to save after a failed save: %q; want [v1]", changed)
	}
}
