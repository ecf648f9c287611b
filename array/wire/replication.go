package wire

import (
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/volrep/volrep/array"
	arrayv1 "github.com/volrep/volrep/proto/volrep/array/v1"
)

var linkStates = map[string]arrayv1.LinkState{
	array.LinkConnected:    arrayv1.LinkState_LINK_STATE_CONNECTED,
	array.LinkUnreachable:  arrayv1.LinkState_LINK_STATE_UNREACHABLE,
	array.LinkUnauthorized: arrayv1.LinkState_LINK_STATE_UNAUTHORIZED,
}

func LinkToPB(l array.Link) *arrayv1.Link {
	return &arrayv1.Link{Name: l.Name, Address: l.Address, State: linkStates[l.State], RemoteArrayName: l.RemoteArrayName,
		RemoteArrayId: l.RemoteArrayID, LastError: l.LastError, LastChecked: ts(l.LastChecked), ClockSkewMs: l.ClockSkew.Milliseconds(),
		BandwidthLimit: l.BandwidthLimit, Compression: l.Compression, PodsOwedRelease: l.PodsOwedRelease}
}

func LinkFromPB(l *arrayv1.Link) array.Link {
	return array.Link{Name: l.GetName(), Address: l.GetAddress(), State: reverse(linkStates, l.GetState()), RemoteArrayName: l.GetRemoteArrayName(),
		RemoteArrayID: l.GetRemoteArrayId(), LastError: l.GetLastError(), LastChecked: l.GetLastChecked().AsTime(),
		ClockSkew: time.Duration(l.GetClockSkewMs()) * time.Millisecond, BandwidthLimit: l.GetBandwidthLimit(), Compression: l.GetCompression(),
		PodsOwedRelease: l.GetPodsOwedRelease()}
}

var (
	kinds = map[string]arrayv1.EntityKind{
		array.KindVolume: arrayv1.EntityKind_ENTITY_KIND_VOLUME, array.KindGroup: arrayv1.EntityKind_ENTITY_KIND_CONSISTENCY_GROUP}
	types = map[string]arrayv1.ReplicationType{
		array.TypeAsync: arrayv1.ReplicationType_REPLICATION_TYPE_ASYNC, array.TypeSync: arrayv1.ReplicationType_REPLICATION_TYPE_SYNC}
	modes = map[string]arrayv1.ReplicaMode{
		array.ModeCreateTarget: arrayv1.ReplicaMode_REPLICA_MODE_CREATE_TARGET, array.ModeExistingTarget: arrayv1.ReplicaMode_REPLICA_MODE_EXISTING_TARGET,
		array.ModeUseBase: arrayv1.ReplicaMode_REPLICA_MODE_USE_BASE}
	states = map[string]arrayv1.ReplicaState{
		array.StateInitializing: arrayv1.ReplicaState_REPLICA_STATE_INITIALIZING, array.StateActive: arrayv1.ReplicaState_REPLICA_STATE_ACTIVE,
		array.StateSuspended: arrayv1.ReplicaState_REPLICA_STATE_SUSPENDED, array.StateDegraded: arrayv1.ReplicaState_REPLICA_STATE_DEGRADED,
		array.StateError: arrayv1.ReplicaState_REPLICA_STATE_ERROR}
	syncStates = map[string]arrayv1.SyncState{
		array.SyncIdle: arrayv1.SyncState_SYNC_STATE_IDLE, array.SyncInProgress: arrayv1.SyncState_SYNC_STATE_SYNC_IN_PROGRESS,
		array.SyncInSync: arrayv1.SyncState_SYNC_STATE_IN_SYNC, array.SyncOutOfSync: arrayv1.SyncState_SYNC_STATE_OUT_OF_SYNC}
	rpoStates = map[string]arrayv1.RPOState{array.RPOOk: arrayv1.RPOState_RPO_STATE_OK, array.RPOLagging: arrayv1.RPOState_RPO_STATE_LAGGING}
)

func reverse[E comparable](m map[string]E, v E) string {
	for k, e := range m {
		if e == v {
			return k
		}
	}
	return ""
}

// Type converts an API replication type; unspecified is "".
func Type(t arrayv1.ReplicationType) string { return reverse(types, t) }

// TypeToPB converts a replication type to the API's.
func TypeToPB(t string) arrayv1.ReplicationType { return types[t] }

// Mode converts an API replica mode; unspecified is "".
func Mode(m arrayv1.ReplicaMode) string { return reverse(modes, m) }

func ts(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}

func fromTS(t *timestamppb.Timestamp) time.Time {
	if t == nil {
		return time.Time{}
	}
	return t.AsTime()
}

func RetentionToPB(r array.Retention) *arrayv1.Retention {
	return &arrayv1.Retention{AllForSeconds: int64(r.AllFor / time.Second), PerDay: int32(r.PerDay), Days: int32(r.Days)}
}

func RetentionFromPB(r *arrayv1.Retention) array.Retention {
	return array.Retention{AllFor: time.Duration(r.GetAllForSeconds()) * time.Second, PerDay: int(r.GetPerDay()), Days: int(r.GetDays())}
}

func ReplicaToPB(r array.Replica) *arrayv1.Replica {
	return &arrayv1.Replica{Name: r.Name, Kind: kinds[r.Kind], LocalEntity: r.Local, Link: r.Link, RemotePool: r.RemotePool,
		RemoteEntity: r.RemoteEntity, MemberMappings: r.MemberMappings, ReplicationType: types[r.Type], State: states[r.State],
		SyncState: syncStates[r.SyncState], StateMessage: r.Message, IntervalSeconds: int64(r.Interval / time.Second),
		RpoSeconds: int64(r.RPO / time.Second), RpoState: rpoStates[r.RPOState], TargetRetention: RetentionToPB(r.TargetRetention),
		SourceRetention: RetentionToPB(r.SourceRetention), LastSynchronized: ts(r.LastSynchronized), LastSyncBytes: r.LastSyncBytes,
		LastSyncDurationSeconds: r.LastSyncDuration.Seconds(), ThroughputBytesPerSecond: r.Throughput,
		LagSeconds: int64(r.Lag / time.Second), LastSnapshot: r.LastSnapshot, Created: ts(r.Created), TotalBytesSent: r.TotalBytesSent,
		Mode: modes[r.Mode], PeerState: r.PeerState, LastResyncBytes: r.LastResyncBytes, DirtyBytes: r.DirtyBytes, MirroredBytes: r.MirroredBytes,
		SyncTimeoutMs: r.SyncTimeout.Milliseconds(), PodMediator: r.PodMediator, PodState: r.PodState, Writes: r.Writes, PeerWrites: r.PeerWrites, MediatorState: r.MediatorState,
		MediatorMessage: r.MediatorMessage, MediatorHeld: r.MediatorHeld, PreferPeer: r.PreferPeer,
		MediatorName: r.MediatorName}
}

func ReplicaFromPB(r *arrayv1.Replica) array.Replica {
	return array.Replica{
		ReplicaSpec: array.ReplicaSpec{Name: r.GetName(), Kind: reverse(kinds, r.GetKind()), Local: r.GetLocalEntity(), Link: r.GetLink(),
			RemotePool: r.GetRemotePool(), RemoteEntity: r.GetRemoteEntity(), MemberMappings: r.GetMemberMappings(), Mode: Mode(r.GetMode()),
			Type: reverse(types, r.GetReplicationType()), Interval: time.Duration(r.GetIntervalSeconds()) * time.Second,
			RPO: time.Duration(r.GetRpoSeconds()) * time.Second, TargetRetention: RetentionFromPB(r.GetTargetRetention()),
			SourceRetention: RetentionFromPB(r.GetSourceRetention()), SyncTimeout: time.Duration(r.GetSyncTimeoutMs()) * time.Millisecond,
			PodMediator: r.GetPodMediator(), PreferPeer: r.GetPreferPeer()},
		State: reverse(states, r.GetState()), SyncState: reverse(syncStates, r.GetSyncState()), Message: r.GetStateMessage(),
		RPOState: reverse(rpoStates, r.GetRpoState()), LastSynchronized: fromTS(r.GetLastSynchronized()), LastSyncBytes: r.GetLastSyncBytes(),
		LastSyncDuration: time.Duration(r.GetLastSyncDurationSeconds() * float64(time.Second)), Throughput: r.GetThroughputBytesPerSecond(),
		Lag: time.Duration(r.GetLagSeconds()) * time.Second, LastSnapshot: r.GetLastSnapshot(), Created: fromTS(r.GetCreated()),
		TotalBytesSent: r.GetTotalBytesSent(), PeerState: r.GetPeerState(), LastResyncBytes: r.GetLastResyncBytes(), DirtyBytes: r.GetDirtyBytes(), MirroredBytes: r.GetMirroredBytes(),
		PodState: r.GetPodState(), Writes: r.GetWrites(), PeerWrites: r.GetPeerWrites(), MediatorState: r.GetMediatorState(), MediatorMessage: r.GetMediatorMessage(), MediatorHeld: r.GetMediatorHeld(),
		MediatorName: r.GetMediatorName(),
	}
}

var opStates = map[string]arrayv1.OperationState{
	array.OpRunning: arrayv1.OperationState_OPERATION_STATE_RUNNING, array.OpSucceeded: arrayv1.OperationState_OPERATION_STATE_SUCCEEDED,
	array.OpFailed: arrayv1.OperationState_OPERATION_STATE_FAILED, array.OpCanceled: arrayv1.OperationState_OPERATION_STATE_CANCELED}

func OperationToPB(o array.Operation) *arrayv1.Operation {
	return &arrayv1.Operation{Id: o.ID, Kind: o.Kind, Target: o.Target, State: opStates[o.State], Phase: o.Phase,
		BytesDone: o.Done, BytesTotal: o.Total, RateBytesPerSecond: o.Rate, EtaSeconds: o.ETA.Seconds(),
		Started: ts(o.Started), Finished: ts(o.Finished), Error: o.Err, ErrorCode: o.ErrCode,
		SnapshotReplicate: snapResultToPB(o.Result)}
}

func snapResultToPB(r array.SnapshotReplicateResult) *arrayv1.SnapshotReplicateResult {
	return &arrayv1.SnapshotReplicateResult{BaseSnapshot: r.BaseSnapshot, BaseGuid: r.BaseGUID, Incremental: r.Incremental,
		BytesSent: r.BytesSent, BytesTotal: r.BytesTotal, ResumedFrom: r.ResumedFrom, RemoteVolume: r.RemoteVolume,
		RemoteSnapshot: r.RemoteSnapshot, AlreadyPresent: r.AlreadyPresent, Steps: Map(r.Steps, snapResultToPB)}
}

func snapResultFromPB(r *arrayv1.SnapshotReplicateResult) array.SnapshotReplicateResult {
	var steps []array.SnapshotReplicateResult
	if len(r.GetSteps()) > 0 {
		steps = Map(r.GetSteps(), snapResultFromPB)
	}
	return array.SnapshotReplicateResult{BaseSnapshot: r.GetBaseSnapshot(), BaseGUID: r.GetBaseGuid(), Incremental: r.GetIncremental(),
		BytesSent: r.GetBytesSent(), BytesTotal: r.GetBytesTotal(), ResumedFrom: r.GetResumedFrom(), RemoteVolume: r.GetRemoteVolume(),
		RemoteSnapshot: r.GetRemoteSnapshot(), AlreadyPresent: r.GetAlreadyPresent(), Steps: steps}
}

func OperationFromPB(o *arrayv1.Operation) array.Operation {
	r := o.GetSnapshotReplicate()
	return array.Operation{ID: o.GetId(), Kind: o.GetKind(), Target: o.GetTarget(), State: reverse(opStates, o.GetState()), Phase: o.GetPhase(),
		Done: o.GetBytesDone(), Total: o.GetBytesTotal(), Rate: o.GetRateBytesPerSecond(),
		ETA: time.Duration(o.GetEtaSeconds() * float64(time.Second)), Started: fromTS(o.GetStarted()), Finished: fromTS(o.GetFinished()),
		Err: o.GetError(), ErrCode: o.GetErrorCode(), Result: snapResultFromPB(r)}
}

func PodCopyToPB(c array.PodCopy) *arrayv1.PodCopy {
	return &arrayv1.PodCopy{Pod: c.Pod, State: c.State, Writes: c.Writes, Volumes: c.Volumes,
		MediatorState: c.MediatorState, MediatorHeld: c.MediatorHeld, Message: c.Message, SourceArrayId: c.SourceArrayID}
}

func PodCopyFromPB(c *arrayv1.PodCopy) array.PodCopy {
	return array.PodCopy{Pod: c.GetPod(), State: c.GetState(), Writes: c.GetWrites(), Volumes: c.GetVolumes(),
		MediatorState: c.GetMediatorState(), MediatorHeld: c.GetMediatorHeld(), Message: c.GetMessage(), SourceArrayID: c.GetSourceArrayId()}
}
