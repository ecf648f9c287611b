// Package driverapi checks the requests of the driver API
// (volrep.driver.v1) before a handler runs. The server's validation
// interceptor calls Check; a failure comes back as INVALID_ARGUMENT naming
// the field. Every request message has a case, even when there is nothing
// to check, and a test in package server fails when an RPC's request has
// none.
//
// Backends use the array's name charset: 1-128 letters, digits, '.', '_',
// ':' or '-', starting with a letter or digit, without '..'. Volume,
// snapshot and group ids use it too, at most 64 bytes (validation.ID), so
// the array names the driver derives from them fit (Cinder's UUIDs do).
package driverapi

import (
	"slices"
	"strings"

	driverv1 "github.com/volrep/volrep/proto/volrep/driver/v1"

	"github.com/volrep/volrep/driver/qosspecs"
	"github.com/volrep/volrep/errdefs"
	v "github.com/volrep/volrep/validation"
)

// Check validates req if it is a request of the API, before its handler
// runs. handled is false for any other message.
func Check(req any) (handled bool, err error) {
	switch x := req.(type) {
	case *driverv1.ListBackendsRequest:
		return true, nil // nothing to check
	case *driverv1.GetVolumeStatsRequest:
		return true, getVolumeStatsRequest(x)
	case *driverv1.CreateVolumeRequest:
		return true, createVolumeRequest(x)
	case *driverv1.DeleteVolumeRequest:
		return true, deleteVolumeRequest(x)
	case *driverv1.ExtendVolumeRequest:
		return true, extendVolumeRequest(x)
	case *driverv1.GetVolumeRequest:
		return true, getVolumeRequest(x)
	case *driverv1.ListVolumesRequest:
		return true, listVolumesRequest(x)
	case *driverv1.CreateSnapshotRequest:
		return true, createSnapshotRequest(x)
	case *driverv1.DeleteSnapshotRequest:
		return true, deleteSnapshotRequest(x)
	case *driverv1.ListSnapshotsRequest:
		return true, listSnapshotsRequest(x)
	case *driverv1.RevertToSnapshotRequest:
		return true, revertToSnapshotRequest(x)
	case *driverv1.AttachReplicaRequest:
		return true, attachReplicaRequest(x)
	case *driverv1.DetachReplicaRequest:
		return true, detachReplicaRequest(x)
	case *driverv1.ManageExistingSizeRequest:
		return true, v.First(v.Name("backend", x.GetBackend()), existingRef(x.GetRef(), false))
	case *driverv1.ManageExistingRequest:
		return true, v.First(v.Name("backend", x.GetBackend()), v.ID("volume_id", x.GetVolumeId()),
			existingRef(x.GetRef(), false), validateVolumeType("volume_type", x.GetVolumeType()))
	case *driverv1.UnmanageRequest:
		return true, v.First(v.Name("backend", x.GetBackend()), v.ID("volume_id", x.GetVolumeId()))
	case *driverv1.ManageExistingSnapshotSizeRequest:
		return true, v.First(v.Name("backend", x.GetBackend()), v.ID("volume_id", x.GetVolumeId()), existingRef(x.GetRef(), true))
	case *driverv1.ManageExistingSnapshotRequest:
		return true, v.First(v.Name("backend", x.GetBackend()), v.ID("snapshot_id", x.GetSnapshotId()),
			v.ID("volume_id", x.GetVolumeId()), existingRef(x.GetRef(), true))
	case *driverv1.UnmanageSnapshotRequest:
		return true, v.First(v.Name("backend", x.GetBackend()), v.ID("snapshot_id", x.GetSnapshotId()), v.ID("volume_id", x.GetVolumeId()))
	case *driverv1.ListManageableVolumesRequest:
		return true, v.Name("backend", x.GetBackend())
	case *driverv1.ListManageableSnapshotsRequest:
		return true, v.Name("backend", x.GetBackend())
	case *driverv1.CreateVolumeFromSnapshotRequest:
		return true, createVolumeFromSnapshotRequest(x)
	case *driverv1.CreateClonedVolumeRequest:
		return true, createClonedVolumeRequest(x)
	case *driverv1.InitializeConnectionRequest:
		return true, initializeConnectionRequest(x)
	case *driverv1.TerminateConnectionRequest:
		return true, terminateConnectionRequest(x)
	case *driverv1.RetypeRequest:
		return true, retypeRequest(x)
	case *driverv1.GetReplicationInfoRequest:
		return true, getReplicationInfoRequest(x)
	case *driverv1.SetReplicationScheduleRequest:
		return true, setReplicationScheduleRequest(x)
	case *driverv1.SnapshotReplicateRequest:
		return true, snapshotReplicateRequest(x)
	case *driverv1.GetOperationRequest:
		return true, getOperationRequest(x)
	case *driverv1.WatchOperationRequest:
		return true, watchOperationRequest(x)
	case *driverv1.CancelOperationRequest:
		return true, cancelOperationRequest(x)
	case *driverv1.VerifySnapshotRequest:
		return true, verifySnapshotRequest(x)
	case *driverv1.FailoverHostRequest:
		return true, failoverHostRequest(x)
	case *driverv1.FailoverCompletedRequest:
		return true, failoverCompletedRequest(x)
	case *driverv1.CreateGroupRequest:
		return true, createGroupRequest(x)
	case *driverv1.DeleteGroupRequest:
		return true, deleteGroupRequest(x)
	case *driverv1.UpdateGroupRequest:
		return true, updateGroupRequest(x)
	case *driverv1.CreateGroupSnapshotRequest:
		return true, createGroupSnapshotRequest(x)
	case *driverv1.DeleteGroupSnapshotRequest:
		return true, deleteGroupSnapshotRequest(x)
	case *driverv1.CreateGroupFromSrcRequest:
		return true, createGroupFromSrcRequest(x)
	case *driverv1.EnableReplicationRequest:
		return true, enableReplicationRequest(x)
	case *driverv1.DisableReplicationRequest:
		return true, disableReplicationRequest(x)
	case *driverv1.FailoverReplicationRequest:
		return true, failoverReplicationRequest(x)
	case *driverv1.MigrateVolumeRequest:
		return true, migrateVolumeRequest(x)
	}
	return false, nil
}

// validateVolumeType checks an optional volume type. Its name is stored
// as a label on the array's volume, so it is bounded like one.
func validateVolumeType(field string, t *driverv1.VolumeType) error {
	if t == nil {
		return nil
	}
	return v.First(
		v.Text(field+".id", t.GetId(), v.MaxTextLen),
		v.Text(field+".name", t.GetName(), v.MaxLabelValueLen),
		v.Specs(field+".extra_specs", t.GetExtraSpecs()),
		v.Specs(field+".qos_specs", t.GetQosSpecs()),
		validQoS(field+".qos_specs", t.GetQosSpecs()),
	)
}

// validQoS refuses QoS specs the array cannot enforce: unknown keys and
// values that are not whole numbers > 0 (qosspecs lists the keys).
func validQoS(field string, specs map[string]string) error {
	_, err := qosspecs.Parse(field, specs, 1)
	return err
}

// getVolumeStatsRequest checks the backend.
func getVolumeStatsRequest(x *driverv1.GetVolumeStatsRequest) error {
	return v.Name("backend", x.GetBackend())
}

// createVolumeRequest checks the ids, the size and the volume type.
func createVolumeRequest(x *driverv1.CreateVolumeRequest) error {
	return v.First(
		v.Name("backend", x.GetBackend()),
		v.ID("volume_id", x.GetVolumeId()),
		v.SizeGB("size_gb", x.GetSizeGb()),
		validateVolumeType("volume_type", x.GetVolumeType()),
		v.OptionalID("group_id", x.GetGroupId()),
	)
}

// deleteVolumeRequest checks the ids.
func deleteVolumeRequest(x *driverv1.DeleteVolumeRequest) error {
	return v.First(
		v.Name("backend", x.GetBackend()),
		v.ID("volume_id", x.GetVolumeId()),
	)
}

// extendVolumeRequest checks the ids and the new size.
func extendVolumeRequest(x *driverv1.ExtendVolumeRequest) error {
	return v.First(
		v.Name("backend", x.GetBackend()),
		v.ID("volume_id", x.GetVolumeId()),
		v.SizeGB("new_size_gb", x.GetNewSizeGb()),
		validateVolumeType("volume_type", x.GetVolumeType()),
	)
}

// getVolumeRequest checks the ids.
func getVolumeRequest(x *driverv1.GetVolumeRequest) error {
	return v.First(
		v.Name("backend", x.GetBackend()),
		v.ID("volume_id", x.GetVolumeId()),
	)
}

// listVolumesRequest checks the backend.
func listVolumesRequest(x *driverv1.ListVolumesRequest) error {
	return v.Name("backend", x.GetBackend())
}

// createSnapshotRequest checks the ids.
func createSnapshotRequest(x *driverv1.CreateSnapshotRequest) error {
	return v.First(
		v.Name("backend", x.GetBackend()),
		v.ID("snapshot_id", x.GetSnapshotId()),
		v.ID("volume_id", x.GetVolumeId()),
	)
}

// deleteSnapshotRequest checks the ids.
func deleteSnapshotRequest(x *driverv1.DeleteSnapshotRequest) error {
	return v.First(
		v.Name("backend", x.GetBackend()),
		v.ID("snapshot_id", x.GetSnapshotId()),
		v.ID("volume_id", x.GetVolumeId()),
	)
}

// listSnapshotsRequest checks the backend and, if given, the volume id; an empty
// volume_id lists the snapshots of every volume of the backend.
func listSnapshotsRequest(x *driverv1.ListSnapshotsRequest) error {
	return v.First(
		v.Name("backend", x.GetBackend()),
		v.OptionalID("volume_id", x.GetVolumeId()),
	)
}

// createVolumeFromSnapshotRequest checks the ids, the size (0 keeps the snapshot's) and the
// volume type.
func createVolumeFromSnapshotRequest(x *driverv1.CreateVolumeFromSnapshotRequest) error {
	return v.First(
		v.Name("backend", x.GetBackend()),
		v.ID("volume_id", x.GetVolumeId()),
		v.ID("snapshot_id", x.GetSnapshotId()),
		v.ID("source_volume_id", x.GetSourceVolumeId()),
		v.OptionalSizeGB("size_gb", x.GetSizeGb()),
		validateVolumeType("volume_type", x.GetVolumeType()),
	)
}

// createClonedVolumeRequest checks the ids, the size (0 keeps the source's) and the volume
// type.
func createClonedVolumeRequest(x *driverv1.CreateClonedVolumeRequest) error {
	return v.First(
		v.Name("backend", x.GetBackend()),
		v.ID("volume_id", x.GetVolumeId()),
		v.ID("source_volume_id", x.GetSourceVolumeId()),
		v.OptionalSizeGB("size_gb", x.GetSizeGb()),
		validateVolumeType("volume_type", x.GetVolumeType()),
	)
}

func validateConnector(field string, c *driverv1.Connector, required bool) error {
	if err := v.First(
		v.Text(field+".ip", c.GetIp(), v.MaxTextLen),
		v.Text(field+".initiator", c.GetInitiator(), v.MaxTextLen),
		v.Map(field+".extra", c.GetExtra(), v.MaxSpecs, v.MaxSpecKeyLen, v.MaxConnectorValueLen),
	); err != nil {
		return err
	}
	// os-brick's initiator is the host's iSCSI name, which an iSCSI
	// attachment makes a host of on the array.
	if c.GetInitiator() != "" {
		if err := v.ISCSIName(field+".initiator", c.GetInitiator()); err != nil {
			return err
		}
	}
	if c.GetHost() == "" {
		if required {
			return v.Required(field+".host", "")
		}
		return nil
	}
	return v.Name(field+".host", c.GetHost())
}

// initializeConnectionRequest checks the ids and that the connector names its host.
func initializeConnectionRequest(x *driverv1.InitializeConnectionRequest) error {
	return v.First(
		v.Name("backend", x.GetBackend()),
		v.ID("volume_id", x.GetVolumeId()),
		validateConnector("connector", x.GetConnector(), true),
		v.OptionalID("snapshot_id", x.GetSnapshotId()),
	)
}

// terminateConnectionRequest checks the ids; a missing connector host means every attachment.
func terminateConnectionRequest(x *driverv1.TerminateConnectionRequest) error {
	return v.First(
		v.Name("backend", x.GetBackend()),
		v.ID("volume_id", x.GetVolumeId()),
		validateConnector("connector", x.GetConnector(), false),
		v.OptionalID("snapshot_id", x.GetSnapshotId()),
	)
}

// retypeRequest checks the ids and the new type.
func retypeRequest(x *driverv1.RetypeRequest) error {
	return v.First(
		v.Name("backend", x.GetBackend()),
		v.ID("volume_id", x.GetVolumeId()),
		validateVolumeType("new_type", x.GetNewType()),
	)
}

// getReplicationInfoRequest checks the ids.
func getReplicationInfoRequest(x *driverv1.GetReplicationInfoRequest) error {
	return v.First(v.Name("backend", x.GetBackend()), v.ID("volume_id", x.GetVolumeId()))
}

// setReplicationScheduleRequest checks the backend and that the schedule is sane.
func setReplicationScheduleRequest(x *driverv1.SetReplicationScheduleRequest) error {
	return v.First(
		v.Name("backend", x.GetBackend()),
		v.Interval("interval_seconds", x.GetIntervalSeconds(), false),
		v.RetainSeconds("retention_short_term_seconds", x.GetRetentionShortTermSeconds()),
		v.PerDay("retention_long_term_per_day", x.GetRetentionLongTermPerDay()),
		v.RetainDays("retention_long_term_days", x.GetRetentionLongTermDays()),
	)
}

// snapshotReplicateRequest checks the ids and that the destination is another backend.
func snapshotReplicateRequest(x *driverv1.SnapshotReplicateRequest) error {
	if err := snapshotSet(x); err != nil {
		return err
	}
	snapshotID := v.ID("snapshot_id", x.GetSnapshotId())
	if x.GetCount() > 0 || len(x.GetSnapshotIds()) > 0 {
		snapshotID = v.OptionalID("snapshot_id", x.GetSnapshotId())
	}
	if err := v.First(
		v.Name("backend", x.GetBackend()),
		snapshotID,
		v.ID("volume_id", x.GetVolumeId()),
		v.Name("destination_backend", x.GetDestinationBackend()),
	); err != nil {
		return err
	}
	if x.GetDestinationBackend() == x.GetBackend() {
		return v.OneOf("destination_backend", x.GetDestinationBackend(), "a backend other than "+x.GetBackend())
	}
	return nil
}

// getOperationRequest checks the backend and the operation id.
func getOperationRequest(x *driverv1.GetOperationRequest) error {
	return v.First(v.Name("backend", x.GetBackend()), v.Name("operation_id", x.GetOperationId()))
}

// watchOperationRequest checks the backend and the operation id.
func watchOperationRequest(x *driverv1.WatchOperationRequest) error {
	return v.First(v.Name("backend", x.GetBackend()), v.Name("operation_id", x.GetOperationId()))
}

// cancelOperationRequest checks the backend and the operation id.
func cancelOperationRequest(x *driverv1.CancelOperationRequest) error {
	return v.First(v.Name("backend", x.GetBackend()), v.Name("operation_id", x.GetOperationId()))
}

// verifySnapshotRequest checks the ids.
func verifySnapshotRequest(x *driverv1.VerifySnapshotRequest) error {
	return v.First(
		v.Name("backend", x.GetBackend()),
		v.ID("snapshot_id", x.GetSnapshotId()),
		v.ID("volume_id", x.GetVolumeId()),
		v.Name("destination_backend", x.GetDestinationBackend()),
	)
}

// failoverHostRequest checks the backend and the ids; the secondary is checked
// against the configuration by the driver, which can list the choices.
func failoverHostRequest(x *driverv1.FailoverHostRequest) error {
	return v.First(
		v.Name("backend", x.GetBackend()),
		v.OptionalName("secondary_id", x.GetSecondaryId()),
		validateIDs("volume_ids", x.GetVolumeIds()),
		validateIDs("group_ids", x.GetGroupIds()),
	)
}

// failoverCompletedRequest checks the backend and the active backend id.
func failoverCompletedRequest(x *driverv1.FailoverCompletedRequest) error {
	return v.First(v.Name("backend", x.GetBackend()), v.Name("active_backend_id", x.GetActiveBackendId()))
}

// validateIDs checks every id of a repeated id field, and their number.
func validateIDs(field string, ids []string) error {
	if err := v.Count(field, len(ids), v.MaxIDs); err != nil {
		return err
	}
	for _, id := range ids {
		if err := v.ID(field, id); err != nil {
			return err
		}
	}
	return nil
}

// validateGroupType checks an optional group type; its name and specs are
// stored as labels on the array's group.
func validateGroupType(field string, t *driverv1.GroupType) error {
	return v.First(
		v.Text(field+".id", t.GetId(), v.MaxTextLen),
		v.Text(field+".name", t.GetName(), v.MaxLabelValueLen),
		v.Specs(field+".group_specs", t.GetGroupSpecs()),
	)
}

// createGroupRequest checks the ids and the group type.
func createGroupRequest(x *driverv1.CreateGroupRequest) error {
	return v.First(
		v.Name("backend", x.GetBackend()),
		v.ID("group_id", x.GetGroupId()),
		validateGroupType("group_type", x.GetGroupType()),
	)
}

// deleteGroupRequest checks the ids.
func deleteGroupRequest(x *driverv1.DeleteGroupRequest) error {
	return v.First(
		v.Name("backend", x.GetBackend()),
		v.ID("group_id", x.GetGroupId()),
		validateIDs("volume_ids", x.GetVolumeIds()),
	)
}

// updateGroupRequest checks the ids and that no volume is both added and removed.
func updateGroupRequest(x *driverv1.UpdateGroupRequest) error {
	if err := v.First(
		v.Name("backend", x.GetBackend()),
		v.ID("group_id", x.GetGroupId()),
		validateIDs("add_volume_ids", x.GetAddVolumeIds()),
		validateIDs("remove_volume_ids", x.GetRemoveVolumeIds()),
	); err != nil {
		return err
	}
	for _, id := range x.GetRemoveVolumeIds() {
		if slices.Contains(x.GetAddVolumeIds(), id) {
			return errdefs.InvalidArgument("remove_volume_ids", "volume %s is also in add_volume_ids; add or remove it, not both", id)
		}
	}
	return nil
}

// createGroupSnapshotRequest checks the ids.
func createGroupSnapshotRequest(x *driverv1.CreateGroupSnapshotRequest) error {
	return v.First(
		v.Name("backend", x.GetBackend()),
		v.ID("group_id", x.GetGroupId()),
		v.ID("group_snapshot_id", x.GetGroupSnapshotId()),
		validateIDs("volume_ids", x.GetVolumeIds()),
	)
}

// deleteGroupSnapshotRequest checks the ids.
func deleteGroupSnapshotRequest(x *driverv1.DeleteGroupSnapshotRequest) error {
	return v.First(
		v.Name("backend", x.GetBackend()),
		v.ID("group_id", x.GetGroupId()),
		v.ID("group_snapshot_id", x.GetGroupSnapshotId()),
		validateIDs("volume_ids", x.GetVolumeIds()),
	)
}

// createGroupFromSrcRequest checks the ids, the group type, and that each new volume names
// its source once.
func createGroupFromSrcRequest(x *driverv1.CreateGroupFromSrcRequest) error {
	if err := v.First(
		v.Name("backend", x.GetBackend()),
		v.ID("group_id", x.GetGroupId()),
		validateGroupType("group_type", x.GetGroupType()),
		v.ID("group_snapshot_id", x.GetGroupSnapshotId()),
	); err != nil {
		return err
	}
	if len(x.GetVolumes()) == 0 {
		return errdefs.InvalidArgument("volumes", "is empty; list each new volume with the group snapshot member it is cloned from")
	}
	if err := v.Count("volumes", len(x.GetVolumes()), v.MaxIDs); err != nil {
		return err
	}
	seen := map[string]bool{}
	for _, vs := range x.GetVolumes() {
		if err := v.First(
			v.ID("volumes.volume_id", vs.GetVolumeId()),
			v.ID("volumes.source_volume_id", vs.GetSourceVolumeId()),
			validateVolumeType("volumes.volume_type", vs.GetVolumeType()),
		); err != nil {
			return err
		}
		if seen[vs.GetVolumeId()] {
			return errdefs.InvalidArgument("volumes.volume_id", "volume %s is listed twice; give each new volume one source", vs.GetVolumeId())
		}
		seen[vs.GetVolumeId()] = true
	}
	return nil
}

// enableReplicationRequest checks the ids.
func enableReplicationRequest(x *driverv1.EnableReplicationRequest) error {
	return v.First(
		v.Name("backend", x.GetBackend()),
		v.ID("group_id", x.GetGroupId()),
		validateIDs("volume_ids", x.GetVolumeIds()),
	)
}

// disableReplicationRequest checks the ids.
func disableReplicationRequest(x *driverv1.DisableReplicationRequest) error {
	return v.First(
		v.Name("backend", x.GetBackend()),
		v.ID("group_id", x.GetGroupId()),
		validateIDs("volume_ids", x.GetVolumeIds()),
	)
}

// failoverReplicationRequest checks the ids; the secondary is checked against the
// configuration by the driver, which can list the choices.
func failoverReplicationRequest(x *driverv1.FailoverReplicationRequest) error {
	return v.First(
		v.Name("backend", x.GetBackend()),
		v.ID("group_id", x.GetGroupId()),
		validateIDs("volume_ids", x.GetVolumeIds()),
		v.OptionalName("secondary_backend_id", x.GetSecondaryBackendId()),
	)
}

// revertToSnapshotRequest checks the ids, and that the snapshot is the
// volume's when the caller says whose it is.
func revertToSnapshotRequest(x *driverv1.RevertToSnapshotRequest) error {
	if err := v.First(
		v.Name("backend", x.GetBackend()),
		v.ID("volume_id", x.GetVolumeId()),
		v.ID("snapshot_id", x.GetSnapshotId()),
	); err != nil {
		return err
	}
	if sv := x.GetSnapshotVolumeId(); sv != "" && sv != x.GetVolumeId() {
		return errdefs.InvalidArgument("snapshot_volume_id", "snapshot %s is of volume %s, not %s; a volume reverts only to its own snapshots", x.GetSnapshotId(), sv, x.GetVolumeId())
	}
	return nil
}

// maxReplicateSnapshots bounds one SnapshotReplicate operation.
const maxReplicateSnapshots = 100

// snapshotSet checks count and snapshot_ids: one or the other, in bounds.
func snapshotSet(x *driverv1.SnapshotReplicateRequest) error {
	n, ids := x.GetCount(), x.GetSnapshotIds()
	switch {
	case n < 0 || n > maxReplicateSnapshots:
		return errdefs.InvalidArgument("count", "%d is not between 1 and %d (0: not used)", n, maxReplicateSnapshots)
	case n > 0 && len(ids) > 0:
		return errdefs.InvalidArgument("count", "is set with snapshot_ids; give one or the other")
	case len(ids) > maxReplicateSnapshots:
		return errdefs.InvalidArgument("snapshot_ids", "lists %d snapshots; at most %d go in one operation", len(ids), maxReplicateSnapshots)
	}
	seen := map[string]bool{}
	for _, id := range ids {
		if err := v.ID("snapshot_ids", id); err != nil {
			return err
		}
		if seen[id] {
			return errdefs.InvalidArgument("snapshot_ids", "lists %s twice", id)
		}
		seen[id] = true
	}
	return nil
}

// attachReplicaRequest checks the ids, the target and the snapshot's name
// (the array's charset, or "latest"), and that the connector names its host.
func attachReplicaRequest(x *driverv1.AttachReplicaRequest) error {
	return v.First(
		v.Name("backend", x.GetBackend()),
		v.ID("volume_id", x.GetVolumeId()),
		v.Name("backend_id", x.GetBackendId()),
		v.OptionalName("snapshot", x.GetSnapshot()),
		validateConnector("connector", x.GetConnector(), true),
	)
}

// detachReplicaRequest checks the ids; no snapshot means every replicated
// snapshot's attachments, no connector host every host's.
func detachReplicaRequest(x *driverv1.DetachReplicaRequest) error {
	return v.First(
		v.Name("backend", x.GetBackend()),
		v.ID("volume_id", x.GetVolumeId()),
		v.Name("backend_id", x.GetBackendId()),
		v.OptionalName("snapshot", x.GetSnapshot()),
		validateConnector("connector", x.GetConnector(), false),
	)
}

// existingRef checks Cinder's existing_ref: exactly one of source_name, an
// array name, or source_id, a provider_id: a volume's name (optionally
// "<array>/<name>"), or a snapshot's "<volume>@<snapshot>".
func existingRef(r *driverv1.ExistingRef, snapshot bool) error {
	name, id := r.GetSourceName(), r.GetSourceId()
	switch {
	case (name == "") == (id == ""):
		return errdefs.InvalidArgument("ref", "give exactly one of source_name (the array object's name) or source_id (its provider_id)")
	case name != "":
		return v.Name("ref.source_name", name)
	case snapshot:
		vol, snap, ok := strings.Cut(id, "@")
		if !ok {
			return errdefs.InvalidArgument("ref.source_id", "%s is not a snapshot's provider_id \"<volume>@<snapshot>\"", v.Quote(id))
		}
		return v.First(v.Name("ref.source_id", vol), v.Name("ref.source_id", snap))
	default:
		return v.Name("ref.source_id", id[strings.LastIndex(id, "/")+1:])
	}
}

// migrateVolumeRequest checks the backends, the volume and the bounds of
// a small pass (0 takes the default).
func migrateVolumeRequest(x *driverv1.MigrateVolumeRequest) error {
	if err := v.First(
		v.Name("backend", x.GetBackend()),
		v.ID("volume_id", x.GetVolumeId()),
		v.Name("destination_backend", x.GetDestinationBackend()),
		v.Range("small_pass_bytes", x.GetSmallPassBytes(), 0, 1<<40),
		v.Range("small_pass_ms", x.GetSmallPassMs(), 0, 3600_000),
		v.Range("max_passes", int64(x.GetMaxPasses()), 0, 100),
	); err != nil {
		return err
	}
	if x.GetDestinationBackend() == x.GetBackend() {
		return v.OneOf("destination_backend", x.GetDestinationBackend(), "a backend other than "+x.GetBackend())
	}
	return nil
}
