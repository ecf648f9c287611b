package store_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/volrep/volrep/array"
	"github.com/volrep/volrep/array/store"
	"github.com/volrep/volrep/internal/testenv"
)

const mib = 1 << 20

func TestZeroAndAllocation(t *testing.T) {
	ctx := t.Context()
	s := openTemp(t)
	noErr(t)(s.CreatePool(ctx, "p"))
	noErr(t)(s.CreateVolume(ctx, array.VolumeSpec{Name: "z", Pool: "p", SizeBytes: 4 * mib}))
	h, err := s.OpenVolume(ctx, "z")
	if err != nil {
		t.Fatal(err)
	}
	if err := h.WriteAt(ctx, bytes.Repeat([]byte{1}, mib), 0, false); err != nil {
		t.Fatal(err)
	}
	noErr(t)(s.CreateSnapshot(ctx, "z", "before", nil))
	// Zero a range that straddles blocks on both ends, over data that the
	// snapshot below still holds: it must read as zeros now but not in the
	// snapshot.
	if err := h.Zero(ctx, 1000, 20000, false); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 30000)
	if err := h.ReadAt(ctx, buf, 0); err != nil {
		t.Fatal(err)
	}
	for i, b := range buf {
		want := byte(1)
		if i >= 1000 && i < 21000 {
			want = 0
		}
		if b != want {
			t.Fatalf("byte %d = %d, want %d", i, b, want)
		}
	}
	if err := s.ReadSnapshot(ctx, "z", "before", 1000, buf[:10]); err != nil || buf[0] != 1 {
		t.Fatalf("snapshot changed by zeroing: %v %d", err, buf[0])
	}
	ext, err := h.Allocation(ctx, 0, 4*mib)
	if err != nil {
		t.Fatal(err)
	}
	// Blocks 1..4 are whole blocks inside the zeroed range; the partial
	// blocks around them were rewritten with data.
	want := []array.Extent{{Offset: 0, Length: 4096}, {Offset: 4096, Length: 4 * 4096, Zero: true},
		{Offset: 5 * 4096, Length: mib - 5*4096}, {Offset: mib, Length: 3 * mib, Zero: true}}
	if fmt.Sprint(ext) != fmt.Sprint(want) {
		t.Fatalf("Allocation = %v, want %v", ext, want)
	}
	// The zeroing is a change the next snapshot's diff must carry.
	noErr(t)(s.CreateSnapshot(ctx, "z", "after", nil))
	d, err := s.Diff(ctx, "z", "before", "after")
	if err != nil {
		t.Fatal(err)
	}
	wantD := []array.Extent{{Offset: 0, Length: 4096}, {Offset: 4096, Length: 4 * 4096, Zero: true}, {Offset: 5 * 4096, Length: 4096}}
	if fmt.Sprint(d) != fmt.Sprint(wantD) {
		t.Fatalf("Diff = %v, want %v", d, wantD)
	}
	// Discarding never-written space marks nothing: it already reads as zeros.
	if err := h.Zero(ctx, 2*mib, mib, false); err != nil {
		t.Fatal(err)
	}
	noErr(t)(s.CreateSnapshot(ctx, "z", "discard", nil))
	if d, _ := s.Diff(ctx, "z", "after", "discard"); len(d) != 0 {
		t.Fatalf("discarding unwritten space changed %v", d)
	}
	// Snapshot handles are read-only.
	sh, err := s.OpenSnapshot(ctx, "z", "before")
	if err != nil {
		t.Fatal(err)
	}
	if !sh.ReadOnly() || sh.WriteAt(ctx, []byte{1}, 0, false) == nil {
		t.Fatal("snapshot handle accepted a write")
	}
}

// noErr fails the test if a (value, error) call failed:
// noErr(t)(s.CreatePool(ctx, "p")).
func noErr(t *testing.T) func(any, error) {
	return func(_ any, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
}

// TestPersistenceModel runs random writes, zeroing, snapshots, clones and
// deletes with close-and-reopen cycles, and compares with a byte model.
func TestPersistenceModel(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	s, err := store.Open(dir, store.Options{Name: "p"})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { s.Close() }()
	noErr(t)(s.CreatePool(ctx, "p"))
	r := rand.New(rand.NewPCG(5, 6))
	const size = 64 * 4096
	type vol struct {
		data  []byte
		snaps map[string][]byte
	}
	vols := map[string]*vol{}
	n := 0
	for step := 0; step < 300; step++ {
		names := make([]string, 0, len(vols))
		for k := range vols {
			names = append(names, k)
		}
		if len(names) == 0 || r.IntN(20) == 0 {
			n++
			name := fmt.Sprintf("v%d", n)
			noErr(t)(s.CreateVolume(ctx, array.VolumeSpec{Name: name, Pool: "p", SizeBytes: size}))
			vols[name] = &vol{data: make([]byte, size), snaps: map[string][]byte{}}
			continue
		}
		name := names[r.IntN(len(names))]
		v := vols[name]
		h, err := s.OpenVolume(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		off := r.IntN(size)
		l := 1 + r.IntN(min(size-off, 5*4096))
		switch op := r.IntN(10); {
		case op < 4:
			p := make([]byte, l)
			for i := range p {
				p[i] = byte(r.Uint32() | 1)
			}
			if err := h.WriteAt(ctx, p, int64(off), false); err != nil {
				t.Fatal(err)
			}
			copy(v.data[off:], p)
		case op < 6:
			if err := h.Zero(ctx, int64(off), int64(l), r.IntN(2) == 0); err != nil {
				t.Fatal(err)
			}
			clear(v.data[off : off+l])
		case op < 7:
			// Half the time a second snapshot follows with nothing
			// written between, so the two share a layer.
			for range 1 + r.IntN(2) {
				n++
				sn := fmt.Sprintf("s%d", n)
				noErr(t)(s.CreateSnapshot(ctx, name, sn, nil))
				v.snaps[sn] = bytes.Clone(v.data)
			}
		case op < 8:
			for sn := range v.snaps {
				if err := s.DeleteSnapshot(ctx, name, sn); err != nil {
					t.Fatal(err)
				}
				delete(v.snaps, sn)
				break
			}
		case op < 9:
			for sn, data := range v.snaps {
				n++
				c := fmt.Sprintf("c%d", n)
				noErr(t)(s.CloneSnapshot(ctx, array.CloneSpec{Volume: name, Snapshot: sn, Name: c}))
				vols[c] = &vol{data: bytes.Clone(data), snaps: map[string][]byte{}}
				break
			}
		default:
			// A clean close and reopen must keep everything.
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			if s, err = store.Open(dir, store.Options{Name: "p"}); err != nil {
				t.Fatal(err)
			}
		}
	}
	for name, v := range vols {
		got := make([]byte, size)
		if err := s.ReadVolume(ctx, name, 0, got); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, v.data) {
			t.Fatalf("volume %s differs from the model", name)
		}
		for sn, want := range v.snaps {
			if err := s.ReadSnapshot(ctx, name, sn, 0, got); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("snapshot %s@%s differs from the model", name, sn)
			}
		}
	}
	// Orphan layer files must not pile up: one file per layer still in use.
	entries, _ := os.ReadDir(dir + "/layers")
	if len(entries) > 3*len(vols)+20 {
		t.Fatalf("%d layer files for %d volumes: merges are leaking files", len(entries), len(vols))
	}
}

// TestCrashAfterFlush kills a real process that writes to the engine and
// checks that every write acknowledged by a flush survives.
func TestCrashAfterFlush(t *testing.T) {
	if os.Getenv("VOLREP_CRASH_CHILD") != "" {
		crashChild()
		return
	}
	dir := t.TempDir()
	for round := 0; round < 3; round++ {
		cmd, out := testenv.StartChild(t, "TestCrashAfterFlush", "VOLREP_CRASH_CHILD="+dir, fmt.Sprintf("VOLREP_CRASH_ROUND=%d", round))
		acked := map[int]byte{}
		sc := bufio.NewScanner(out)
		for sc.Scan() && len(acked) < 40 {
			var blk, val int
			if _, err := fmt.Sscanf(sc.Text(), "acked %d %d", &blk, &val); err == nil {
				acked[blk] = byte(val)
			}
		}
		// The child is still writing (unflushed data too) when it dies.
		testenv.KillChild(t, cmd)
		if len(acked) == 0 {
			t.Fatal("child acknowledged nothing")
		}
		s, err := store.Open(dir, store.Options{Name: "crash"})
		if err != nil {
			t.Fatalf("reopen after SIGKILL: %v", err)
		}
		vol := fmt.Sprintf("round%d", round)
		buf := make([]byte, 4096)
		for blk, val := range acked {
			if err := s.ReadVolume(t.Context(), vol, int64(blk)*4096, buf); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(buf, bytes.Repeat([]byte{val}, 4096)) {
				t.Fatalf("round %d: acknowledged block %d lost after SIGKILL (got %d, want %d)", round, blk, buf[0], val)
			}
		}
		snaps, err := s.ListSnapshots(t.Context(), vol)
		if err != nil || len(snaps) == 0 {
			t.Fatalf("round %d: snapshots lost: %v %v", round, snaps, err)
		}
		checkTwins(t, s, vol, snaps)
		s.Close()
	}
}

// checkTwins checks that each snapshot q<n> the crash child took right
// after s<n>, sharing its layer, was kept with it and reads as it does,
// and still does once s<n> is deleted.
func checkTwins(t *testing.T, s *store.Store, vol string, snaps []array.Snapshot) {
	t.Helper()
	ctx := t.Context()
	names := map[string]bool{}
	for _, sn := range snaps {
		names[sn.Name] = true
	}
	a, b := make([]byte, mib), make([]byte, mib)
	pairs := 0
	for name := range names {
		twin, ok := strings.CutPrefix(name, "s")
		if !ok {
			continue
		}
		q := "q" + twin
		if !names[q] {
			// The crash may fall between the two snapshots, but only
			// for the newest.
			if last := snaps[len(snaps)-1].Name; last != name {
				t.Fatalf("snapshot %s survived the crash without its twin %s (newest: %s)", name, q, last)
			}
			continue
		}
		if err := s.ReadSnapshot(ctx, vol, name, 0, a); err != nil {
			t.Fatal(err)
		}
		if err := s.DeleteSnapshot(ctx, vol, name); err != nil {
			t.Fatal(err)
		}
		if err := s.ReadSnapshot(ctx, vol, q, 0, b); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(a, b) {
			t.Fatalf("snapshot %s, taken right after %s with nothing written between, reads differently", q, name)
		}
		pairs++
	}
	// s10 and q10 precede the 40 acknowledged blocks the test waits for.
	if pairs == 0 {
		t.Fatalf("no pair of snapshots sharing a layer survived the crash: %v", slices.Collect(maps.Keys(names)))
	}
}

// crashChild writes blocks forever, printing each block once a flush has
// acknowledged it. Every block is written once, so a later unflushed write
// cannot legitimately replace an acknowledged value.
func crashChild() {
	dir := os.Getenv("VOLREP_CRASH_CHILD")
	round, _ := strconv.Atoi(os.Getenv("VOLREP_CRASH_ROUND"))
	ctx := context.Background()
	s, err := store.Open(dir, store.Options{Name: "crash"})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if _, err := s.CreatePool(ctx, "p"); err != nil {
		os.Exit(1)
	}
	vol := fmt.Sprintf("round%d", round)
	if _, err := s.CreateVolume(ctx, array.VolumeSpec{Name: vol, Pool: "p", SizeBytes: 64 * mib}); err != nil {
		os.Exit(1)
	}
	w := bufio.NewWriter(os.Stdout)
	var pending []string
	for blk := 0; blk < 64*mib/4096; blk++ {
		val := byte(blk%250 + 1)
		if err := s.WriteVolume(ctx, vol, int64(blk)*4096, bytes.Repeat([]byte{val}, 4096), false); err != nil {
			os.Exit(1)
		}
		pending = append(pending, fmt.Sprintf("acked %d %d", blk, val))
		if blk%7 == 6 {
			if err := s.FlushVolume(ctx, vol); err != nil {
				os.Exit(1)
			}
			w.WriteString(strings.Join(pending, "\n") + "\n")
			w.Flush()
			pending = pending[:0]
		}
		if blk%50 == 10 {
			// q follows s with nothing written between: the two share a
			// layer, and q must read as s after the crash.
			for _, name := range []string{"s", "q"} {
				if _, err := s.CreateSnapshot(ctx, vol, fmt.Sprintf("%s%d", name, blk), nil); err != nil {
					os.Exit(1)
				}
			}
		}
		if blk > 300 {
			time.Sleep(time.Millisecond)
		}
	}
	select {}
}

// TestMergeDirections deletes snapshots so that both merge directions run,
// with zeroed blocks on the child side, and checks every view afterwards.
func TestMergeDirections(t *testing.T) {
	for _, tc := range []struct {
		name       string
		childWrite int // blocks rewritten above the snapshot being deleted
	}{
		{"child-into-parent", 1},  // small child: its blocks move down
		{"parent-into-child", 30}, // big child: the parent's few remaining blocks move up
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := t.Context()
			s := openTemp(t)
			noErr(t)(s.CreatePool(ctx, "p"))
			noErr(t)(s.CreateVolume(ctx, array.VolumeSpec{Name: "m", Pool: "p", SizeBytes: mib}))
			want := make([]byte, mib)
			put := func(blk, n int, val byte) {
				p := bytes.Repeat([]byte{val}, n*4096)
				if err := s.WriteVolume(ctx, "m", int64(blk)*4096, p, false); err != nil {
					t.Fatal(err)
				}
				copy(want[blk*4096:], p)
			}
			put(0, 32, 9)
			noErr(t)(s.CreateSnapshot(ctx, "m", "s0", nil)) // zeros above must keep masking this
			put(0, 32, 1)
			noErr(t)(s.CreateSnapshot(ctx, "m", "s1", nil))
			h, _ := s.OpenVolume(ctx, "m")
			if err := h.Zero(ctx, 4096, 2*4096, false); err != nil {
				t.Fatal(err)
			}
			clear(want[4096 : 3*4096])
			put(3, tc.childWrite, 2)
			noErr(t)(s.CreateSnapshot(ctx, "m", "s2", nil))
			s2 := bytes.Clone(want)
			put(40, 1, 3) // the live layer above s2
			if err := s.DeleteSnapshot(ctx, "m", "s1"); err != nil {
				t.Fatal(err)
			}
			got := make([]byte, mib)
			if err := s.ReadSnapshot(ctx, "m", "s2", 0, got); err != nil || !bytes.Equal(got, s2) {
				t.Fatalf("s2 wrong after merge (err %v)", err)
			}
			if err := s.ReadVolume(ctx, "m", 0, got); err != nil || !bytes.Equal(got, want) {
				t.Fatalf("volume wrong after merge (err %v)", err)
			}
			// And the merged layer persisted correctly.
			dir := s.Dir()
			s.Close()
			s2s, err := store.Open(dir, store.Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer s2s.Close()
			if err := s2s.ReadSnapshot(ctx, "m", "s2", 0, got); err != nil || !bytes.Equal(got, s2) {
				t.Fatalf("s2 wrong after merge and reopen (err %v)", err)
			}
			if err := s2s.ReadVolume(ctx, "m", 0, got); err != nil || !bytes.Equal(got, want) {
				t.Fatalf("volume wrong after merge and reopen (err %v)", err)
			}
		})
	}
}
