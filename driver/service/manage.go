package service

import (
	"context"

	"github.com/volrep/volrep/driver"
	"github.com/volrep/volrep/paging"
	driverv1 "github.com/volrep/volrep/proto/volrep/driver/v1"
)

func existingRef(r *driverv1.ExistingRef) driver.ExistingRef {
	return driver.ExistingRef{Name: r.GetSourceName(), ID: r.GetSourceId()}
}

func (s *Service) ManageExistingSize(ctx context.Context, req *driverv1.ManageExistingSizeRequest) (*driverv1.ManageExistingSizeResponse, error) {
	b, err := s.d.Backend(req.GetBackend())
	if err != nil {
		return nil, err
	}
	size, err := b.ManageExistingSize(ctx, existingRef(req.GetRef()))
	if err != nil {
		return nil, err
	}
	return &driverv1.ManageExistingSizeResponse{SizeGb: size}, nil
}

func (s *Service) ManageExisting(ctx context.Context, req *driverv1.ManageExistingRequest) (*driverv1.ManageExistingResponse, error) {
	b, err := s.d.Backend(req.GetBackend())
	if err != nil {
		return nil, err
	}
	m, size, err := b.ManageExisting(ctx, req.GetVolumeId(), existingRef(req.GetRef()), volumeType(req.GetVolumeType()))
	if err != nil {
		return nil, err
	}
	return &driverv1.ManageExistingResponse{ModelUpdate: modelUpdate(m), SizeGb: size}, nil
}

func (s *Service) Unmanage(ctx context.Context, req *driverv1.UnmanageRequest) (*driverv1.UnmanageResponse, error) {
	b, err := s.d.Backend(req.GetBackend())
	if err != nil {
		return nil, err
	}
	return &driverv1.UnmanageResponse{}, b.Unmanage(ctx, req.GetVolumeId())
}

func (s *Service) ManageExistingSnapshotSize(ctx context.Context, req *driverv1.ManageExistingSnapshotSizeRequest) (*driverv1.ManageExistingSnapshotSizeResponse, error) {
	b, err := s.d.Backend(req.GetBackend())
	if err != nil {
		return nil, err
	}
	size, err := b.ManageExistingSnapshotSize(ctx, req.GetVolumeId(), existingRef(req.GetRef()))
	if err != nil {
		return nil, err
	}
	return &driverv1.ManageExistingSnapshotSizeResponse{SizeGb: size}, nil
}

func (s *Service) ManageExistingSnapshot(ctx context.Context, req *driverv1.ManageExistingSnapshotRequest) (*driverv1.ManageExistingSnapshotResponse, error) {
	b, err := s.d.Backend(req.GetBackend())
	if err != nil {
		return nil, err
	}
	m, size, err := b.ManageExistingSnapshot(ctx, req.GetSnapshotId(), req.GetVolumeId(), existingRef(req.GetRef()))
	if err != nil {
		return nil, err
	}
	return &driverv1.ManageExistingSnapshotResponse{ModelUpdate: modelUpdate(m), SizeGb: size}, nil
}

func (s *Service) UnmanageSnapshot(ctx context.Context, req *driverv1.UnmanageSnapshotRequest) (*driverv1.UnmanageSnapshotResponse, error) {
	b, err := s.d.Backend(req.GetBackend())
	if err != nil {
		return nil, err
	}
	return &driverv1.UnmanageSnapshotResponse{}, b.UnmanageSnapshot(ctx, req.GetSnapshotId(), req.GetVolumeId())
}

func manageablePB(ms []driver.Manageable) []*driverv1.Manageable {
	out := make([]*driverv1.Manageable, len(ms))
	for i, m := range ms {
		out[i] = &driverv1.Manageable{Name: m.Name, Volume: m.Volume, SizeGb: m.SizeGB, SafeToManage: m.Safe,
			ReasonNotSafe: m.Reason, CinderId: m.CinderID, ExtraInfo: m.Extra}
	}
	return out
}

// manageableKey pages the lists in the order the driver sorts them.
func manageableKey(m *driverv1.Manageable) string { return m.GetVolume() + "\x00" + m.GetName() }

func (s *Service) ListManageableVolumes(ctx context.Context, req *driverv1.ListManageableVolumesRequest) (*driverv1.ListManageableVolumesResponse, error) {
	b, err := s.d.Backend(req.GetBackend())
	if err != nil {
		return nil, err
	}
	ms, err := b.ManageableVolumes(ctx)
	if err != nil {
		return nil, err
	}
	page, next, err := paging.Page(manageablePB(ms), manageableKey, req, req.GetBackend())
	if err != nil {
		return nil, err
	}
	return &driverv1.ListManageableVolumesResponse{Volumes: page, NextPageToken: next}, nil
}

func (s *Service) ListManageableSnapshots(ctx context.Context, req *driverv1.ListManageableSnapshotsRequest) (*driverv1.ListManageableSnapshotsResponse, error) {
	b, err := s.d.Backend(req.GetBackend())
	if err != nil {
		return nil, err
	}
	ms, err := b.ManageableSnapshots(ctx)
	if err != nil {
		return nil, err
	}
	page, next, err := paging.Page(manageablePB(ms), manageableKey, req, req.GetBackend())
	if err != nil {
		return nil, err
	}
	return &driverv1.ListManageableSnapshotsResponse{Snapshots: page, NextPageToken: next}, nil
}
