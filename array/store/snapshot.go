package store

import (
	"cmp"
	"context"
	"hash/crc32"
	"maps"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	bolt "go.etcd.io/bbolt"

	"github.com/volrep/volrep/array"
	"github.com/volrep/volrep/array/bitmap"
	"github.com/volrep/volrep/errdefs"
)

func (s *Store) snapshotLocked(volume, name string) (*volume, *snapshot, error) {
	v, err := s.volumeLocked(volume)
	if err != nil {
		return nil, nil, err
	}
	sn, ok := v.snaps[name]
	if !ok {
		return nil, nil, errdefs.NotFound("snapshot %q of volume %q not found on array %s", name, volume, s.opts.Name)
	}
	return v, sn, nil
}

// usedBytes is what the snapshot alone holds: nothing when another
// snapshot reads the same layer, since deleting either frees nothing.
func (sn *snapshot) usedBytes() int64 {
	if sn.layer.snaps > 1 {
		return 0
	}
	return sn.layer.usedBytes()
}

func snapshotOf(sn *snapshot) array.Snapshot {
	return array.Snapshot{
		Volume: sn.rec.Volume, Name: sn.rec.Name, GUID: sn.rec.GUID, SizeBytes: sn.rec.Size,
		Created: sn.rec.Created, UsedBytes: sn.usedBytes(), Labels: maps.Clone(sn.rec.Labels),
	}
}

// SnapshotRequest names one member of a crash-consistent snapshot set.
type SnapshotRequest struct {
	Volume string
	Name   string
	Labels map[string]string
	// GUID keeps a replicated snapshot's identity; empty makes a new one.
	GUID string
	// Created keeps a replicated snapshot's time; zero means now.
	Created time.Time
}

// CreateSnapshot takes a point-in-time snapshot. Taking it again returns
// the existing one.
func (s *Store) CreateSnapshot(ctx context.Context, volume, name string, labels map[string]string) (array.Snapshot, error) {
	out, err := s.CreateSnapshots(ctx, []SnapshotRequest{{Volume: volume, Name: name, Labels: labels}})
	if err != nil {
		return array.Snapshot{}, err
	}
	return out[0], nil
}

// CreateSnapshots snapshots several volumes at one write barrier and in one
// transaction, so the set is crash-consistent across its members.
func (s *Store) CreateSnapshots(ctx context.Context, reqs []SnapshotRequest) ([]array.Snapshot, error) {
	if len(reqs) == 0 {
		return nil, errdefs.InvalidArgument("volumes", "no volumes to snapshot")
	}
	seen := map[string]bool{}
	for _, r := range reqs {
		if err := array.CheckName("volume", r.Volume); err != nil {
			return nil, err
		}
		if err := array.CheckName("name", r.Name); err != nil {
			return nil, err
		}
		if seen[r.Volume] {
			return nil, errdefs.InvalidArgument("volume", "volume %q is listed twice in one snapshot set", r.Volume)
		}
		seen[r.Volume] = true
	}
	// Flush outside the locks, so the barrier below only waits for writes
	// that arrive meanwhile instead of for the whole dirty page cache.
	for _, r := range reqs {
		if v, err := s.lookup(ctx, r.Volume); err == nil {
			if err := s.flush(ctx, v); err != nil {
				return nil, err
			}
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	vols := make([]*volume, len(reqs))
	existing := 0
	for i, r := range reqs {
		v, err := s.volumeLocked(r.Volume)
		if err != nil {
			return nil, err
		}
		vols[i] = v
		if _, ok := v.snaps[r.Name]; ok {
			existing++
		}
	}
	if existing == len(reqs) {
		out := make([]array.Snapshot, len(reqs))
		for i, r := range reqs {
			out[i] = snapshotOf(vols[i].snaps[r.Name])
		}
		return out, nil
	}
	if existing > 0 {
		return nil, errdefs.AlreadyExists("some volumes of the set already have a snapshot with the requested name; use a new name")
	}
	return s.freezeLocked(vols, reqs)
}

// freezeLocked turns each volume's live layer into the requested snapshot
// and gives it a new empty live layer, all in one transaction. A volume
// with nothing written since its newest snapshot keeps its live layer: the
// new snapshot reads the newest one's layer, so it costs one record, and
// deleting the older of the two later costs one record too. The caller
// holds s.mu and has checked the names are free.
func (s *Store) freezeLocked(vols []*volume, reqs []SnapshotRequest) ([]array.Snapshot, error) {
	s.io.Lock()
	defer s.io.Unlock()
	now := s.opts.Now().UTC()
	sets := make([][]chunkSet, len(reqs))
	news := make([]*layer, len(reqs))
	recs := make([]snapRec, len(reqs))
	shared := make([]*layer, len(reqs))
	fail := func(err error) ([]array.Snapshot, error) {
		for i, v := range vols {
			if sets[i] != nil {
				v.live.remarkDirty(sets[i])
				v.live.unsynced.Store(true)
			}
			if news[i] != nil {
				s.dropLayerFile(news[i])
			}
		}
		return nil, err
	}
	for i, v := range vols {
		if shared[i] = quietSince(v); shared[i] != nil {
			continue
		}
		sets[i] = v.live.takeDirty()
		// A layer with nothing written since its last flush has nothing
		// to sync: skipping it keeps a snapshot of a quiet volume at the
		// metadata commit's cost.
		if !v.live.unsynced.Swap(false) && len(sets[i]) == 0 {
			continue
		}
		if f := v.live.data(); f != nil {
			if err := fdatasync(f); err != nil {
				return fail(err)
			}
		}
		if err := s.durableEntry(v.live); err != nil {
			return fail(err)
		}
	}
	err := s.update(func(tx *bolt.Tx) error {
		for i, v := range vols {
			guid := reqs[i].GUID
			if guid == "" {
				guid = uuid.NewString()
			}
			created := now
			if !reqs[i].Created.IsZero() {
				created = reqs[i].Created.UTC()
			}
			recs[i] = snapRec{Volume: v.rec.Name, Name: reqs[i].Name, GUID: guid, Size: v.rec.Size,
				Created: created, Labels: reqs[i].Labels}
			if shared[i] != nil {
				recs[i].Layer = shared[i].id
			} else if err := s.freezeLive(tx, v, sets[i], &news[i]); err != nil {
				return err
			} else {
				recs[i].Layer = v.live.id
			}
			if err := putJSON(tx.Bucket(bucketSnapshots), snapKey(v.rec.Name, reqs[i].Name), recs[i]); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fail(err)
	}
	out := make([]array.Snapshot, len(reqs))
	for i, v := range vols {
		l := shared[i]
		if l == nil {
			l = v.live
			nl := news[i]
			l.frozen, l.volume = true, false
			nl.volume = true
			l.children[nl] = struct{}{}
			s.layers[nl.id] = nl
			v.live = nl
			v.rec.Live = nl.id
		}
		l.snaps++
		sn := &snapshot{rec: recs[i], layer: l}
		v.snaps[recs[i].Name] = sn
		out[i] = snapshotOf(sn)
	}
	return out, nil
}

// quietSince returns the layer of v's newest snapshot when nothing was
// written to v since it (its live layer sits on that layer and holds
// nothing), so a new snapshot can read the same layer; nil otherwise.
// Called with s.io held, so no write is in flight.
func quietSince(v *volume) *layer {
	p := v.live.parent
	if p == nil || !v.live.empty() || v.live.unsynced.Load() {
		return nil
	}
	if newest := newestSnapshot(v); newest == nil || newest.layer != p {
		return nil // another volume's snapshot (a clone's base), or an older one of v's (after a revert)
	}
	return p
}

// freezeLive records v's live layer as frozen, with the chunks written
// since its last record, and a new empty live layer above it (returned
// through nl, so a failed commit can drop its file).
func (s *Store) freezeLive(tx *bolt.Tx, v *volume, sets []chunkSet, nl **layer) error {
	old := v.live
	for _, cs := range sets {
		if err := putChunkSet(tx, old.id, cs); err != nil {
			return err
		}
	}
	l, err := s.newLayer(tx, old)
	if err != nil {
		return err
	}
	*nl = l
	r := layerRec{ID: old.id, File: old.file, Frozen: true}
	if old.parent != nil {
		r.Parent = old.parent.id
	}
	if err := putJSON(tx.Bucket(bucketLayers), u64key(old.id), r); err != nil {
		return err
	}
	vr := v.rec
	vr.Live = l.id
	return putJSON(tx.Bucket(bucketVolumes), []byte(vr.Name), vr)
}

// GetSnapshot returns a snapshot.
func (s *Store) GetSnapshot(ctx context.Context, volume, name string) (array.Snapshot, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if err := s.check(ctx); err != nil {
		return array.Snapshot{}, err
	}
	_, sn, err := s.snapshotLocked(volume, name)
	if err != nil {
		return array.Snapshot{}, err
	}
	return snapshotOf(sn), nil
}

// ListSnapshots lists a volume's snapshots, oldest first.
func (s *Store) ListSnapshots(ctx context.Context, volume string) ([]array.Snapshot, error) {
	return s.listSnapshots(ctx, volume, func(sn *snapshot) (array.Snapshot, bool) { return snapshotOf(sn), true })
}

// SnapshotsLabeled lists, oldest first, a volume's snapshots whose label
// key has value, with their name, GUID and time only: what retention
// needs, at each cycle, for every member of a group that may hold
// thousands, without ListSnapshots' copies of every label map and its
// walk of every layer for the used bytes.
func (s *Store) SnapshotsLabeled(ctx context.Context, volume, key, value string) ([]array.Snapshot, error) {
	return s.listSnapshots(ctx, volume, func(sn *snapshot) (array.Snapshot, bool) {
		return array.Snapshot{Volume: sn.rec.Volume, Name: sn.rec.Name, GUID: sn.rec.GUID, SizeBytes: sn.rec.Size, Created: sn.rec.Created},
			sn.rec.Labels[key] == value
	})
}

// listSnapshots lists what of a volume's snapshots pick takes, oldest
// first.
func (s *Store) listSnapshots(ctx context.Context, volume string, pick func(*snapshot) (array.Snapshot, bool)) ([]array.Snapshot, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	v, err := s.volumeLocked(volume)
	if err != nil {
		return nil, err
	}
	out := make([]array.Snapshot, 0, len(v.snaps))
	for _, sn := range v.snaps {
		if a, ok := pick(sn); ok {
			out = append(out, a)
		}
	}
	slices.SortFunc(out, func(a, b array.Snapshot) int {
		if c := a.Created.Compare(b.Created); c != 0 {
			return c
		}
		return strings.Compare(a.Name, b.Name)
	})
	return out, nil
}

// ReadSnapshot fills p from a snapshot at off.
func (s *Store) ReadSnapshot(ctx context.Context, volume, name string, off int64, p []byte) error {
	h, err := s.OpenSnapshot(ctx, volume, name)
	if err != nil {
		return err
	}
	return h.ReadAt(ctx, p, off)
}

// DeleteSnapshot deletes a snapshot and merges its layer away.
func (s *Store) DeleteSnapshot(ctx context.Context, volume, name string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check(ctx); err != nil {
		return err
	}
	v, sn, err := s.snapshotLocked(volume, name)
	if err != nil {
		return err
	}
	if _, err := s.revokeLocked(func(e *exportRec) bool { return e.Volume == volume && e.Snapshot == name }); err != nil {
		return err
	}
	if err := s.disconnectSnapshotLocked(volume, name); err != nil {
		return err
	}
	// First forget the snapshot; its layer then only matters as the base
	// of the layers above it, which is what lets the merge overwrite it.
	if err := s.update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketSnapshots).Delete(snapKey(volume, name))
	}); err != nil {
		return err
	}
	s.io.Lock()
	sn.deleted = true
	s.io.Unlock()
	delete(v.snaps, name)
	sn.layer.snaps--
	return s.collectLayer(ctx, sn.layer)
}

// CloneSnapshot creates a writable volume on top of a snapshot in O(1).
func (s *Store) CloneSnapshot(ctx context.Context, spec array.CloneSpec) (array.Volume, error) {
	if err := array.CheckName("name", spec.Name); err != nil {
		return array.Volume{}, err
	}
	if spec.SizeBytes != 0 {
		if err := checkSize("size_bytes", spec.SizeBytes); err != nil {
			return array.Volume{}, err
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check(ctx); err != nil {
		return array.Volume{}, err
	}
	src, sn, err := s.snapshotLocked(spec.Volume, spec.Snapshot)
	if err != nil {
		return array.Volume{}, err
	}
	pool := spec.Pool
	if pool == "" {
		pool = src.rec.Pool
	}
	size := spec.SizeBytes
	if size == 0 {
		size = sn.rec.Size
	}
	if size < sn.rec.Size {
		return array.Volume{}, errdefs.InvalidArgument("size_bytes", "%d is smaller than snapshot %s's %d bytes", size, spec.Volume+"@"+spec.Snapshot, sn.rec.Size)
	}
	source := spec.Volume + "@" + spec.Snapshot
	if v, ok := s.vols[spec.Name]; ok {
		if v.rec.Source == source && v.rec.Pool == pool && v.rec.Size == size {
			return s.volumeOf(v), nil
		}
		return array.Volume{}, errdefs.AlreadyExists("volume %q already exists with another source, pool or size; pick another name", spec.Name)
	}
	if _, ok := s.pools[pool]; !ok {
		return array.Volume{}, s.noPool(pool)
	}
	rec := volRec{Name: spec.Name, Pool: pool, Size: size, Created: s.opts.Now().UTC(), Source: source, Labels: spec.Labels}
	v, err := s.addVolume(rec, sn.layer)
	if err != nil {
		return array.Volume{}, err
	}
	return s.volumeOf(v), nil
}

// Diff lists the extents of snapshot that differ from base. Both must be
// of one lineage, base older. With an empty base it lists every allocated
// extent.
func (s *Store) Diff(ctx context.Context, volume, base, snap string) ([]array.Extent, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	_, to, err := s.snapshotLocked(volume, snap)
	if err != nil {
		return nil, err
	}
	var from *layer
	if base != "" {
		_, b, err := s.snapshotLocked(volume, base)
		if err != nil {
			return nil, err
		}
		from = b.layer
		// After a revert, base may sit on a branch the volume left (it
		// was taken after the snapshot reverted to): the two then share
		// an ancestor, and the delta is what either side changed since it.
		if c := commonAncestor(to.layer, from); c == nil || (c == to.layer && from != to.layer) {
			return nil, errdefs.FailedPrecondition("snapshot %q is not older than %q in volume %q's lineage; swap them or send a full copy", base, snap, volume)
		}
	}
	return diffLayers(ctx, to.layer, from, to.rec.Size)
}

// commonAncestor returns the newest layer in both a's and b's chains.
func commonAncestor(a, b *layer) *layer {
	in := map[*layer]bool{}
	for x := a; x != nil; x = x.parent {
		in[x] = true
	}
	for x := b; x != nil; x = x.parent {
		if in[x] {
			return x
		}
	}
	return nil
}

// changedBelow adds to cand the blocks the layers from top down to stop
// (excluded) hold, and those they zero too when zeros is set.
func changedBelow(cand *bitmap.Bitmap, top, stop *layer, zeros bool) {
	for l := top; l != nil && l != stop; l = l.parent {
		l.mu.RLock()
		cand.Or(l.present)
		if zeros {
			cand.Or(l.zero)
		}
		l.mu.RUnlock()
	}
}

// changedBetween adds to cand every block whose content may differ
// between the views topped by a and b: what either changed since their
// common ancestor.
func changedBetween(cand *bitmap.Bitmap, a, b *layer) {
	c := commonAncestor(a, b)
	changedBelow(cand, a, c, true)
	changedBelow(cand, b, c, true)
}

// diffLayers lists what the view topped by to changes relative to the view
// topped by from (nil: relative to nothing, data only). from is to's
// ancestor, or shares one with it: the candidates are then the blocks
// either side changed since that ancestor, each sent as to holds it.
func diffLayers(ctx context.Context, to, from *layer, size int64) ([]array.Extent, error) {
	var cand []blockRun
	if from == nil {
		cand = changedRuns(nil, to, nil, false)
	} else {
		c := commonAncestor(to, from)
		cand = changedRuns(changedRuns(nil, to, c, true), from, c, true)
	}
	limit := uint64((size + bs - 1) / bs)
	var out []array.Extent
	var pieces []piece
	for _, r := range unionRuns(cand) {
		if r.lo >= limit {
			break
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		pieces = resolve(to, r.lo, min(r.hi, limit), pieces[:0])
		for _, pc := range pieces {
			zero := pc.l == nil
			if zero && from == nil {
				continue
			}
			e := array.Extent{Offset: int64(pc.lo) * bs, Length: int64(pc.hi-pc.lo) * bs, Zero: zero}
			if n := len(out); n > 0 && out[n-1].End() == e.Offset && out[n-1].Zero == zero {
				out[n-1].Length += e.Length
				continue
			}
			out = append(out, e)
		}
	}
	return out, nil
}

// blockRun is the blocks [lo, hi).
type blockRun struct{ lo, hi uint64 }

// changedRuns is changedBelow as a list of runs. A diff uses it rather
// than a union bitmap, whose containers (one per 256 MiB touched) cost
// allocations that grow with the volume's size, not with what changed.
func changedRuns(runs []blockRun, top, stop *layer, zeros bool) []blockRun {
	add := func(lo, hi uint64) bool {
		runs = append(runs, blockRun{lo, hi})
		return true
	}
	for l := top; l != nil && l != stop; l = l.parent {
		l.mu.RLock()
		l.present.Runs(0, math.MaxUint64, add)
		if zeros {
			l.zero.Runs(0, math.MaxUint64, add)
		}
		l.mu.RUnlock()
	}
	return runs
}

// unionRuns sorts runs and joins those that overlap or touch, in place.
func unionRuns(runs []blockRun) []blockRun {
	slices.SortFunc(runs, func(a, b blockRun) int { return cmp.Compare(a.lo, b.lo) })
	out := runs[:0]
	for _, r := range runs {
		if n := len(out); n > 0 && r.lo <= out[n-1].hi {
			out[n-1].hi = max(out[n-1].hi, r.hi)
			continue
		}
		out = append(out, r)
	}
	return out
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Checksums returns the CRC-32C of each block of a snapshot's range.
func (s *Store) Checksums(ctx context.Context, volume, snap string, off, length int64) ([]uint32, error) {
	if off%bs != 0 || length <= 0 {
		return nil, errdefs.InvalidArgument("offset", "checksums cover whole blocks from a block boundary")
	}
	h, err := s.OpenSnapshot(ctx, volume, snap)
	if err != nil {
		return nil, err
	}
	length = min(length, h.Size()-off)
	if length <= 0 {
		return nil, errdefs.InvalidArgument("offset", "%d is past the end of %s@%s", off, volume, snap)
	}
	out := make([]uint32, 0, (length+bs-1)/bs)
	buf := make([]byte, min(length, 1<<20))
	for length > 0 {
		n := min(length, int64(len(buf)))
		if err := h.ReadAt(ctx, buf[:n], off); err != nil {
			return nil, err
		}
		for p := buf[:n]; len(p) > 0; p = p[min(len(p), bs):] {
			out = append(out, crc32.Checksum(p[:min(len(p), bs)], castagnoli))
		}
		off, length = off+n, length-n
	}
	return out, nil
}

// CreateSnapshotSet snapshots volumes at one write barrier, with one name.
func (s *Store) CreateSnapshotSet(ctx context.Context, volumes []string, name string, labels map[string]string) ([]array.Snapshot, error) {
	reqs := make([]SnapshotRequest, len(volumes))
	for i, v := range volumes {
		reqs[i] = SnapshotRequest{Volume: v, Name: name, Labels: labels}
	}
	return s.CreateSnapshots(ctx, reqs)
}

// AdoptSnapshot snapshots a volume under a given GUID.
func (s *Store) AdoptSnapshot(ctx context.Context, volume, name, guid string, labels map[string]string) (array.Snapshot, error) {
	if guid == "" {
		return array.Snapshot{}, errdefs.InvalidArgument("guid", "is required to adopt an identity")
	}
	out, err := s.CreateSnapshots(ctx, []SnapshotRequest{{Volume: volume, Name: name, Labels: labels, GUID: guid}})
	if err != nil {
		return array.Snapshot{}, err
	}
	if out[0].GUID != guid {
		return array.Snapshot{}, errdefs.AlreadyExists("snapshot %s@%s already exists with another identity", volume, name)
	}
	return out[0], nil
}
