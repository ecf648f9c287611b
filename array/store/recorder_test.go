package store_test

import (
	"bytes"
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/volrep/volrep/array/store"
)

// intentMirror records 1 MiB runs, the way a carried pod's copy keeps its
// write-intent record, and checks that a run's data is still unchanged
// when it is asked to record it.
type intentMirror struct {
	nopMirror
	s   *store.Store
	t   *testing.T
	mu  sync.Mutex
	set map[int64]bool // recorded runs, by first byte
	n   int            // Record calls
	err error          // what Record answers, when set
	// caller is the callerKey value of the last Record's context.
	caller any
}

// callerKey marks the context of a write, to see it reach Record.
type callerKey struct{}

func (m *intentMirror) Recorded(off, length int64) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	for r := off >> 20; r <= (off+length-1)>>20; r++ {
		if !m.set[r<<20] {
			return false
		}
	}
	return true
}

func (m *intentMirror) Record(ctx context.Context, off, length int64) error {
	// Called with no store lock held: the volume can be read, and the
	// change must not have reached it yet.
	got := make([]byte, length)
	if err := m.s.ReadVolume(ctx, "v", off, got); err != nil {
		m.t.Errorf("reading the range being recorded: %v", err)
	}
	if !bytes.Equal(got, make([]byte, length)) {
		m.t.Errorf("the change at %d reached the copy before it was recorded", off)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.n++
	m.caller = ctx.Value(callerKey{})
	if m.err != nil {
		return m.err
	}
	for r := off >> 20; r <= (off+length-1)>>20; r++ {
		m.set[r<<20] = true
	}
	return nil
}

var _ store.Recorder = (*intentMirror)(nil)

// A Recorder's blocks are recorded, with no lock held, before a change
// touches them, once per run; a change whose record fails changes
// nothing.
func TestRecorderRecordsBeforeTheChange(t *testing.T) {
	ctx := t.Context()
	s := storeWithVolume(t, t.TempDir(), "intent", 8<<20)
	m := &intentMirror{s: s, t: t, set: map[int64]bool{}}
	if err := s.SetMirror(ctx, "v", m); err != nil {
		t.Fatal(err)
	}
	data := bytes.Repeat([]byte{7}, 64<<10)
	for _, off := range []int64{0, 64 << 10, 1<<20 - 32<<10, 3 << 20} {
		if err := s.WriteVolume(ctx, "v", off, data, false); err != nil {
			t.Fatalf("write at %d: %v", off, err)
		}
	}
	// Runs 0 (twice), 0-1 (its second run new) and 3: three records.
	if m.n != 3 {
		t.Errorf("%d records for writes to runs 0, 0, 0-1 and 3; want 3", m.n)
	}
	m.err = errors.New("the record's disk is full")
	if err := s.WriteVolume(ctx, "v", 5<<20, data, false); !errors.Is(err, m.err) {
		t.Fatalf("a write whose record failed: %v, want the record's error", err)
	}
	got := make([]byte, len(data))
	if err := s.ReadVolume(ctx, "v", 5<<20, got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, make([]byte, len(data))) {
		t.Error("a write whose record failed changed the volume")
	}
	// Zeroing goes the same way, and the record is made under the
	// caller's context (a client that goes away stops waiting for it).
	m.err = nil
	h, err := s.OpenVolume(ctx, "v")
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Zero(context.WithValue(ctx, callerKey{}, "zeroer"), 6<<20, 64<<10, false); err != nil {
		t.Fatal(err)
	}
	if !m.Recorded(6<<20, 64<<10) {
		t.Error("zeroing a range did not record it first")
	}
	if m.caller != "zeroer" {
		t.Errorf("the record was made under a context without the caller's values (%v)", m.caller)
	}
}
