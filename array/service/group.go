package service

import (
	"context"

	"github.com/volrep/volrep/array/wire"
	"github.com/volrep/volrep/paging"
	arrayv1 "github.com/volrep/volrep/proto/volrep/array/v1"
)

func (s *Service) CreateGroup(ctx context.Context, req *arrayv1.CreateGroupRequest) (*arrayv1.CreateGroupResponse, error) {
	g, err := s.a.CreateGroup(ctx, req.GetName(), req.GetPool(), req.GetLabels())
	if err != nil {
		return nil, err
	}
	return &arrayv1.CreateGroupResponse{Group: wire.GroupToPB(g)}, nil
}

func (s *Service) GetGroup(ctx context.Context, req *arrayv1.GetGroupRequest) (*arrayv1.GetGroupResponse, error) {
	g, err := s.a.GetGroup(ctx, req.GetName())
	if err != nil {
		return nil, err
	}
	return &arrayv1.GetGroupResponse{Group: wire.GroupToPB(g)}, nil
}

func (s *Service) ListGroups(ctx context.Context, req *arrayv1.ListGroupsRequest) (*arrayv1.ListGroupsResponse, error) {
	gs, err := s.a.ListGroups(ctx)
	if err != nil {
		return nil, err
	}
	page, next, err := paging.Page(wire.Map(gs, wire.GroupToPB), (*arrayv1.ConsistencyGroup).GetName, req)
	if err != nil {
		return nil, err
	}
	return &arrayv1.ListGroupsResponse{Groups: page, NextPageToken: next}, nil
}

func (s *Service) DeleteGroup(ctx context.Context, req *arrayv1.DeleteGroupRequest) (*arrayv1.DeleteGroupResponse, error) {
	return &arrayv1.DeleteGroupResponse{}, s.a.DeleteGroup(ctx, req.GetName())
}

func (s *Service) AddMembers(ctx context.Context, req *arrayv1.AddMembersRequest) (*arrayv1.AddMembersResponse, error) {
	g, err := s.a.AddMembers(ctx, req.GetName(), req.GetVolumes())
	if err != nil {
		return nil, err
	}
	return &arrayv1.AddMembersResponse{Group: wire.GroupToPB(g)}, nil
}

func (s *Service) RemoveMembers(ctx context.Context, req *arrayv1.RemoveMembersRequest) (*arrayv1.RemoveMembersResponse, error) {
	g, err := s.a.RemoveMembers(ctx, req.GetName(), req.GetVolumes())
	if err != nil {
		return nil, err
	}
	return &arrayv1.RemoveMembersResponse{Group: wire.GroupToPB(g)}, nil
}

func (s *Service) CreateGroupSnapshot(ctx context.Context, req *arrayv1.CreateGroupSnapshotRequest) (*arrayv1.CreateGroupSnapshotResponse, error) {
	ss, err := s.a.CreateGroupSnapshot(ctx, req.GetName(), req.GetSnapshot(), req.GetLabels())
	if err != nil {
		return nil, err
	}
	return &arrayv1.CreateGroupSnapshotResponse{Snapshots: wire.Map(ss, wire.SnapshotToPB)}, nil
}
