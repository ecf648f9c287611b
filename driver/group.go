package driver

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strconv"

	"github.com/volrep/volrep/array"
	"github.com/volrep/volrep/driver/extraspecs"
	"github.com/volrep/volrep/errdefs"
)

// GroupType is the Cinder group type a group is created with.
type GroupType struct {
	ID, Name string
	Specs    map[string]string
}

// GroupVolume is one new volume of CreateGroupFromSrc: a clone of the
// group snapshot's member of volume SourceID.
type GroupVolume struct {
	ID, SourceID string
	Type         VolumeType
}

// GroupResult is what a group call did, in Cinder's terms: the group's
// model update and its volumes' (or snapshots').
type GroupResult struct {
	Group     ModelUpdate
	Volumes   []VolumeUpdate
	Snapshots []Snapshot
	// Set by FailoverReplication.
	ActiveBackendID string
	GroupSnapshot   string
	FailbackBytes   int64
}

// A Cinder group is a consistency group on the array, named as Pure's
// driver names its per-group protection groups. Its labels are the only
// record of it, so a restarted volrepd finds every group as it was.
func groupName(id string) string { return groupPrefix + id + groupSuffix }

const groupPrefix, groupSuffix = "consisgroup-", "-cinder"

const (
	labelGroupID         = "cinder.group_id"
	labelGroupType       = "cinder.group_type"
	labelGroupSnapshotID = "cinder.group_snapshot_id"
	// labelGroupReplication is "true" when the group type enables
	// consistent group replication.
	labelGroupReplication = "volrep.consistent_group_replication"
)

func replicatedGroup(g array.Group) bool { return g.Labels[labelGroupReplication] == "true" }

// groupOp starts an operation on a group: the backend must be up and the
// group not busy with another operation.
func (b *Backend) groupOp(id, op string) (func(), error) {
	if err := b.ready(); err != nil {
		return nil, err
	}
	return b.ops.acquire("group "+id, op)
}

// getGroup returns a group's consistency group on the active array.
func (b *Backend) getGroup(ctx context.Context, a array.Array, id string) (array.Group, error) {
	g, err := a.GetGroup(ctx, groupName(id))
	if errdefs.IsNotFound(err) || (err == nil && g.Labels[labelBackend] != b.cfg.Section) {
		return array.Group{}, errdefs.NotFound("group %s not found on backend %s; create it first (CreateGroup)", id, b.cfg.Section)
	}
	return g, err
}

// CreateGroup creates a group; creating it again with the same type succeeds.
func (b *Backend) CreateGroup(ctx context.Context, id string, gt GroupType) (ModelUpdate, error) {
	release, err := b.groupOp(id, "create")
	if err != nil {
		return ModelUpdate{}, err
	}
	defer release()
	return b.createGroup(ctx, id, gt)
}

func (b *Backend) createGroup(ctx context.Context, id string, gt GroupType) (ModelUpdate, error) {
	replicated := extraspecs.Enabled(gt.Specs, extraspecs.KeyGroupReplication)
	if replicated && len(b.cfg.AsyncTargets()) == 0 {
		return ModelUpdate{}, errdefs.FailedPrecondition("group type %q enables %s, but backend %s has no async replication_device; add one to [%s] or use another group type",
			gt.Name, extraspecs.KeyGroupReplication, b.cfg.Section, b.cfg.Section)
	}
	labels := map[string]string{labelBackend: b.cfg.Section, labelGroupID: id, labelGroupReplication: strconv.FormatBool(replicated)}
	if gt.Name != "" {
		labels[labelGroupType] = gt.Name
	}
	g, err := b.activeArray().CreateGroup(ctx, groupName(id), b.cfg.Pool, labels)
	if errdefs.IsAlreadyExists(err) || (err == nil && !maps.Equal(g.Labels, labels)) {
		return ModelUpdate{}, errdefs.AlreadyExists("group %s already exists on backend %s with another group type; delete it first or create it with the same type", id, b.cfg.Section)
	}
	if err != nil {
		return ModelUpdate{}, err
	}
	b.log.Info("group created", "group", id, "cg", g.Name, "replicated", replicated)
	return b.groupUpdate(ctx, g)
}

// groupUpdate is the group's model update as the arrays show it now.
func (b *Backend) groupUpdate(ctx context.Context, g array.Group) (ModelUpdate, error) {
	mu := ModelUpdate{ProviderID: g.Name, Status: "available", ReplicationStatus: ReplNotCapable}
	if !replicatedGroup(g) {
		return mu, nil
	}
	mu.ReplicationStatus = ReplDisabled
	reps, err := b.activeConn().Replication.ListReplicas(ctx, g.Name)
	if err != nil || len(reps) == 0 {
		return mu, err
	}
	mu.ReplicationStatus = ReplEnabled
	from, err := b.groupServedBy(ctx, g.Members)
	if from != "default" {
		mu.ReplicationStatus = ReplFailedOver
	}
	return mu, err
}

// DeleteGroup deletes a group with its volumes: those named and those that
// are members on the array. A group already gone still has its named
// volumes deleted, so a retry finishes the job.
func (b *Backend) DeleteGroup(ctx context.Context, id string, volumeIDs []string) (GroupResult, error) {
	release, err := b.groupOp(id, "delete")
	if err != nil {
		return GroupResult{}, err
	}
	defer release()
	a := b.activeArray()
	g, err := b.getGroup(ctx, a, id)
	if err != nil && !errdefs.IsNotFound(err) {
		return GroupResult{}, err
	}
	ids := union(volumeIDs, memberIDs(g.Members))
	// Refuse before anything is gone: Cinder deletes group snapshots and
	// snapshots first, and a half-deleted group helps nobody.
	for _, vid := range ids {
		if err := b.checkNoSnapshots(ctx, a, id, vid); err != nil {
			return GroupResult{}, err
		}
	}
	if replicatedGroup(g) && !b.failedOver() {
		from, err := b.groupServedBy(ctx, volumeNames(ids))
		if err != nil {
			return GroupResult{}, err
		}
		if from != "default" {
			return GroupResult{}, errdefs.FailedPrecondition("group %s is failed over to %s; fail it back to \"default\" (FailoverReplication) before deleting it", id, from)
		}
		if err := b.dropGroupReplicas(ctx, g.Name, true); err != nil {
			return GroupResult{}, err
		}
	}
	res := GroupResult{Group: ModelUpdate{ProviderID: groupName(id), Status: "deleted"}}
	for _, vid := range ids {
		if err := b.DeleteVolume(ctx, vid); err != nil {
			return res, fmt.Errorf("deleting volume %s of group %s: %w", vid, id, err)
		}
		res.Volumes = append(res.Volumes, VolumeUpdate{vid, ModelUpdate{Status: "deleted"}})
	}
	if g.Name != "" {
		if err := a.DeleteGroup(ctx, g.Name); err != nil && !errdefs.IsNotFound(err) {
			return res, err
		}
	}
	b.log.Info("group deleted", "group", id, "volumes", len(ids))
	return res, nil
}

// checkNoSnapshots refuses a volume that has snapshots of the user's;
// replication's own go with the volume.
func (b *Backend) checkNoSnapshots(ctx context.Context, a array.Array, group, id string) error {
	snaps, err := a.ListSnapshots(ctx, volumeName(id))
	if errdefs.IsNotFound(err) {
		return nil
	}
	for _, s := range snaps {
		if _, ok := snapshotID(s.Name); ok || s.Labels[labelReplicaOwner] == "" {
			return errdefs.FailedPrecondition("volume %s of group %s has snapshot %s; delete its snapshots and group snapshots first", id, group, s.Name)
		}
	}
	return err
}

func memberIDs(names []string) []string {
	var ids []string
	for _, n := range names {
		if id, ok := volumeID(n); ok {
			ids = append(ids, id)
		}
	}
	return ids
}

func union(a, b []string) []string {
	out := slices.Clone(a)
	for _, s := range b {
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}

func volumeNames(ids []string) []string {
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = volumeName(id)
	}
	return out
}

// UpdateGroup adds and removes volumes. Only a replicating group keeps
// its volumes on the array, so for others this checks the volumes added.
func (b *Backend) UpdateGroup(ctx context.Context, id string, add, remove []string) (ModelUpdate, error) {
	release, err := b.groupOp(id, "update")
	if err != nil {
		return ModelUpdate{}, err
	}
	defer release()
	g, err := b.getGroup(ctx, b.activeArray(), id)
	if err != nil {
		return ModelUpdate{}, err
	}
	if err := b.checkMembers(ctx, "add_volume_ids", g, add); err != nil {
		return ModelUpdate{}, err
	}
	mu, err := b.groupUpdate(ctx, g)
	if err != nil {
		return ModelUpdate{}, err
	}
	switch mu.ReplicationStatus {
	case ReplFailedOver:
		return ModelUpdate{}, errdefs.FailedPrecondition("group %s is failed over; fail it back to \"default\" (FailoverReplication) before changing its volumes", id)
	case ReplEnabled:
		out := slices.DeleteFunc(volumeNames(remove), func(n string) bool { return !slices.Contains(g.Members, n) })
		if err := b.moveMembers(ctx, g.Name, b.cfg.PGName, out); err != nil {
			return ModelUpdate{}, err
		}
		in := slices.DeleteFunc(volumeNames(add), func(n string) bool { return slices.Contains(g.Members, n) })
		if err := b.moveMembers(ctx, b.cfg.PGName, g.Name, in); err != nil {
			return ModelUpdate{}, err
		}
		b.kickGroup(ctx, g.Name)
	}
	b.log.Info("group updated", "group", id, "added", len(add), "removed", len(remove))
	return mu, nil
}

// checkMembers refuses volumes a group cannot hold: another backend's,
// and, in a group whose type replicates, volumes that are not replicated
// asynchronously (the group ships them in the backend's place).
func (b *Backend) checkMembers(ctx context.Context, field string, g array.Group, ids []string) error {
	for _, id := range ids {
		name := volumeName(id)
		v, err := b.activeArray().GetVolume(ctx, name)
		if errdefs.IsNotFound(err) || (err == nil && v.Labels[labelBackend] != b.cfg.Section) {
			return errdefs.InvalidArgument(field, "volume %s is not a volume of backend %s; a group holds its own backend's volumes only", id, b.cfg.Section)
		}
		if err != nil {
			return err
		}
		if !replicatedGroup(g) || slices.Contains(g.Members, name) {
			continue
		}
		switch kind, err := b.replicationOf(ctx, name); {
		case err != nil:
			return err
		case kind == extraspecs.Sync:
			return errdefs.InvalidArgument(field, "volume %s is replicated synchronously (pod %s), but group %s replicates as one async protection group; use a volume type with replication_type '<in> async'",
				id, b.cfg.PodName, g.Labels[labelGroupID])
		case kind != extraspecs.Async:
			return errdefs.InvalidArgument(field, "volume %s is not replicated, but group %s's type enables %s; give the volume a type with replication_enabled '<is> True'",
				id, g.Labels[labelGroupID], extraspecs.KeyGroupReplication)
		}
	}
	return nil
}

// CreateGroupSnapshot snapshots the volumes, or a replicating group's
// members, at one write barrier: a crash-consistent set. Each member is
// the volume's snapshot gsID, as CreateSnapshot would name it.
func (b *Backend) CreateGroupSnapshot(ctx context.Context, groupID, gsID string, volumeIDs []string) (GroupResult, error) {
	release, err := b.groupOp(groupID, "group snapshot")
	if err != nil {
		return GroupResult{}, err
	}
	defer release()
	a := b.activeArray()
	g, err := b.getGroup(ctx, a, groupID)
	if err != nil {
		return GroupResult{}, err
	}
	names := volumeNames(volumeIDs)
	if len(names) == 0 {
		names = g.Members
	}
	if len(names) == 0 {
		return GroupResult{}, errdefs.InvalidArgument("volume_ids", "is empty and group %s has no members on the array (only a replicating group has); list the group's volumes", groupID)
	}
	snaps, err := a.CreateSnapshotSet(ctx, names, snapshotName(gsID), map[string]string{labelGroupID: groupID, labelGroupSnapshotID: gsID})
	switch {
	case errdefs.IsNotFound(err):
		return GroupResult{}, errdefs.NotFound("a volume of group %s is not on backend %s: %v", groupID, b.cfg.Section, err)
	case errdefs.IsAlreadyExists(err):
		return GroupResult{}, errdefs.AlreadyExists("group snapshot %s exists on some of the volumes only; delete it (DeleteGroupSnapshot) and take it again", gsID)
	case err != nil:
		return GroupResult{}, err
	}
	res := GroupResult{Group: ModelUpdate{ProviderID: snapshotName(gsID), Status: "available"}}
	for _, s := range snaps {
		vid, _ := volumeID(s.Volume)
		res.Snapshots = append(res.Snapshots, Snapshot{ID: gsID, VolumeID: vid, SizeGB: s.SizeBytes / gib, ProviderID: s.Ref(), GUID: s.GUID, Created: s.Created})
	}
	b.log.Info("group snapshot created", "group", groupID, "group_snapshot", gsID, "volumes", len(snaps))
	return res, nil
}

// DeleteGroupSnapshot deletes a group snapshot's members: of the volumes
// named, or else of every volume of the backend that has one. It returns
// the volumes whose member it deleted.
func (b *Backend) DeleteGroupSnapshot(ctx context.Context, groupID, gsID string, volumeIDs []string) ([]string, error) {
	release, err := b.groupOp(groupID, "delete group snapshot")
	if err != nil {
		return nil, err
	}
	defer release()
	a := b.activeArray()
	names := volumeNames(volumeIDs)
	if len(names) == 0 {
		vols, err := a.ListVolumes(ctx, b.cfg.Pool)
		if err != nil {
			return nil, err
		}
		for _, v := range vols {
			if v.Labels[labelBackend] == b.cfg.Section {
				names = append(names, v.Name)
			}
		}
	}
	deleted := []string{}
	for _, name := range names {
		s, err := a.GetSnapshot(ctx, name, snapshotName(gsID))
		if errdefs.IsNotFound(err) || (err == nil && s.Labels[labelGroupSnapshotID] != gsID) {
			continue
		}
		if err == nil {
			err = a.DeleteSnapshot(ctx, name, s.Name)
		}
		if err != nil && !errdefs.IsNotFound(err) {
			return deleted, fmt.Errorf("deleting group snapshot %s of %s: %w", gsID, name, err)
		}
		vid, _ := volumeID(name)
		deleted = append(deleted, vid)
	}
	b.log.Info("group snapshot deleted", "group", groupID, "group_snapshot", gsID, "volumes", len(deleted))
	return deleted, nil
}

// CreateGroupFromSrc creates a group whose volumes are clones of a group
// snapshot's members.
func (b *Backend) CreateGroupFromSrc(ctx context.Context, id string, gt GroupType, gsID string, vols []GroupVolume) (GroupResult, error) {
	release, err := b.groupOp(id, "create")
	if err != nil {
		return GroupResult{}, err
	}
	defer release()
	mu, err := b.createGroup(ctx, id, gt)
	if err != nil {
		return GroupResult{}, err
	}
	res := GroupResult{Group: mu}
	for _, v := range vols {
		m, err := b.CreateVolumeFromSnapshot(ctx, v.ID, gsID, v.SourceID, 0, v.Type)
		if err != nil {
			return res, fmt.Errorf("volume %s of group %s: %w", v.ID, id, err)
		}
		res.Volumes = append(res.Volumes, VolumeUpdate{v.ID, m})
	}
	return res, nil
}
