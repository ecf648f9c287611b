package service

import (
	"context"

	"github.com/volrep/volrep/array"
	"github.com/volrep/volrep/array/wire"
	"github.com/volrep/volrep/paging"
	arrayv1 "github.com/volrep/volrep/proto/volrep/array/v1"
)

func (s *Service) CreateExport(ctx context.Context, req *arrayv1.CreateExportRequest) (*arrayv1.CreateExportResponse, error) {
	e, err := s.a.CreateExport(ctx, array.ExportSpec{Volume: req.GetVolume(), Snapshot: req.GetSnapshot(),
		AttachmentID: req.GetAttachmentId(), ReadOnly: req.GetReadOnly()})
	if err != nil {
		return nil, err
	}
	return &arrayv1.CreateExportResponse{Export: wire.ExportToPB(e)}, nil
}

func (s *Service) DeleteExport(ctx context.Context, req *arrayv1.DeleteExportRequest) (*arrayv1.DeleteExportResponse, error) {
	n, err := s.a.DeleteExport(ctx, req.GetName(), req.GetVolume(), req.GetAttachmentId())
	if err != nil {
		return nil, err
	}
	return &arrayv1.DeleteExportResponse{Deleted: int32(n)}, nil
}

func (s *Service) ListExports(ctx context.Context, req *arrayv1.ListExportsRequest) (*arrayv1.ListExportsResponse, error) {
	es, err := s.a.ListExports(ctx, req.GetVolume())
	if err != nil {
		return nil, err
	}
	page, next, err := paging.Page(wire.Map(es, wire.ExportToPB), exportKey, req, req.GetVolume())
	if err != nil {
		return nil, err
	}
	return &arrayv1.ListExportsResponse{Exports: page, NextPageToken: next}, nil
}

// exportKey orders exports as the engine lists them: by volume and
// attachment id.
func exportKey(e *arrayv1.Export) string {
	return e.GetVolume() + e.GetAttachmentId() + "\x00" + e.GetName()
}
