package service

import (
	"context"
	"fmt"

	"github.com/volrep/volrep/array"
	"github.com/volrep/volrep/array/wire"
	"github.com/volrep/volrep/paging"
	arrayv1 "github.com/volrep/volrep/proto/volrep/array/v1"
)

func (s *Service) CreateHost(ctx context.Context, req *arrayv1.CreateHostRequest) (*arrayv1.CreateHostResponse, error) {
	h, err := s.a.CreateHost(ctx, array.HostSpec{Name: req.GetName(), IQNs: req.GetIqns(), MutualCHAP: req.GetMutualChap(), Labels: req.GetLabels(),
		CHAPSecret: req.GetChapSecret(), MutualCHAPSecret: req.GetMutualChapSecret(), PreferredArrays: req.GetPreferredArrays()})
	if err != nil {
		return nil, err
	}
	return &arrayv1.CreateHostResponse{Host: wire.HostToPB(h)}, nil
}

func (s *Service) SetHostPreferredArrays(ctx context.Context, req *arrayv1.SetHostPreferredArraysRequest) (*arrayv1.SetHostPreferredArraysResponse, error) {
	h, err := s.a.SetHostPreferredArrays(ctx, req.GetName(), req.GetPreferredArrays())
	if err != nil {
		return nil, err
	}
	return &arrayv1.SetHostPreferredArraysResponse{Host: wire.HostToPB(h)}, nil
}

func (s *Service) GetHost(ctx context.Context, req *arrayv1.GetHostRequest) (*arrayv1.GetHostResponse, error) {
	h, err := s.a.GetHost(ctx, req.GetName(), req.GetIncludeSecrets())
	if err != nil {
		return nil, err
	}
	return &arrayv1.GetHostResponse{Host: wire.HostToPB(h)}, nil
}

func (s *Service) ListHosts(ctx context.Context, req *arrayv1.ListHostsRequest) (*arrayv1.ListHostsResponse, error) {
	hs, err := s.a.ListHosts(ctx)
	if err != nil {
		return nil, err
	}
	page, next, err := paging.Page(wire.Map(hs, wire.HostToPB), (*arrayv1.Host).GetName, req)
	if err != nil {
		return nil, err
	}
	return &arrayv1.ListHostsResponse{Hosts: page, NextPageToken: next}, nil
}

func (s *Service) DeleteHost(ctx context.Context, req *arrayv1.DeleteHostRequest) (*arrayv1.DeleteHostResponse, error) {
	return &arrayv1.DeleteHostResponse{}, s.a.DeleteHost(ctx, req.GetName(), req.GetForce())
}

func (s *Service) ConnectVolume(ctx context.Context, req *arrayv1.ConnectVolumeRequest) (*arrayv1.ConnectVolumeResponse, error) {
	c, err := s.a.ConnectVolume(ctx, array.ConnectionSpec{Host: req.GetHost(), Volume: req.GetVolume(), Snapshot: req.GetSnapshot()})
	if err != nil {
		return nil, err
	}
	return &arrayv1.ConnectVolumeResponse{Connection: wire.ConnectionToPB(c)}, nil
}

func (s *Service) DisconnectVolume(ctx context.Context, req *arrayv1.DisconnectVolumeRequest) (*arrayv1.DisconnectVolumeResponse, error) {
	return &arrayv1.DisconnectVolumeResponse{}, s.a.DisconnectVolume(ctx, array.ConnectionSpec{Host: req.GetHost(), Volume: req.GetVolume(), Snapshot: req.GetSnapshot()})
}

func (s *Service) ListConnections(ctx context.Context, req *arrayv1.ListConnectionsRequest) (*arrayv1.ListConnectionsResponse, error) {
	cs, err := s.a.ListConnections(ctx, req.GetHost(), req.GetVolume())
	if err != nil {
		return nil, err
	}
	page, next, err := paging.Page(wire.Map(cs, wire.ConnectionToPB), connectionKey, req, req.GetHost(), req.GetVolume())
	if err != nil {
		return nil, err
	}
	return &arrayv1.ListConnectionsResponse{Connections: page, NextPageToken: next}, nil
}

// connectionKey orders connections as the engine lists them: by host and
// LUN (fixed width, so the string order is the numeric one).
func connectionKey(c *arrayv1.Connection) string {
	return fmt.Sprintf("%s\x00%020d", c.GetHost(), c.GetLun())
}

func (s *Service) GetVolumeReservations(ctx context.Context, req *arrayv1.GetVolumeReservationsRequest) (*arrayv1.GetVolumeReservationsResponse, error) {
	r, err := s.a.VolumeReservations(ctx, req.GetVolume())
	if err != nil {
		return nil, err
	}
	return &arrayv1.GetVolumeReservationsResponse{Reservations: wire.ReservationsToPB(r)}, nil
}

func (s *Service) ClearVolumeReservations(ctx context.Context, req *arrayv1.ClearVolumeReservationsRequest) (*arrayv1.ClearVolumeReservationsResponse, error) {
	r, err := s.a.ClearVolumeReservations(ctx, req.GetVolume())
	if err != nil {
		return nil, err
	}
	return &arrayv1.ClearVolumeReservationsResponse{Reservations: wire.ReservationsToPB(r)}, nil
}
