// Package service serves an array.Array over gRPC: ArrayService and
// VolumeService. Errors are returned as engine errors; the interceptor
// chain in package server maps them to status codes.
package service

import (
	"context"

	"google.golang.org/grpc"

	"github.com/volrep/volrep/array"
	"github.com/volrep/volrep/array/wire"
	"github.com/volrep/volrep/paging"
	arrayv1 "github.com/volrep/volrep/proto/volrep/array/v1"
)

// Service implements the array's gRPC services over an engine.
type Service struct {
	arrayv1.UnimplementedArrayServiceServer
	arrayv1.UnimplementedVolumeServiceServer
	arrayv1.UnimplementedExportServiceServer
	arrayv1.UnimplementedConsistencyGroupServiceServer
	arrayv1.UnimplementedHostServiceServer
	a array.Array
}

// New returns a service over a.
func New(a array.Array) *Service { return &Service{a: a} }

// Register adds the services to g.
func (s *Service) Register(g grpc.ServiceRegistrar) {
	arrayv1.RegisterArrayServiceServer(g, s)
	arrayv1.RegisterVolumeServiceServer(g, s)
	arrayv1.RegisterExportServiceServer(g, s)
	arrayv1.RegisterConsistencyGroupServiceServer(g, s)
	arrayv1.RegisterHostServiceServer(g, s)
}

func (s *Service) GetArrayInfo(ctx context.Context, _ *arrayv1.GetArrayInfoRequest) (*arrayv1.GetArrayInfoResponse, error) {
	info, err := s.a.Info(ctx)
	if err != nil {
		return nil, err
	}
	return &arrayv1.GetArrayInfoResponse{Info: wire.InfoToPB(info)}, nil
}

func (s *Service) CreatePool(ctx context.Context, req *arrayv1.CreatePoolRequest) (*arrayv1.CreatePoolResponse, error) {
	p, err := s.a.CreatePool(ctx, req.GetName())
	if err != nil {
		return nil, err
	}
	return &arrayv1.CreatePoolResponse{Pool: wire.PoolToPB(p)}, nil
}

func (s *Service) GetPool(ctx context.Context, req *arrayv1.GetPoolRequest) (*arrayv1.GetPoolResponse, error) {
	p, err := s.a.GetPool(ctx, req.GetName())
	if err != nil {
		return nil, err
	}
	return &arrayv1.GetPoolResponse{Pool: wire.PoolToPB(p)}, nil
}

func (s *Service) ListPools(ctx context.Context, req *arrayv1.ListPoolsRequest) (*arrayv1.ListPoolsResponse, error) {
	ps, err := s.a.ListPools(ctx)
	if err != nil {
		return nil, err
	}
	page, next, err := paging.Page(wire.Map(ps, wire.PoolToPB), (*arrayv1.Pool).GetName, req)
	if err != nil {
		return nil, err
	}
	return &arrayv1.ListPoolsResponse{Pools: page, NextPageToken: next}, nil
}

func (s *Service) DeletePool(ctx context.Context, req *arrayv1.DeletePoolRequest) (*arrayv1.DeletePoolResponse, error) {
	return &arrayv1.DeletePoolResponse{}, s.a.DeletePool(ctx, req.GetName())
}
