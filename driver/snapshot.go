package driver

import (
	"context"
	"time"

	"github.com/volrep/volrep/array"
	"github.com/volrep/volrep/errdefs"
)

// Snapshot is a snapshot as the driver reports it.
type Snapshot struct {
	ID, VolumeID string
	SizeGB       int64
	ProviderID   string
	GUID         string
	Created      time.Time
}

// CreateSnapshot snapshots a volume; doing it again returns the same one.
func (b *Backend) CreateSnapshot(ctx context.Context, id, volumeID string) (ModelUpdate, error) {
	if err := b.ready(); err != nil {
		return ModelUpdate{}, err
	}
	release, err := b.ops.acquire("volume "+volumeID, "snapshot")
	if err != nil {
		return ModelUpdate{}, err
	}
	defer release()
	s, err := b.activeArray().CreateSnapshot(ctx, volumeName(volumeID), snapshotName(id), map[string]string{"cinder.snapshot_id": id})
	if err != nil {
		return ModelUpdate{}, b.volumeErr(volumeID, err)
	}
	return ModelUpdate{ProviderID: s.Ref()}, nil
}

// DeleteSnapshot deletes a snapshot; one that is already gone is success.
func (b *Backend) DeleteSnapshot(ctx context.Context, id, volumeID string) error {
	if err := b.ready(); err != nil {
		return err
	}
	release, err := b.ops.acquire("volume "+volumeID, "delete snapshot")
	if err != nil {
		return err
	}
	defer release()
	err = b.activeArray().DeleteSnapshot(ctx, volumeName(volumeID), snapshotName(id))
	if errdefs.IsNotFound(err) {
		return nil
	}
	return err
}

// ListSnapshots lists the driver's snapshots of a volume.
func (b *Backend) ListSnapshots(ctx context.Context, volumeID string) ([]Snapshot, error) {
	if err := b.ready(); err != nil {
		return nil, err
	}
	ss, err := b.activeArray().ListSnapshots(ctx, volumeName(volumeID))
	if err != nil {
		return nil, b.volumeErr(volumeID, err)
	}
	out := []Snapshot{}
	for _, s := range ss {
		if id, ok := snapshotID(s.Name); ok {
			out = append(out, Snapshot{ID: id, VolumeID: volumeID, SizeGB: s.SizeBytes / gib, ProviderID: s.Ref(), GUID: s.GUID, Created: s.Created})
		}
	}
	return out, nil
}

// CreateVolumeFromSnapshot clones a snapshot into a new volume in O(1).
func (b *Backend) CreateVolumeFromSnapshot(ctx context.Context, id, snapID, srcVolumeID string, sizeGB int64, vt VolumeType) (ModelUpdate, error) {
	kind, release, err := b.startCreate(id, vt)
	if err != nil {
		return ModelUpdate{}, err
	}
	defer release()
	_, err = b.activeArray().CloneSnapshot(ctx, array.CloneSpec{Volume: volumeName(srcVolumeID), Snapshot: snapshotName(snapID),
		Name: volumeName(id), Pool: b.cfg.Pool, SizeBytes: sizeGB * gib, Labels: b.volumeLabels(id, vt, kind)})
	if errdefs.IsNotFound(err) {
		return ModelUpdate{}, errdefs.NotFound("snapshot %s of volume %s not found on backend %s", snapID, srcVolumeID, b.cfg.Section)
	}
	if err != nil {
		return ModelUpdate{}, err
	}
	return b.finishCreate(ctx, volumeName(id), kind, vt)
}
