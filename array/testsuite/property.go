package testsuite

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/volrep/volrep/array"
	"github.com/volrep/volrep/errdefs"
)

// model is the reference: every volume and snapshot as a plain byte slice.
type model struct {
	vols  map[string][]byte
	snaps map[string]map[string][]byte
	// lineage[snapshot ref] = the refs of the older snapshots of its volume
	// still alive, for choosing valid Diff pairs.
	order map[string][]string
}

func (m *model) volNames() []string {
	return slices.Sorted(func(yield func(string) bool) {
		for k := range m.vols {
			if !yield(k) {
				return
			}
		}
	})
}

// testProperty runs random writes, snapshots, clones, deletes and extends
// and checks every read, and every Diff's soundness, against the model.
func testProperty(t *testing.T, a array.Array) {
	ctx := setup(t, a)
	seed := uint64(42)
	r := rand.New(rand.NewPCG(seed, seed))
	m := &model{vols: map[string][]byte{}, snaps: map[string]map[string][]byte{}, order: map[string][]string{}}
	const blk = array.BlockSize
	steps := 400
	if testing.Short() {
		steps = 150
	}
	nextID := 0
	newName := func(p string) string { nextID++; return fmt.Sprintf("%s%d", p, nextID) }
	pick := func(names []string) string { return names[r.IntN(len(names))] }

	for step := 0; step < steps; step++ {
		names := m.volNames()
		op := r.IntN(100)
		switch {
		case len(names) == 0 || op < 5:
			name := newName("v")
			size := int64(1+r.IntN(32)) * blk * 4
			mVol(t)(a.CreateVolume(ctx, array.VolumeSpec{Name: name, Pool: "p1", SizeBytes: size}))
			m.vols[name] = make([]byte, size)
			m.snaps[name] = map[string][]byte{}
		case op < 45:
			name := pick(names)
			data := m.vols[name]
			off := r.IntN(len(data))
			n := 1 + r.IntN(min(len(data)-off, 3*blk))
			if r.IntN(2) == 0 { // aligned writes dominate real workloads
				off = off / blk * blk
				n = max(blk, n/blk*blk)
				n = min(n, len(data)-off)
			}
			p := make([]byte, n)
			for i := range p {
				p[i] = byte(r.Uint32() | 1)
			}
			ok(t, a.WriteVolume(ctx, name, int64(off), p, r.IntN(10) == 0))
			copy(data[off:], p)
		case op < 55:
			name := pick(names)
			sn := newName("s")
			mSnap(t)(a.CreateSnapshot(ctx, name, sn, nil))
			m.snaps[name][sn] = bytes.Clone(m.vols[name])
			m.order[name] = append(m.order[name], sn)
		case op < 62:
			name := pick(names)
			if len(m.order[name]) == 0 {
				continue
			}
			sn := pick(m.order[name])
			clone := newName("c")
			mVol(t)(a.CloneSnapshot(ctx, array.CloneSpec{Volume: name, Snapshot: sn, Name: clone}))
			m.vols[clone] = bytes.Clone(m.snaps[name][sn])
			m.snaps[clone] = map[string][]byte{}
		case op < 70:
			name := pick(names)
			if len(m.order[name]) == 0 {
				continue
			}
			i := r.IntN(len(m.order[name]))
			sn := m.order[name][i]
			ok(t, a.DeleteSnapshot(ctx, name, sn))
			delete(m.snaps[name], sn)
			m.order[name] = slices.Delete(m.order[name], i, i+1)
		case op < 74:
			name := pick(names)
			if len(m.snaps[name]) > 0 {
				wantKind(t, a.DeleteVolume(ctx, name), errdefs.KindFailedPrecondition, "delete volume with snapshots")
				continue
			}
			ok(t, a.DeleteVolume(ctx, name))
			delete(m.vols, name)
			delete(m.snaps, name)
			delete(m.order, name)
		case op < 77:
			name := pick(names)
			grow := int64(1+r.IntN(8)) * blk
			size := int64(len(m.vols[name])) + grow
			mVol(t)(a.ExtendVolume(ctx, name, size))
			m.vols[name] = append(m.vols[name], make([]byte, grow)...)
		case op < 90:
			name := pick(names)
			checkRead(t, ctx, a, name, "", m.vols[name], r)
			if len(m.order[name]) > 0 {
				sn := pick(m.order[name])
				checkRead(t, ctx, a, name, sn, m.snaps[name][sn], r)
			}
		default:
			name := pick(names)
			if len(m.order[name]) == 0 {
				continue
			}
			checkDiff(t, ctx, a, m, name, r)
		}
	}
	// A final full comparison of everything that is left.
	for _, name := range m.volNames() {
		got := make([]byte, len(m.vols[name]))
		ok(t, a.ReadVolume(ctx, name, 0, got))
		if !bytes.Equal(got, m.vols[name]) {
			t.Fatalf("volume %s differs from the model at the end", name)
		}
		for sn, want := range m.snaps[name] {
			got := make([]byte, len(want))
			ok(t, a.ReadSnapshot(ctx, name, sn, 0, got))
			if !bytes.Equal(got, want) {
				t.Fatalf("snapshot %s@%s differs from the model at the end", name, sn)
			}
		}
	}
}

func checkRead(t *testing.T, ctx context.Context, a array.Array, vol, snap string, want []byte, r *rand.Rand) {
	t.Helper()
	off := r.IntN(len(want))
	n := 1 + r.IntN(len(want)-off)
	got := make([]byte, n)
	if snap == "" {
		ok(t, a.ReadVolume(ctx, vol, int64(off), got))
	} else {
		ok(t, a.ReadSnapshot(ctx, vol, snap, int64(off), got))
	}
	if !bytes.Equal(got, want[off:off+n]) {
		i := 0
		for i < n && got[i] == want[off+i] {
			i++
		}
		t.Fatalf("read %s@%s [%d,+%d): first difference at byte %d: got %d want %d", vol, snap, off, n, off+i, got[i], want[off+i])
	}
}

// checkDiff asserts that a Diff is sound: every byte outside its extents is
// equal in both snapshots, and zero extents really read as zeros.
func checkDiff(t *testing.T, ctx context.Context, a array.Array, m *model, vol string, r *rand.Rand) {
	t.Helper()
	order := m.order[vol]
	j := r.IntN(len(order))
	to := order[j]
	base := ""
	if j > 0 && r.IntN(3) != 0 {
		base = order[r.IntN(j)]
	}
	exts := mExts(t)(a.Diff(ctx, vol, base, to))
	newer := m.snaps[vol][to]
	older := make([]byte, len(newer))
	if base != "" {
		copy(older, m.snaps[vol][base])
	}
	covered := make([]bool, len(newer))
	for _, e := range exts {
		if e.Offset%array.BlockSize != 0 || e.Length <= 0 || e.End() > int64(len(newer)) {
			t.Fatalf("diff %s..%s: bad extent %+v", base, to, e)
		}
		for i := e.Offset; i < e.End(); i++ {
			covered[i] = true
			if e.Zero && newer[i] != 0 {
				t.Fatalf("diff %s..%s: zero extent %+v covers non-zero byte %d", base, to, e, i)
			}
		}
	}
	for i := range newer {
		if !covered[i] && newer[i] != older[i] {
			t.Fatalf("diff %s..%s of %s misses changed byte %d", base, to, vol, i)
		}
	}
}
