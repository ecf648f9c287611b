package store

import (
	"context"
	"maps"
	"strings"

	bolt "go.etcd.io/bbolt"

	"github.com/volrep/volrep/array"
	"github.com/volrep/volrep/errdefs"
)

// RenameVolume renames a volume and, when labels is not nil, replaces its
// labels, in one transaction: a driver adopting a volume (or letting one
// go) never leaves it half renamed. Its snapshots follow it, and so does
// the source of every clone of them. A volume others reach by name is
// refused: exported, connected, in a consistency group (a protection
// group or pod), mirrored, a read-only replica target, or receiving a
// transfer; those references live outside the volume and would dangle.
func (s *Store) RenameVolume(ctx context.Context, name, newName string, labels map[string]string) (array.Volume, error) {
	if err := array.CheckName("name", name); err != nil {
		return array.Volume{}, err
	}
	if err := array.CheckName("new_name", newName); err != nil {
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
	if name == newName {
		if labels == nil || maps.Equal(labels, v.rec.Labels) {
			return s.volumeOf(v), nil
		}
	} else if _, ok := s.vols[newName]; ok {
		return array.Volume{}, errdefs.AlreadyExists("volume %q already exists on array %s; pick another name", newName, s.opts.Name)
	} else if err := s.refuseSettlingLocked(newName); err != nil {
		return array.Volume{}, err
	}
	if err := s.refuseReferenced(v, ""); err != nil {
		return array.Volume{}, err
	}
	rec := v.rec
	rec.Name = newName
	if labels != nil {
		rec.Labels = maps.Clone(labels)
	}
	snaps := make(map[string]snapRec, len(v.snaps))
	for n, sn := range v.snaps {
		r := sn.rec
		r.Volume = newName
		snaps[n] = r
	}
	clones := map[*volume]volRec{}
	for _, o := range s.vols {
		if snap, ok := strings.CutPrefix(o.rec.Source, name+"@"); ok {
			r := o.rec
			r.Source = newName + "@" + snap
			clones[o] = r
		}
	}
	err = s.update(func(tx *bolt.Tx) error {
		vb, sb := tx.Bucket(bucketVolumes), tx.Bucket(bucketSnapshots)
		if err := vb.Delete([]byte(name)); err != nil {
			return err
		}
		if err := putJSON(vb, []byte(newName), rec); err != nil {
			return err
		}
		for n, r := range snaps {
			if err := sb.Delete(snapKey(name, n)); err != nil {
				return err
			}
			if err := putJSON(sb, snapKey(newName, n), r); err != nil {
				return err
			}
		}
		for o, r := range clones {
			if o == v {
				continue // a volume cloned from its own snapshot cannot exist, but stay safe
			}
			if err := putJSON(vb, []byte(r.Name), r); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return array.Volume{}, err
	}
	s.io.Lock()
	v.rec = rec
	for n, sn := range v.snaps {
		sn.rec = snaps[n]
	}
	for o, r := range clones {
		if o != v {
			o.rec = r
		}
	}
	s.io.Unlock()
	delete(s.vols, name)
	s.vols[newName] = v
	return s.volumeOf(v), nil
}

// RenameSnapshot renames a snapshot of a volume and, when labels is not
// nil, replaces its labels, in one transaction. The clones of the
// snapshot follow it. An exported or connected snapshot is refused.
func (s *Store) RenameSnapshot(ctx context.Context, vol, name, newName string, labels map[string]string) (array.Snapshot, error) {
	for _, f := range [][2]string{{"volume", vol}, {"name", name}, {"new_name", newName}} {
		if err := array.CheckName(f[0], f[1]); err != nil {
			return array.Snapshot{}, err
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check(ctx); err != nil {
		return array.Snapshot{}, err
	}
	v, sn, err := s.snapshotLocked(vol, name)
	if err != nil {
		return array.Snapshot{}, err
	}
	if name == newName {
		if labels == nil || maps.Equal(labels, sn.rec.Labels) {
			return snapshotOf(sn), nil
		}
	} else if _, ok := v.snaps[newName]; ok {
		return array.Snapshot{}, errdefs.AlreadyExists("snapshot %s@%s already exists on array %s; pick another name", vol, newName, s.opts.Name)
	}
	if err := s.refuseReferenced(v, name); err != nil {
		return array.Snapshot{}, err
	}
	r := sn.rec
	r.Name = newName
	if labels != nil {
		r.Labels = maps.Clone(labels)
	}
	clones := map[*volume]volRec{}
	for _, o := range s.vols {
		if o.rec.Source == vol+"@"+name {
			c := o.rec
			c.Source = vol + "@" + newName
			clones[o] = c
		}
	}
	err = s.update(func(tx *bolt.Tx) error {
		sb := tx.Bucket(bucketSnapshots)
		if err := sb.Delete(snapKey(vol, name)); err != nil {
			return err
		}
		if err := putJSON(sb, snapKey(vol, newName), r); err != nil {
			return err
		}
		for _, c := range clones {
			if err := putJSON(tx.Bucket(bucketVolumes), []byte(c.Name), c); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return array.Snapshot{}, err
	}
	s.io.Lock()
	sn.rec = r
	for o, c := range clones {
		o.rec = c
	}
	s.io.Unlock()
	delete(v.snaps, name)
	v.snaps[newName] = sn
	return snapshotOf(sn), nil
}

// refuseReferenced refuses renaming volume v, or its snapshot snap, while
// something outside the record reaches it by name.
func (s *Store) refuseReferenced(v *volume, snap string) error {
	name, what := v.rec.Name, "volume "+v.rec.Name
	if snap != "" {
		what = "snapshot " + name + "@" + snap
	}
	if v.rec.ReadOnly && snap == "" {
		return errdefs.FailedPrecondition("%s is a read-only replica target; replication owns its name: promote it or stop the replication first", what)
	}
	if g := s.groupOfVolume(name); g != nil && snap == "" {
		return errdefs.FailedPrecondition("%s is a member of consistency group %q (a protection group or pod replicates it); remove it from the group first", what, g.Name)
	}
	s.io.RLock()
	mirrored := v.mirror != nil
	s.io.RUnlock()
	if mirrored && snap == "" {
		return errdefs.FailedPrecondition("%s is mirrored to a sync peer; stop its replication first", what)
	}
	if _, busy := s.receiving[name]; busy {
		return errdefs.Aborted("%s is receiving a transfer; retry when it ends", what)
	}
	for _, e := range s.exports {
		if e.rec.Volume == name && (snap == "" || e.rec.Snapshot == snap) {
			return errdefs.FailedPrecondition("%s has NBD export %q (attachment %q); detach it first", what, e.rec.Name, e.rec.AttachmentID)
		}
	}
	if cs := s.connectionsLocked(func(r *connRec) bool { return r.Volume == name && (snap == "" || r.Snapshot == snap) }); len(cs) > 0 {
		return errdefs.FailedPrecondition("%s is connected to host %q (LUN %d); disconnect it first", what, cs[0].rec.Host, cs[0].rec.LUN)
	}
	return nil
}
