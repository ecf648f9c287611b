package store

import (
	"context"
	"encoding/json"
	"os"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/volrep/volrep/array"
	"github.com/volrep/volrep/errdefs"
)

var bucketReceives = []byte("receives")

// receiveRec is a transfer being staged, so a restart can resume it.
type receiveRec struct {
	TransferID   string `json:"transfer_id"`
	Volume       string `json:"volume"`
	SnapshotGUID string `json:"snapshot_guid"`
	BaseGUID     string `json:"base_guid,omitempty"`
	Layer        uint64 `json:"layer"`
	Cursor       int64  `json:"cursor"`
	Bytes        int64  `json:"bytes"`
}

// ReceiveSpec describes a snapshot arriving from another array.
type ReceiveSpec struct {
	TransferID   string
	Volume       string
	Pool         string
	SizeBytes    int64
	VolumeLabels map[string]string
	// BaseGUID names the snapshot on the target that the data is a delta
	// from; empty for a full copy.
	BaseGUID string
	Snapshot SnapshotRequest
	Created  time.Time
	// ReadOnly makes the target volume a read-only replica target.
	ReadOnly bool
	// Overwrite allows receiving into a writable volume (a first copy
	// onto an existing target); otherwise a promoted volume refuses.
	Overwrite bool
	// Serial is the source volume's serial, which a volume created here
	// takes so that it keeps the source's SCSI identity; empty (or not a
	// serial) gives it one of its own.
	Serial string
}

// Receiver stages one incoming snapshot in a layer of its own, invisible
// until Commit, which makes it a snapshot of the target volume in one
// transaction, as ZFS receive does.
type Receiver struct {
	s    *Store
	spec ReceiveSpec
	v    *volume
	l    *layer
	done *array.Snapshot

	// mu guards rec, which Checkpoint may persist from another goroutine
	// while Write goes on.
	mu  sync.Mutex
	rec receiveRec
	// syncMu lets one checkpoint run at a time.
	syncMu sync.Mutex
	// direct writes the staged data around the page cache (see
	// directWriter); opened by the first write, closed by Release.
	direct     *directWriter
	directOnce sync.Once
}

func (s *Store) loadReceives(tx *bolt.Tx) error {
	b, err := tx.CreateBucketIfNotExists(bucketReceives)
	if err != nil {
		return err
	}
	return b.ForEach(func(k, v []byte) error {
		var r receiveRec
		if err := json.Unmarshal(v, &r); err != nil {
			return err
		}
		if l := s.layers[r.Layer]; l != nil {
			l.staging = true
		}
		return nil
	})
}

// BeginReceive prepares, or resumes, receiving a snapshot. When the
// snapshot is already on the volume, the Receiver is Done at once.
func (s *Store) BeginReceive(ctx context.Context, spec ReceiveSpec) (*Receiver, error) {
	for field, name := range map[string]string{"volume": spec.Volume, "pool": spec.Pool, "snapshot_name": spec.Snapshot.Name, "transfer_id": spec.TransferID} {
		if err := array.CheckName(field, name); err != nil {
			return nil, err
		}
	}
	if spec.Snapshot.GUID == "" {
		return nil, errdefs.InvalidArgument("snapshot_guid", "is required")
	}
	if err := checkSize("size_bytes", spec.SizeBytes); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	if _, busy := s.receiving[spec.Volume]; busy {
		return nil, errdefs.Aborted("volume %q on array %s is already receiving a transfer; retry when it ends", spec.Volume, s.opts.Name)
	}
	r := &Receiver{s: s, spec: spec}
	v, ok := s.vols[spec.Volume]
	if ok {
		for _, sn := range v.snaps {
			if sn.rec.GUID == spec.Snapshot.GUID {
				snap := snapshotOf(sn)
				r.done = &snap
				return r, nil
			}
		}
		s.io.RLock()
		err := v.carried(s.opts.Name)
		s.io.RUnlock()
		if err != nil {
			return nil, err
		}
		if !v.rec.ReadOnly && !spec.Overwrite {
			return nil, errdefs.FailedPrecondition("volume %q on array %s is writable (promoted by a failover, or not a replica target); it takes no replicated data until it is demoted", spec.Volume, s.opts.Name)
		}
		if sn, taken := v.snaps[spec.Snapshot.Name]; taken {
			return nil, errdefs.AlreadyExists("volume %q on array %s already has a different snapshot called %q (GUID %s)", spec.Volume, s.opts.Name, spec.Snapshot.Name, sn.rec.GUID)
		}
	} else {
		if spec.BaseGUID != "" {
			return nil, errdefs.FailedPrecondition("volume %q does not exist on array %s, so it has no base snapshot %s; send a full copy", spec.Volume, s.opts.Name, spec.BaseGUID)
		}
		if _, ok := s.pools[spec.Pool]; !ok {
			return nil, s.noPool(spec.Pool)
		}
		var err error
		v, err = s.addVolume(volRec{Name: spec.Volume, Pool: spec.Pool, Size: spec.SizeBytes, Created: s.opts.Now().UTC(),
			Labels: spec.VolumeLabels, ReadOnly: spec.ReadOnly, Serial: spec.Serial}, nil)
		if err != nil {
			return nil, err
		}
	}
	r.v = v
	var base *layer
	if spec.BaseGUID != "" {
		for _, sn := range v.snaps {
			if sn.rec.GUID == spec.BaseGUID {
				base = sn.layer
			}
		}
		if base == nil {
			return nil, errdefs.FailedPrecondition("base snapshot %s is not on volume %q of array %s; send a full copy", spec.BaseGUID, spec.Volume, s.opts.Name)
		}
	}
	// Resume a matching staged transfer; drop any other for this volume.
	var stale []receiveRec
	if err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketReceives).ForEach(func(k, val []byte) error {
			var rec receiveRec
			if err := json.Unmarshal(val, &rec); err != nil {
				return err
			}
			if rec.Volume != spec.Volume {
				return nil
			}
			if rec.TransferID == spec.TransferID && rec.SnapshotGUID == spec.Snapshot.GUID && rec.BaseGUID == spec.BaseGUID && s.layers[rec.Layer] != nil {
				r.rec, r.l = rec, s.layers[rec.Layer]
				return nil
			}
			stale = append(stale, rec)
			return nil
		})
	}); err != nil {
		return nil, err
	}
	for _, rec := range stale {
		if err := s.dropReceive(rec); err != nil {
			return nil, err
		}
	}
	if r.l != nil {
		s.receiving[spec.Volume] = r
		return r, nil
	}
	r.rec = receiveRec{TransferID: spec.TransferID, Volume: spec.Volume, SnapshotGUID: spec.Snapshot.GUID, BaseGUID: spec.BaseGUID}
	err := s.update(func(tx *bolt.Tx) error {
		l, err := s.newLayer(tx, base)
		if err != nil {
			return err
		}
		r.l = l
		r.rec.Layer = l.id
		return putJSON(tx.Bucket(bucketReceives), []byte(spec.TransferID), r.rec)
	})
	if err != nil {
		if r.l != nil {
			s.dropLayerFile(r.l)
		}
		return nil, err
	}
	r.l.staging = true
	s.layers[r.l.id] = r.l
	if base != nil {
		base.children[r.l] = struct{}{}
	}
	s.receiving[spec.Volume] = r
	return r, nil
}

// Release ends this receiver's hold on the volume without dropping what
// it staged, so a later transfer with the same id resumes. Committed and
// aborted receivers release themselves.
func (r *Receiver) Release() {
	r.direct.close()
	r.s.mu.Lock()
	defer r.s.mu.Unlock()
	if r.s.receiving[r.spec.Volume] == r {
		delete(r.s.receiving, r.spec.Volume)
	}
}

// dropReceive forgets a staged transfer and its layer. Called with s.mu held.
func (s *Store) dropReceive(rec receiveRec) error {
	if err := s.update(func(tx *bolt.Tx) error {
		if err := tx.Bucket(bucketReceives).Delete([]byte(rec.TransferID)); err != nil {
			return err
		}
		if s.layers[rec.Layer] != nil {
			return deleteLayerRec(tx, rec.Layer)
		}
		return nil
	}); err != nil {
		return err
	}
	if l := s.layers[rec.Layer]; l != nil {
		delete(s.layers, l.id)
		if l.parent != nil {
			delete(l.parent.children, l)
		}
		s.dropLayerFile(l)
	}
	return nil
}

// Done reports whether the snapshot was already on the target.
func (r *Receiver) Done() (array.Snapshot, bool) {
	if r.done == nil {
		return array.Snapshot{}, false
	}
	return *r.done, true
}

// Cursor is the offset below which everything is durably staged.
func (r *Receiver) Cursor() int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.rec.Cursor
}

// Bytes counts data bytes staged so far, across resumes.
func (r *Receiver) Bytes() int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.rec.Bytes
}

func (r *Receiver) checkBlocks(off, length int64) error {
	if off%bs != 0 || length%bs != 0 || off < 0 || off+length > r.spec.SizeBytes {
		return errdefs.InvalidArgument("offset", "[%d, %d) is not block-aligned inside the snapshot's %d bytes", off, off+length, r.spec.SizeBytes)
	}
	return nil
}

// Blocks is data for whole blocks at Off.
type Blocks struct {
	Off  int64
	Data []byte
}

// WriteBlocks stages ranges of whole blocks that do not overlap, all at
// once: the device takes direct writes in flight together faster than one
// after another (648 direct 64 KiB writes at random offsets of a new
// file, allocated first: 76-101 ms one at a time, 59-74 ms four at a
// time, in a separate Go program on this kind of machine). Every range is
// checked before any is written. It returns the first error; ranges
// written before it stay staged.
func (r *Receiver) WriteBlocks(ws []Blocks) error {
	if len(ws) == 0 {
		return nil
	}
	for _, b := range ws {
		if err := r.checkBlocks(b.Off, int64(len(b.Data))); err != nil {
			return err
		}
	}
	f, err := r.l.writable()
	if err != nil {
		return r.s.space(err)
	}
	r.directOnce.Do(func() { r.direct = openDirect(r.l.path) })
	if len(ws) > 1 {
		for _, b := range ws {
			if err := r.direct.allocate(b.Data, b.Off); err != nil {
				return r.s.space(err)
			}
		}
	}
	errs := make([]error, len(ws))
	var wg sync.WaitGroup
	for i := 1; i < len(ws); i++ {
		wg.Go(func() { errs[i] = r.writeBlocks(f, ws[i]) })
	}
	errs[0] = r.writeBlocks(f, ws[0])
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

func (r *Receiver) writeBlocks(f *os.File, b Blocks) error {
	if err := r.direct.writeAt(f, b.Data, b.Off); err != nil {
		return r.s.space(err)
	}
	r.l.markPresent(uint64(b.Off/bs), uint64((b.Off+int64(len(b.Data)))/bs))
	r.mu.Lock()
	r.rec.Bytes += int64(len(b.Data))
	r.mu.Unlock()
	return nil
}

// Zero stages whole blocks that read as zeros in the new snapshot.
func (r *Receiver) Zero(off, length int64) error {
	if err := r.checkBlocks(off, length); err != nil {
		return err
	}
	if f := r.l.data(); f != nil { // else nothing is stored to punch
		if err := punchHole(f, off, length); err != nil {
			return err
		}
	}
	lo, hi := uint64(off/bs), uint64((off+length)/bs)
	r.l.mu.Lock()
	r.l.present.ClearRange(lo, hi)
	r.l.zero.SetRange(lo, hi)
	r.l.mu.Unlock()
	r.l.unsynced.Store(true)
	return nil
}

// Checkpoint makes everything staged below cursor durable, so a new
// transfer with the same id resumes there. It may run while Write goes on
// above cursor: the data of every block marked so far is synced before
// the bitmap that names it is stored.
func (r *Receiver) Checkpoint(ctx context.Context, cursor int64) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	r.syncMu.Lock()
	defer r.syncMu.Unlock()
	r.mu.Lock()
	rec := r.rec
	r.mu.Unlock()
	sets, err := r.syncStaging()
	if err != nil {
		return err
	}
	rec.Cursor = cursor
	if err := r.s.durableEntry(r.l); err != nil {
		return err
	}
	err = r.s.update(func(tx *bolt.Tx) error {
		for _, cs := range sets {
			if err := putChunkSet(tx, r.l.id, cs); err != nil {
				return err
			}
		}
		return putJSON(tx.Bucket(bucketReceives), []byte(rec.TransferID), rec)
	})
	if err != nil {
		r.l.remarkDirty(sets)
		return err
	}
	r.mu.Lock()
	r.rec.Cursor = cursor
	r.mu.Unlock()
	return nil
}

func (r *Receiver) syncStaging() ([]chunkSet, error) {
	sets := r.l.takeDirty()
	r.l.unsynced.Store(false)
	if f := r.l.data(); f == nil {
		// Nothing was written: nothing to sync.
	} else if err := fdatasync(f); err != nil {
		r.l.remarkDirty(sets)
		r.l.unsynced.Store(true)
		return nil, r.s.space(err)
	}
	return sets, nil
}

// Commit makes the staged data a snapshot of the target volume, and the
// volume's content that snapshot, in one transaction.
func (r *Receiver) Commit(ctx context.Context) (array.Snapshot, error) {
	if r.done != nil {
		return *r.done, nil
	}
	s := r.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check(ctx); err != nil {
		return array.Snapshot{}, err
	}
	v := r.v
	if v.deleted {
		return array.Snapshot{}, errdefs.Aborted("volume %q was deleted while receiving", v.rec.Name)
	}
	r.syncMu.Lock()
	defer r.syncMu.Unlock()
	s.io.Lock()
	defer s.io.Unlock()
	// Checked again here: the pod may have been taken over since the
	// transfer began.
	if err := v.carried(s.opts.Name); err != nil {
		return array.Snapshot{}, err
	}
	sets, err := r.syncStaging()
	if err != nil {
		return array.Snapshot{}, err
	}
	if base := r.l.parent; base != nil && r.l.empty() && quietSince(v) == base {
		return r.commitOnto(base)
	}
	if err := s.durableEntry(r.l); err != nil {
		return array.Snapshot{}, err
	}
	staging, oldLive := r.l, v.live
	var newLive *layer
	snap, vr := r.snapshotOn(staging)
	err = s.update(func(tx *bolt.Tx) error {
		for _, cs := range sets {
			if err := putChunkSet(tx, staging.id, cs); err != nil {
				return err
			}
		}
		frozen := layerRec{ID: staging.id, File: staging.file, Frozen: true}
		if staging.parent != nil {
			frozen.Parent = staging.parent.id
		}
		if err := putJSON(tx.Bucket(bucketLayers), u64key(staging.id), frozen); err != nil {
			return err
		}
		var err error
		// A replica target's own writable layer is empty: the volume now
		// reads as the snapshot just received.
		if newLive, err = s.newLayer(tx, staging); err != nil {
			return err
		}
		vr.Live = newLive.id
		return r.putReceived(tx, vr, snap, oldLive)
	})
	if err != nil {
		r.l.remarkDirty(sets)
		if newLive != nil {
			s.dropLayerFile(newLive)
		}
		return array.Snapshot{}, err
	}
	staging.frozen, staging.staging = true, false
	staging.snaps++
	newLive.volume = true
	staging.children[newLive] = struct{}{}
	s.layers[newLive.id] = newLive
	v.live = newLive
	out := r.received(vr, snap, oldLive)
	if p := oldLive.parent; p != nil {
		delete(p.children, oldLive)
		if err := s.collectLayer(ctx, p); err != nil {
			return out, err
		}
	}
	return out, nil
}

// snapshotOn is the received snapshot, reading layer l, and the target
// volume's record once it holds it.
func (r *Receiver) snapshotOn(l *layer) (*snapshot, volRec) {
	v := r.v
	snap := &snapshot{layer: l, rec: snapRec{Volume: v.rec.Name, Name: r.spec.Snapshot.Name, GUID: r.spec.Snapshot.GUID,
		Size: r.spec.SizeBytes, Layer: l.id, Created: r.spec.Created.UTC(), Labels: r.spec.Snapshot.Labels}}
	vr := v.rec
	vr.Size = max(vr.Size, r.spec.SizeBytes)
	vr.ReadOnly = vr.ReadOnly || r.spec.ReadOnly
	return snap, vr
}

// commitOnto commits a transfer that changed nothing (an empty delta from
// the target volume's newest snapshot, onto a volume not written since)
// as a snapshot reading base, that snapshot's layer, as a snapshot of a
// quiet volume does: the staging layer is dropped instead of frozen.
// Called with s.mu and s.io held.
func (r *Receiver) commitOnto(base *layer) (array.Snapshot, error) {
	s, staging := r.s, r.l
	snap, vr := r.snapshotOn(base)
	err := s.update(func(tx *bolt.Tx) error { return r.putReceived(tx, vr, snap, staging) })
	if err != nil {
		return array.Snapshot{}, err
	}
	base.snaps++
	delete(base.children, staging)
	return r.received(vr, snap, staging), nil
}

// putReceived records, in a commit's transaction, the received snapshot
// and the volume that now holds it, drops the record of the layer gone
// (the replaced live layer, or the unused staging layer), and ends the
// transfer.
func (r *Receiver) putReceived(tx *bolt.Tx, vr volRec, snap *snapshot, gone *layer) error {
	if err := putJSON(tx.Bucket(bucketVolumes), []byte(vr.Name), vr); err != nil {
		return err
	}
	if err := putJSON(tx.Bucket(bucketSnapshots), snapKey(vr.Name, snap.rec.Name), snap.rec); err != nil {
		return err
	}
	if err := deleteLayerRec(tx, gone.id); err != nil {
		return err
	}
	return tx.Bucket(bucketReceives).Delete([]byte(r.rec.TransferID))
}

// received applies a committed putReceived in memory and returns the
// snapshot, which later Commits return again.
func (r *Receiver) received(vr volRec, snap *snapshot, gone *layer) array.Snapshot {
	s, v := r.s, r.v
	v.rec = vr
	v.snaps[snap.rec.Name] = snap
	delete(s.layers, gone.id)
	s.dropLayerFile(gone)
	out := snapshotOf(snap)
	r.done = &out
	delete(s.receiving, v.rec.Name)
	return out
}

// Abort drops the staged data.
func (r *Receiver) Abort() error {
	if r.done != nil {
		return nil
	}
	r.s.mu.Lock()
	defer r.s.mu.Unlock()
	if r.s.receiving[r.spec.Volume] == r {
		delete(r.s.receiving, r.spec.Volume)
	}
	return r.s.dropReceive(r.rec)
}

// SetReadOnly promotes a replica target to a writable volume, or demotes
// a volume to a read-only replica target.
func (s *Store) SetReadOnly(ctx context.Context, volume string, readOnly bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check(ctx); err != nil {
		return err
	}
	v, err := s.volumeLocked(volume)
	if err != nil {
		return err
	}
	if v.rec.ReadOnly == readOnly {
		return nil
	}
	vr := v.rec
	vr.ReadOnly = readOnly
	return s.saveVolRec(v, vr)
}
