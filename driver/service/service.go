// Package service serves the driver over gRPC as DriverService. It only
// translates: requests arrive validated by the interceptor chain, and
// engine errors go back unmapped for package server to turn into codes.
package service

import (
	"context"
	"slices"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/volrep/volrep/array"
	"github.com/volrep/volrep/array/wire"

	"github.com/volrep/volrep/driver"
	"github.com/volrep/volrep/paging"
	driverv1 "github.com/volrep/volrep/proto/volrep/driver/v1"
)

// Service implements DriverService.
type Service struct {
	driverv1.UnimplementedDriverServiceServer
	d *driver.Driver
}

// New returns the service for d.
func New(d *driver.Driver) *Service { return &Service{d: d} }

// Register adds DriverService to g.
func (s *Service) Register(g grpc.ServiceRegistrar) { driverv1.RegisterDriverServiceServer(g, s) }

var replStatus = map[string]driverv1.ReplicationStatus{
	driver.ReplDisabled:      driverv1.ReplicationStatus_REPLICATION_STATUS_DISABLED,
	driver.ReplEnabled:       driverv1.ReplicationStatus_REPLICATION_STATUS_ENABLED,
	driver.ReplError:         driverv1.ReplicationStatus_REPLICATION_STATUS_ERROR,
	driver.ReplFailingOver:   driverv1.ReplicationStatus_REPLICATION_STATUS_FAILING_OVER,
	driver.ReplFailedOver:    driverv1.ReplicationStatus_REPLICATION_STATUS_FAILED_OVER,
	driver.ReplNotCapable:    driverv1.ReplicationStatus_REPLICATION_STATUS_NOT_CAPABLE,
	driver.ReplFailoverError: driverv1.ReplicationStatus_REPLICATION_STATUS_FAILOVER_ERROR,
	driver.ReplEnabling:      driverv1.ReplicationStatus_REPLICATION_STATUS_ENABLING,
}

func modelUpdate(m driver.ModelUpdate) *driverv1.ModelUpdate {
	return &driverv1.ModelUpdate{ProviderId: m.ProviderID, ReplicationStatus: replStatus[m.ReplicationStatus],
		Status: m.Status, Metadata: m.Metadata}
}

func volumeType(vt *driverv1.VolumeType) driver.VolumeType {
	return driver.VolumeType{ID: vt.GetId(), Name: vt.GetName(), ExtraSpecs: vt.GetExtraSpecs(), QoSSpecs: vt.GetQosSpecs()}
}

func (s *Service) ListBackends(ctx context.Context, req *driverv1.ListBackendsRequest) (*driverv1.ListBackendsResponse, error) {
	out := &driverv1.ListBackendsResponse{}
	for _, st := range s.d.States() {
		b := &driverv1.Backend{Name: st.Name, VolumeBackendName: st.VolumeBackendName, Up: st.Up, Reason: st.Reason,
			ActiveBackendId: st.ActiveBackendID, PrimaryArray: st.PrimaryArray}
		for _, t := range st.Targets {
			b.ReplicationTargets = append(b.ReplicationTargets, &driverv1.ReplicationTarget{BackendId: t.BackendID, SanIp: t.SanIP, Type: t.Type})
		}
		out.Backends = append(out.Backends, b)
	}
	var err error
	out.Backends, out.NextPageToken, err = paging.Page(out.Backends, (*driverv1.Backend).GetName, req)
	if err != nil {
		return nil, err
	}
	return out, nil
}

func (s *Service) GetVolumeStats(ctx context.Context, req *driverv1.GetVolumeStatsRequest) (*driverv1.GetVolumeStatsResponse, error) {
	b, err := s.d.Backend(req.GetBackend())
	if err != nil {
		return nil, err
	}
	st, err := b.GetVolumeStats(ctx, req.GetRefresh())
	if err != nil {
		return nil, err
	}
	return &driverv1.GetVolumeStatsResponse{
		VolumeBackendName: st.VolumeBackendName, VendorName: st.VendorName, DriverVersion: st.DriverVersion,
		StorageProtocol: st.StorageProtocol, TotalCapacityGb: st.TotalCapacityGB, FreeCapacityGb: st.FreeCapacityGB,
		ProvisionedCapacityGb: st.ProvisionedCapacityGB, ThinProvisioningSupport: st.ThinProvisioning,
		ReplicationEnabled: st.ReplicationEnabled, ReplicationTargets: st.ReplicationTargets,
		ReplicationType: st.ReplicationType, ReplicationCount: st.ReplicationCount, ActiveBackendId: st.ActiveBackendID,
		ConsistentGroupSnapshotEnabled: st.ConsistentGroupSnapshot, ConsistentGroupReplicationEnabled: st.ConsistentGroupReplication,
		ReservedPercentage: st.ReservedPercentage, MaxOverSubscriptionRatio: st.MaxOverSubscriptionRatio,
		BackendStateUp: st.Up, BackendStateReason: st.Reason, OnlineExtendSupport: st.OnlineExtend, QosSupport: st.QoS, Multiattach: st.Multiattach,
	}, nil
}

func (s *Service) CreateVolume(ctx context.Context, req *driverv1.CreateVolumeRequest) (*driverv1.CreateVolumeResponse, error) {
	b, err := s.d.Backend(req.GetBackend())
	if err != nil {
		return nil, err
	}
	m, err := b.CreateVolume(ctx, req.GetVolumeId(), req.GetSizeGb(), volumeType(req.GetVolumeType()), req.GetGroupId())
	if err != nil {
		return nil, err
	}
	return &driverv1.CreateVolumeResponse{ModelUpdate: modelUpdate(m)}, nil
}

func (s *Service) DeleteVolume(ctx context.Context, req *driverv1.DeleteVolumeRequest) (*driverv1.DeleteVolumeResponse, error) {
	b, err := s.d.Backend(req.GetBackend())
	if err != nil {
		return nil, err
	}
	return &driverv1.DeleteVolumeResponse{}, b.DeleteVolume(ctx, req.GetVolumeId())
}

func (s *Service) ExtendVolume(ctx context.Context, req *driverv1.ExtendVolumeRequest) (*driverv1.ExtendVolumeResponse, error) {
	b, err := s.d.Backend(req.GetBackend())
	if err != nil {
		return nil, err
	}
	var vt *driver.VolumeType
	if req.GetVolumeType() != nil {
		t := volumeType(req.GetVolumeType())
		vt = &t
	}
	return &driverv1.ExtendVolumeResponse{}, b.ExtendVolume(ctx, req.GetVolumeId(), req.GetNewSizeGb(), vt)
}

func volumePB(v driver.Volume) *driverv1.Volume {
	return &driverv1.Volume{Id: v.ID, SizeGb: v.SizeGB, ProviderId: v.ProviderID, ReplicationStatus: replStatus[v.ReplicationStatus],
		Source: v.Source, UsedBytes: v.UsedBytes}
}

func (s *Service) GetVolume(ctx context.Context, req *driverv1.GetVolumeRequest) (*driverv1.GetVolumeResponse, error) {
	b, err := s.d.Backend(req.GetBackend())
	if err != nil {
		return nil, err
	}
	v, err := b.GetVolume(ctx, req.GetVolumeId())
	if err != nil {
		return nil, err
	}
	return &driverv1.GetVolumeResponse{Volume: volumePB(v)}, nil
}

func (s *Service) ListVolumes(ctx context.Context, req *driverv1.ListVolumesRequest) (*driverv1.ListVolumesResponse, error) {
	b, err := s.d.Backend(req.GetBackend())
	if err != nil {
		return nil, err
	}
	vs, err := b.ListVolumes(ctx)
	if err != nil {
		return nil, err
	}
	all := make([]*driverv1.Volume, 0, len(vs))
	for _, v := range vs {
		all = append(all, volumePB(v))
	}
	page, next, err := paging.Page(all, (*driverv1.Volume).GetId, req, req.GetBackend())
	if err != nil {
		return nil, err
	}
	return &driverv1.ListVolumesResponse{Volumes: page, NextPageToken: next}, nil
}

func (s *Service) CreateSnapshot(ctx context.Context, req *driverv1.CreateSnapshotRequest) (*driverv1.CreateSnapshotResponse, error) {
	b, err := s.d.Backend(req.GetBackend())
	if err != nil {
		return nil, err
	}
	m, err := b.CreateSnapshot(ctx, req.GetSnapshotId(), req.GetVolumeId())
	if err != nil {
		return nil, err
	}
	return &driverv1.CreateSnapshotResponse{ModelUpdate: modelUpdate(m)}, nil
}

func (s *Service) DeleteSnapshot(ctx context.Context, req *driverv1.DeleteSnapshotRequest) (*driverv1.DeleteSnapshotResponse, error) {
	b, err := s.d.Backend(req.GetBackend())
	if err != nil {
		return nil, err
	}
	return &driverv1.DeleteSnapshotResponse{}, b.DeleteSnapshot(ctx, req.GetSnapshotId(), req.GetVolumeId())
}

func (s *Service) RevertToSnapshot(ctx context.Context, req *driverv1.RevertToSnapshotRequest) (*driverv1.RevertToSnapshotResponse, error) {
	b, err := s.d.Backend(req.GetBackend())
	if err != nil {
		return nil, err
	}
	return &driverv1.RevertToSnapshotResponse{}, b.RevertToSnapshot(ctx, req.GetVolumeId(), req.GetSnapshotId())
}

func (s *Service) ListSnapshots(ctx context.Context, req *driverv1.ListSnapshotsRequest) (*driverv1.ListSnapshotsResponse, error) {
	b, err := s.d.Backend(req.GetBackend())
	if err != nil {
		return nil, err
	}
	ids := []string{req.GetVolumeId()}
	if ids[0] == "" {
		vs, err := b.ListVolumes(ctx)
		if err != nil {
			return nil, err
		}
		ids = ids[:0]
		for _, v := range vs {
			ids = append(ids, v.ID)
		}
	}
	var all []*driverv1.Snapshot
	for _, id := range ids {
		ss, err := b.ListSnapshots(ctx, id)
		if err != nil {
			return nil, err
		}
		for _, sn := range ss {
			all = append(all, &driverv1.Snapshot{Id: sn.ID, VolumeId: sn.VolumeID, SizeGb: sn.SizeGB,
				ProviderId: sn.ProviderID, Guid: sn.GUID, Created: sn.Created.UTC().Format(time.RFC3339)})
		}
	}
	// By volume, then oldest first as the arrays list them; Created is
	// fixed-width RFC 3339 in UTC, so it sorts as the times do.
	key := func(sn *driverv1.Snapshot) string {
		return sn.GetVolumeId() + "\x00" + sn.GetCreated() + "\x00" + sn.GetId()
	}
	page, next, err := paging.Page(all, key, req, req.GetBackend(), req.GetVolumeId())
	if err != nil {
		return nil, err
	}
	return &driverv1.ListSnapshotsResponse{Snapshots: page, NextPageToken: next}, nil
}

func (s *Service) CreateVolumeFromSnapshot(ctx context.Context, req *driverv1.CreateVolumeFromSnapshotRequest) (*driverv1.CreateVolumeFromSnapshotResponse, error) {
	b, err := s.d.Backend(req.GetBackend())
	if err != nil {
		return nil, err
	}
	m, err := b.CreateVolumeFromSnapshot(ctx, req.GetVolumeId(), req.GetSnapshotId(), req.GetSourceVolumeId(), req.GetSizeGb(), volumeType(req.GetVolumeType()))
	if err != nil {
		return nil, err
	}
	return &driverv1.CreateVolumeFromSnapshotResponse{ModelUpdate: modelUpdate(m)}, nil
}

func (s *Service) CreateClonedVolume(ctx context.Context, req *driverv1.CreateClonedVolumeRequest) (*driverv1.CreateClonedVolumeResponse, error) {
	b, err := s.d.Backend(req.GetBackend())
	if err != nil {
		return nil, err
	}
	m, err := b.CreateClonedVolume(ctx, req.GetVolumeId(), req.GetSourceVolumeId(), req.GetSizeGb(), volumeType(req.GetVolumeType()))
	if err != nil {
		return nil, err
	}
	return &driverv1.CreateClonedVolumeResponse{ModelUpdate: modelUpdate(m)}, nil
}

func (s *Service) InitializeConnection(ctx context.Context, req *driverv1.InitializeConnectionRequest) (*driverv1.InitializeConnectionResponse, error) {
	b, err := s.d.Backend(req.GetBackend())
	if err != nil {
		return nil, err
	}
	c := req.GetConnector()
	ci, err := b.InitializeConnection(ctx, req.GetVolumeId(), req.GetSnapshotId(),
		driver.Connector{Host: c.GetHost(), IP: c.GetIp(), Initiator: c.GetInitiator(), Multipath: c.GetMultipath()})
	if err != nil {
		return nil, err
	}
	return &driverv1.InitializeConnectionResponse{ConnectionInfo: connectionInfo(ci)}, nil
}

func connectionInfo(ci driver.ConnectionInfo) *driverv1.ConnectionInfo {
	out := &driverv1.ConnectionInfo{DriverVolumeType: ci.DriverVolumeType, Data: ci.Data}
	if t := ci.ISCSI; t != nil {
		out.Iscsi = &driverv1.IscsiTarget{Multipath: t.Multipath, AuthMethod: "CHAP", ChapUsername: t.CHAPUser,
			ChapSecret: t.CHAPSecret, Wwn: t.WWN, Discard: true, HostName: t.HostName}
		if t.CHAPUser == "" {
			out.Iscsi.AuthMethod = ""
		}
		for _, p := range t.Paths {
			out.Iscsi.Paths = append(out.Iscsi.Paths, &driverv1.IscsiPath{Portal: p.Portal, Iqn: p.IQN, Lun: p.LUN})
		}
	}
	return out
}

func (s *Service) TerminateConnection(ctx context.Context, req *driverv1.TerminateConnectionRequest) (*driverv1.TerminateConnectionResponse, error) {
	b, err := s.d.Backend(req.GetBackend())
	if err != nil {
		return nil, err
	}
	c := req.GetConnector()
	err = b.TerminateConnection(ctx, req.GetVolumeId(), req.GetSnapshotId(), driver.Connector{Host: c.GetHost(), IP: c.GetIp(), Initiator: c.GetInitiator()})
	return &driverv1.TerminateConnectionResponse{}, err
}

func (s *Service) AttachReplica(ctx context.Context, req *driverv1.AttachReplicaRequest) (*driverv1.AttachReplicaResponse, error) {
	b, err := s.d.Backend(req.GetBackend())
	if err != nil {
		return nil, err
	}
	c := req.GetConnector()
	ra, err := b.AttachReplica(ctx, req.GetVolumeId(), req.GetBackendId(), req.GetSnapshot(),
		driver.Connector{Host: c.GetHost(), IP: c.GetIp(), Initiator: c.GetInitiator(), Multipath: c.GetMultipath()})
	if err != nil {
		return nil, err
	}
	return &driverv1.AttachReplicaResponse{ConnectionInfo: connectionInfo(ra.ConnectionInfo), Snapshot: ra.Snapshot,
		SnapshotCreated: optTS(ra.Created)}, nil
}

func (s *Service) DetachReplica(ctx context.Context, req *driverv1.DetachReplicaRequest) (*driverv1.DetachReplicaResponse, error) {
	b, err := s.d.Backend(req.GetBackend())
	if err != nil {
		return nil, err
	}
	c := req.GetConnector()
	err = b.DetachReplica(ctx, req.GetVolumeId(), req.GetBackendId(), req.GetSnapshot(),
		driver.Connector{Host: c.GetHost(), IP: c.GetIp(), Initiator: c.GetInitiator()})
	return &driverv1.DetachReplicaResponse{}, err
}

func (s *Service) Retype(ctx context.Context, req *driverv1.RetypeRequest) (*driverv1.RetypeResponse, error) {
	b, err := s.d.Backend(req.GetBackend())
	if err != nil {
		return nil, err
	}
	ok, m, err := b.Retype(ctx, req.GetVolumeId(), volumeType(req.GetNewType()))
	if err != nil {
		return nil, err
	}
	return &driverv1.RetypeResponse{Retyped: ok, ModelUpdate: modelUpdate(m)}, nil
}

var health = map[string]driverv1.ReplicationHealth{
	driver.Healthy:  driverv1.ReplicationHealth_REPLICATION_HEALTH_HEALTHY,
	driver.Degraded: driverv1.ReplicationHealth_REPLICATION_HEALTH_DEGRADED,
	driver.Error:    driverv1.ReplicationHealth_REPLICATION_HEALTH_ERROR,
}

func optTS(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}

func (s *Service) GetReplicationInfo(ctx context.Context, req *driverv1.GetReplicationInfoRequest) (*driverv1.GetReplicationInfoResponse, error) {
	b, err := s.d.Backend(req.GetBackend())
	if err != nil {
		return nil, err
	}
	ri, err := b.GetReplicationInfo(ctx, req.GetVolumeId())
	if err != nil {
		return nil, err
	}
	out := &driverv1.GetReplicationInfoResponse{Status: health[ri.Status], StatusMessage: ri.Message, LastSyncTime: optTS(ri.LastSyncTime),
		LastSyncDurationSeconds: ri.LastSyncDuration.Seconds(), LastSyncBytes: ri.LastSyncBytes, LagSeconds: int64(ri.Lag / time.Second)}
	for _, t := range ri.Targets {
		out.Targets = append(out.Targets, &driverv1.TargetReplicationInfo{BackendId: t.BackendID, Type: t.Type, Status: health[t.Status],
			StatusMessage: t.Message, LastSyncTime: optTS(t.LastSyncTime), LastSyncDurationSeconds: t.LastSyncDuration.Seconds(),
			LastSyncBytes: t.LastSyncBytes, LagSeconds: int64(t.Lag / time.Second), LastSnapshot: t.LastSnapshot,
			PrimaryPodState: t.PrimaryPodState, TargetPodState: t.TargetPodState, PrimaryWrites: t.PrimaryWrites, TargetWrites: t.TargetWrites, MediatorState: t.MediatorState,
			MediatorMessage: t.MediatorMessage, MediatorHeld: t.MediatorHeld, MediatorName: t.MediatorName,
			TargetOwnState: t.TargetOwn.State, TargetOwnWrites: t.TargetOwn.Writes, TargetOwnMessage: t.TargetOwn.Message, TargetMediatorHeld: t.TargetOwn.MediatorHeld})
	}
	return out, nil
}

func (s *Service) SetReplicationSchedule(ctx context.Context, req *driverv1.SetReplicationScheduleRequest) (*driverv1.SetReplicationScheduleResponse, error) {
	b, err := s.d.Backend(req.GetBackend())
	if err != nil {
		return nil, err
	}
	sch, err := b.SetReplicationSchedule(ctx, driver.Schedule{Interval: time.Duration(req.GetIntervalSeconds()) * time.Second,
		Retention: array.Retention{AllFor: time.Duration(req.GetRetentionShortTermSeconds()) * time.Second,
			PerDay: int(req.GetRetentionLongTermPerDay()), Days: int(req.GetRetentionLongTermDays())}})
	if err != nil {
		return nil, err
	}
	return &driverv1.SetReplicationScheduleResponse{IntervalSeconds: int64(sch.Interval / time.Second),
		RetentionShortTermSeconds: int64(sch.Retention.AllFor / time.Second), RetentionLongTermPerDay: int64(sch.Retention.PerDay),
		RetentionLongTermDays: int64(sch.Retention.Days)}, nil
}

func (s *Service) SnapshotReplicate(ctx context.Context, req *driverv1.SnapshotReplicateRequest) (*driverv1.SnapshotReplicateResponse, error) {
	ids := req.GetSnapshotIds()
	if req.GetSnapshotId() != "" && !slices.Contains(ids, req.GetSnapshotId()) {
		ids = append([]string{req.GetSnapshotId()}, ids...)
	}
	if n := req.GetCount(); n > 0 {
		var err error
		if ids, err = s.d.NewestSnapshots(ctx, req.GetBackend(), req.GetVolumeId(), req.GetSnapshotId(), int(n)); err != nil {
			return nil, err
		}
	}
	id, err := s.d.SnapshotsReplicate(ctx, req.GetBackend(), req.GetVolumeId(), req.GetDestinationBackend(), ids, req.GetForceFullCopy())
	if err != nil {
		return nil, err
	}
	return &driverv1.SnapshotReplicateResponse{OperationId: id}, nil
}

var opStates = map[string]driverv1.OperationState{
	array.OpRunning: driverv1.OperationState_OPERATION_STATE_RUNNING, array.OpSucceeded: driverv1.OperationState_OPERATION_STATE_SUCCEEDED,
	array.OpFailed: driverv1.OperationState_OPERATION_STATE_FAILED, array.OpCanceled: driverv1.OperationState_OPERATION_STATE_CANCELED}

func operationPB(o array.Operation) *driverv1.Operation {
	base, _ := strings.CutPrefix(o.Result.BaseSnapshot, "snapshot-")
	return &driverv1.Operation{Id: o.ID, Kind: o.Kind, Target: o.Target, State: opStates[o.State], Phase: o.Phase,
		BytesDone: o.Done, BytesTotal: o.Total, RateBytesPerSecond: o.Rate, EtaSeconds: o.ETA.Seconds(),
		Started: optTS(o.Started), Finished: optTS(o.Finished), Error: o.Err, ErrorCode: o.ErrCode,
		BaseSnapshotId: base, Incremental: o.Result.Incremental, BytesSent: o.Result.BytesSent,
		ResumedFrom: o.Result.ResumedFrom, AlreadyPresent: o.Result.AlreadyPresent,
		Steps: wire.Map(o.Result.Steps, stepPB), WritesHeldSeconds: o.WritesHeld.Seconds()}
}

func stepPB(r array.SnapshotReplicateResult) *driverv1.SnapshotReplicateStep {
	snap, _ := strings.CutPrefix(r.RemoteSnapshot, "snapshot-")
	base, _ := strings.CutPrefix(r.BaseSnapshot, "snapshot-")
	return &driverv1.SnapshotReplicateStep{SnapshotId: snap, BaseSnapshotId: base, Incremental: r.Incremental,
		BytesSent: r.BytesSent, AlreadyPresent: r.AlreadyPresent}
}

func (s *Service) operations(backend string) (array.Operations, error) {
	b, err := s.d.Backend(backend)
	if err != nil {
		return nil, err
	}
	return b.Operations()
}

func (s *Service) GetOperation(ctx context.Context, req *driverv1.GetOperationRequest) (*driverv1.GetOperationResponse, error) {
	ops, err := s.operations(req.GetBackend())
	if err != nil {
		return nil, err
	}
	o, err := ops.GetOperation(ctx, req.GetOperationId())
	if err != nil {
		return nil, err
	}
	return &driverv1.GetOperationResponse{Operation: operationPB(o)}, nil
}

func (s *Service) WatchOperation(req *driverv1.WatchOperationRequest, stream driverv1.DriverService_WatchOperationServer) error {
	ops, err := s.operations(req.GetBackend())
	if err != nil {
		return err
	}
	return ops.WatchOperation(stream.Context(), req.GetOperationId(), func(o array.Operation) error {
		return stream.Send(&driverv1.WatchOperationResponse{Operation: operationPB(o)})
	})
}

func (s *Service) CancelOperation(ctx context.Context, req *driverv1.CancelOperationRequest) (*driverv1.CancelOperationResponse, error) {
	ops, err := s.operations(req.GetBackend())
	if err != nil {
		return nil, err
	}
	o, err := ops.CancelOperation(ctx, req.GetOperationId())
	if err != nil {
		return nil, err
	}
	return &driverv1.CancelOperationResponse{Operation: operationPB(o)}, nil
}

func (s *Service) VerifySnapshot(ctx context.Context, req *driverv1.VerifySnapshotRequest) (*driverv1.VerifySnapshotResponse, error) {
	v, err := s.d.VerifySnapshot(ctx, req.GetBackend(), req.GetSnapshotId(), req.GetVolumeId(), req.GetDestinationBackend())
	if err != nil {
		return nil, err
	}
	return &driverv1.VerifySnapshotResponse{Match: v.Match, BlocksCompared: v.Blocks, FirstMismatchOffset: v.FirstMismatch,
		SourceCrc32C: v.SourceCRC, DestinationCrc32C: v.DestCRC, SizeBytes: v.Size}, nil
}

func (s *Service) FailoverHost(ctx context.Context, req *driverv1.FailoverHostRequest) (*driverv1.FailoverHostResponse, error) {
	b, err := s.d.Backend(req.GetBackend())
	if err != nil {
		return nil, err
	}
	res, err := b.FailoverHost(ctx, req.GetVolumeIds(), req.GetSecondaryId())
	if err != nil {
		return nil, err
	}
	out := &driverv1.FailoverHostResponse{ActiveBackendId: res.ActiveBackendID, FailbackBytes: res.FailbackBytes}
	for _, v := range res.Volumes {
		out.VolumeUpdates = append(out.VolumeUpdates, &driverv1.VolumeUpdate{VolumeId: v.VolumeID, Updates: modelUpdate(v.Updates)})
	}
	return out, nil
}

func (s *Service) FailoverCompleted(ctx context.Context, req *driverv1.FailoverCompletedRequest) (*driverv1.FailoverCompletedResponse, error) {
	b, err := s.d.Backend(req.GetBackend())
	if err != nil {
		return nil, err
	}
	return &driverv1.FailoverCompletedResponse{}, b.FailoverCompleted(ctx, req.GetActiveBackendId())
}

func (s *Service) MigrateVolume(ctx context.Context, req *driverv1.MigrateVolumeRequest) (*driverv1.MigrateVolumeResponse, error) {
	id, err := s.d.MigrateVolume(ctx, req.GetBackend(), req.GetVolumeId(), req.GetDestinationBackend(), driver.MigrateOptions{
		SmallBytes: req.GetSmallPassBytes(), SmallTime: time.Duration(req.GetSmallPassMs()) * time.Millisecond, MaxPasses: int(req.GetMaxPasses())})
	if err != nil {
		return nil, err
	}
	return &driverv1.MigrateVolumeResponse{OperationId: id}, nil
}
