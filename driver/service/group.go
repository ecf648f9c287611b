package service

import (
	"context"
	"time"

	"github.com/volrep/volrep/driver"
	driverv1 "github.com/volrep/volrep/proto/volrep/driver/v1"
)

func groupType(gt *driverv1.GroupType) driver.GroupType {
	return driver.GroupType{ID: gt.GetId(), Name: gt.GetName(), Specs: gt.GetGroupSpecs()}
}

func volumeUpdates(us []driver.VolumeUpdate) []*driverv1.VolumeUpdate {
	out := make([]*driverv1.VolumeUpdate, len(us))
	for i, u := range us {
		out[i] = &driverv1.VolumeUpdate{VolumeId: u.VolumeID, Updates: modelUpdate(u.Updates)}
	}
	return out
}

// groupCall finds the request's backend and runs one of its group calls.
func groupCall[T any](s *Service, backend string, call func(*driver.Backend) (T, error)) (T, error) {
	b, err := s.d.Backend(backend)
	if err != nil {
		var zero T
		return zero, err
	}
	return call(b)
}

func (s *Service) CreateGroup(ctx context.Context, req *driverv1.CreateGroupRequest) (*driverv1.CreateGroupResponse, error) {
	m, err := groupCall(s, req.GetBackend(), func(b *driver.Backend) (driver.ModelUpdate, error) {
		return b.CreateGroup(ctx, req.GetGroupId(), groupType(req.GetGroupType()))
	})
	if err != nil {
		return nil, err
	}
	return &driverv1.CreateGroupResponse{ModelUpdate: modelUpdate(m)}, nil
}

func (s *Service) DeleteGroup(ctx context.Context, req *driverv1.DeleteGroupRequest) (*driverv1.DeleteGroupResponse, error) {
	r, err := groupCall(s, req.GetBackend(), func(b *driver.Backend) (driver.GroupResult, error) {
		return b.DeleteGroup(ctx, req.GetGroupId(), req.GetVolumeIds())
	})
	if err != nil {
		return nil, err
	}
	return &driverv1.DeleteGroupResponse{ModelUpdate: modelUpdate(r.Group), VolumeUpdates: volumeUpdates(r.Volumes)}, nil
}

func (s *Service) UpdateGroup(ctx context.Context, req *driverv1.UpdateGroupRequest) (*driverv1.UpdateGroupResponse, error) {
	m, err := groupCall(s, req.GetBackend(), func(b *driver.Backend) (driver.ModelUpdate, error) {
		return b.UpdateGroup(ctx, req.GetGroupId(), req.GetAddVolumeIds(), req.GetRemoveVolumeIds())
	})
	if err != nil {
		return nil, err
	}
	return &driverv1.UpdateGroupResponse{ModelUpdate: modelUpdate(m)}, nil
}

func (s *Service) CreateGroupSnapshot(ctx context.Context, req *driverv1.CreateGroupSnapshotRequest) (*driverv1.CreateGroupSnapshotResponse, error) {
	r, err := groupCall(s, req.GetBackend(), func(b *driver.Backend) (driver.GroupResult, error) {
		return b.CreateGroupSnapshot(ctx, req.GetGroupId(), req.GetGroupSnapshotId(), req.GetVolumeIds())
	})
	if err != nil {
		return nil, err
	}
	out := &driverv1.CreateGroupSnapshotResponse{ModelUpdate: modelUpdate(r.Group)}
	for _, sn := range r.Snapshots {
		out.Snapshots = append(out.Snapshots, &driverv1.Snapshot{Id: sn.ID, VolumeId: sn.VolumeID, SizeGb: sn.SizeGB,
			ProviderId: sn.ProviderID, Guid: sn.GUID, Created: sn.Created.UTC().Format(time.RFC3339)})
	}
	return out, nil
}

func (s *Service) DeleteGroupSnapshot(ctx context.Context, req *driverv1.DeleteGroupSnapshotRequest) (*driverv1.DeleteGroupSnapshotResponse, error) {
	ids, err := groupCall(s, req.GetBackend(), func(b *driver.Backend) ([]string, error) {
		return b.DeleteGroupSnapshot(ctx, req.GetGroupId(), req.GetGroupSnapshotId(), req.GetVolumeIds())
	})
	if err != nil {
		return nil, err
	}
	return &driverv1.DeleteGroupSnapshotResponse{VolumeIds: ids}, nil
}

func (s *Service) CreateGroupFromSrc(ctx context.Context, req *driverv1.CreateGroupFromSrcRequest) (*driverv1.CreateGroupFromSrcResponse, error) {
	vols := make([]driver.GroupVolume, len(req.GetVolumes()))
	for i, v := range req.GetVolumes() {
		vols[i] = driver.GroupVolume{ID: v.GetVolumeId(), SourceID: v.GetSourceVolumeId(), Type: volumeType(v.GetVolumeType())}
	}
	r, err := groupCall(s, req.GetBackend(), func(b *driver.Backend) (driver.GroupResult, error) {
		return b.CreateGroupFromSrc(ctx, req.GetGroupId(), groupType(req.GetGroupType()), req.GetGroupSnapshotId(), vols)
	})
	if err != nil {
		return nil, err
	}
	return &driverv1.CreateGroupFromSrcResponse{ModelUpdate: modelUpdate(r.Group), VolumeUpdates: volumeUpdates(r.Volumes)}, nil
}

func (s *Service) EnableReplication(ctx context.Context, req *driverv1.EnableReplicationRequest) (*driverv1.EnableReplicationResponse, error) {
	r, err := groupCall(s, req.GetBackend(), func(b *driver.Backend) (driver.GroupResult, error) {
		return b.EnableReplication(ctx, req.GetGroupId(), req.GetVolumeIds())
	})
	if err != nil {
		return nil, err
	}
	return &driverv1.EnableReplicationResponse{ModelUpdate: modelUpdate(r.Group), VolumeUpdates: volumeUpdates(r.Volumes)}, nil
}

func (s *Service) DisableReplication(ctx context.Context, req *driverv1.DisableReplicationRequest) (*driverv1.DisableReplicationResponse, error) {
	r, err := groupCall(s, req.GetBackend(), func(b *driver.Backend) (driver.GroupResult, error) {
		return b.DisableReplication(ctx, req.GetGroupId(), req.GetVolumeIds())
	})
	if err != nil {
		return nil, err
	}
	return &driverv1.DisableReplicationResponse{ModelUpdate: modelUpdate(r.Group), VolumeUpdates: volumeUpdates(r.Volumes)}, nil
}

func (s *Service) FailoverReplication(ctx context.Context, req *driverv1.FailoverReplicationRequest) (*driverv1.FailoverReplicationResponse, error) {
	r, err := groupCall(s, req.GetBackend(), func(b *driver.Backend) (driver.GroupResult, error) {
		return b.FailoverReplication(ctx, req.GetGroupId(), req.GetVolumeIds(), req.GetSecondaryBackendId())
	})
	if err != nil {
		return nil, err
	}
	return &driverv1.FailoverReplicationResponse{ModelUpdate: modelUpdate(r.Group), VolumeUpdates: volumeUpdates(r.Volumes),
		ActiveBackendId: r.ActiveBackendID, GroupSnapshot: r.GroupSnapshot, FailbackBytes: r.FailbackBytes}, nil
}
