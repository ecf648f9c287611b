package bitmap

import (
	"math/rand/v2"
	"testing"
)

// model is the obviously-correct reference the bitmap is checked against.
type model map[uint64]bool

func (m model) runs(from, to uint64) [][2]uint64 {
	var out [][2]uint64
	for i := from; i < to; i++ {
		if !m[i] {
			continue
		}
		if n := len(out); n > 0 && out[n-1][1] == i {
			out[n-1][1] = i + 1
		} else {
			out = append(out, [2]uint64{i, i + 1})
		}
	}
	return out
}

func TestAgainstModel(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	const space = 3*ChunkBits + 777
	b, m := New(), model{}
	for step := 0; step < 3000; step++ {
		lo := r.Uint64N(space)
		hi := min(lo+r.Uint64N(300)+1, space)
		if r.IntN(50) == 0 {
			hi = min(lo+r.Uint64N(2*ChunkBits), space)
		}
		set := r.IntN(3) != 0
		if set {
			b.SetRange(lo, hi)
		} else {
			b.ClearRange(lo, hi)
		}
		for i := lo; i < hi; i++ {
			if set {
				m[i] = true
			} else {
				delete(m, i)
			}
		}
		if step%100 != 0 {
			continue
		}
		if got, want := b.Count(), uint64(len(m)); got != want {
			t.Fatalf("step %d: Count = %d, want %d", step, got, want)
		}
		var got [][2]uint64
		b.Runs(0, space, func(lo, hi uint64) bool { got = append(got, [2]uint64{lo, hi}); return true })
		want := m.runs(0, space)
		if len(got) != len(want) {
			t.Fatalf("step %d: %d runs, want %d", step, len(got), len(want))
		}
		for i := range got {
			if got[i] != want[i] {
				t.Fatalf("step %d: run %d = %v, want %v", step, i, got[i], want[i])
			}
		}
		for k := 0; k < 200; k++ {
			i := r.Uint64N(space)
			if b.Test(i) != m[i] {
				t.Fatalf("step %d: Test(%d) = %v", step, i, b.Test(i))
			}
		}
	}
}

func TestRunsWindowAndNext(t *testing.T) {
	b := New()
	b.SetRange(10, 20)
	b.SetRange(ChunkBits-3, ChunkBits+5)
	var got [][2]uint64
	b.Runs(15, ChunkBits, func(lo, hi uint64) bool { got = append(got, [2]uint64{lo, hi}); return true })
	want := [][2]uint64{{15, 20}, {ChunkBits - 3, ChunkBits}}
	if len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("Runs = %v, want %v", got, want)
	}
	if i, ok := b.NextSet(20); !ok || i != ChunkBits-3 {
		t.Fatalf("NextSet(20) = %d,%v", i, ok)
	}
	if i := b.NextClear(ChunkBits - 3); i != ChunkBits+5 {
		t.Fatalf("NextClear = %d", i)
	}
	if _, ok := b.NextSet(ChunkBits + 5); ok {
		t.Fatal("NextSet past the last bit found one")
	}
}

func TestSetOpsAndPersistence(t *testing.T) {
	a, o := New(), New()
	a.SetRange(0, 100)
	o.SetRange(50, 150)
	a.TakeDirty()
	c := a.Clone()
	c.Or(o)
	if c.Count() != 150 {
		t.Fatalf("Or count = %d", c.Count())
	}
	a.AndNot(o)
	if a.Count() != 50 || a.Test(50) || !a.Test(49) {
		t.Fatalf("AndNot wrong: count %d", a.Count())
	}
	if d := a.TakeDirty(); len(d) != 1 || d[0] != 0 {
		t.Fatalf("dirty = %v", d)
	}
	if d := a.TakeDirty(); len(d) != 0 {
		t.Fatalf("dirty not cleared: %v", d)
	}
	r := New()
	for _, ci := range c.AllChunks() {
		if err := r.UnmarshalChunk(ci, c.MarshalChunk(ci)); err != nil {
			t.Fatal(err)
		}
	}
	if r.Count() != c.Count() || !r.Test(149) || r.Test(150) {
		t.Fatal("round trip lost bits")
	}
	if err := r.UnmarshalChunk(0, []byte{1, 2, 3}); err == nil {
		t.Fatal("short chunk accepted")
	}
	// Clearing everything drops the chunk, so empty maps cost nothing to persist.
	c.ClearRange(0, 150)
	if !c.Empty() || c.MarshalChunk(0) != nil {
		t.Fatal("empty chunk kept")
	}
}

func BenchmarkSetRange4K(b *testing.B) {
	bm := New()
	r := rand.New(rand.NewPCG(3, 4))
	for i := 0; i < b.N; i++ {
		lo := r.Uint64N(1 << 24)
		bm.SetRange(lo, lo+1)
	}
}
