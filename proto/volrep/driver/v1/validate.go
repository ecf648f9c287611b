package driverv1

// Validate methods for every request of the driver API. The server's
// validation interceptor calls them before a handler runs; a failure comes
// back as INVALID_ARGUMENT naming the field. Every request message has one,
// even when there is nothing to check, and a test in package server fails
// when an RPC's request lacks it.
//
// Backends use the array's name charset: 1-128 letters, digits, '.', '_',
// ':' or '-', starting with a letter or digit, without '..'. Volume,
// snapshot and group ids use it too, at most 64 bytes (validation.ID), so
// the array names the driver derives from them fit (Cinder's UUIDs do).

import (
	"slices"

	"github.com/volrep/volrep/errdefs"
	v "github.com/volrep/volrep/validation"
)

// validateVolumeType checks an optional volume type. Its name is stored
// as a label on the array's volume, so it is bounded like one.
func validateVolumeType(field string, t *VolumeType) error {
	if t == nil {
		return nil
	}
	return v.First(
		v.Text(field+".id", t.GetId(), v.MaxTextLen),
		v.Text(field+".name", t.GetName(), v.MaxLabelValueLen),
		v.Specs(field+".extra_specs", t.GetExtraSpecs()),
	)
}

// Validate accepts every ListBackendsRequest.
func (x *ListBackendsRequest) Validate() error { return nil }

// Validate checks the backend.
func (x *GetVolumeStatsRequest) Validate() error { return v.Name("backend", x.GetBackend()) }

// Validate checks the ids, the size and the volume type.
func (x *CreateVolumeRequest) Validate() error {
	return v.First(
		v.Name("backend", x.GetBackend()),
		v.ID("volume_id", x.GetVolumeId()),
		v.SizeGB("size_gb", x.GetSizeGb()),
		validateVolumeType("volume_type", x.GetVolumeType()),
		v.OptionalID("group_id", x.GetGroupId()),
	)
}

// Validate checks the ids.
func (x *DeleteVolumeRequest) Validate() error {
	return v.First(
		v.Name("backend", x.GetBackend()),
		v.ID("volume_id", x.GetVolumeId()),
	)
}

// Validate checks the ids and the new size.
func (x *ExtendVolumeRequest) Validate() error {
	return v.First(
		v.Name("backend", x.GetBackend()),
		v.ID("volume_id", x.GetVolumeId()),
		v.SizeGB("new_size_gb", x.GetNewSizeGb()),
	)
}

// Validate checks the ids.
func (x *GetVolumeRequest) Validate() error {
	return v.First(
		v.Name("backend", x.GetBackend()),
		v.ID("volume_id", x.GetVolumeId()),
	)
}

// Validate checks the backend.
func (x *ListVolumesRequest) Validate() error { return v.Name("backend", x.GetBackend()) }

// Validate checks the ids.
func (x *CreateSnapshotRequest) Validate() error {
	return v.First(
		v.Name("backend", x.GetBackend()),
		v.ID("snapshot_id", x.GetSnapshotId()),
		v.ID("volume_id", x.GetVolumeId()),
	)
}

// Validate checks the ids.
func (x *DeleteSnapshotRequest) Validate() error {
	return v.First(
		v.Name("backend", x.GetBackend()),
		v.ID("snapshot_id", x.GetSnapshotId()),
		v.ID("volume_id", x.GetVolumeId()),
	)
}

// Validate checks the backend and, if given, the volume id; an empty
// volume_id lists the snapshots of every volume of the backend.
func (x *ListSnapshotsRequest) Validate() error {
	return v.First(
		v.Name("backend", x.GetBackend()),
		v.OptionalID("volume_id", x.GetVolumeId()),
	)
}

// Validate checks the ids, the size (0 keeps the snapshot's) and the
// volume type.
func (x *CreateVolumeFromSnapshotRequest) Validate() error {
	return v.First(
		v.Name("backend", x.GetBackend()),
		v.ID("volume_id", x.GetVolumeId()),
		v.ID("snapshot_id", x.GetSnapshotId()),
		v.ID("source_volume_id", x.GetSourceVolumeId()),
		v.OptionalSizeGB("size_gb", x.GetSizeGb()),
		validateVolumeType("volume_type", x.GetVolumeType()),
	)
}

// Validate checks the ids, the size (0 keeps the source's) and the volume
// type.
func (x *CreateClonedVolumeRequest) Validate() error {
	return v.First(
		v.Name("backend", x.GetBackend()),
		v.ID("volume_id", x.GetVolumeId()),
		v.ID("source_volume_id", x.GetSourceVolumeId()),
		v.OptionalSizeGB("size_gb", x.GetSizeGb()),
		validateVolumeType("volume_type", x.GetVolumeType()),
	)
}

func validateConnector(field string, c *Connector, required bool) error {
	if err := v.First(
		v.Text(field+".ip", c.GetIp(), v.MaxTextLen),
		v.Text(field+".initiator", c.GetInitiator(), v.MaxTextLen),
		v.Specs(field+".extra", c.GetExtra()),
	); err != nil {
		return err
	}
	if c.GetHost() == "" {
		if required {
			return v.Required(field+".host", "")
		}
		return nil
	}
	return v.Name(field+".host", c.GetHost())
}

// Validate checks the ids and that the connector names its host.
func (x *InitializeConnectionRequest) Validate() error {
	return v.First(
		v.Name("backend", x.GetBackend()),
		v.ID("volume_id", x.GetVolumeId()),
		validateConnector("connector", x.GetConnector(), true),
		v.OptionalID("snapshot_id", x.GetSnapshotId()),
	)
}

// Validate checks the ids; a missing connector host means every attachment.
func (x *TerminateConnectionRequest) Validate() error {
	return v.First(
		v.Name("backend", x.GetBackend()),
		v.ID("volume_id", x.GetVolumeId()),
		validateConnector("connector", x.GetConnector(), false),
		v.OptionalID("snapshot_id", x.GetSnapshotId()),
	)
}

// Validate checks the ids and the new type.
func (x *RetypeRequest) Validate() error {
	return v.First(
		v.Name("backend", x.GetBackend()),
		v.ID("volume_id", x.GetVolumeId()),
		validateVolumeType("new_type", x.GetNewType()),
	)
}

// Validate checks the ids.
func (x *GetReplicationInfoRequest) Validate() error {
	return v.First(v.Name("backend", x.GetBackend()), v.ID("volume_id", x.GetVolumeId()))
}

// Validate checks the backend and that the schedule is sane.
func (x *SetReplicationScheduleRequest) Validate() error {
	return v.First(
		v.Name("backend", x.GetBackend()),
		v.Interval("interval_seconds", x.GetIntervalSeconds(), false),
		v.RetainSeconds("retention_short_term_seconds", x.GetRetentionShortTermSeconds()),
		v.PerDay("retention_long_term_per_day", x.GetRetentionLongTermPerDay()),
		v.RetainDays("retention_long_term_days", x.GetRetentionLongTermDays()),
	)
}

// Validate checks the ids and that the destination is another backend.
func (x *SnapshotReplicateRequest) Validate() error {
	if err := v.First(
		v.Name("backend", x.GetBackend()),
		v.ID("snapshot_id", x.GetSnapshotId()),
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

// Validate checks the backend and the operation id.
func (x *GetOperationRequest) Validate() error {
	return v.First(v.Name("backend", x.GetBackend()), v.Name("operation_id", x.GetOperationId()))
}

// Validate checks the backend and the operation id.
func (x *WatchOperationRequest) Validate() error {
	return v.First(v.Name("backend", x.GetBackend()), v.Name("operation_id", x.GetOperationId()))
}

// Validate checks the backend and the operation id.
func (x *CancelOperationRequest) Validate() error {
	return v.First(v.Name("backend", x.GetBackend()), v.Name("operation_id", x.GetOperationId()))
}

// Validate checks the ids.
func (x *VerifySnapshotRequest) Validate() error {
	return v.First(
		v.Name("backend", x.GetBackend()),
		v.ID("snapshot_id", x.GetSnapshotId()),
		v.ID("volume_id", x.GetVolumeId()),
		v.Name("destination_backend", x.GetDestinationBackend()),
	)
}

// Validate checks the backend and the ids; the secondary is checked
// against the configuration by the driver, which can list the choices.
func (x *FailoverHostRequest) Validate() error {
	return v.First(
		v.Name("backend", x.GetBackend()),
		v.OptionalName("secondary_id", x.GetSecondaryId()),
		validateIDs("volume_ids", x.GetVolumeIds()),
		validateIDs("group_ids", x.GetGroupIds()),
	)
}

// Validate checks the backend and the active backend id.
func (x *FailoverCompletedRequest) Validate() error {
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
func validateGroupType(field string, t *GroupType) error {
	return v.First(
		v.Text(field+".id", t.GetId(), v.MaxTextLen),
		v.Text(field+".name", t.GetName(), v.MaxLabelValueLen),
		v.Specs(field+".group_specs", t.GetGroupSpecs()),
	)
}

// Validate checks the ids and the group type.
func (x *CreateGroupRequest) Validate() error {
	return v.First(
		v.Name("backend", x.GetBackend()),
		v.ID("group_id", x.GetGroupId()),
		validateGroupType("group_type", x.GetGroupType()),
	)
}

// Validate checks the ids.
func (x *DeleteGroupRequest) Validate() error {
	return v.First(
		v.Name("backend", x.GetBackend()),
		v.ID("group_id", x.GetGroupId()),
		validateIDs("volume_ids", x.GetVolumeIds()),
	)
}

// Validate checks the ids and that no volume is both added and removed.
func (x *UpdateGroupRequest) Validate() error {
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

// Validate checks the ids.
func (x *CreateGroupSnapshotRequest) Validate() error {
	return v.First(
		v.Name("backend", x.GetBackend()),
		v.ID("group_id", x.GetGroupId()),
		v.ID("group_snapshot_id", x.GetGroupSnapshotId()),
		validateIDs("volume_ids", x.GetVolumeIds()),
	)
}

// Validate checks the ids.
func (x *DeleteGroupSnapshotRequest) Validate() error {
	return v.First(
		v.Name("backend", x.GetBackend()),
		v.ID("group_id", x.GetGroupId()),
		v.ID("group_snapshot_id", x.GetGroupSnapshotId()),
		validateIDs("volume_ids", x.GetVolumeIds()),
	)
}

// Validate checks the ids, the group type, and that each new volume names
// its source once.
func (x *CreateGroupFromSrcRequest) Validate() error {
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

// Validate checks the ids.
func (x *EnableReplicationRequest) Validate() error {
	return v.First(
		v.Name("backend", x.GetBackend()),
		v.ID("group_id", x.GetGroupId()),
		validateIDs("volume_ids", x.GetVolumeIds()),
	)
}

// Validate checks the ids.
func (x *DisableReplicationRequest) Validate() error {
	return v.First(
		v.Name("backend", x.GetBackend()),
		v.ID("group_id", x.GetGroupId()),
		validateIDs("volume_ids", x.GetVolumeIds()),
	)
}

// Validate checks the ids; the secondary is checked against the
// configuration by the driver, which can list the choices.
func (x *FailoverReplicationRequest) Validate() error {
	return v.First(
		v.Name("backend", x.GetBackend()),
		v.ID("group_id", x.GetGroupId()),
		validateIDs("volume_ids", x.GetVolumeIds()),
		v.OptionalName("secondary_backend_id", x.GetSecondaryBackendId()),
	)
}
