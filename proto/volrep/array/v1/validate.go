package arrayv1

// Validate methods for every request of the array API. The server's
// validation interceptor calls them before a handler runs; a failure comes
// back as INVALID_ARGUMENT naming the field. Every request message has one,
// even when there is nothing to check, and a test in package server fails
// when an RPC's request lacks it.

import (
	v "github.com/volrep/volrep/validation"
)

// Validate accepts every GetArrayInfoRequest.
func (x *GetArrayInfoRequest) Validate() error { return nil }

// Validate checks the pool name.
func (x *CreatePoolRequest) Validate() error { return v.Name("name", x.GetName()) }

// Validate checks the pool name.
func (x *GetPoolRequest) Validate() error { return v.Name("name", x.GetName()) }

// Validate accepts every ListPoolsRequest.
func (x *ListPoolsRequest) Validate() error { return nil }

// Validate checks the pool name.
func (x *DeletePoolRequest) Validate() error { return v.Name("name", x.GetName()) }

// Validate checks the names, the block-aligned size and the label keys.
func (x *CreateVolumeRequest) Validate() error {
	return v.First(
		v.Name("name", x.GetName()),
		v.Name("pool", x.GetPool()),
		v.SizeBytes("size_bytes", x.GetSizeBytes()),
		v.Labels("labels", x.GetLabels()),
	)
}

// Validate checks the volume name.
func (x *GetVolumeRequest) Validate() error { return v.Name("name", x.GetName()) }

// Validate checks the pool name if one is given; empty lists every pool.
func (x *ListVolumesRequest) Validate() error { return v.OptionalName("pool", x.GetPool()) }

// Validate checks the volume name.
func (x *DeleteVolumeRequest) Validate() error { return v.Name("name", x.GetName()) }

// Validate checks the volume name and the new block-aligned size.
func (x *ExtendVolumeRequest) Validate() error {
	return v.First(
		v.Name("name", x.GetName()),
		v.SizeBytes("size_bytes", x.GetSizeBytes()),
	)
}

// Validate checks the volume name, the offset and the data length.
func (x *WriteVolumeRequest) Validate() error {
	data := x.GetData()
	return v.First(
		v.Name("name", x.GetName()),
		v.IORange("offset", x.GetOffset(), "data", int64(len(data)), 1, v.MaxIO),
	)
}

// Validate checks the volume name and the byte range.
func (x *ReadVolumeRequest) Validate() error {
	return v.First(
		v.Name("name", x.GetName()),
		v.IORange("offset", x.GetOffset(), "length", x.GetLength(), 1, v.MaxIO),
	)
}

// Validate checks the volume name.
func (x *FlushVolumeRequest) Validate() error { return v.Name("name", x.GetName()) }

// Validate checks the names and the label keys.
func (x *CreateSnapshotRequest) Validate() error {
	return v.First(
		v.Name("volume", x.GetVolume()),
		v.Name("name", x.GetName()),
		v.Labels("labels", x.GetLabels()),
	)
}

// Validate checks the names.
func (x *GetSnapshotRequest) Validate() error {
	return v.First(
		v.Name("volume", x.GetVolume()),
		v.Name("name", x.GetName()),
	)
}

// Validate checks the volume name.
func (x *ListSnapshotsRequest) Validate() error { return v.Name("volume", x.GetVolume()) }

// Validate checks the names.
func (x *DeleteSnapshotRequest) Validate() error {
	return v.First(
		v.Name("volume", x.GetVolume()),
		v.Name("name", x.GetName()),
	)
}

// Validate checks the names and the byte range.
func (x *ReadSnapshotRequest) Validate() error {
	return v.First(
		v.Name("volume", x.GetVolume()),
		v.Name("name", x.GetName()),
		v.IORange("offset", x.GetOffset(), "length", x.GetLength(), 1, v.MaxIO),
	)
}

// Validate checks the names, the optional pool and size (empty or zero
// keeps the source's), and the label keys.
func (x *CloneSnapshotRequest) Validate() error {
	return v.First(
		v.Name("volume", x.GetVolume()),
		v.Name("snapshot", x.GetSnapshot()),
		v.Name("name", x.GetName()),
		v.OptionalName("pool", x.GetPool()),
		v.OptionalSizeBytes("size_bytes", x.GetSizeBytes()),
		v.Labels("labels", x.GetLabels()),
	)
}

// Validate checks the names; an empty base means "from nothing".
func (x *DiffSnapshotsRequest) Validate() error {
	return v.First(
		v.Name("volume", x.GetVolume()),
		v.OptionalName("base", x.GetBase()),
		v.Name("snapshot", x.GetSnapshot()),
	)
}

// Validate checks the volume, the optional snapshot and the attachment id.
func (x *CreateExportRequest) Validate() error {
	return v.First(
		v.Name("volume", x.GetVolume()),
		v.OptionalName("snapshot", x.GetSnapshot()),
		v.Name("attachment_id", x.GetAttachmentId()),
	)
}

// Validate needs either the export name or the volume and attachment id.
func (x *DeleteExportRequest) Validate() error {
	if x.GetName() != "" {
		return v.Name("name", x.GetName())
	}
	return v.First(
		v.Name("volume", x.GetVolume()),
		v.OptionalName("attachment_id", x.GetAttachmentId()),
	)
}

// Validate checks the optional volume.
func (x *ListExportsRequest) Validate() error { return v.OptionalName("volume", x.GetVolume()) }

// Validate checks the link name and address.
func (x *CreateLinkRequest) Validate() error {
	return v.First(
		v.Name("name", x.GetName()),
		v.Required("address", x.GetAddress()),
		v.Text("address", x.GetAddress(), v.MaxTextLen),
		v.Text("token", x.GetToken(), v.MaxTokenLen),
		v.Limit("bandwidth_limit", x.GetBandwidthLimit(), 0, v.MaxBandwidth, "bytes per second (1 TiB/s)"),
	)
}

// Validate checks the link name.
func (x *GetLinkRequest) Validate() error { return v.Name("name", x.GetName()) }

// Validate accepts every ListLinksRequest.
func (x *ListLinksRequest) Validate() error { return nil }

// Validate checks the link name.
func (x *DeleteLinkRequest) Validate() error { return v.Name("name", x.GetName()) }

// Validate checks the group and pool names.
func (x *CreateGroupRequest) Validate() error {
	return v.First(v.Name("name", x.GetName()), v.Name("pool", x.GetPool()), v.Labels("labels", x.GetLabels()))
}

// Validate checks the group name.
func (x *GetGroupRequest) Validate() error { return v.Name("name", x.GetName()) }

// Validate accepts every ListGroupsRequest.
func (x *ListGroupsRequest) Validate() error { return nil }

// Validate checks the group name.
func (x *DeleteGroupRequest) Validate() error { return v.Name("name", x.GetName()) }

func validateVolumes(field string, vols []string) error {
	if len(vols) == 0 {
		return v.Required(field, "")
	}
	if err := v.Count(field, len(vols), v.MaxIDs); err != nil {
		return err
	}
	for _, vol := range vols {
		if err := v.Name(field, vol); err != nil {
			return err
		}
	}
	return nil
}

// Validate checks the group and volume names.
func (x *AddMembersRequest) Validate() error {
	return v.First(v.Name("name", x.GetName()), validateVolumes("volumes", x.GetVolumes()))
}

// Validate checks the group and volume names.
func (x *RemoveMembersRequest) Validate() error {
	return v.First(v.Name("name", x.GetName()), validateVolumes("volumes", x.GetVolumes()))
}

// Validate checks the group and snapshot names.
func (x *CreateGroupSnapshotRequest) Validate() error {
	return v.First(v.Name("name", x.GetName()), v.Name("snapshot", x.GetSnapshot()), v.Labels("labels", x.GetLabels()))
}

func validateRetention(field string, r *Retention) error {
	if r == nil {
		return nil
	}
	return v.First(
		v.RetainSeconds(field+".all_for_seconds", r.GetAllForSeconds()),
		v.PerDay(field+".per_day", int64(r.GetPerDay())),
		v.RetainDays(field+".days", int64(r.GetDays())),
	)
}

// validateSchedule checks a replica's schedule; zero leaves a field unset
// (or unchanged, in an update).
func validateSchedule(interval, rpo int64, target, source *Retention) error {
	return v.First(
		v.Interval("interval_seconds", interval, true),
		v.Interval("rpo_seconds", rpo, true),
		validateRetention("target_retention", target),
		validateRetention("source_retention", source),
	)
}

// Validate checks the names the mode needs and the schedule.
func (x *ReplicateEntityRequest) Validate() error {
	err := v.First(
		v.OptionalName("name", x.GetName()),
		v.Name("volume", x.GetVolume()),
		v.Name("link", x.GetLink()),
		v.OptionalName("remote_volume", x.GetRemoteVolume()),
		validateSchedule(x.GetIntervalSeconds(), x.GetRpoSeconds(), x.GetTargetRetention(), x.GetSourceRetention()),
	)
	if err != nil {
		return err
	}
	switch x.GetMode() {
	case ReplicaMode_REPLICA_MODE_UNSPECIFIED, ReplicaMode_REPLICA_MODE_CREATE_TARGET:
		return v.Name("remote_pool", x.GetRemotePool())
	case ReplicaMode_REPLICA_MODE_EXISTING_TARGET:
		return v.Name("remote_volume", x.GetRemoteVolume())
	case ReplicaMode_REPLICA_MODE_USE_BASE:
		return v.First(v.Name("local_snapshot", x.GetLocalSnapshot()), v.Name("remote_snapshot", x.GetRemoteSnapshot()))
	}
	return v.OneOf("mode", x.GetMode().String(), "CREATE_TARGET", "EXISTING_TARGET", "USE_BASE")
}

// Validate checks the names and the schedule.
func (x *ReplicateConsGroupRequest) Validate() error {
	if err := v.Count("member_mappings", len(x.GetMemberMappings()), v.MaxIDs); err != nil {
		return err
	}
	for local, remote := range x.GetMemberMappings() {
		if err := v.First(v.Name("member_mappings", local), v.Name("member_mappings", remote)); err != nil {
			return err
		}
	}
	return v.First(
		v.OptionalName("name", x.GetName()),
		v.Name("group", x.GetGroup()),
		v.Name("link", x.GetLink()),
		v.Name("remote_pool", x.GetRemotePool()),
		v.OptionalName("remote_group", x.GetRemoteGroup()),
		validateSchedule(x.GetIntervalSeconds(), x.GetRpoSeconds(), x.GetTargetRetention(), x.GetSourceRetention()),
	)
}

// Validate checks the replica name.
func (x *GetReplicaRequest) Validate() error { return v.Name("name", x.GetName()) }

// Validate checks the optional entity name.
func (x *ListReplicasRequest) Validate() error {
	return v.OptionalName("local_entity", x.GetLocalEntity())
}

// Validate checks the replica name and the schedule.
func (x *UpdateReplicaRequest) Validate() error {
	return v.First(
		v.Name("name", x.GetName()),
		validateSchedule(x.GetIntervalSeconds(), x.GetRpoSeconds(), x.GetTargetRetention(), x.GetSourceRetention()),
	)
}

// Validate checks the replica name.
func (x *DeleteReplicaRequest) Validate() error { return v.Name("name", x.GetName()) }

// Validate checks the replica name.
func (x *SuspendReplicaRequest) Validate() error { return v.Name("name", x.GetName()) }

// Validate checks the replica name.
func (x *ResumeReplicaRequest) Validate() error { return v.Name("name", x.GetName()) }

// Validate checks the replica name.
func (x *SyncReplicaRequest) Validate() error { return v.Name("name", x.GetName()) }

// Validate checks the replica name and the type.
func (x *ChangeReplicaTypeRequest) Validate() error {
	if x.GetReplicationType() == ReplicationType_REPLICATION_TYPE_UNSPECIFIED {
		return v.First(v.Name("name", x.GetName()), v.Required("replication_type", ""))
	}
	return v.Name("name", x.GetName())
}

// Validate accepts the stream's messages; the receiver checks each one in
// the order the protocol needs, since a stream request is not a request.
func (x *ReceiveRequest) Validate() error { return nil }

// Validate checks the names and the link.
func (x *ReplicateSnapshotRequest) Validate() error {
	return v.First(
		v.Name("volume", x.GetVolume()),
		v.Name("snapshot", x.GetSnapshot()),
		v.Name("link", x.GetLink()),
		v.Name("remote_pool", x.GetRemotePool()),
		v.OptionalName("remote_volume", x.GetRemoteVolume()),
	)
}

// Validate checks the names and the range (at most 64 MiB).
func (x *ChecksumSnapshotRequest) Validate() error {
	return v.First(
		v.Name("volume", x.GetVolume()),
		v.Name("snapshot", x.GetSnapshot()),
		v.BlockAligned("offset", x.GetOffset()),
		v.Limit("offset", x.GetOffset(), 0, v.MaxVolumeBytes, "bytes (1 PiB, the maximum volume size)"),
		v.IORange("offset", x.GetOffset(), "length", x.GetLength(), 1, 64*v.MiB),
	)
}

// Validate checks the operation id.
func (x *GetOperationRequest) Validate() error { return v.Name("id", x.GetId()) }

// Validate accepts every ListOperationsRequest.
func (x *ListOperationsRequest) Validate() error { return nil }

// Validate checks the operation id.
func (x *WatchOperationRequest) Validate() error { return v.Name("id", x.GetId()) }

// Validate checks the operation id.
func (x *CancelOperationRequest) Validate() error { return v.Name("id", x.GetId()) }

// Validate accepts the stream's messages; the peer checks each in order.
func (x *MirrorRequest) Validate() error { return nil }

// Validate checks the volume name.
func (x *SetVolumeReadOnlyRequest) Validate() error { return v.Name("name", x.GetName()) }

// Validate checks the volumes and the snapshot name.
func (x *CreateSnapshotSetRequest) Validate() error {
	return v.First(validateVolumes("volumes", x.GetVolumes()), v.Name("name", x.GetName()), v.Labels("labels", x.GetLabels()))
}

// Validate checks what a receiver stores from a transfer's header: the
// names, the size and the labels, like the requests that create them
// directly. TransferService.Receive calls it on the first message.
func (x *ReceiveHeader) Validate() error {
	return v.First(
		v.Name("header.transfer_id", x.GetTransferId()),
		v.Name("header.volume", x.GetVolume()),
		v.Name("header.pool", x.GetPool()),
		v.SizeBytes("header.size_bytes", x.GetSizeBytes()),
		v.Labels("header.volume_labels", x.GetVolumeLabels()),
		v.Name("header.snapshot_name", x.GetSnapshotName()),
		v.Text("header.snapshot_guid", x.GetSnapshotGuid(), v.MaxTextLen),
		v.Text("header.base_guid", x.GetBaseGuid(), v.MaxTextLen),
		v.Labels("header.snapshot_labels", x.GetSnapshotLabels()),
		v.Text("header.source_array_id", x.GetSourceArrayId(), v.MaxTextLen),
	)
}
