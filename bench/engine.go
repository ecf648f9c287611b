package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/volrep/volrep/array"
	"github.com/volrep/volrep/array/store"
)

const (
	mib = 1 << 20
	gib = 1 << 30
)

func init() {
	register("P5", "snapshot-cost", snapshotCost)
	register("P5b", "diff-cost", diffCost)
}

// prepared is a volume of size bytes with 1 GiB written, spread evenly over
// the whole volume so the allocation maps span all of it.
func prepared(ctx context.Context, s *store.Store, name string, size, written int64) error {
	if _, err := s.CreateVolume(ctx, array.VolumeSpec{Name: name, Pool: "bench", SizeBytes: size}); err != nil {
		return err
	}
	const chunk = mib
	pieces := written / chunk
	stride := size / pieces
	buf := make([]byte, chunk)
	for i := range buf {
		buf[i] = byte(i*7 + 1)
	}
	for i := int64(0); i < pieces; i++ {
		if err := s.WriteVolume(ctx, name, i*stride, buf, false); err != nil {
			return err
		}
	}
	return s.FlushVolume(ctx, name)
}

func openStore(env *Env, name string) (*store.Store, func(), error) {
	dir := filepath.Join(env.Dir, name)
	s, err := store.Open(dir, store.Options{Name: name})
	if err != nil {
		return nil, nil, err
	}
	if _, err := s.CreatePool(context.Background(), "bench"); err != nil {
		s.Close()
		return nil, nil, err
	}
	return s, func() { s.Close(); os.RemoveAll(dir) }, nil
}

func median(ds []time.Duration) time.Duration {
	slices.Sort(ds)
	return ds[len(ds)/2]
}

// snapshotCost times CreateSnapshot on a 64 GiB volume with 1 GiB written
// against a 1 GiB volume with 1 GiB written: O(1) means a ratio near 1.
func snapshotCost(ctx context.Context, env *Env) ([]Row, error) {
	s, done, err := openStore(env, "p5")
	if err != nil {
		return nil, err
	}
	defer done()
	big, small := int64(64*gib), int64(gib)
	written := int64(gib)
	if env.Quick {
		big, small, written = 4*gib, 64*mib, 64*mib
	}
	if err := prepared(ctx, s, "big", big, written); err != nil {
		return nil, err
	}
	if err := prepared(ctx, s, "small", small, written); err != nil {
		return nil, err
	}
	timeSnaps := func(vol string) (time.Duration, error) {
		var ds []time.Duration
		for i := 0; i < 9; i++ {
			// A small flushed write between snapshots, as in real use.
			if err := s.WriteVolume(ctx, vol, int64(i)*4096, make([]byte, 4096), true); err != nil {
				return 0, err
			}
			start := time.Now()
			if _, err := s.CreateSnapshot(ctx, vol, fmt.Sprintf("s%d", i), nil); err != nil {
				return 0, err
			}
			ds = append(ds, time.Since(start))
		}
		return median(ds), nil
	}
	tb, err := timeSnaps("big")
	if err != nil {
		return nil, err
	}
	ts, err := timeSnaps("small")
	if err != nil {
		return nil, err
	}
	return []Row{{ID: "P5", Name: "snapshot-cost", Volrep: ms(tb), Baseline: ms(ts), Unit: "ms",
		Note: fmt.Sprintf("median of 9; volrep=%d GiB volume, baseline=%d MiB volume, %d MiB written in each", big/gib, small/mib, written/mib)}}, nil
}

// diffBatch is how many diffs one P5b sample times.
const diffBatch = 32

// diffCost times Diff between two snapshots 1 MiB apart on a 64 GiB volume
// against the same on a 1 GiB volume: O(changed) means a ratio near 1.
func diffCost(ctx context.Context, env *Env) ([]Row, error) {
	s, done, err := openStore(env, "p5b")
	if err != nil {
		return nil, err
	}
	defer done()
	big, small := int64(64*gib), int64(gib)
	written := int64(gib)
	if env.Quick {
		big, small, written = 4*gib, 64*mib, 64*mib
	}
	prepare := func(vol string, size int64) error {
		if err := prepared(ctx, s, vol, size, written); err != nil {
			return err
		}
		if _, err := s.CreateSnapshot(ctx, vol, "a", nil); err != nil {
			return err
		}
		// 1 MiB of changes, as 256 scattered 4 KiB blocks.
		stride := size / 256 / 4096 * 4096
		for i := int64(0); i < 256; i++ {
			if err := s.WriteVolume(ctx, vol, i*stride, make([]byte, 4096), false); err != nil {
				return err
			}
		}
		_, err := s.CreateSnapshot(ctx, vol, "b", nil)
		return err
	}
	// A diff takes about a tenth of a millisecond: each sample times a
	// batch, so the timer's and the scheduler's noise is spread over it,
	// and the two volumes' samples alternate, so both see the same
	// machine.
	sample := func(vol string) (time.Duration, error) {
		start := time.Now()
		for range diffBatch {
			ext, err := s.Diff(ctx, vol, "a", "b")
			if err != nil {
				return 0, err
			}
			if len(ext) != 256 {
				return 0, fmt.Errorf("diff found %d extents, want 256", len(ext))
			}
		}
		return time.Since(start) / diffBatch, nil
	}
	if err := prepare("big", big); err != nil {
		return nil, err
	}
	if err := prepare("small", small); err != nil {
		return nil, err
	}
	var db, dsm []time.Duration
	for i := 0; i < 21; i++ {
		b, err := sample("big")
		if err != nil {
			return nil, err
		}
		sm, err := sample("small")
		if err != nil {
			return nil, err
		}
		db, dsm = append(db, b), append(dsm, sm)
	}
	tb, ts := median(db), median(dsm)
	return []Row{{ID: "P5b", Name: "diff-cost", Volrep: ms(tb), Baseline: ms(ts), Unit: "ms",
		Note: fmt.Sprintf("median of 21 samples of %d diffs each, interleaved; 1 MiB changed; volrep=%d GiB volume, baseline=%d MiB volume", diffBatch, big/gib, small/mib)}}, nil
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
