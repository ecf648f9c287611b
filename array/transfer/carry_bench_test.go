package transfer

import (
	"context"
	"testing"

	"github.com/volrep/volrep/array"
	"github.com/volrep/volrep/array/store"
)

// admitted is a carried copy that takes writes without a mediator's key,
// so the benchmark measures the write and its intent record alone.
type admitted struct{ *carriedCopy }

func (admitted) Admit() error { return nil }

// BenchmarkCarriedWrite: a 4 KiB write to a copy its pod is carried at,
// first-in-run paying the one metadata commit (with fdatasync) that
// records its 4 MiB run before the change, recorded-run paying none.
func BenchmarkCarriedWrite(b *testing.B) {
	ctx := context.Background()
	s, err := store.Open(b.TempDir(), store.Options{Name: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	if _, err := s.CreatePool(ctx, "p"); err != nil {
		b.Fatal(err)
	}
	const size = 64 << 30 // room for one run per first-in-run write
	if _, err := s.CreateVolume(ctx, array.VolumeSpec{Name: "v", Pool: "p", SizeBytes: size}); err != nil {
		b.Fatal(err)
	}
	c := newCarrying(s, &podForward{name: "pod", volumes: map[string]bool{"v": true}}, []string{"v"})
	if err := s.SetMirror(ctx, "v", admitted{c.copies["v"]}); err != nil {
		b.Fatal(err)
	}
	data := make([]byte, 4096)
	const run = intentBlocks * blockSize
	write := func(b *testing.B, off int64) {
		if err := s.WriteVolume(ctx, "v", off, data, false); err != nil {
			b.Fatal(err)
		}
	}
	next := int64(0)
	b.Run("first-in-run", func(b *testing.B) {
		for b.Loop() {
			if next+run > size {
				b.Fatal("out of runs: raise size")
			}
			write(b, next)
			next += run
		}
		if !c.recordedRange("v", 0, next) {
			b.Fatal("the runs written are not in the record")
		}
	})
	b.Run("recorded-run", func(b *testing.B) {
		for i := 0; b.Loop(); i++ {
			write(b, int64(i%intentBlocks)*blockSize)
		}
	})
}
