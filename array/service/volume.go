package service

import (
	"context"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/volrep/volrep/array"
	"github.com/volrep/volrep/array/wire"
	"github.com/volrep/volrep/paging"
	arrayv1 "github.com/volrep/volrep/proto/volrep/array/v1"
)

func (s *Service) CreateVolume(ctx context.Context, req *arrayv1.CreateVolumeRequest) (*arrayv1.CreateVolumeResponse, error) {
	v, err := s.a.CreateVolume(ctx, array.VolumeSpec{Name: req.GetName(), Pool: req.GetPool(), SizeBytes: req.GetSizeBytes(), Labels: req.GetLabels()})
	if err != nil {
		return nil, err
	}
	return &arrayv1.CreateVolumeResponse{Volume: wire.VolumeToPB(v)}, nil
}

func (s *Service) GetVolume(ctx context.Context, req *arrayv1.GetVolumeRequest) (*arrayv1.GetVolumeResponse, error) {
	v, err := s.a.GetVolume(ctx, req.GetName())
	if err != nil {
		return nil, err
	}
	return &arrayv1.GetVolumeResponse{Volume: wire.VolumeToPB(v)}, nil
}

func (s *Service) ListVolumes(ctx context.Context, req *arrayv1.ListVolumesRequest) (*arrayv1.ListVolumesResponse, error) {
	vs, err := s.a.ListVolumes(ctx, req.GetPool())
	if err != nil {
		return nil, err
	}
	page, next, err := paging.Page(wire.Map(vs, wire.VolumeToPB), (*arrayv1.Volume).GetName, req, req.GetPool())
	if err != nil {
		return nil, err
	}
	return &arrayv1.ListVolumesResponse{Volumes: page, NextPageToken: next}, nil
}

func (s *Service) DeleteVolume(ctx context.Context, req *arrayv1.DeleteVolumeRequest) (*arrayv1.DeleteVolumeResponse, error) {
	return &arrayv1.DeleteVolumeResponse{}, s.a.DeleteVolume(ctx, req.GetName())
}

func (s *Service) ExtendVolume(ctx context.Context, req *arrayv1.ExtendVolumeRequest) (*arrayv1.ExtendVolumeResponse, error) {
	v, err := s.a.ExtendVolume(ctx, req.GetName(), req.GetSizeBytes())
	if err != nil {
		return nil, err
	}
	return &arrayv1.ExtendVolumeResponse{Volume: wire.VolumeToPB(v)}, nil
}

func (s *Service) RevertVolume(ctx context.Context, req *arrayv1.RevertVolumeRequest) (*arrayv1.RevertVolumeResponse, error) {
	v, err := s.a.RevertVolume(ctx, req.GetVolume(), req.GetSnapshot())
	if err != nil {
		return nil, err
	}
	return &arrayv1.RevertVolumeResponse{Volume: wire.VolumeToPB(v)}, nil
}

func (s *Service) RenameVolume(ctx context.Context, req *arrayv1.RenameVolumeRequest) (*arrayv1.RenameVolumeResponse, error) {
	v, err := s.a.RenameVolume(ctx, req.GetName(), req.GetNewName(), setLabels(req.GetSetLabels(), req.GetLabels()))
	if err != nil {
		return nil, err
	}
	return &arrayv1.RenameVolumeResponse{Volume: wire.VolumeToPB(v)}, nil
}

func (s *Service) RenameSnapshot(ctx context.Context, req *arrayv1.RenameSnapshotRequest) (*arrayv1.RenameSnapshotResponse, error) {
	sn, err := s.a.RenameSnapshot(ctx, req.GetVolume(), req.GetName(), req.GetNewName(), setLabels(req.GetSetLabels(), req.GetLabels()))
	if err != nil {
		return nil, err
	}
	return &arrayv1.RenameSnapshotResponse{Snapshot: wire.SnapshotToPB(sn)}, nil
}

// setLabels turns the wire's (set, labels) into the array's "nil keeps
// them": proto3 cannot tell an empty map from none.
func setLabels(set bool, labels map[string]string) map[string]string {
	if !set {
		return nil
	}
	if labels == nil {
		return map[string]string{}
	}
	return labels
}

func (s *Service) WriteVolume(ctx context.Context, req *arrayv1.WriteVolumeRequest) (*arrayv1.WriteVolumeResponse, error) {
	return &arrayv1.WriteVolumeResponse{}, s.a.WriteVolume(ctx, req.GetName(), req.GetOffset(), req.GetData(), req.GetFua())
}

func (s *Service) ReadVolume(ctx context.Context, req *arrayv1.ReadVolumeRequest) (*arrayv1.ReadVolumeResponse, error) {
	p := make([]byte, req.GetLength())
	if err := s.a.ReadVolume(ctx, req.GetName(), req.GetOffset(), p); err != nil {
		return nil, err
	}
	return &arrayv1.ReadVolumeResponse{Data: p}, nil
}

func (s *Service) FlushVolume(ctx context.Context, req *arrayv1.FlushVolumeRequest) (*arrayv1.FlushVolumeResponse, error) {
	return &arrayv1.FlushVolumeResponse{}, s.a.FlushVolume(ctx, req.GetName())
}

func (s *Service) CreateSnapshot(ctx context.Context, req *arrayv1.CreateSnapshotRequest) (*arrayv1.CreateSnapshotResponse, error) {
	var sn array.Snapshot
	var err error
	if req.GetGuid() != "" {
		sn, err = s.a.AdoptSnapshot(ctx, req.GetVolume(), req.GetName(), req.GetGuid(), req.GetLabels())
	} else {
		sn, err = s.a.CreateSnapshot(ctx, req.GetVolume(), req.GetName(), req.GetLabels())
	}
	if err != nil {
		return nil, err
	}
	return &arrayv1.CreateSnapshotResponse{Snapshot: wire.SnapshotToPB(sn)}, nil
}

func (s *Service) GetSnapshot(ctx context.Context, req *arrayv1.GetSnapshotRequest) (*arrayv1.GetSnapshotResponse, error) {
	sn, err := s.a.GetSnapshot(ctx, req.GetVolume(), req.GetName())
	if err != nil {
		return nil, err
	}
	return &arrayv1.GetSnapshotResponse{Snapshot: wire.SnapshotToPB(sn)}, nil
}

func (s *Service) ListSnapshots(ctx context.Context, req *arrayv1.ListSnapshotsRequest) (*arrayv1.ListSnapshotsResponse, error) {
	sns, err := s.a.ListSnapshots(ctx, req.GetVolume())
	if err != nil {
		return nil, err
	}
	page, next, err := paging.Page(wire.Map(sns, wire.SnapshotToPB), snapshotKey, req, req.GetVolume())
	if err != nil {
		return nil, err
	}
	return &arrayv1.ListSnapshotsResponse{Snapshots: page, NextPageToken: next}, nil
}

func (s *Service) DeleteSnapshot(ctx context.Context, req *arrayv1.DeleteSnapshotRequest) (*arrayv1.DeleteSnapshotResponse, error) {
	return &arrayv1.DeleteSnapshotResponse{}, s.a.DeleteSnapshot(ctx, req.GetVolume(), req.GetName())
}

func (s *Service) ReadSnapshot(ctx context.Context, req *arrayv1.ReadSnapshotRequest) (*arrayv1.ReadSnapshotResponse, error) {
	p := make([]byte, req.GetLength())
	if err := s.a.ReadSnapshot(ctx, req.GetVolume(), req.GetName(), req.GetOffset(), p); err != nil {
		return nil, err
	}
	return &arrayv1.ReadSnapshotResponse{Data: p}, nil
}

func (s *Service) CloneSnapshot(ctx context.Context, req *arrayv1.CloneSnapshotRequest) (*arrayv1.CloneSnapshotResponse, error) {
	v, err := s.a.CloneSnapshot(ctx, array.CloneSpec{Volume: req.GetVolume(), Snapshot: req.GetSnapshot(), Name: req.GetName(),
		Pool: req.GetPool(), SizeBytes: req.GetSizeBytes(), Labels: req.GetLabels()})
	if err != nil {
		return nil, err
	}
	return &arrayv1.CloneSnapshotResponse{Volume: wire.VolumeToPB(v)}, nil
}

// diffBatch bounds one streamed message to well under the message limit.
const diffBatch = 4096

func (s *Service) DiffSnapshots(req *arrayv1.DiffSnapshotsRequest, stream arrayv1.VolumeService_DiffSnapshotsServer) error {
	exts, err := s.a.Diff(stream.Context(), req.GetVolume(), req.GetBase(), req.GetSnapshot())
	if err != nil {
		return err
	}
	for len(exts) > 0 {
		n := min(len(exts), diffBatch)
		if err := stream.Send(&arrayv1.DiffSnapshotsResponse{Extents: wire.ExtentsToPB(exts[:n])}); err != nil {
			return err
		}
		exts = exts[n:]
	}
	return nil
}

func (s *Service) ChecksumSnapshot(ctx context.Context, req *arrayv1.ChecksumSnapshotRequest) (*arrayv1.ChecksumSnapshotResponse, error) {
	sums, err := s.a.Checksums(ctx, req.GetVolume(), req.GetSnapshot(), req.GetOffset(), req.GetLength())
	if err != nil {
		return nil, err
	}
	return &arrayv1.ChecksumSnapshotResponse{Crc32C: sums}, nil
}

func (s *Service) HoldVolumeWrites(ctx context.Context, req *arrayv1.HoldVolumeWritesRequest) (*arrayv1.HoldVolumeWritesResponse, error) {
	since, err := s.a.HoldWrites(ctx, req.GetName(), time.Duration(req.GetLeaseMs())*time.Millisecond)
	if err != nil {
		return nil, err
	}
	out := &arrayv1.HoldVolumeWritesResponse{}
	if !since.IsZero() {
		out.HeldSince = timestamppb.New(since)
	}
	return out, nil
}

func (s *Service) SetVolumeReadOnly(ctx context.Context, req *arrayv1.SetVolumeReadOnlyRequest) (*arrayv1.SetVolumeReadOnlyResponse, error) {
	if err := s.a.SetReadOnly(ctx, req.GetName(), req.GetReadOnly()); err != nil {
		return nil, err
	}
	v, err := s.a.GetVolume(ctx, req.GetName())
	if err != nil {
		return nil, err
	}
	return &arrayv1.SetVolumeReadOnlyResponse{Volume: wire.VolumeToPB(v)}, nil
}

func (s *Service) SetVolumeQoS(ctx context.Context, req *arrayv1.SetVolumeQoSRequest) (*arrayv1.SetVolumeQoSResponse, error) {
	v, err := s.a.SetVolumeQoS(ctx, req.GetName(), wire.QoSFromPB(req.GetQos()))
	if err != nil {
		return nil, err
	}
	return &arrayv1.SetVolumeQoSResponse{Volume: wire.VolumeToPB(v)}, nil
}

func (s *Service) CreateSnapshotSet(ctx context.Context, req *arrayv1.CreateSnapshotSetRequest) (*arrayv1.CreateSnapshotSetResponse, error) {
	ss, err := s.a.CreateSnapshotSet(ctx, req.GetVolumes(), req.GetName(), req.GetLabels())
	if err != nil {
		return nil, err
	}
	return &arrayv1.CreateSnapshotSetResponse{Snapshots: wire.Map(ss, wire.SnapshotToPB)}, nil
}

// snapshotKey orders snapshots as the engine lists them: oldest first.
func snapshotKey(s *arrayv1.Snapshot) string {
	return paging.TimeKey(s.GetCreated().AsTime()) + "\x00" + s.GetName()
}
