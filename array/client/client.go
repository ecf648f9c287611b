// Package client is array.Array over gRPC, for the driver and for peer
// arrays. Errors come back as engine errors of the same kind (the
// connection's interceptors map status codes back), so callers cannot tell
// a remote array from a local one.
package client

import (
	"context"
	"errors"
	"io"
	"time"

	"google.golang.org/grpc"

	"github.com/volrep/volrep/array"
	"github.com/volrep/volrep/array/wire"
	"github.com/volrep/volrep/paging"
	arrayv1 "github.com/volrep/volrep/proto/volrep/array/v1"
)

// maxIO is the largest read or write sent in one message.
const maxIO = 4 << 20

// Client talks to one array.
type Client struct {
	arrays  arrayv1.ArrayServiceClient
	volumes arrayv1.VolumeServiceClient
	exports arrayv1.ExportServiceClient
	groups  arrayv1.ConsistencyGroupServiceClient
	hosts   arrayv1.HostServiceClient
}

var _ array.Array = (*Client)(nil)

// New returns a client over an established connection.
func New(cc grpc.ClientConnInterface) *Client {
	return &Client{arrays: arrayv1.NewArrayServiceClient(cc), volumes: arrayv1.NewVolumeServiceClient(cc),
		exports: arrayv1.NewExportServiceClient(cc), groups: arrayv1.NewConsistencyGroupServiceClient(cc),
		hosts: arrayv1.NewHostServiceClient(cc)}
}

func (c *Client) Info(ctx context.Context) (array.Info, error) {
	r, err := c.arrays.GetArrayInfo(ctx, &arrayv1.GetArrayInfoRequest{})
	if err != nil {
		return array.Info{}, err
	}
	return wire.InfoFromPB(r.GetInfo()), nil
}

func (c *Client) CreatePool(ctx context.Context, name string) (array.Pool, error) {
	r, err := c.arrays.CreatePool(ctx, &arrayv1.CreatePoolRequest{Name: name})
	if err != nil {
		return array.Pool{}, err
	}
	return wire.PoolFromPB(r.GetPool()), nil
}

func (c *Client) GetPool(ctx context.Context, name string) (array.Pool, error) {
	r, err := c.arrays.GetPool(ctx, &arrayv1.GetPoolRequest{Name: name})
	if err != nil {
		return array.Pool{}, err
	}
	return wire.PoolFromPB(r.GetPool()), nil
}

func (c *Client) ListPools(ctx context.Context) ([]array.Pool, error) {
	return paging.All(ctx, func(ctx context.Context, token string) ([]array.Pool, string, error) {
		r, err := c.arrays.ListPools(ctx, &arrayv1.ListPoolsRequest{PageSize: paging.MaxPageSize, PageToken: token})
		if err != nil {
			return nil, "", err
		}
		return wire.Map(r.GetPools(), wire.PoolFromPB), r.GetNextPageToken(), nil
	})
}

func (c *Client) DeletePool(ctx context.Context, name string) error {
	_, err := c.arrays.DeletePool(ctx, &arrayv1.DeletePoolRequest{Name: name})
	return err
}

func (c *Client) CreateVolume(ctx context.Context, spec array.VolumeSpec) (array.Volume, error) {
	r, err := c.volumes.CreateVolume(ctx, &arrayv1.CreateVolumeRequest{Name: spec.Name, Pool: spec.Pool, SizeBytes: spec.SizeBytes, Labels: spec.Labels})
	if err != nil {
		return array.Volume{}, err
	}
	return wire.VolumeFromPB(r.GetVolume()), nil
}

func (c *Client) GetVolume(ctx context.Context, name string) (array.Volume, error) {
	r, err := c.volumes.GetVolume(ctx, &arrayv1.GetVolumeRequest{Name: name})
	if err != nil {
		return array.Volume{}, err
	}
	return wire.VolumeFromPB(r.GetVolume()), nil
}

func (c *Client) ListVolumes(ctx context.Context, pool string) ([]array.Volume, error) {
	return paging.All(ctx, func(ctx context.Context, token string) ([]array.Volume, string, error) {
		r, err := c.volumes.ListVolumes(ctx, &arrayv1.ListVolumesRequest{Pool: pool, PageSize: paging.MaxPageSize, PageToken: token})
		if err != nil {
			return nil, "", err
		}
		return wire.Map(r.GetVolumes(), wire.VolumeFromPB), r.GetNextPageToken(), nil
	})
}

func (c *Client) DeleteVolume(ctx context.Context, name string) error {
	_, err := c.volumes.DeleteVolume(ctx, &arrayv1.DeleteVolumeRequest{Name: name})
	return err
}

func (c *Client) ExtendVolume(ctx context.Context, name string, size int64) (array.Volume, error) {
	r, err := c.volumes.ExtendVolume(ctx, &arrayv1.ExtendVolumeRequest{Name: name, SizeBytes: size})
	if err != nil {
		return array.Volume{}, err
	}
	return wire.VolumeFromPB(r.GetVolume()), nil
}

func (c *Client) RevertVolume(ctx context.Context, volume, snapshot string) (array.Volume, error) {
	r, err := c.volumes.RevertVolume(ctx, &arrayv1.RevertVolumeRequest{Volume: volume, Snapshot: snapshot})
	if err != nil {
		return array.Volume{}, err
	}
	return wire.VolumeFromPB(r.GetVolume()), nil
}

// WriteVolume splits large writes; with fua only the last piece carries
// it, which is enough because FUA flushes the whole volume.
func (c *Client) WriteVolume(ctx context.Context, name string, off int64, p []byte, fua bool) error {
	if len(p) == 0 {
		if fua {
			return c.FlushVolume(ctx, name)
		}
		return nil
	}
	for len(p) > 0 {
		n := min(len(p), maxIO)
		req := &arrayv1.WriteVolumeRequest{Name: name, Offset: off, Data: p[:n], Fua: fua && n == len(p)}
		if _, err := c.volumes.WriteVolume(ctx, req); err != nil {
			return err
		}
		p, off = p[n:], off+int64(n)
	}
	return nil
}

func (c *Client) ReadVolume(ctx context.Context, name string, off int64, p []byte) error {
	return readChunks(p, off, func(off, n int64) ([]byte, error) {
		r, err := c.volumes.ReadVolume(ctx, &arrayv1.ReadVolumeRequest{Name: name, Offset: off, Length: n})
		return r.GetData(), err
	})
}

func readChunks(p []byte, off int64, read func(off, n int64) ([]byte, error)) error {
	for len(p) > 0 {
		n := min(len(p), maxIO)
		data, err := read(off, int64(n))
		if err != nil {
			return err
		}
		if len(data) != n {
			return errors.New("array returned a short read")
		}
		copy(p, data)
		p, off = p[n:], off+int64(n)
	}
	return nil
}

func (c *Client) FlushVolume(ctx context.Context, name string) error {
	_, err := c.volumes.FlushVolume(ctx, &arrayv1.FlushVolumeRequest{Name: name})
	return err
}

func (c *Client) CreateSnapshot(ctx context.Context, volume, name string, labels map[string]string) (array.Snapshot, error) {
	r, err := c.volumes.CreateSnapshot(ctx, &arrayv1.CreateSnapshotRequest{Volume: volume, Name: name, Labels: labels})
	if err != nil {
		return array.Snapshot{}, err
	}
	return wire.SnapshotFromPB(r.GetSnapshot()), nil
}

func (c *Client) RenameVolume(ctx context.Context, name, newName string, labels map[string]string) (array.Volume, error) {
	r, err := c.volumes.RenameVolume(ctx, &arrayv1.RenameVolumeRequest{Name: name, NewName: newName, Labels: labels, SetLabels: labels != nil})
	if err != nil {
		return array.Volume{}, err
	}
	return wire.VolumeFromPB(r.GetVolume()), nil
}

func (c *Client) RenameSnapshot(ctx context.Context, volume, name, newName string, labels map[string]string) (array.Snapshot, error) {
	r, err := c.volumes.RenameSnapshot(ctx, &arrayv1.RenameSnapshotRequest{Volume: volume, Name: name, NewName: newName, Labels: labels, SetLabels: labels != nil})
	if err != nil {
		return array.Snapshot{}, err
	}
	return wire.SnapshotFromPB(r.GetSnapshot()), nil
}

func (c *Client) GetSnapshot(ctx context.Context, volume, name string) (array.Snapshot, error) {
	r, err := c.volumes.GetSnapshot(ctx, &arrayv1.GetSnapshotRequest{Volume: volume, Name: name})
	if err != nil {
		return array.Snapshot{}, err
	}
	return wire.SnapshotFromPB(r.GetSnapshot()), nil
}

func (c *Client) ListSnapshots(ctx context.Context, volume string) ([]array.Snapshot, error) {
	return paging.All(ctx, func(ctx context.Context, token string) ([]array.Snapshot, string, error) {
		r, err := c.volumes.ListSnapshots(ctx, &arrayv1.ListSnapshotsRequest{Volume: volume, PageSize: paging.MaxPageSize, PageToken: token})
		if err != nil {
			return nil, "", err
		}
		return wire.Map(r.GetSnapshots(), wire.SnapshotFromPB), r.GetNextPageToken(), nil
	})
}

func (c *Client) DeleteSnapshot(ctx context.Context, volume, name string) error {
	_, err := c.volumes.DeleteSnapshot(ctx, &arrayv1.DeleteSnapshotRequest{Volume: volume, Name: name})
	return err
}

func (c *Client) ReadSnapshot(ctx context.Context, volume, name string, off int64, p []byte) error {
	return readChunks(p, off, func(off, n int64) ([]byte, error) {
		r, err := c.volumes.ReadSnapshot(ctx, &arrayv1.ReadSnapshotRequest{Volume: volume, Name: name, Offset: off, Length: n})
		return r.GetData(), err
	})
}

func (c *Client) CloneSnapshot(ctx context.Context, spec array.CloneSpec) (array.Volume, error) {
	r, err := c.volumes.CloneSnapshot(ctx, &arrayv1.CloneSnapshotRequest{Volume: spec.Volume, Snapshot: spec.Snapshot,
		Name: spec.Name, Pool: spec.Pool, SizeBytes: spec.SizeBytes, Labels: spec.Labels})
	if err != nil {
		return array.Volume{}, err
	}
	return wire.VolumeFromPB(r.GetVolume()), nil
}

func (c *Client) Diff(ctx context.Context, volume, base, snapshot string) ([]array.Extent, error) {
	stream, err := c.volumes.DiffSnapshots(ctx, &arrayv1.DiffSnapshotsRequest{Volume: volume, Base: base, Snapshot: snapshot})
	if err != nil {
		return nil, err
	}
	var out []array.Extent
	for {
		r, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		out = append(out, wire.ExtentsFromPB(r.GetExtents())...)
	}
}

func (c *Client) CreateExport(ctx context.Context, spec array.ExportSpec) (array.Export, error) {
	r, err := c.exports.CreateExport(ctx, &arrayv1.CreateExportRequest{Volume: spec.Volume, Snapshot: spec.Snapshot,
		AttachmentId: spec.AttachmentID, ReadOnly: spec.ReadOnly})
	if err != nil {
		return array.Export{}, err
	}
	return wire.ExportFromPB(r.GetExport()), nil
}

func (c *Client) DeleteExport(ctx context.Context, name, volume, attachmentID string) (int, error) {
	r, err := c.exports.DeleteExport(ctx, &arrayv1.DeleteExportRequest{Name: name, Volume: volume, AttachmentId: attachmentID})
	if err != nil {
		return 0, err
	}
	return int(r.GetDeleted()), nil
}

func (c *Client) ListExports(ctx context.Context, volume string) ([]array.Export, error) {
	return paging.All(ctx, func(ctx context.Context, token string) ([]array.Export, string, error) {
		r, err := c.exports.ListExports(ctx, &arrayv1.ListExportsRequest{Volume: volume, PageSize: paging.MaxPageSize, PageToken: token})
		if err != nil {
			return nil, "", err
		}
		return wire.Map(r.GetExports(), wire.ExportFromPB), r.GetNextPageToken(), nil
	})
}

func (c *Client) CreateGroup(ctx context.Context, name, pool string, labels map[string]string) (array.Group, error) {
	r, err := c.groups.CreateGroup(ctx, &arrayv1.CreateGroupRequest{Name: name, Pool: pool, Labels: labels})
	if err != nil {
		return array.Group{}, err
	}
	return wire.GroupFromPB(r.GetGroup()), nil
}

func (c *Client) GetGroup(ctx context.Context, name string) (array.Group, error) {
	r, err := c.groups.GetGroup(ctx, &arrayv1.GetGroupRequest{Name: name})
	if err != nil {
		return array.Group{}, err
	}
	return wire.GroupFromPB(r.GetGroup()), nil
}

func (c *Client) ListGroups(ctx context.Context) ([]array.Group, error) {
	return paging.All(ctx, func(ctx context.Context, token string) ([]array.Group, string, error) {
		r, err := c.groups.ListGroups(ctx, &arrayv1.ListGroupsRequest{PageSize: paging.MaxPageSize, PageToken: token})
		if err != nil {
			return nil, "", err
		}
		return wire.Map(r.GetGroups(), wire.GroupFromPB), r.GetNextPageToken(), nil
	})
}

func (c *Client) DeleteGroup(ctx context.Context, name string) error {
	_, err := c.groups.DeleteGroup(ctx, &arrayv1.DeleteGroupRequest{Name: name})
	return err
}

func (c *Client) AddMembers(ctx context.Context, group string, volumes []string) (array.Group, error) {
	r, err := c.groups.AddMembers(ctx, &arrayv1.AddMembersRequest{Name: group, Volumes: volumes})
	if err != nil {
		return array.Group{}, err
	}
	return wire.GroupFromPB(r.GetGroup()), nil
}

func (c *Client) RemoveMembers(ctx context.Context, group string, volumes []string) (array.Group, error) {
	r, err := c.groups.RemoveMembers(ctx, &arrayv1.RemoveMembersRequest{Name: group, Volumes: volumes})
	if err != nil {
		return array.Group{}, err
	}
	return wire.GroupFromPB(r.GetGroup()), nil
}

func (c *Client) CreateGroupSnapshot(ctx context.Context, group, snapshot string, labels map[string]string) ([]array.Snapshot, error) {
	r, err := c.groups.CreateGroupSnapshot(ctx, &arrayv1.CreateGroupSnapshotRequest{Name: group, Snapshot: snapshot, Labels: labels})
	if err != nil {
		return nil, err
	}
	return wire.Map(r.GetSnapshots(), wire.SnapshotFromPB), nil
}

func (c *Client) Checksums(ctx context.Context, volume, snapshot string, off, length int64) ([]uint32, error) {
	r, err := c.volumes.ChecksumSnapshot(ctx, &arrayv1.ChecksumSnapshotRequest{Volume: volume, Snapshot: snapshot, Offset: off, Length: length})
	if err != nil {
		return nil, err
	}
	return r.GetCrc32C(), nil
}

func (c *Client) SetReadOnly(ctx context.Context, volume string, readOnly bool) error {
	_, err := c.volumes.SetVolumeReadOnly(ctx, &arrayv1.SetVolumeReadOnlyRequest{Name: volume, ReadOnly: readOnly})
	return err
}

func (c *Client) SetVolumeQoS(ctx context.Context, volume string, q array.QoS) (array.Volume, error) {
	r, err := c.volumes.SetVolumeQoS(ctx, &arrayv1.SetVolumeQoSRequest{Name: volume, Qos: wire.QoSToPB(q)})
	if err != nil {
		return array.Volume{}, err
	}
	return wire.VolumeFromPB(r.GetVolume()), nil
}

func (c *Client) HoldWrites(ctx context.Context, volume string, lease time.Duration) (time.Time, error) {
	r, err := c.volumes.HoldVolumeWrites(ctx, &arrayv1.HoldVolumeWritesRequest{Name: volume, LeaseMs: lease.Milliseconds()})
	if err != nil || r.GetHeldSince() == nil {
		return time.Time{}, err
	}
	return r.GetHeldSince().AsTime(), nil
}

func (c *Client) CreateSnapshotSet(ctx context.Context, volumes []string, name string, labels map[string]string) ([]array.Snapshot, error) {
	r, err := c.volumes.CreateSnapshotSet(ctx, &arrayv1.CreateSnapshotSetRequest{Volumes: volumes, Name: name, Labels: labels})
	if err != nil {
		return nil, err
	}
	return wire.Map(r.GetSnapshots(), wire.SnapshotFromPB), nil
}

func (c *Client) AdoptSnapshot(ctx context.Context, volume, name, guid string, labels map[string]string) (array.Snapshot, error) {
	r, err := c.volumes.CreateSnapshot(ctx, &arrayv1.CreateSnapshotRequest{Volume: volume, Name: name, Guid: guid, Labels: labels})
	if err != nil {
		return array.Snapshot{}, err
	}
	return wire.SnapshotFromPB(r.GetSnapshot()), nil
}

func (c *Client) CreateHost(ctx context.Context, spec array.HostSpec) (array.Host, error) {
	r, err := c.hosts.CreateHost(ctx, &arrayv1.CreateHostRequest{Name: spec.Name, Iqns: spec.IQNs, MutualChap: spec.MutualCHAP, Labels: spec.Labels,
		ChapSecret: spec.CHAPSecret, MutualChapSecret: spec.MutualCHAPSecret, PreferredArrays: spec.PreferredArrays})
	if err != nil {
		return array.Host{}, err
	}
	return wire.HostFromPB(r.GetHost()), nil
}

func (c *Client) SetHostPreferredArrays(ctx context.Context, name string, arrays []string) (array.Host, error) {
	r, err := c.hosts.SetHostPreferredArrays(ctx, &arrayv1.SetHostPreferredArraysRequest{Name: name, PreferredArrays: arrays})
	if err != nil {
		return array.Host{}, err
	}
	return wire.HostFromPB(r.GetHost()), nil
}

func (c *Client) GetHost(ctx context.Context, name string, secrets bool) (array.Host, error) {
	r, err := c.hosts.GetHost(ctx, &arrayv1.GetHostRequest{Name: name, IncludeSecrets: secrets})
	if err != nil {
		return array.Host{}, err
	}
	return wire.HostFromPB(r.GetHost()), nil
}

func (c *Client) ListHosts(ctx context.Context) ([]array.Host, error) {
	return paging.All(ctx, func(ctx context.Context, token string) ([]array.Host, string, error) {
		r, err := c.hosts.ListHosts(ctx, &arrayv1.ListHostsRequest{PageSize: paging.MaxPageSize, PageToken: token})
		if err != nil {
			return nil, "", err
		}
		return wire.Map(r.GetHosts(), wire.HostFromPB), r.GetNextPageToken(), nil
	})
}

func (c *Client) DeleteHost(ctx context.Context, name string, force bool) error {
	_, err := c.hosts.DeleteHost(ctx, &arrayv1.DeleteHostRequest{Name: name, Force: force})
	return err
}

func (c *Client) ConnectVolume(ctx context.Context, spec array.ConnectionSpec) (array.Connection, error) {
	r, err := c.hosts.ConnectVolume(ctx, &arrayv1.ConnectVolumeRequest{Host: spec.Host, Volume: spec.Volume, Snapshot: spec.Snapshot})
	if err != nil {
		return array.Connection{}, err
	}
	return wire.ConnectionFromPB(r.GetConnection()), nil
}

func (c *Client) DisconnectVolume(ctx context.Context, spec array.ConnectionSpec) error {
	_, err := c.hosts.DisconnectVolume(ctx, &arrayv1.DisconnectVolumeRequest{Host: spec.Host, Volume: spec.Volume, Snapshot: spec.Snapshot})
	return err
}

func (c *Client) VolumeReservations(ctx context.Context, volume string) (array.Reservations, error) {
	r, err := c.hosts.GetVolumeReservations(ctx, &arrayv1.GetVolumeReservationsRequest{Volume: volume})
	if err != nil {
		return array.Reservations{}, err
	}
	return wire.ReservationsFromPB(r.GetReservations()), nil
}

func (c *Client) ClearVolumeReservations(ctx context.Context, volume string) (array.Reservations, error) {
	r, err := c.hosts.ClearVolumeReservations(ctx, &arrayv1.ClearVolumeReservationsRequest{Volume: volume})
	if err != nil {
		return array.Reservations{}, err
	}
	return wire.ReservationsFromPB(r.GetReservations()), nil
}

func (c *Client) ListConnections(ctx context.Context, host, volume string) ([]array.Connection, error) {
	return paging.All(ctx, func(ctx context.Context, token string) ([]array.Connection, string, error) {
		r, err := c.hosts.ListConnections(ctx, &arrayv1.ListConnectionsRequest{Host: host, Volume: volume, PageSize: paging.MaxPageSize, PageToken: token})
		if err != nil {
			return nil, "", err
		}
		return wire.Map(r.GetConnections(), wire.ConnectionFromPB), r.GetNextPageToken(), nil
	})
}
