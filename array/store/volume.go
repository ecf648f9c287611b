package store

import (
	"context"
	"maps"
	"slices"
	"strings"

	bolt "go.etcd.io/bbolt"

	"github.com/volrep/volrep/array"
	"github.com/volrep/volrep/array/bitmap"
	"github.com/volrep/volrep/errdefs"
)

func checkSize(field string, size int64) error {
	if size <= 0 || size%bs != 0 {
		return errdefs.InvalidArgument(field, "%d is not a positive multiple of %d bytes", size, bs)
	}
	return nil
}

// CreateVolume creates a thin volume. Creating the same volume again is a
// no-op; the same name with another pool or size is ALREADY_EXISTS.
func (s *Store) CreateVolume(ctx context.Context, spec array.VolumeSpec) (array.Volume, error) {
	if err := array.CheckName("name", spec.Name); err != nil {
		return array.Volume{}, err
	}
	if err := array.CheckName("pool", spec.Pool); err != nil {
		return array.Volume{}, err
	}
	if err := checkSize("size_bytes", spec.SizeBytes); err != nil {
		return array.Volume{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for {
		if err := s.check(ctx); err != nil {
			return array.Volume{}, err
		}
		if v, ok := s.vols[spec.Name]; ok {
			if v.rec.Pool == spec.Pool && v.rec.Size == spec.SizeBytes && v.rec.Source == "" {
				return s.volumeOf(v), nil
			}
			return array.Volume{}, errdefs.AlreadyExists("volume %q already exists in pool %q with %d bytes; pick another name or delete it", spec.Name, v.rec.Pool, v.rec.Size)
		}
		st, busy := s.settling[spec.Name]
		if !busy {
			break
		}
		if err := s.awaitLocked(ctx, spec.Name, st.done); err != nil {
			return array.Volume{}, err
		}
	}
	if _, ok := s.pools[spec.Pool]; !ok {
		return array.Volume{}, s.noPool(spec.Pool)
	}
	rec := volRec{Name: spec.Name, Pool: spec.Pool, Size: spec.SizeBytes, Created: s.opts.Now().UTC(), Labels: spec.Labels, Serial: newSerial()}
	// The commit runs without s.mu, batched with other creates and
	// deletes (commit.go); the name stays reserved meanwhile.
	s.next++
	id := s.next
	settled := &settling{done: make(chan struct{}), pool: spec.Pool}
	s.settling[spec.Name] = settled
	s.mu.Unlock()
	// The layer's file is created by its first write (layer.writable).
	l := s.layerOf(layerRec{ID: id, File: layerFile(id)}, bitmap.New(), bitmap.New())
	rec.Live = l.id
	err := s.commit(func(tx *bolt.Tx) error {
		if err := putNextLayer(tx, l.id); err != nil {
			return err
		}
		if err := putJSON(tx.Bucket(bucketLayers), u64key(l.id), layerRec{ID: l.id, File: l.file}); err != nil {
			return err
		}
		return putJSON(tx.Bucket(bucketVolumes), []byte(rec.Name), rec)
	})
	s.mu.Lock()
	delete(s.settling, spec.Name)
	close(settled.done)
	if err != nil {
		return array.Volume{}, err
	}
	if s.closed.Load() {
		// Committed, so durable; the store closed meanwhile.
		return array.Volume{Name: rec.Name, Pool: rec.Pool, SizeBytes: rec.Size, Created: rec.Created, Labels: maps.Clone(rec.Labels), WWN: array.WWN(rec.Serial)}, nil
	}
	l.volume = true
	s.layers[l.id] = l
	v := &volume{rec: rec, live: l, snaps: map[string]*snapshot{}}
	s.vols[rec.Name] = v
	return s.volumeOf(v), nil
}

// settling is a volume whose create or delete is being committed
// without s.mu: its name is taken until done closes.
type settling struct {
	done chan struct{}
	pool string
}

// refuseSettlingLocked refuses to give name to another volume while its
// create or delete is being committed.
func (s *Store) refuseSettlingLocked(name string) error {
	if _, ok := s.settling[name]; ok {
		return errdefs.Aborted("volume %q is being created or deleted; try again", name)
	}
	return nil
}

// awaitLocked waits, with s.mu released, until the create or delete of
// name being committed has settled. s.mu is held again when it returns;
// the caller looks again.
func (s *Store) awaitLocked(ctx context.Context, name string, settled <-chan struct{}) error {
	s.mu.Unlock()
	defer s.mu.Lock()
	select {
	case <-settled:
		return nil
	case <-ctx.Done():
		return errdefs.Unavailable("volume %q is being created or deleted: %v", name, ctx.Err())
	}
}

// addVolume persists a volume with a new writable layer on top of parent.
func (s *Store) addVolume(rec volRec, parent *layer) (*volume, error) {
	if err := s.refuseSettlingLocked(rec.Name); err != nil {
		return nil, err
	}
	if !array.ValidSerial(rec.Serial) {
		rec.Serial = newSerial()
	}
	var l *layer
	err := s.update(func(tx *bolt.Tx) error {
		var err error
		if l, err = s.newLayer(tx, parent); err != nil {
			return err
		}
		rec.Live = l.id
		return putJSON(tx.Bucket(bucketVolumes), []byte(rec.Name), rec)
	})
	if err != nil {
		if l != nil {
			s.dropLayerFile(l)
		}
		return nil, err
	}
	l.volume = true
	s.layers[l.id] = l
	if parent != nil {
		parent.children[l] = struct{}{}
	}
	v := &volume{rec: rec, live: l, snaps: map[string]*snapshot{}}
	v.setQoS(rec.QoS.qos())
	s.vols[rec.Name] = v
	return v, nil
}

func (s *Store) volumeOf(v *volume) array.Volume {
	return array.Volume{
		Name: v.rec.Name, Pool: v.rec.Pool, SizeBytes: v.rec.Size, Created: v.rec.Created,
		Source: v.rec.Source, UsedBytes: v.live.usedBytes(), SnapshotCount: int64(len(v.snaps)),
		Labels: maps.Clone(v.rec.Labels), ReadOnly: v.rec.ReadOnly, WWN: array.WWN(v.rec.Serial),
		QoS: v.rec.QoS.qos(), Group: s.groupNameOf(v.rec.Name),
	}
}

func (s *Store) volumeLocked(name string) (*volume, error) {
	v, ok := s.vols[name]
	if !ok {
		return nil, errdefs.NotFound("volume %q not found on array %s", name, s.opts.Name)
	}
	return v, nil
}

func (s *Store) lookup(ctx context.Context, name string) (*volume, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	return s.volumeLocked(name)
}

// GetVolume returns a volume.
func (s *Store) GetVolume(ctx context.Context, name string) (array.Volume, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if err := s.check(ctx); err != nil {
		return array.Volume{}, err
	}
	v, err := s.volumeLocked(name)
	if err != nil {
		return array.Volume{}, err
	}
	return s.volumeOf(v), nil
}

// ListVolumes lists the volumes of pool, or of every pool, by name.
func (s *Store) ListVolumes(ctx context.Context, pool string) ([]array.Volume, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	if _, ok := s.pools[pool]; pool != "" && !ok {
		return nil, s.noPool(pool)
	}
	out := []array.Volume{}
	for _, v := range s.vols {
		if pool == "" || v.rec.Pool == pool {
			out = append(out, s.volumeOf(v))
		}
	}
	slices.SortFunc(out, func(a, b array.Volume) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// DeleteVolume deletes a volume that has no snapshots.
func (s *Store) DeleteVolume(ctx context.Context, name string) error {
	// The group observer runs after the lock is released (defers run last
	// first), since it calls back into the store.
	changed := ""
	defer func() {
		if changed != "" {
			s.groupChanged(changed)
		}
	}()
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check(ctx); err != nil {
		return err
	}
	v, err := s.volumeLocked(name)
	if err != nil {
		return err
	}
	if n := len(v.snaps); n > 0 {
		names := slices.Sorted(maps.Keys(v.snaps))
		return errdefs.FailedPrecondition("volume %q has %d snapshots (%s); delete them first", name, n, strings.Join(names[:min(n, 5)], ", "))
	}
	if err := s.refuseConnected(name); err != nil {
		return err
	}
	if g := s.groupOfVolume(name); g != nil {
		if err := s.removeMembersLocked(g, []string{name}); err != nil {
			return err
		}
		changed = g.Name
	}
	// Cinder deletes only detached volumes, so exports left are stale.
	if _, err := s.revokeLocked(func(e *exportRec) bool { return e.Volume == name }); err != nil {
		return err
	}
	drop := func(tx *bolt.Tx) error {
		if err := tx.Bucket(bucketVolumes).Delete([]byte(name)); err != nil {
			return err
		}
		if err := deleteReservations(tx, v.rec.Serial); err != nil {
			return err
		}
		return deleteLayerRec(tx, v.live.id)
	}
	if v.live.parent != nil {
		// A clone's layer hangs under a snapshot's, which a concurrent
		// snapshot delete could merge into it: commit under s.mu.
		if err := s.update(drop); err != nil {
			return err
		}
		delete(s.vols, name)
	} else {
		// The commit runs without s.mu, batched with other creates and
		// deletes (commit.go); meanwhile the volume is out of the
		// namespace and its name reserved.
		delete(s.vols, name)
		settled := &settling{done: make(chan struct{}), pool: v.rec.Pool}
		s.settling[name] = settled
		s.mu.Unlock()
		err = s.commit(drop)
		s.mu.Lock()
		delete(s.settling, name)
		close(settled.done)
		if err != nil {
			s.vols[name] = v
			return err
		}
	}
	s.io.Lock()
	v.deleted = true
	if h := v.hold; h != nil {
		s.releaseLocked(v, h) // held writes now find the volume deleted
	}
	s.io.Unlock()
	if w := s.reservationWatcher.Load(); w != nil {
		// A volume made later with the same serial (a replica takes its
		// source's) must not find these reservations.
		(*w).ForgetReservations(v.rec.Serial)
	}
	l := v.live
	delete(s.layers, l.id)
	s.dropLayerFile(l)
	if s.closed.Load() {
		return nil // deleted; what it shared is collected at the next Open
	}
	if p := l.parent; p != nil {
		delete(p.children, l)
		return s.collectLayer(ctx, p)
	}
	return nil
}

// ExtendVolume grows a volume. Asking for the current size is a no-op.
func (s *Store) ExtendVolume(ctx context.Context, name string, size int64) (array.Volume, error) {
	if err := checkSize("size_bytes", size); err != nil {
		return array.Volume{}, err
	}
	if err := s.growMirror(ctx, name, size); err != nil {
		return array.Volume{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check(ctx); err != nil {
		return array.Volume{}, err
	}
	v, err := s.volumeLocked(name)
	if err != nil {
		return array.Volume{}, err
	}
	if size < v.rec.Size {
		return array.Volume{}, errdefs.InvalidArgument("size_bytes", "%d is smaller than volume %q's %d bytes; volumes cannot shrink", size, name, v.rec.Size)
	}
	if size == v.rec.Size {
		return s.volumeOf(v), nil
	}
	rec := v.rec
	rec.Size = size
	if err := s.saveVolRec(v, rec); err != nil {
		return array.Volume{}, err
	}
	return s.volumeOf(v), nil
}

// saveVolRec stores a changed record of volume v, then makes it v's, under
// io's write lock since I/O reads the record. The caller holds s.mu.
func (s *Store) saveVolRec(v *volume, rec volRec) error {
	if err := s.update(func(tx *bolt.Tx) error {
		return putJSON(tx.Bucket(bucketVolumes), []byte(rec.Name), rec)
	}); err != nil {
		return err
	}
	s.io.Lock()
	v.rec = rec
	s.io.Unlock()
	return nil
}

// WriteVolume writes p at off. With fua the data is durable on return.
func (s *Store) WriteVolume(ctx context.Context, name string, off int64, p []byte, fua bool) error {
	v, err := s.lookup(ctx, name)
	if err != nil {
		return err
	}
	return s.space(gated(ctx, func() error { return s.write(ctx, v, p, off, fua, fromClient) }))
}

// ReadVolume fills p from off.
func (s *Store) ReadVolume(ctx context.Context, name string, off int64, p []byte) error {
	v, err := s.lookup(ctx, name)
	if err != nil {
		return err
	}
	return s.read(v, p, off)
}

// FlushVolume makes every write acknowledged so far durable.
func (s *Store) FlushVolume(ctx context.Context, name string) error {
	v, err := s.lookup(ctx, name)
	if err != nil {
		return err
	}
	return s.space(s.flush(ctx, v))
}
