// Package arrayapi checks the requests of the array API (volrep.array.v1)
// before a handler runs. The server's validation interceptor calls Check;
// a failure comes back as INVALID_ARGUMENT naming the field. Every request
// message has a case, even when there is nothing to check, and a test in
// package server fails when an RPC's request has none.
package arrayapi

import (
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/volrep/volrep/array"
	"github.com/volrep/volrep/errdefs"
	arrayv1 "github.com/volrep/volrep/proto/volrep/array/v1"
	v "github.com/volrep/volrep/validation"
)

// Check validates req if it is a request of the API, before its handler
// runs. handled is false for any other message.
func Check(req any) (handled bool, err error) {
	switch x := req.(type) {
	case *arrayv1.GetArrayInfoRequest:
		return true, nil // nothing to check
	case *arrayv1.CreatePoolRequest:
		return true, createPoolRequest(x)
	case *arrayv1.GetPoolRequest:
		return true, getPoolRequest(x)
	case *arrayv1.ListPoolsRequest:
		return true, nil // nothing to check
	case *arrayv1.DeletePoolRequest:
		return true, deletePoolRequest(x)
	case *arrayv1.CreateVolumeRequest:
		return true, createVolumeRequest(x)
	case *arrayv1.GetVolumeRequest:
		return true, getVolumeRequest(x)
	case *arrayv1.ListVolumesRequest:
		return true, listVolumesRequest(x)
	case *arrayv1.DeleteVolumeRequest:
		return true, deleteVolumeRequest(x)
	case *arrayv1.ExtendVolumeRequest:
		return true, extendVolumeRequest(x)
	case *arrayv1.WriteVolumeRequest:
		return true, writeVolumeRequest(x)
	case *arrayv1.ReadVolumeRequest:
		return true, readVolumeRequest(x)
	case *arrayv1.FlushVolumeRequest:
		return true, flushVolumeRequest(x)
	case *arrayv1.CreateSnapshotRequest:
		return true, createSnapshotRequest(x)
	case *arrayv1.GetSnapshotRequest:
		return true, getSnapshotRequest(x)
	case *arrayv1.ListSnapshotsRequest:
		return true, listSnapshotsRequest(x)
	case *arrayv1.DeleteSnapshotRequest:
		return true, deleteSnapshotRequest(x)
	case *arrayv1.ReadSnapshotRequest:
		return true, readSnapshotRequest(x)
	case *arrayv1.RevertVolumeRequest:
		return true, v.First(v.Name("volume", x.GetVolume()), v.Name("snapshot", x.GetSnapshot()))
	case *arrayv1.RenameVolumeRequest:
		return true, v.First(v.Name("name", x.GetName()), v.Name("new_name", x.GetNewName()), v.Labels("labels", x.GetLabels()))
	case *arrayv1.RenameSnapshotRequest:
		return true, v.First(v.Name("volume", x.GetVolume()), v.Name("name", x.GetName()), v.Name("new_name", x.GetNewName()), v.Labels("labels", x.GetLabels()))
	case *arrayv1.CloneSnapshotRequest:
		return true, cloneSnapshotRequest(x)
	case *arrayv1.DiffSnapshotsRequest:
		return true, diffSnapshotsRequest(x)
	case *arrayv1.CreateExportRequest:
		return true, createExportRequest(x)
	case *arrayv1.DeleteExportRequest:
		return true, deleteExportRequest(x)
	case *arrayv1.ListExportsRequest:
		return true, listExportsRequest(x)
	case *arrayv1.CreateHostRequest:
		return true, createHostRequest(x)
	case *arrayv1.GetHostRequest:
		return true, v.Name("name", x.GetName())
	case *arrayv1.ListHostsRequest:
		return true, nil // nothing to check
	case *arrayv1.DeleteHostRequest:
		return true, v.Name("name", x.GetName())
	case *arrayv1.SetHostPreferredArraysRequest:
		return true, v.First(v.Name("name", x.GetName()), array.CheckPreferredArrays("preferred_arrays", x.GetPreferredArrays()))
	case *arrayv1.ConnectVolumeRequest:
		return true, connection(x.GetHost(), x.GetVolume(), x.GetSnapshot())
	case *arrayv1.DisconnectVolumeRequest:
		return true, connection(x.GetHost(), x.GetVolume(), x.GetSnapshot())
	case *arrayv1.GetVolumeReservationsRequest:
		return true, v.Name("volume", x.GetVolume())
	case *arrayv1.ClearVolumeReservationsRequest:
		return true, v.Name("volume", x.GetVolume())
	case *arrayv1.ListConnectionsRequest:
		return true, v.First(v.OptionalName("host", x.GetHost()), v.OptionalName("volume", x.GetVolume()))
	case *arrayv1.CreateLinkRequest:
		return true, createLinkRequest(x)
	case *arrayv1.GetLinkRequest:
		return true, getLinkRequest(x)
	case *arrayv1.ListLinksRequest:
		return true, nil // nothing to check
	case *arrayv1.DeleteLinkRequest:
		return true, deleteLinkRequest(x)
	case *arrayv1.CreateGroupRequest:
		return true, createGroupRequest(x)
	case *arrayv1.GetGroupRequest:
		return true, getGroupRequest(x)
	case *arrayv1.ListGroupsRequest:
		return true, nil // nothing to check
	case *arrayv1.DeleteGroupRequest:
		return true, deleteGroupRequest(x)
	case *arrayv1.AddMembersRequest:
		return true, addMembersRequest(x)
	case *arrayv1.RemoveMembersRequest:
		return true, removeMembersRequest(x)
	case *arrayv1.CreateGroupSnapshotRequest:
		return true, createGroupSnapshotRequest(x)
	case *arrayv1.ReplicateEntityRequest:
		return true, replicateEntityRequest(x)
	case *arrayv1.ReplicateConsGroupRequest:
		return true, replicateConsGroupRequest(x)
	case *arrayv1.GetReplicaRequest:
		return true, getReplicaRequest(x)
	case *arrayv1.ListReplicasRequest:
		return true, listReplicasRequest(x)
	case *arrayv1.UpdateReplicaRequest:
		return true, updateReplicaRequest(x)
	case *arrayv1.DeleteReplicaRequest:
		return true, deleteReplicaRequest(x)
	case *arrayv1.SuspendReplicaRequest:
		return true, suspendReplicaRequest(x)
	case *arrayv1.ResumeReplicaRequest:
		return true, resumeReplicaRequest(x)
	case *arrayv1.SyncReplicaRequest:
		return true, syncReplicaRequest(x)
	case *arrayv1.ChangeReplicaTypeRequest:
		return true, changeReplicaTypeRequest(x)
	case *arrayv1.ReceiveRequest:
		// A stream's messages are checked by the receiver, in the order
		// the protocol needs (ReceiveHeader for the first).
		return true, nil
	case *arrayv1.ReplicateSnapshotRequest:
		return true, replicateSnapshotRequest(x)
	case *arrayv1.ChecksumSnapshotRequest:
		return true, checksumSnapshotRequest(x)
	case *arrayv1.GetOperationRequest:
		return true, getOperationRequest(x)
	case *arrayv1.ListOperationsRequest:
		return true, nil // nothing to check
	case *arrayv1.WatchOperationRequest:
		return true, watchOperationRequest(x)
	case *arrayv1.CancelOperationRequest:
		return true, cancelOperationRequest(x)
	case *arrayv1.AdvanceRequest:
		return true, advanceRequest(x)
	case *arrayv1.PruneRequest:
		return true, pruneRequest(x)
	case *arrayv1.GetPodCopyRequest:
		return true, v.Name("pod", x.GetPod())
	case *arrayv1.MirrorRequest:
		// The peer checks each message of the stream in order.
		return true, nil
	case *arrayv1.ForwardRequest:
		// The non-preferred array checks each message in order (the open
		// first, with its pod and timeout).
		return true, nil
	case *arrayv1.ReclaimRequest:
		// The carrying array checks the open (its pod, volumes and
		// block-aligned ranges) before anything is read.
		return true, nil
	case *arrayv1.SetVolumeReadOnlyRequest:
		return true, setVolumeReadOnlyRequest(x)
	case *arrayv1.CreateSnapshotSetRequest:
		return true, createSnapshotSetRequest(x)
	case *arrayv1.SetVolumeQoSRequest:
		return true, setVolumeQoSRequest(x)
	case *arrayv1.HoldVolumeWritesRequest:
		return true, holdVolumeWritesRequest(x)
	}
	return false, nil
}

// createPoolRequest checks the pool name.
func createPoolRequest(x *arrayv1.CreatePoolRequest) error { return v.Name("name", x.GetName()) }

// getPoolRequest checks the pool name.
func getPoolRequest(x *arrayv1.GetPoolRequest) error { return v.Name("name", x.GetName()) }

// deletePoolRequest checks the pool name.
func deletePoolRequest(x *arrayv1.DeletePoolRequest) error { return v.Name("name", x.GetName()) }

// createVolumeRequest checks the names, the block-aligned size and the label keys.
func createVolumeRequest(x *arrayv1.CreateVolumeRequest) error {
	return v.First(
		v.Name("name", x.GetName()),
		v.Name("pool", x.GetPool()),
		v.SizeBytes("size_bytes", x.GetSizeBytes()),
		v.Labels("labels", x.GetLabels()),
	)
}

// getVolumeRequest checks the volume name.
func getVolumeRequest(x *arrayv1.GetVolumeRequest) error { return v.Name("name", x.GetName()) }

// listVolumesRequest checks the pool name if one is given; empty lists every pool.
func listVolumesRequest(x *arrayv1.ListVolumesRequest) error {
	return v.OptionalName("pool", x.GetPool())
}

// deleteVolumeRequest checks the volume name.
func deleteVolumeRequest(x *arrayv1.DeleteVolumeRequest) error { return v.Name("name", x.GetName()) }

// extendVolumeRequest checks the volume name and the new block-aligned size.
func extendVolumeRequest(x *arrayv1.ExtendVolumeRequest) error {
	return v.First(
		v.Name("name", x.GetName()),
		v.SizeBytes("size_bytes", x.GetSizeBytes()),
	)
}

// writeVolumeRequest checks the volume name, the offset and the data length.
func writeVolumeRequest(x *arrayv1.WriteVolumeRequest) error {
	data := x.GetData()
	return v.First(
		v.Name("name", x.GetName()),
		v.IORange("offset", x.GetOffset(), "data", int64(len(data)), 1, v.MaxIO),
	)
}

// readVolumeRequest checks the volume name and the byte range.
func readVolumeRequest(x *arrayv1.ReadVolumeRequest) error {
	return v.First(
		v.Name("name", x.GetName()),
		v.IORange("offset", x.GetOffset(), "length", x.GetLength(), 1, v.MaxIO),
	)
}

// flushVolumeRequest checks the volume name.
func flushVolumeRequest(x *arrayv1.FlushVolumeRequest) error { return v.Name("name", x.GetName()) }

// createSnapshotRequest checks the names and the label keys.
func createSnapshotRequest(x *arrayv1.CreateSnapshotRequest) error {
	return v.First(
		v.Name("volume", x.GetVolume()),
		v.Name("name", x.GetName()),
		v.Labels("labels", x.GetLabels()),
	)
}

// getSnapshotRequest checks the names.
func getSnapshotRequest(x *arrayv1.GetSnapshotRequest) error {
	return v.First(
		v.Name("volume", x.GetVolume()),
		v.Name("name", x.GetName()),
	)
}

// listSnapshotsRequest checks the volume name.
func listSnapshotsRequest(x *arrayv1.ListSnapshotsRequest) error {
	return v.Name("volume", x.GetVolume())
}

// deleteSnapshotRequest checks the names.
func deleteSnapshotRequest(x *arrayv1.DeleteSnapshotRequest) error {
	return v.First(
		v.Name("volume", x.GetVolume()),
		v.Name("name", x.GetName()),
	)
}

// readSnapshotRequest checks the names and the byte range.
func readSnapshotRequest(x *arrayv1.ReadSnapshotRequest) error {
	return v.First(
		v.Name("volume", x.GetVolume()),
		v.Name("name", x.GetName()),
		v.IORange("offset", x.GetOffset(), "length", x.GetLength(), 1, v.MaxIO),
	)
}

// cloneSnapshotRequest checks the names, the optional pool and size (empty or zero
// keeps the source's), and the label keys.
func cloneSnapshotRequest(x *arrayv1.CloneSnapshotRequest) error {
	return v.First(
		v.Name("volume", x.GetVolume()),
		v.Name("snapshot", x.GetSnapshot()),
		v.Name("name", x.GetName()),
		v.OptionalName("pool", x.GetPool()),
		v.OptionalSizeBytes("size_bytes", x.GetSizeBytes()),
		v.Labels("labels", x.GetLabels()),
	)
}

// diffSnapshotsRequest checks the names; an empty base means "from nothing".
func diffSnapshotsRequest(x *arrayv1.DiffSnapshotsRequest) error {
	return v.First(
		v.Name("volume", x.GetVolume()),
		v.OptionalName("base", x.GetBase()),
		v.Name("snapshot", x.GetSnapshot()),
	)
}

// createExportRequest checks the volume, the optional snapshot and the attachment id.
func createExportRequest(x *arrayv1.CreateExportRequest) error {
	return v.First(
		v.Name("volume", x.GetVolume()),
		v.OptionalName("snapshot", x.GetSnapshot()),
		v.Name("attachment_id", x.GetAttachmentId()),
	)
}

// deleteExportRequest needs either the export name or the volume and attachment id.
func deleteExportRequest(x *arrayv1.DeleteExportRequest) error {
	if x.GetName() != "" {
		return v.Name("name", x.GetName())
	}
	return v.First(
		v.Name("volume", x.GetVolume()),
		v.OptionalName("attachment_id", x.GetAttachmentId()),
	)
}

// listExportsRequest checks the optional volume.
func listExportsRequest(x *arrayv1.ListExportsRequest) error {
	return v.OptionalName("volume", x.GetVolume())
}

// createHostRequest checks the host name, its initiator names and labels.
func createHostRequest(x *arrayv1.CreateHostRequest) error {
	iqns := x.GetIqns()
	errs := []error{v.Name("name", x.GetName()), v.Count("iqns", len(iqns), array.MaxHostIQNs)}
	if len(iqns) == 0 {
		errs = append(errs, v.Required("iqns", ""))
	}
	for _, iqn := range iqns {
		errs = append(errs, v.ISCSIName("iqns", iqn))
	}
	errs = append(errs, array.CheckCHAPSecret("chap_secret", x.GetChapSecret()), array.CheckCHAPSecret("mutual_chap_secret", x.GetMutualChapSecret()))
	if x.GetMutualChapSecret() != "" && !x.GetMutualChap() {
		errs = append(errs, errdefs.InvalidArgument("mutual_chap_secret", "is set but mutual_chap is not; set both or neither"))
	}
	errs = append(errs, array.CheckPreferredArrays("preferred_arrays", x.GetPreferredArrays()))
	return v.First(append(errs, v.Labels("labels", x.GetLabels()))...)
}

// connection checks what ConnectVolume and DisconnectVolume name.
func connection(host, volume, snapshot string) error {
	return v.First(v.Name("host", host), v.Name("volume", volume), v.OptionalName("snapshot", snapshot))
}

// createLinkRequest checks the link name and address.
func createLinkRequest(x *arrayv1.CreateLinkRequest) error {
	return v.First(
		v.Name("name", x.GetName()),
		v.Required("address", x.GetAddress()),
		v.Text("address", x.GetAddress(), v.MaxTextLen),
		v.Text("token", x.GetToken(), v.MaxTokenLen),
		v.Limit("bandwidth_limit", x.GetBandwidthLimit(), 0, v.MaxBandwidth, "bytes per second (1 TiB/s)"),
	)
}

// getLinkRequest checks the link name.
func getLinkRequest(x *arrayv1.GetLinkRequest) error { return v.Name("name", x.GetName()) }

// deleteLinkRequest checks the link name.
func deleteLinkRequest(x *arrayv1.DeleteLinkRequest) error { return v.Name("name", x.GetName()) }

// createGroupRequest checks the group and pool names.
func createGroupRequest(x *arrayv1.CreateGroupRequest) error {
	return v.First(v.Name("name", x.GetName()), v.Name("pool", x.GetPool()), v.Labels("labels", x.GetLabels()))
}

// getGroupRequest checks the group name.
func getGroupRequest(x *arrayv1.GetGroupRequest) error { return v.Name("name", x.GetName()) }

// deleteGroupRequest checks the group name.
func deleteGroupRequest(x *arrayv1.DeleteGroupRequest) error { return v.Name("name", x.GetName()) }

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

// addMembersRequest checks the group and volume names.
func addMembersRequest(x *arrayv1.AddMembersRequest) error {
	return v.First(v.Name("name", x.GetName()), validateVolumes("volumes", x.GetVolumes()))
}

// removeMembersRequest checks the group and volume names.
func removeMembersRequest(x *arrayv1.RemoveMembersRequest) error {
	return v.First(v.Name("name", x.GetName()), validateVolumes("volumes", x.GetVolumes()))
}

// createGroupSnapshotRequest checks the group and snapshot names.
func createGroupSnapshotRequest(x *arrayv1.CreateGroupSnapshotRequest) error {
	return v.First(v.Name("name", x.GetName()), v.Name("snapshot", x.GetSnapshot()), v.Labels("labels", x.GetLabels()))
}

func validateRetention(field string, r *arrayv1.Retention) error {
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
func validateSchedule(interval, rpo int64, target, source *arrayv1.Retention) error {
	return v.First(
		v.Interval("interval_seconds", interval, true),
		v.Interval("rpo_seconds", rpo, true),
		validateRetention("target_retention", target),
		validateRetention("source_retention", source),
	)
}

// replicateEntityRequest checks the names the mode needs and the schedule.
func replicateEntityRequest(x *arrayv1.ReplicateEntityRequest) error {
	err := v.First(
		v.OptionalName("name", x.GetName()),
		v.Name("volume", x.GetVolume()),
		v.Name("link", x.GetLink()),
		v.OptionalName("remote_volume", x.GetRemoteVolume()),
		validateSchedule(x.GetIntervalSeconds(), x.GetRpoSeconds(), x.GetTargetRetention(), x.GetSourceRetention()),
		v.SyncTimeoutMs("sync_timeout_ms", x.GetSyncTimeoutMs()),
		podMediator(x.GetPodMediator()),
	)
	if err != nil {
		return err
	}
	switch x.GetMode() {
	case arrayv1.ReplicaMode_REPLICA_MODE_UNSPECIFIED, arrayv1.ReplicaMode_REPLICA_MODE_CREATE_TARGET:
		return v.Name("remote_pool", x.GetRemotePool())
	case arrayv1.ReplicaMode_REPLICA_MODE_EXISTING_TARGET:
		return v.Name("remote_volume", x.GetRemoteVolume())
	case arrayv1.ReplicaMode_REPLICA_MODE_USE_BASE:
		return v.First(v.Name("local_snapshot", x.GetLocalSnapshot()), v.Name("remote_snapshot", x.GetRemoteSnapshot()))
	}
	return v.OneOf("mode", x.GetMode().String(), "CREATE_TARGET", "EXISTING_TARGET", "USE_BASE")
}

// replicateConsGroupRequest checks the names and the schedule.
func replicateConsGroupRequest(x *arrayv1.ReplicateConsGroupRequest) error {
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
		v.SyncTimeoutMs("sync_timeout_ms", x.GetSyncTimeoutMs()),
		podMediator(x.GetPodMediator()),
	)
}

// maxMediatorEndpoints bounds pod_mediator: an etcd cluster has a few members.
const maxMediatorEndpoints = 16

// podMediator checks the mediator's etcd endpoints: host:port each.
func podMediator(eps []string) error {
	if err := v.Count("pod_mediator", len(eps), maxMediatorEndpoints); err != nil {
		return err
	}
	for _, ep := range eps {
		if err := v.Text("pod_mediator", ep, 300); err != nil {
			return err
		}
		host, port, err := net.SplitHostPort(ep)
		n, perr := strconv.Atoi(port)
		if err != nil || host == "" || strings.ContainsAny(host, "/@ ") || perr != nil || n < 1 || n > 65535 {
			return errdefs.InvalidArgument("pod_mediator", "pod_mediator endpoint %s is not host:port (an etcd client address, e.g. 10.0.0.30:2379)", v.Quote(ep))
		}
	}
	return nil
}

// getReplicaRequest checks the replica name.
func getReplicaRequest(x *arrayv1.GetReplicaRequest) error { return v.Name("name", x.GetName()) }

// listReplicasRequest checks the optional entity name.
func listReplicasRequest(x *arrayv1.ListReplicasRequest) error {
	return v.OptionalName("local_entity", x.GetLocalEntity())
}

// updateReplicaRequest checks the replica name and the schedule.
func updateReplicaRequest(x *arrayv1.UpdateReplicaRequest) error {
	return v.First(
		v.Name("name", x.GetName()),
		validateSchedule(x.GetIntervalSeconds(), x.GetRpoSeconds(), x.GetTargetRetention(), x.GetSourceRetention()),
	)
}

// deleteReplicaRequest checks the replica name.
func deleteReplicaRequest(x *arrayv1.DeleteReplicaRequest) error { return v.Name("name", x.GetName()) }

// suspendReplicaRequest checks the replica name.
func suspendReplicaRequest(x *arrayv1.SuspendReplicaRequest) error {
	return v.Name("name", x.GetName())
}

// resumeReplicaRequest checks the replica name.
func resumeReplicaRequest(x *arrayv1.ResumeReplicaRequest) error { return v.Name("name", x.GetName()) }

// syncReplicaRequest checks the replica name.
func syncReplicaRequest(x *arrayv1.SyncReplicaRequest) error { return v.Name("name", x.GetName()) }

// changeReplicaTypeRequest checks the replica name and the type.
func changeReplicaTypeRequest(x *arrayv1.ChangeReplicaTypeRequest) error {
	if x.GetReplicationType() == arrayv1.ReplicationType_REPLICATION_TYPE_UNSPECIFIED {
		return v.First(v.Name("name", x.GetName()), v.Required("replication_type", ""))
	}
	return v.Name("name", x.GetName())
}

// replicateSnapshotRequest checks the names and the link.
func replicateSnapshotRequest(x *arrayv1.ReplicateSnapshotRequest) error {
	snapshot := v.Name("snapshot", x.GetSnapshot())
	if len(x.GetSnapshots()) > 0 {
		snapshot = v.OptionalName("snapshot", x.GetSnapshot())
	}
	if err := v.First(
		v.Name("volume", x.GetVolume()),
		snapshot,
		v.Name("link", x.GetLink()),
		v.Name("remote_pool", x.GetRemotePool()),
		v.OptionalName("remote_volume", x.GetRemoteVolume()),
		v.Labels("remote_volume_labels", x.GetRemoteVolumeLabels()),
	); err != nil {
		return err
	}
	if n := len(x.GetSnapshots()); n > maxReplicateSnapshots {
		return errdefs.InvalidArgument("snapshots", "lists %d snapshots; at most %d go in one operation", n, maxReplicateSnapshots)
	}
	for _, s := range x.GetSnapshots() {
		if err := v.Name("snapshots", s); err != nil {
			return err
		}
	}
	return nil
}

// maxReplicateSnapshots bounds one ReplicateSnapshot operation.
const maxReplicateSnapshots = 100

// checksumSnapshotRequest checks the names and the range (at most 64 MiB).
func checksumSnapshotRequest(x *arrayv1.ChecksumSnapshotRequest) error {
	return v.First(
		v.Name("volume", x.GetVolume()),
		v.Name("snapshot", x.GetSnapshot()),
		v.BlockAligned("offset", x.GetOffset()),
		v.Limit("offset", x.GetOffset(), 0, v.MaxVolumeBytes, "bytes (1 PiB, the maximum volume size)"),
		v.IORange("offset", x.GetOffset(), "length", x.GetLength(), 1, 64*v.MiB),
	)
}

// getOperationRequest checks the operation id.
func getOperationRequest(x *arrayv1.GetOperationRequest) error { return v.Name("id", x.GetId()) }

// watchOperationRequest checks the operation id.
func watchOperationRequest(x *arrayv1.WatchOperationRequest) error { return v.Name("id", x.GetId()) }

// cancelOperationRequest checks the operation id.
func cancelOperationRequest(x *arrayv1.CancelOperationRequest) error { return v.Name("id", x.GetId()) }

// setVolumeReadOnlyRequest checks the volume name.
func setVolumeReadOnlyRequest(x *arrayv1.SetVolumeReadOnlyRequest) error {
	return v.Name("name", x.GetName())
}

// setVolumeQoSRequest checks the volume name and that no limit is
// negative (0 is unlimited).
func setVolumeQoSRequest(x *arrayv1.SetVolumeQoSRequest) error {
	q := x.GetQos()
	return v.First(v.Name("name", x.GetName()),
		v.NonNegative("qos.total_iops", q.GetTotalIops()), v.NonNegative("qos.read_iops", q.GetReadIops()),
		v.NonNegative("qos.write_iops", q.GetWriteIops()), v.NonNegative("qos.total_bytes_per_sec", q.GetTotalBytesPerSec()),
		v.NonNegative("qos.read_bytes_per_sec", q.GetReadBytesPerSec()), v.NonNegative("qos.write_bytes_per_sec", q.GetWriteBytesPerSec()))
}

// maxHoldLease bounds a write hold's lease: a holder renews, it does not
// freeze a volume for long.
const maxHoldLease = time.Hour

// holdVolumeWritesRequest checks the volume name and the lease.
func holdVolumeWritesRequest(x *arrayv1.HoldVolumeWritesRequest) error {
	if err := v.Name("name", x.GetName()); err != nil {
		return err
	}
	return v.Range("lease_ms", x.GetLeaseMs(), 0, maxHoldLease.Milliseconds())
}

// createSnapshotSetRequest checks the volumes and the snapshot name.
func createSnapshotSetRequest(x *arrayv1.CreateSnapshotSetRequest) error {
	return v.First(validateVolumes("volumes", x.GetVolumes()), v.Name("name", x.GetName()), v.Labels("labels", x.GetLabels()))
}

// ReceiveHeader checks what a receiver stores from a transfer's header:
// the names, the size and the labels, like the requests that create them
// directly. TransferService.Receive calls it on the first message, since
// the interceptor cannot check a stream's messages in protocol order.
func ReceiveHeader(x *arrayv1.ReceiveHeader) error {
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
		serial("header.volume_serial", x.GetVolumeSerial()),
	)
}

// maxAdvance bounds one Advance call, so its single transaction stays a
// size the target commits quickly; a sender splits larger groups.
const maxAdvance = 1000

func advanceRequest(x *arrayv1.AdvanceRequest) error {
	ms := x.GetMembers()
	if err := v.Range("members", int64(len(ms)), 1, maxAdvance); err != nil {
		return err
	}
	if err := v.Text("source_array_id", x.GetSourceArrayId(), v.MaxTextLen); err != nil {
		return err
	}
	for i, m := range ms {
		f := fmt.Sprintf("members[%d].", i)
		if err := v.First(
			v.Name(f+"volume", m.GetVolume()),
			v.Required(f+"base_guid", m.GetBaseGuid()),
			v.Text(f+"base_guid", m.GetBaseGuid(), v.MaxTextLen),
			v.Name(f+"snapshot_name", m.GetSnapshotName()),
			v.Required(f+"snapshot_guid", m.GetSnapshotGuid()),
			v.Text(f+"snapshot_guid", m.GetSnapshotGuid(), v.MaxTextLen),
			v.Labels(f+"snapshot_labels", m.GetSnapshotLabels()),
		); err != nil {
			return err
		}
		if m.GetSnapshotCreated() == nil {
			return errdefs.InvalidArgument(f+"snapshot_created", "is required: the snapshot keeps its source's time")
		}
	}
	return nil
}

func pruneRequest(x *arrayv1.PruneRequest) error {
	vols := x.GetVolumes()
	if err := v.First(
		v.Name("replica", x.GetReplica()),
		v.Range("volumes", int64(len(vols)), 1, maxAdvance),
		validateRetention("retention", x.GetRetention()),
	); err != nil {
		return err
	}
	if x.GetNow() == nil {
		return errdefs.InvalidArgument("now", "is required: retention is applied at the sender's time")
	}
	for i, vol := range vols {
		if err := v.Name(fmt.Sprintf("volumes[%d]", i), vol); err != nil {
			return err
		}
	}
	return nil
}

// serial accepts an empty volume serial (a sender from before serials)
// or 24 hex digits.
func serial(field, s string) error {
	if s != "" && !array.ValidSerial(s) {
		return errdefs.InvalidArgument(field, "%s is not a volume serial; it is 24 hex digits", v.Quote(s))
	}
	return nil
}
