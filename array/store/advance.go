package store

import (
	"context"

	bolt "go.etcd.io/bbolt"

	"github.com/volrep/volrep/array"
	"github.com/volrep/volrep/errdefs"
)

// empty reports whether nothing was ever written to l: no data, no zeroed
// blocks. Such a layer reads exactly as its parent.
func (l *layer) empty() bool {
	if l.data() != nil {
		return false
	}
	l.mu.RLock()
	defer l.mu.RUnlock()
	return (l.present == nil || l.present.Empty()) && (l.zero == nil || l.zero.Empty())
}

// Unchanged reports whether snapshot snap of volume holds the same data as
// snapshot base because nothing was written between them: snap's layer
// sits directly on base's and is empty. It costs no diff, so a group with
// many quiet members can tell them apart from the changed ones cheaply.
func (s *Store) Unchanged(ctx context.Context, volume, base, snap string) (bool, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if err := s.check(ctx); err != nil {
		return false, err
	}
	_, b, err := s.snapshotLocked(volume, base)
	if err != nil {
		return false, err
	}
	_, sn, err := s.snapshotLocked(volume, snap)
	if err != nil {
		return false, err
	}
	return sn.layer == b.layer || (sn.layer.parent == b.layer && sn.layer.empty()), nil
}

// AdvanceRequest asks for a snapshot of a volume that must not have
// changed since its newest snapshot, whose GUID is BaseGUID.
type AdvanceRequest struct {
	SnapshotRequest
	BaseGUID string
}

// AdvanceSnapshots takes, in one transaction, the requested snapshot of
// every volume whose newest snapshot is its BaseGUID and whose data did
// not change since: what receiving an empty delta would record. refused
// holds, per request, why it was not taken (nil: taken, or already was);
// those volumes need a transfer.
func (s *Store) AdvanceSnapshots(ctx context.Context, reqs []AdvanceRequest) (out []array.Snapshot, refused []error, err error) {
	seen := map[string]bool{}
	for _, r := range reqs {
		if err := array.CheckName("volume", r.Volume); err != nil {
			return nil, nil, err
		}
		if err := array.CheckName("snapshot_name", r.Name); err != nil {
			return nil, nil, err
		}
		if r.GUID == "" || r.BaseGUID == "" || r.Created.IsZero() {
			return nil, nil, errdefs.InvalidArgument("members", "volume %q: guid, base guid and created time are required to advance", r.Volume)
		}
		if seen[r.Volume] {
			return nil, nil, errdefs.InvalidArgument("members", "volume %q is listed twice", r.Volume)
		}
		seen[r.Volume] = true
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check(ctx); err != nil {
		return nil, nil, err
	}
	out = make([]array.Snapshot, len(reqs))
	refused = make([]error, len(reqs))
	var vols []*volume
	var take []SnapshotRequest
	var at []int
	for i, r := range reqs {
		v, sn, err := s.advanceable(r)
		switch {
		case err != nil:
			refused[i] = err
		case sn != nil:
			out[i] = snapshotOf(sn) // advanced before: a retry
		default:
			vols, take, at = append(vols, v), append(take, r.SnapshotRequest), append(at, i)
		}
	}
	if len(take) == 0 {
		return out, refused, nil
	}
	snaps, err := s.freezeLocked(vols, take)
	if err != nil {
		return nil, nil, err
	}
	for j, i := range at {
		out[i] = snapshotOf(vols[j].snaps[snaps[j].Name])
	}
	return out, refused, nil
}

// advanceable checks one advance under s.mu: the volume, or the snapshot
// it already took under that GUID, or why it may not advance.
func (s *Store) advanceable(r AdvanceRequest) (*volume, *snapshot, error) {
	v, err := s.volumeLocked(r.Volume)
	if err != nil {
		return nil, nil, err
	}
	if sn, ok := v.snaps[r.Name]; ok {
		if sn.rec.GUID == r.GUID {
			return v, sn, nil
		}
		return nil, nil, errdefs.AlreadyExists("snapshot %s@%s already exists with another identity", r.Volume, r.Name)
	}
	if _, busy := s.receiving[r.Volume]; busy {
		return nil, nil, errdefs.FailedPrecondition("volume %q is receiving a transfer; send it one instead of advancing", r.Volume)
	}
	newest := newestSnapshot(v)
	if newest == nil || newest.rec.GUID != r.BaseGUID {
		have := "none"
		if newest != nil {
			have = newest.rec.GUID
		}
		return nil, nil, errdefs.FailedPrecondition("volume %q: newest snapshot is %s, not base %s; send a transfer instead", r.Volume, have, r.BaseGUID)
	}
	if v.live.parent != newest.layer || !v.live.empty() {
		return nil, nil, errdefs.FailedPrecondition("volume %q changed since snapshot %s; send a transfer instead", r.Volume, newest.rec.Name)
	}
	return v, nil, nil
}

// newestSnapshot is the snapshot ListSnapshots would list last.
func newestSnapshot(v *volume) *snapshot {
	var best *snapshot
	for _, sn := range v.snaps {
		if best == nil {
			best = sn
			continue
		}
		if c := sn.rec.Created.Compare(best.rec.Created); c > 0 || (c == 0 && sn.rec.Name > best.rec.Name) {
			best = sn
		}
	}
	return best
}

// SnapshotRef names one snapshot of one volume.
type SnapshotRef struct {
	Volume, Name string
}

// DeleteSnapshots deletes snapshots of any volumes. Their records go in
// one transaction, and so do the merges that move no data (a layer that
// holds nothing, or whose only child holds nothing): retention across a
// large group costs one commit, not one per member. The other layers are
// merged one by one, as DeleteSnapshot does. A snapshot already gone is
// skipped.
func (s *Store) DeleteSnapshots(ctx context.Context, refs []SnapshotRef) error {
	_, err := s.deleteSnapshots(ctx, refs, false)
	return err
}

// PruneSnapshots is DeleteSnapshots for retention: a snapshot that is
// exported or connected to a host stays, and is returned in kept.
func (s *Store) PruneSnapshots(ctx context.Context, refs []SnapshotRef) (kept []SnapshotRef, err error) {
	return s.deleteSnapshots(ctx, refs, true)
}

func (s *Store) deleteSnapshots(ctx context.Context, refs []SnapshotRef, spareAttached bool) (kept []SnapshotRef, err error) {
	for _, r := range refs {
		if err := array.CheckName("volume", r.Volume); err != nil {
			return nil, err
		}
		if err := array.CheckName("snapshot", r.Name); err != nil {
			return nil, err
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	type gone struct {
		v  *volume
		sn *snapshot
	}
	var del []gone
	for _, r := range refs {
		v, sn, err := s.snapshotLocked(r.Volume, r.Name)
		if errdefs.IsNotFound(err) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if spareAttached && s.attachedLocked(r) {
			kept = append(kept, r)
			continue
		}
		if _, err := s.revokeLocked(func(e *exportRec) bool { return e.Volume == r.Volume && e.Snapshot == r.Name }); err != nil {
			return nil, err
		}
		if err := s.disconnectSnapshotLocked(r.Volume, r.Name); err != nil {
			return nil, err
		}
		del = append(del, gone{v, sn})
	}
	if len(del) == 0 {
		return kept, nil
	}
	if err := s.update(func(tx *bolt.Tx) error {
		for _, g := range del {
			if err := tx.Bucket(bucketSnapshots).Delete(snapKey(g.v.rec.Name, g.sn.rec.Name)); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		return nil, err
	}
	s.io.Lock()
	for _, g := range del {
		g.sn.deleted = true
	}
	s.io.Unlock()
	var plans []plannedMerge
	var rest []*layer
	busy := map[*layer]bool{}
	for _, g := range del {
		delete(g.v.snaps, g.sn.rec.Name)
		l := g.sn.layer
		l.snaps--
		if m, ok := s.batchable(l); ok && !busy[m.p] && !busy[m.c] {
			busy[m.p], busy[m.c] = true, true
			plans = append(plans, m)
			continue
		}
		rest = append(rest, l)
	}
	if err := s.mergeAll(plans); err != nil {
		return nil, err
	}
	for _, l := range rest {
		if _, ok := s.layers[l.id]; ok {
			if err := s.collectLayer(ctx, l); err != nil {
				return nil, err
			}
		}
	}
	return kept, nil
}

// attachedLocked reports whether someone reads snapshot r: an export or a
// host connection names it.
func (s *Store) attachedLocked(r SnapshotRef) bool {
	for _, e := range s.exports {
		if e.rec.Volume == r.Volume && e.rec.Snapshot == r.Name {
			return true
		}
	}
	return len(s.connectionsLocked(func(c *connRec) bool { return c.Volume == r.Volume && c.Snapshot == r.Name })) > 0
}

// batchable plans l's merge into its only child when no data moves.
func (s *Store) batchable(l *layer) (plannedMerge, bool) {
	if l.volume || l.snaps > 0 || l.staging || len(l.children) != 1 {
		return plannedMerge{}, false
	}
	var c *layer
	for c = range l.children {
	}
	return cheapMerge(l, c)
}

// mergeAll records planned metadata-only merges in one transaction and
// applies them. Called with s.mu held.
func (s *Store) mergeAll(plans []plannedMerge) error {
	if len(plans) == 0 {
		return nil
	}
	s.io.Lock()
	defer s.io.Unlock()
	for _, m := range plans {
		for _, l := range []*layer{m.p, m.c} {
			if err := s.durableEntry(l); err != nil {
				return err
			}
		}
	}
	if err := s.update(func(tx *bolt.Tx) error {
		for _, m := range plans {
			if err := m.put(tx); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		return err
	}
	for _, m := range plans {
		s.applyMerge(m)
	}
	return nil
}
