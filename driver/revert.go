package driver

import (
	"context"
	"slices"

	"github.com/volrep/volrep/errdefs"
)

// RevertToSnapshot makes a volume's content its snapshot's, in O(1) on the
// array. Cinder's API allows only the latest snapshot of the volume's size,
// but its volume manager first takes a backup snapshot, so the one asked
// for is no longer the newest here: any snapshot of the volume is taken,
// and the array refuses one of another size.
func (b *Backend) RevertToSnapshot(ctx context.Context, volumeID, snapID string) error {
	if err := b.ready(); err != nil {
		return err
	}
	release, err := b.ops.acquire("volume "+volumeID, "revert")
	if err != nil {
		return err
	}
	defer release()
	if err := b.refuseGroupFailover(ctx, volumeID); err != nil {
		return err
	}
	a := b.activeArray()
	_, err = a.RevertVolume(ctx, volumeName(volumeID), snapshotName(snapID))
	if errdefs.IsNotFound(err) {
		if _, verr := a.GetVolume(ctx, volumeName(volumeID)); verr != nil {
			return b.volumeErr(volumeID, verr)
		}
		return errdefs.NotFound("snapshot %s of volume %s not found on backend %s; a volume reverts only to its own snapshots", snapID, volumeID, b.cfg.Section)
	}
	return err
}

// refuseGroupFailover refuses to change a volume whose group is being
// failed over: the failover picks the group's newest common snapshot and
// promotes it, and a revert in between would race it.
func (b *Backend) refuseGroupFailover(ctx context.Context, volumeID string) error {
	gs, err := b.activeArray().ListGroups(ctx)
	if err != nil {
		return err
	}
	for _, g := range gs {
		if !slices.Contains(g.Members, volumeName(volumeID)) {
			continue
		}
		id := g.Labels[labelGroupID]
		if op, busy := b.ops.holder("group " + id); id != "" && busy && op == "failover" {
			return errdefs.FailedPrecondition("volume %s is in group %s, which is being failed over; retry when the failover ends", volumeID, id)
		}
	}
	return nil
}
