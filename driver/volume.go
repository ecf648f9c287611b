package driver

import (
	"context"
	"fmt"

	"github.com/volrep/volrep/array"
	"github.com/volrep/volrep/driver/extraspecs"
	"github.com/volrep/volrep/driver/qosspecs"
	"github.com/volrep/volrep/errdefs"
)

// Cinder's fields.ReplicationStatus values.
const (
	ReplDisabled      = "disabled"
	ReplEnabled       = "enabled"
	ReplError         = "error"
	ReplFailingOver   = "failing-over"
	ReplFailedOver    = "failed-over"
	ReplNotCapable    = "not-capable"
	ReplFailoverError = "failover-error"
	ReplEnabling      = "enabling"
)

// VolumeType is the volume type a volume is created with.
type VolumeType struct {
	ID, Name   string
	ExtraSpecs map[string]string
	// QoSSpecs are the specs of the type's back-end QoS (qosspecs).
	QoSSpecs map[string]string
}

// ModelUpdate is what Cinder's manager stores on the volume after a call.
type ModelUpdate struct {
	ProviderID        string
	ReplicationStatus string
	Status            string
	Metadata          map[string]string
}

// Volume is a volume as the driver reports it.
type Volume struct {
	ID                string
	SizeGB            int64
	ProviderID        string
	ReplicationStatus string
	ReplicationType   string
	Source            string
	UsedBytes         int64
}

// placement decides from the volume type how a new volume is replicated,
// and refuses types the backend cannot honour.
func (b *Backend) placement(vt VolumeType) (string, error) {
	kinds, err := extraspecs.ReplicationTypes(vt.ExtraSpecs)
	if err != nil || len(kinds) == 0 {
		return extraspecs.None, err
	}
	have := map[string]bool{
		extraspecs.Async: len(b.cfg.AsyncTargets()) > 0,
		extraspecs.Sync:  len(b.cfg.SyncTargets()) > 0,
	}
	for _, k := range kinds {
		if have[k] {
			return k, nil
		}
	}
	return "", errdefs.FailedPrecondition("volume type %q asks for %v replication, but backend %s has no replication_device of that type; add one to [%s] or use another volume type",
		vt.Name, kinds, b.cfg.Section, b.cfg.Section)
}

func (b *Backend) volumeLabels(id string, vt VolumeType, kind string) map[string]string {
	l := map[string]string{labelVolumeID: id, labelBackend: b.cfg.Section}
	if vt.Name != "" {
		l[labelVolumeType] = vt.Name
	}
	if kind != "" {
		l[labelReplType] = kind
	}
	return l
}

// CreateVolume creates a volume, replicated as its type asks. Creating an
// existing volume of the same size again succeeds. A volume created in a
// group (groupID) whose replication is enabled joins the group's own
// protection group.
func (b *Backend) CreateVolume(ctx context.Context, id string, sizeGB int64, vt VolumeType, groupID string) (ModelUpdate, error) {
	kind, release, err := b.startCreate(id, vt)
	if err != nil {
		return ModelUpdate{}, err
	}
	defer release()
	group, err := b.replicatingGroup(ctx, groupID, kind)
	if err != nil {
		return ModelUpdate{}, err
	}
	name := volumeName(id)
	_, err = b.activeArray().CreateVolume(ctx, array.VolumeSpec{Name: name, Pool: b.cfg.Pool, SizeBytes: sizeGB * gib,
		Labels: b.volumeLabels(id, vt, kind)})
	if errdefs.IsAlreadyExists(err) {
		return ModelUpdate{}, errdefs.AlreadyExists("volume %s already exists on backend %s with another size or source", id, b.cfg.Section)
	}
	if err != nil {
		return ModelUpdate{}, err
	}
	mu, err := b.finishCreate(ctx, name, kind, vt)
	if err != nil || group == "" {
		return mu, err
	}
	// Out of the backend's protection group, into the group's.
	if err := b.moveMembers(ctx, b.cfg.PGName, group, []string{name}); err != nil {
		return mu, err
	}
	b.kickGroup(ctx, group)
	return mu, nil
}

// replicatingGroup returns the consistency group a new volume of kind must
// join: that of its Cinder group (groupID) when the group's replication is
// enabled, else "". A group that replicates takes only async volumes.
func (b *Backend) replicatingGroup(ctx context.Context, groupID, kind string) (string, error) {
	if groupID == "" {
		return "", nil
	}
	g, err := b.getGroup(ctx, b.activeArray(), groupID)
	if err != nil || !replicatedGroup(g) || b.failedOver() {
		return "", err
	}
	reps, err := b.primary.Replication.ListReplicas(ctx, g.Name)
	if err != nil || len(reps) == 0 {
		return "", err
	}
	if kind != extraspecs.Async {
		return "", errdefs.InvalidArgument("group_id", "group %s replicates asynchronously, but the volume type asks for %q replication; use an async replicated volume type", groupID, kind)
	}
	return g.Name, nil
}

// startCreate begins creating volume id of type vt: the backend must be
// up, the volume not busy, and the type one the backend can honour. It
// returns how the volume is to be replicated, and the volume's lock.
func (b *Backend) startCreate(id string, vt VolumeType) (string, func(), error) {
	if err := b.ready(); err != nil {
		return "", nil, err
	}
	release, err := b.ops.acquire("volume "+id, "create")
	if err != nil {
		return "", nil, err
	}
	kind, err := b.placement(vt)
	if err == nil {
		// Refused before anything is created; applied by finishCreate
		// for the size the new volume has.
		_, err = qosspecs.Parse(qosField, vt.QoSSpecs, 1)
	}
	if err != nil {
		release()
		return "", nil, err
	}
	return kind, release, nil
}

func (b *Backend) finishCreate(ctx context.Context, name, kind string, vt VolumeType) (ModelUpdate, error) {
	if len(vt.QoSSpecs) > 0 {
		if err := b.applyQoS(ctx, b.activeArray(), name, qosField, vt); err != nil {
			return ModelUpdate{}, err
		}
	}
	status, err := b.replicate(ctx, name, kind)
	if err != nil {
		return ModelUpdate{}, err
	}
	return ModelUpdate{ProviderID: name, ReplicationStatus: status}, nil
}

// DeleteVolume deletes a volume; a volume that is already gone is success.
func (b *Backend) DeleteVolume(ctx context.Context, id string) error {
	if err := b.ready(); err != nil {
		return err
	}
	release, err := b.ops.acquire("volume "+id, "delete")
	if err != nil {
		return err
	}
	defer release()
	a, name := b.activeArray(), volumeName(id)
	if err := b.dropReplicationSnapshots(ctx, a, name); err != nil {
		return err
	}
	err = a.DeleteVolume(ctx, name)
	if errdefs.IsNotFound(err) {
		return nil
	}
	if errdefs.IsFailedPrecondition(err) {
		return errdefs.FailedPrecondition("volume %s still has snapshots; delete them first (%v)", id, err)
	}
	return err
}

// dropReplicationSnapshots takes a volume out of replication and deletes
// the snapshots replication took of it, which are the array's, not the
// user's: only Cinder's own snapshots should keep a volume from going.
func (b *Backend) dropReplicationSnapshots(ctx context.Context, a array.Array, name string) error {
	v, err := a.GetVolume(ctx, name)
	if errdefs.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	kind, _, err := b.protectionIn(ctx, v.Group)
	if err != nil {
		return err
	}
	if err := b.unreplicate(ctx, name, kind); err != nil && !errdefs.IsNotFound(err) {
		return err
	}
	if kind == extraspecs.None && v.SnapshotCount == 0 {
		return nil // nothing replication could have taken
	}
	snaps, err := a.ListSnapshots(ctx, name)
	if errdefs.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, s := range snaps {
		if _, ok := snapshotID(s.Name); ok || s.Labels[labelReplicaOwner] == "" {
			continue
		}
		if err := a.DeleteSnapshot(ctx, name, s.Name); err != nil && !errdefs.IsNotFound(err) {
			return err
		}
	}
	return nil
}

// ExtendVolume grows a volume to newSizeGB. With its type (vt), the
// type's per-GB QoS limits are recomputed for the new size.
func (b *Backend) ExtendVolume(ctx context.Context, id string, newSizeGB int64, vt *VolumeType) error {
	if err := b.ready(); err != nil {
		return err
	}
	release, err := b.ops.acquire("volume "+id, "extend")
	if err != nil {
		return err
	}
	defer release()
	if to := b.activeID(); to != "default" {
		// The copy at the target would outgrow the home array's volume,
		// and failback could then not copy it home.
		return errdefs.FailedPrecondition("volume %s: backend %s is failed over to %s; extend it after failback (volrep backend failback), so that both copies keep one size",
			id, b.cfg.Section, to)
	}
	if vt != nil {
		if _, err := qosspecs.Parse(qosField, vt.QoSSpecs, newSizeGB); err != nil {
			return err
		}
	}
	a := b.activeArray()
	if _, err = a.ExtendVolume(ctx, volumeName(id), newSizeGB*gib); err != nil || vt == nil {
		return b.volumeErr(id, err)
	}
	return b.volumeErr(id, b.applyQoS(ctx, a, volumeName(id), qosField, *vt))
}

func (b *Backend) volumeErr(id string, err error) error {
	if errdefs.IsNotFound(err) {
		return errdefs.NotFound("volume %s not found on backend %s", id, b.cfg.Section)
	}
	return err
}

// volumeOf describes a volume; replicated says which of the backend's
// groups (protection group or pod) it is in, if any.
func (b *Backend) volumeOf(v array.Volume, replicated string) (Volume, bool) {
	id, ok := volumeID(v.Name)
	if !ok {
		return Volume{}, false
	}
	status := ReplDisabled
	if replicated != "" {
		status = ReplEnabled
	}
	return Volume{ID: id, SizeGB: v.SizeBytes / gib, ProviderID: v.Name, ReplicationStatus: status,
		ReplicationType: replicated, Source: v.Source, UsedBytes: v.UsedBytes}, true
}

// GetVolume returns one volume.
func (b *Backend) GetVolume(ctx context.Context, id string) (Volume, error) {
	if err := b.ready(); err != nil {
		return Volume{}, err
	}
	v, err := b.activeArray().GetVolume(ctx, volumeName(id))
	if err != nil {
		return Volume{}, b.volumeErr(id, err)
	}
	kind, err := b.replicationOf(ctx, v.Name)
	if err != nil {
		return Volume{}, err
	}
	out, _ := b.volumeOf(v, kind)
	return out, nil
}

// ListVolumes lists the driver's volumes in the backend's pool.
func (b *Backend) ListVolumes(ctx context.Context) ([]Volume, error) {
	if err := b.ready(); err != nil {
		return nil, err
	}
	a := b.activeArray()
	vs, err := a.ListVolumes(ctx, b.cfg.Pool)
	if err != nil {
		return nil, err
	}
	groups, err := a.ListGroups(ctx)
	if err != nil {
		return nil, err
	}
	kinds := map[string]string{}
	for _, g := range groups {
		kind := map[string]string{b.cfg.PGName: extraspecs.Async, b.cfg.PodName: extraspecs.Sync}[g.Name]
		if kind == "" && g.Labels[labelBackend] == b.cfg.Section && replicatedGroup(g) {
			// A replicating Cinder group is a protection group of its own,
			// as protectionOf (GetVolume, GetReplicationInfo) sees it.
			kind = extraspecs.Async
		}
		for _, m := range g.Members {
			if kind != "" {
				kinds[m] = kind
			}
		}
	}
	out := []Volume{}
	for _, v := range vs {
		if dv, ok := b.volumeOf(v, kinds[v.Name]); ok {
			out = append(out, dv)
		}
	}
	return out, nil
}

// CreateClonedVolume makes a new volume from the current content of
// another, through a snapshot that is dropped again at once; the data is
// shared copy-on-write.
func (b *Backend) CreateClonedVolume(ctx context.Context, id, srcID string, sizeGB int64, vt VolumeType) (ModelUpdate, error) {
	kind, release, err := b.startCreate(id, vt)
	if err != nil {
		return ModelUpdate{}, err
	}
	defer release()
	a := b.activeArray()
	src, tmp := volumeName(srcID), "clone-for-"+id
	if _, err := a.CreateSnapshot(ctx, src, tmp, nil); err != nil {
		return ModelUpdate{}, b.volumeErr(srcID, err)
	}
	_, err = a.CloneSnapshot(ctx, array.CloneSpec{Volume: src, Snapshot: tmp, Name: volumeName(id), Pool: b.cfg.Pool,
		SizeBytes: sizeGB * gib, Labels: b.volumeLabels(id, vt, kind)})
	if derr := a.DeleteSnapshot(ctx, src, tmp); derr != nil && err == nil {
		err = fmt.Errorf("dropping temporary snapshot %s@%s: %w", src, tmp, derr)
	}
	if err != nil {
		return ModelUpdate{}, err
	}
	return b.finishCreate(ctx, volumeName(id), kind, vt)
}
