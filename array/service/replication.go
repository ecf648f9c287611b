package service

import (
	"context"
	"time"

	"google.golang.org/grpc"

	"github.com/volrep/volrep/array"
	"github.com/volrep/volrep/array/wire"
	"github.com/volrep/volrep/paging"
	arrayv1 "github.com/volrep/volrep/proto/volrep/array/v1"
)

// Replication serves LinkService and ReplicaService over an array's
// replication engine.
type Replication struct {
	arrayv1.UnimplementedLinkServiceServer
	arrayv1.UnimplementedReplicaServiceServer
	r array.Replication
}

// NewReplication returns the services for r.
func NewReplication(r array.Replication) *Replication { return &Replication{r: r} }

// Register adds LinkService and ReplicaService to g.
func (s *Replication) Register(g grpc.ServiceRegistrar) {
	arrayv1.RegisterLinkServiceServer(g, s)
	arrayv1.RegisterReplicaServiceServer(g, s)
}

func (s *Replication) CreateLink(ctx context.Context, req *arrayv1.CreateLinkRequest) (*arrayv1.CreateLinkResponse, error) {
	l, err := s.r.CreateLink(ctx, array.LinkSpec{Name: req.GetName(), Address: req.GetAddress(), Token: req.GetToken(),
		BandwidthLimit: req.GetBandwidthLimit(), Compression: req.GetCompression()})
	if err != nil {
		return nil, err
	}
	return &arrayv1.CreateLinkResponse{Link: wire.LinkToPB(l)}, nil
}

func (s *Replication) GetLink(ctx context.Context, req *arrayv1.GetLinkRequest) (*arrayv1.GetLinkResponse, error) {
	l, err := s.r.GetLink(ctx, req.GetName())
	if err != nil {
		return nil, err
	}
	return &arrayv1.GetLinkResponse{Link: wire.LinkToPB(l)}, nil
}

func (s *Replication) ListLinks(ctx context.Context, req *arrayv1.ListLinksRequest) (*arrayv1.ListLinksResponse, error) {
	ls, err := s.r.ListLinks(ctx)
	if err != nil {
		return nil, err
	}
	page, next, err := paging.Page(wire.Map(ls, wire.LinkToPB), (*arrayv1.Link).GetName, req)
	if err != nil {
		return nil, err
	}
	return &arrayv1.ListLinksResponse{Links: page, NextPageToken: next}, nil
}

func (s *Replication) DeleteLink(ctx context.Context, req *arrayv1.DeleteLinkRequest) (*arrayv1.DeleteLinkResponse, error) {
	return &arrayv1.DeleteLinkResponse{}, s.r.DeleteLink(ctx, req.GetName())
}

func seconds(n int64) time.Duration { return time.Duration(n) * time.Second }

func (s *Replication) ReplicateEntity(ctx context.Context, req *arrayv1.ReplicateEntityRequest) (*arrayv1.ReplicateEntityResponse, error) {
	r, err := s.r.ReplicateEntity(ctx, array.ReplicaSpec{
		Name: req.GetName(), Kind: array.KindVolume, Local: req.GetVolume(), Link: req.GetLink(), Mode: wire.Mode(req.GetMode()),
		RemotePool: req.GetRemotePool(), RemoteEntity: req.GetRemoteVolume(), LocalSnapshot: req.GetLocalSnapshot(),
		RemoteSnapshot: req.GetRemoteSnapshot(), Type: wire.Type(req.GetReplicationType()), Interval: seconds(req.GetIntervalSeconds()),
		RPO: seconds(req.GetRpoSeconds()), TargetRetention: wire.RetentionFromPB(req.GetTargetRetention()),
		SourceRetention: wire.RetentionFromPB(req.GetSourceRetention()), SyncTimeout: time.Duration(req.GetSyncTimeoutMs()) * time.Millisecond,
		PodMediator: req.GetPodMediator(), PreferPeer: req.GetPreferPeer(),
	})
	if err != nil {
		return nil, err
	}
	return &arrayv1.ReplicateEntityResponse{Replica: wire.ReplicaToPB(r)}, nil
}

func (s *Replication) ReplicateConsGroup(ctx context.Context, req *arrayv1.ReplicateConsGroupRequest) (*arrayv1.ReplicateConsGroupResponse, error) {
	r, err := s.r.ReplicateEntity(ctx, array.ReplicaSpec{
		Name: req.GetName(), Kind: array.KindGroup, Local: req.GetGroup(), Link: req.GetLink(), Mode: array.ModeCreateTarget,
		RemotePool: req.GetRemotePool(), RemoteEntity: req.GetRemoteGroup(), MemberMappings: req.GetMemberMappings(),
		Type: wire.Type(req.GetReplicationType()), Interval: seconds(req.GetIntervalSeconds()), RPO: seconds(req.GetRpoSeconds()),
		TargetRetention: wire.RetentionFromPB(req.GetTargetRetention()), SourceRetention: wire.RetentionFromPB(req.GetSourceRetention()),
		SyncTimeout: time.Duration(req.GetSyncTimeoutMs()) * time.Millisecond,
		PodMediator: req.GetPodMediator(), PreferPeer: req.GetPreferPeer(),
	})
	if err != nil {
		return nil, err
	}
	return &arrayv1.ReplicateConsGroupResponse{Replica: wire.ReplicaToPB(r)}, nil
}

func (s *Replication) GetReplica(ctx context.Context, req *arrayv1.GetReplicaRequest) (*arrayv1.GetReplicaResponse, error) {
	r, err := s.r.GetReplica(ctx, req.GetName())
	if err != nil {
		return nil, err
	}
	return &arrayv1.GetReplicaResponse{Replica: wire.ReplicaToPB(r)}, nil
}

func (s *Replication) ListReplicas(ctx context.Context, req *arrayv1.ListReplicasRequest) (*arrayv1.ListReplicasResponse, error) {
	rs, err := s.r.ListReplicas(ctx, req.GetLocalEntity())
	if err != nil {
		return nil, err
	}
	page, next, err := paging.Page(wire.Map(rs, wire.ReplicaToPB), (*arrayv1.Replica).GetName, req, req.GetLocalEntity())
	if err != nil {
		return nil, err
	}
	return &arrayv1.ListReplicasResponse{Replicas: page, NextPageToken: next}, nil
}

func (s *Replication) UpdateReplica(ctx context.Context, req *arrayv1.UpdateReplicaRequest) (*arrayv1.UpdateReplicaResponse, error) {
	u := array.ReplicaUpdate{Interval: seconds(req.GetIntervalSeconds()), RPO: seconds(req.GetRpoSeconds())}
	if req.GetTargetRetention() != nil {
		t := wire.RetentionFromPB(req.GetTargetRetention())
		u.TargetRetention = &t
	}
	if req.GetSourceRetention() != nil {
		t := wire.RetentionFromPB(req.GetSourceRetention())
		u.SourceRetention = &t
	}
	if p := req.GetPreferPeer(); p != nil {
		u.PreferPeer = &p.Value
	}
	r, err := s.r.UpdateReplica(ctx, req.GetName(), u)
	if err != nil {
		return nil, err
	}
	return &arrayv1.UpdateReplicaResponse{Replica: wire.ReplicaToPB(r)}, nil
}

func (s *Replication) DeleteReplica(ctx context.Context, req *arrayv1.DeleteReplicaRequest) (*arrayv1.DeleteReplicaResponse, error) {
	return &arrayv1.DeleteReplicaResponse{}, s.r.DeleteReplica(ctx, req.GetName(), req.GetDeleteRemote())
}

func (s *Replication) SuspendReplica(ctx context.Context, req *arrayv1.SuspendReplicaRequest) (*arrayv1.SuspendReplicaResponse, error) {
	r, err := s.r.SuspendReplica(ctx, req.GetName())
	if err != nil {
		return nil, err
	}
	return &arrayv1.SuspendReplicaResponse{Replica: wire.ReplicaToPB(r)}, nil
}

func (s *Replication) ResumeReplica(ctx context.Context, req *arrayv1.ResumeReplicaRequest) (*arrayv1.ResumeReplicaResponse, error) {
	r, err := s.r.ResumeReplica(ctx, req.GetName())
	if err != nil {
		return nil, err
	}
	return &arrayv1.ResumeReplicaResponse{Replica: wire.ReplicaToPB(r)}, nil
}

func (s *Replication) SyncReplica(ctx context.Context, req *arrayv1.SyncReplicaRequest) (*arrayv1.SyncReplicaResponse, error) {
	r, err := s.r.SyncReplica(ctx, req.GetName(), req.GetWait())
	if err != nil {
		return nil, err
	}
	return &arrayv1.SyncReplicaResponse{Replica: wire.ReplicaToPB(r)}, nil
}

func (s *Replication) ChangeReplicaType(ctx context.Context, req *arrayv1.ChangeReplicaTypeRequest) (*arrayv1.ChangeReplicaTypeResponse, error) {
	r, err := s.r.ChangeReplicaType(ctx, req.GetName(), wire.Type(req.GetReplicationType()))
	if err != nil {
		return nil, err
	}
	return &arrayv1.ChangeReplicaTypeResponse{Replica: wire.ReplicaToPB(r)}, nil
}

func (s *Replication) ReplicateSnapshot(ctx context.Context, req *arrayv1.ReplicateSnapshotRequest) (*arrayv1.ReplicateSnapshotResponse, error) {
	id, err := s.r.ReplicateSnapshot(ctx, array.SnapshotReplicateSpec{Volume: req.GetVolume(), Snapshot: req.GetSnapshot(), Link: req.GetLink(),
		RemotePool: req.GetRemotePool(), RemoteVolume: req.GetRemoteVolume(), ForceFull: req.GetForceFullCopy(),
		Snapshots: req.GetSnapshots(), RemoteLabels: req.GetRemoteVolumeLabels()})
	if err != nil {
		return nil, err
	}
	return &arrayv1.ReplicateSnapshotResponse{OperationId: id}, nil
}

// Operations serves OperationService.
type Operations struct {
	arrayv1.UnimplementedOperationServiceServer
	o array.Operations
}

// NewOperations returns OperationService over o.
func NewOperations(o array.Operations) *Operations { return &Operations{o: o} }

// Register adds OperationService to g.
func (s *Operations) Register(g grpc.ServiceRegistrar) { arrayv1.RegisterOperationServiceServer(g, s) }

func (s *Operations) GetOperation(ctx context.Context, req *arrayv1.GetOperationRequest) (*arrayv1.GetOperationResponse, error) {
	o, err := s.o.GetOperation(ctx, req.GetId())
	if err != nil {
		return nil, err
	}
	return &arrayv1.GetOperationResponse{Operation: wire.OperationToPB(o)}, nil
}

func (s *Operations) ListOperations(ctx context.Context, req *arrayv1.ListOperationsRequest) (*arrayv1.ListOperationsResponse, error) {
	os, err := s.o.ListOperations(ctx)
	if err != nil {
		return nil, err
	}
	page, next, err := paging.Page(wire.Map(os, wire.OperationToPB), operationKey, req)
	if err != nil {
		return nil, err
	}
	return &arrayv1.ListOperationsResponse{Operations: page, NextPageToken: next}, nil
}

func (s *Operations) WatchOperation(req *arrayv1.WatchOperationRequest, stream arrayv1.OperationService_WatchOperationServer) error {
	return s.o.WatchOperation(stream.Context(), req.GetId(), func(o array.Operation) error {
		return stream.Send(&arrayv1.WatchOperationResponse{Operation: wire.OperationToPB(o)})
	})
}

func (s *Operations) CancelOperation(ctx context.Context, req *arrayv1.CancelOperationRequest) (*arrayv1.CancelOperationResponse, error) {
	o, err := s.o.CancelOperation(ctx, req.GetId())
	if err != nil {
		return nil, err
	}
	return &arrayv1.CancelOperationResponse{Operation: wire.OperationToPB(o)}, nil
}

// operationKey orders operations as the engine lists them: newest first.
func operationKey(o *arrayv1.Operation) string {
	return paging.NewestFirstKey(o.GetStarted().AsTime()) + "\x00" + o.GetId()
}
