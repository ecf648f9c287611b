package store

import (
	"context"

	bolt "go.etcd.io/bbolt"

	"github.com/volrep/volrep/array"
	"github.com/volrep/volrep/array/bitmap"
	"github.com/volrep/volrep/errdefs"
)

// RevertVolume makes a volume's content its snapshot's, in O(1): the
// volume gets a new empty writable layer on top of the snapshot's layer and
// its old writable layer is dropped. Snapshots taken after the one reverted
// to stay, on a branch the volume has left. Open handles (NBD and iSCSI
// sessions) read the new content from their next request, since every
// request pins the volume's writable layer afresh. A sync mirror is told
// the blocks the revert changed, so the pod's peer is resynced with exactly
// them; an async replica's next delta is those blocks too (Diff across the
// branch).
func (s *Store) RevertVolume(ctx context.Context, volume, snap string) (array.Volume, error) {
	if err := array.CheckName("volume", volume); err != nil {
		return array.Volume{}, err
	}
	if err := array.CheckName("snapshot", snap); err != nil {
		return array.Volume{}, err
	}
	out, m, changed, err := s.revertLocked(ctx, volume, snap)
	if err != nil {
		return array.Volume{}, err
	}
	// The mirror is told outside the store's locks: it takes its own, and
	// may call back into the store.
	if m != nil {
		changed.Runs(0, ^uint64(0), func(lo, hi uint64) bool {
			m.Diverged(int64(lo)*bs, int64(hi-lo)*bs)
			return true
		})
	}
	return out, nil
}

func (s *Store) revertLocked(ctx context.Context, volume, snap string) (array.Volume, Mirror, *bitmap.Bitmap, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check(ctx); err != nil {
		return array.Volume{}, nil, nil, err
	}
	v, sn, err := s.snapshotLocked(volume, snap)
	if err != nil {
		return array.Volume{}, nil, nil, err
	}
	if v.rec.ReadOnly {
		return array.Volume{}, nil, nil, errdefs.FailedPrecondition("volume %q is a replication target and read-only; revert its source, or promote it first", volume)
	}
	if sn.rec.Size != v.rec.Size {
		return array.Volume{}, nil, nil, errdefs.FailedPrecondition("snapshot %s@%s has %d bytes but volume %q has %d (extended since); Cinder reverts only to a snapshot of the volume's size: clone the snapshot instead", volume, snap, sn.rec.Size, volume, v.rec.Size)
	}
	if _, busy := s.receiving[volume]; busy {
		return array.Volume{}, nil, nil, errdefs.Aborted("volume %q is receiving a transfer; retry when it ends", volume)
	}
	old := v.live
	var nl *layer
	rec := v.rec
	err = s.update(func(tx *bolt.Tx) error {
		var err error
		if nl, err = s.newLayer(tx, sn.layer); err != nil {
			return err
		}
		rec.Live = nl.id
		if err := putJSON(tx.Bucket(bucketVolumes), []byte(volume), rec); err != nil {
			return err
		}
		return deleteLayerRec(tx, old.id)
	})
	if err != nil {
		if nl != nil {
			s.dropLayerFile(nl)
		}
		return array.Volume{}, nil, nil, err
	}
	// What the revert changes: every block the dropped layers held or
	// zeroed since the snapshot (or, reverting to a snapshot on a branch
	// the volume left, since their common ancestor). Nothing writes old
	// once I/O is excluded.
	s.io.Lock()
	changed := bitmap.New()
	changedBetween(changed, old, sn.layer)
	nl.volume = true
	v.live = nl
	v.rec = rec
	m := v.mirror
	s.io.Unlock()

	s.layers[nl.id] = nl
	sn.layer.children[nl] = struct{}{}
	old.volume = false
	delete(s.layers, old.id)
	s.dropLayerFile(old)
	if p := old.parent; p != nil {
		delete(p.children, old)
		if err := s.collectLayer(ctx, p); err != nil {
			// The revert is committed; what is left is an anonymous layer
			// the next start's collect merges.
			s.opts.Logger.Warn("collecting after revert", "volume", volume, "err", err)
		}
	}
	return s.volumeOf(v), m, changed, nil
}
