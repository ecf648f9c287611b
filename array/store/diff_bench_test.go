package store_test

import (
	"context"
	"testing"

	"github.com/volrep/volrep/array"
	"github.com/volrep/volrep/array/store"
)

// BenchmarkDiffScattered: Diff between two snapshots 256 scattered 4 KiB
// blocks apart, on a 64 GiB and a 1 GiB volume (P5b's shape): the cost
// should follow the changed blocks, not the volume's size.
func BenchmarkDiffScattered(b *testing.B) {
	for _, tc := range []struct {
		name string
		size int64
	}{{"1GiB", 1 << 30}, {"64GiB", 64 << 30}} {
		b.Run(tc.name, func(b *testing.B) {
			ctx := context.Background()
			s, err := store.Open(b.TempDir(), store.Options{Name: "bench"})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			if _, err := s.CreatePool(ctx, "p"); err != nil {
				b.Fatal(err)
			}
			if _, err := s.CreateVolume(ctx, array.VolumeSpec{Name: "v", Pool: "p", SizeBytes: tc.size}); err != nil {
				b.Fatal(err)
			}
			if _, err := s.CreateSnapshot(ctx, "v", "a", nil); err != nil {
				b.Fatal(err)
			}
			stride := tc.size / 256 / 4096 * 4096
			for i := int64(0); i < 256; i++ {
				if err := s.WriteVolume(ctx, "v", i*stride, make([]byte, 4096), false); err != nil {
					b.Fatal(err)
				}
			}
			if _, err := s.CreateSnapshot(ctx, "v", "b", nil); err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			for range b.N {
				ext, err := s.Diff(ctx, "v", "a", "b")
				if err != nil || len(ext) != 256 {
					b.Fatalf("diff: %d extents, %v", len(ext), err)
				}
			}
		})
	}
}
