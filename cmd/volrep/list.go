package main

import (
	"context"

	"github.com/volrep/volrep/paging"
	driverv1 "github.com/volrep/volrep/proto/volrep/driver/v1"
)

// The List RPCs answer in pages; these follow them to the end and return
// one reply holding every item, which the table and JSON output print.

func listBackends(ctx context.Context, c driverv1.DriverServiceClient) (*driverv1.ListBackendsResponse, error) {
	all, err := paging.All(ctx, func(ctx context.Context, token string) ([]*driverv1.Backend, string, error) {
		r, err := c.ListBackends(ctx, &driverv1.ListBackendsRequest{PageSize: paging.MaxPageSize, PageToken: token})
		return r.GetBackends(), r.GetNextPageToken(), err
	})
	if err != nil {
		return nil, err
	}
	return &driverv1.ListBackendsResponse{Backends: all}, nil
}

func listVolumes(ctx context.Context, c driverv1.DriverServiceClient, backend string) (*driverv1.ListVolumesResponse, error) {
	all, err := paging.All(ctx, func(ctx context.Context, token string) ([]*driverv1.Volume, string, error) {
		r, err := c.ListVolumes(ctx, &driverv1.ListVolumesRequest{Backend: backend, PageSize: paging.MaxPageSize, PageToken: token})
		return r.GetVolumes(), r.GetNextPageToken(), err
	})
	if err != nil {
		return nil, err
	}
	return &driverv1.ListVolumesResponse{Volumes: all}, nil
}

func listSnapshots(ctx context.Context, c driverv1.DriverServiceClient, backend, volume string) (*driverv1.ListSnapshotsResponse, error) {
	all, err := paging.All(ctx, func(ctx context.Context, token string) ([]*driverv1.Snapshot, string, error) {
		r, err := c.ListSnapshots(ctx, &driverv1.ListSnapshotsRequest{Backend: backend, VolumeId: volume, PageSize: paging.MaxPageSize, PageToken: token})
		return r.GetSnapshots(), r.GetNextPageToken(), err
	})
	if err != nil {
		return nil, err
	}
	return &driverv1.ListSnapshotsResponse{Snapshots: all}, nil
}
