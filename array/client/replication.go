package client

import (
	"context"
	"errors"
	"io"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/volrep/volrep/array"
	"github.com/volrep/volrep/array/wire"
	"github.com/volrep/volrep/paging"
	arrayv1 "github.com/volrep/volrep/proto/volrep/array/v1"
)

// Replication is array.Replication over gRPC.
type Replication struct {
	links    arrayv1.LinkServiceClient
	replicas arrayv1.ReplicaServiceClient
	ops      arrayv1.OperationServiceClient
	transfer arrayv1.TransferServiceClient
}

var _ array.Replication = (*Replication)(nil)

// NewReplication returns a replication client over cc.
func NewReplication(cc grpc.ClientConnInterface) *Replication {
	return &Replication{links: arrayv1.NewLinkServiceClient(cc), replicas: arrayv1.NewReplicaServiceClient(cc),
		ops: arrayv1.NewOperationServiceClient(cc), transfer: arrayv1.NewTransferServiceClient(cc)}
}

// GetPodCopy reports a pod as the array, its non-preferred side, sees it.
func (c *Replication) GetPodCopy(ctx context.Context, pod string) (array.PodCopy, error) {
	r, err := c.transfer.GetPodCopy(ctx, &arrayv1.GetPodCopyRequest{Pod: pod})
	if err != nil {
		return array.PodCopy{}, err
	}
	return wire.PodCopyFromPB(r.GetPod()), nil
}

func (c *Replication) CreateLink(ctx context.Context, spec array.LinkSpec) (array.Link, error) {
	r, err := c.links.CreateLink(ctx, &arrayv1.CreateLinkRequest{Name: spec.Name, Address: spec.Address, Token: spec.Token,
		BandwidthLimit: spec.BandwidthLimit, Compression: spec.Compression})
	if err != nil {
		return array.Link{}, err
	}
	return wire.LinkFromPB(r.GetLink()), nil
}

func (c *Replication) GetLink(ctx context.Context, name string) (array.Link, error) {
	r, err := c.links.GetLink(ctx, &arrayv1.GetLinkRequest{Name: name})
	if err != nil {
		return array.Link{}, err
	}
	return wire.LinkFromPB(r.GetLink()), nil
}

func (c *Replication) ListLinks(ctx context.Context) ([]array.Link, error) {
	return paging.All(ctx, func(ctx context.Context, token string) ([]array.Link, string, error) {
		r, err := c.links.ListLinks(ctx, &arrayv1.ListLinksRequest{PageSize: paging.MaxPageSize, PageToken: token})
		if err != nil {
			return nil, "", err
		}
		return wire.Map(r.GetLinks(), wire.LinkFromPB), r.GetNextPageToken(), nil
	})
}

func (c *Replication) DeleteLink(ctx context.Context, name string) error {
	_, err := c.links.DeleteLink(ctx, &arrayv1.DeleteLinkRequest{Name: name})
	return err
}

func secs(d time.Duration) int64 { return int64(d / time.Second) }

func (c *Replication) ReplicateEntity(ctx context.Context, s array.ReplicaSpec) (array.Replica, error) {
	var r interface{ GetReplica() *arrayv1.Replica }
	var err error
	if s.Kind == array.KindGroup {
		r, err = c.replicas.ReplicateConsGroup(ctx, &arrayv1.ReplicateConsGroupRequest{Name: s.Name, Group: s.Local, Link: s.Link,
			RemotePool: s.RemotePool, RemoteGroup: s.RemoteEntity, MemberMappings: s.MemberMappings, ReplicationType: wire.TypeToPB(s.Type),
			IntervalSeconds: secs(s.Interval), RpoSeconds: secs(s.RPO), TargetRetention: wire.RetentionToPB(s.TargetRetention),
			SourceRetention: wire.RetentionToPB(s.SourceRetention), SyncTimeoutMs: s.SyncTimeout.Milliseconds(),
			PodMediator: s.PodMediator, PreferPeer: s.PreferPeer})
	} else {
		mode := arrayv1.ReplicaMode_REPLICA_MODE_UNSPECIFIED
		switch s.Mode {
		case array.ModeCreateTarget:
			mode = arrayv1.ReplicaMode_REPLICA_MODE_CREATE_TARGET
		case array.ModeExistingTarget:
			mode = arrayv1.ReplicaMode_REPLICA_MODE_EXISTING_TARGET
		case array.ModeUseBase:
			mode = arrayv1.ReplicaMode_REPLICA_MODE_USE_BASE
		}
		r, err = c.replicas.ReplicateEntity(ctx, &arrayv1.ReplicateEntityRequest{Name: s.Name, Volume: s.Local, Link: s.Link, Mode: mode,
			RemotePool: s.RemotePool, RemoteVolume: s.RemoteEntity, LocalSnapshot: s.LocalSnapshot, RemoteSnapshot: s.RemoteSnapshot,
			ReplicationType: wire.TypeToPB(s.Type), IntervalSeconds: secs(s.Interval), RpoSeconds: secs(s.RPO),
			TargetRetention: wire.RetentionToPB(s.TargetRetention), SourceRetention: wire.RetentionToPB(s.SourceRetention),
			SyncTimeoutMs: s.SyncTimeout.Milliseconds(), PodMediator: s.PodMediator, PreferPeer: s.PreferPeer})
	}
	if err != nil {
		return array.Replica{}, err
	}
	return wire.ReplicaFromPB(r.GetReplica()), nil
}

func (c *Replication) GetReplica(ctx context.Context, name string) (array.Replica, error) {
	r, err := c.replicas.GetReplica(ctx, &arrayv1.GetReplicaRequest{Name: name})
	if err != nil {
		return array.Replica{}, err
	}
	return wire.ReplicaFromPB(r.GetReplica()), nil
}

func (c *Replication) ListReplicas(ctx context.Context, local string) ([]array.Replica, error) {
	return paging.All(ctx, func(ctx context.Context, token string) ([]array.Replica, string, error) {
		r, err := c.replicas.ListReplicas(ctx, &arrayv1.ListReplicasRequest{LocalEntity: local, PageSize: paging.MaxPageSize, PageToken: token})
		if err != nil {
			return nil, "", err
		}
		return wire.Map(r.GetReplicas(), wire.ReplicaFromPB), r.GetNextPageToken(), nil
	})
}

func (c *Replication) UpdateReplica(ctx context.Context, name string, u array.ReplicaUpdate) (array.Replica, error) {
	req := &arrayv1.UpdateReplicaRequest{Name: name, IntervalSeconds: secs(u.Interval), RpoSeconds: secs(u.RPO)}
	if u.TargetRetention != nil {
		req.TargetRetention = wire.RetentionToPB(*u.TargetRetention)
	}
	if u.SourceRetention != nil {
		req.SourceRetention = wire.RetentionToPB(*u.SourceRetention)
	}
	if u.PreferPeer != nil {
		req.PreferPeer = wrapperspb.Bool(*u.PreferPeer)
	}
	r, err := c.replicas.UpdateReplica(ctx, req)
	if err != nil {
		return array.Replica{}, err
	}
	return wire.ReplicaFromPB(r.GetReplica()), nil
}

func (c *Replication) DeleteReplica(ctx context.Context, name string, deleteRemote bool) error {
	_, err := c.replicas.DeleteReplica(ctx, &arrayv1.DeleteReplicaRequest{Name: name, DeleteRemote: deleteRemote})
	return err
}

func (c *Replication) SuspendReplica(ctx context.Context, name string) (array.Replica, error) {
	r, err := c.replicas.SuspendReplica(ctx, &arrayv1.SuspendReplicaRequest{Name: name})
	if err != nil {
		return array.Replica{}, err
	}
	return wire.ReplicaFromPB(r.GetReplica()), nil
}

func (c *Replication) ResumeReplica(ctx context.Context, name string) (array.Replica, error) {
	r, err := c.replicas.ResumeReplica(ctx, &arrayv1.ResumeReplicaRequest{Name: name})
	if err != nil {
		return array.Replica{}, err
	}
	return wire.ReplicaFromPB(r.GetReplica()), nil
}

func (c *Replication) SyncReplica(ctx context.Context, name string, wait bool) (array.Replica, error) {
	r, err := c.replicas.SyncReplica(ctx, &arrayv1.SyncReplicaRequest{Name: name, Wait: wait})
	if err != nil {
		return array.Replica{}, err
	}
	return wire.ReplicaFromPB(r.GetReplica()), nil
}

func (c *Replication) ChangeReplicaType(ctx context.Context, name, typ string) (array.Replica, error) {
	r, err := c.replicas.ChangeReplicaType(ctx, &arrayv1.ChangeReplicaTypeRequest{Name: name, ReplicationType: wire.TypeToPB(typ)})
	if err != nil {
		return array.Replica{}, err
	}
	return wire.ReplicaFromPB(r.GetReplica()), nil
}

func (c *Replication) ReplicateSnapshot(ctx context.Context, s array.SnapshotReplicateSpec) (string, error) {
	r, err := c.replicas.ReplicateSnapshot(ctx, &arrayv1.ReplicateSnapshotRequest{Volume: s.Volume, Snapshot: s.Snapshot, Link: s.Link,
		RemotePool: s.RemotePool, RemoteVolume: s.RemoteVolume, ForceFullCopy: s.ForceFull,
		Snapshots: s.Snapshots, RemoteVolumeLabels: s.RemoteLabels})
	if err != nil {
		return "", err
	}
	return r.GetOperationId(), nil
}

func (c *Replication) GetOperation(ctx context.Context, id string) (array.Operation, error) {
	r, err := c.ops.GetOperation(ctx, &arrayv1.GetOperationRequest{Id: id})
	if err != nil {
		return array.Operation{}, err
	}
	return wire.OperationFromPB(r.GetOperation()), nil
}

func (c *Replication) ListOperations(ctx context.Context) ([]array.Operation, error) {
	return paging.All(ctx, func(ctx context.Context, token string) ([]array.Operation, string, error) {
		r, err := c.ops.ListOperations(ctx, &arrayv1.ListOperationsRequest{PageSize: paging.MaxPageSize, PageToken: token})
		if err != nil {
			return nil, "", err
		}
		return wire.Map(r.GetOperations(), wire.OperationFromPB), r.GetNextPageToken(), nil
	})
}

func (c *Replication) WatchOperation(ctx context.Context, id string, fn func(array.Operation) error) error {
	stream, err := c.ops.WatchOperation(ctx, &arrayv1.WatchOperationRequest{Id: id})
	if err != nil {
		return err
	}
	for {
		r, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if err := fn(wire.OperationFromPB(r.GetOperation())); err != nil {
			return err
		}
	}
}

func (c *Replication) CancelOperation(ctx context.Context, id string) (array.Operation, error) {
	r, err := c.ops.CancelOperation(ctx, &arrayv1.CancelOperationRequest{Id: id})
	if err != nil {
		return array.Operation{}, err
	}
	return wire.OperationFromPB(r.GetOperation()), nil
}
