// Package wire converts array types to and from their protobuf messages,
// so the gRPC service and client cannot disagree on a field.
package wire

import (
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/volrep/volrep/array"
	arrayv1 "github.com/volrep/volrep/proto/volrep/array/v1"
)

func InfoToPB(i array.Info) *arrayv1.ArrayInfo {
	return &arrayv1.ArrayInfo{Name: i.Name, Id: i.ID, Version: i.Version, CapacityBytes: i.CapacityBytes,
		FreeBytes: i.FreeBytes, Now: timestamppb.New(i.Now), BlockSize: i.BlockSize,
		IscsiTargetIqn: i.ISCSITargetIQN, IscsiPortals: i.ISCSIPortals, StreamPort: int32(i.StreamPort), Features: i.Features}
}

func InfoFromPB(p *arrayv1.ArrayInfo) array.Info {
	return array.Info{Name: p.GetName(), ID: p.GetId(), Version: p.GetVersion(), CapacityBytes: p.GetCapacityBytes(),
		FreeBytes: p.GetFreeBytes(), Now: p.GetNow().AsTime(), BlockSize: p.GetBlockSize(),
		ISCSITargetIQN: p.GetIscsiTargetIqn(), ISCSIPortals: p.GetIscsiPortals(), StreamPort: int(p.GetStreamPort()), Features: p.GetFeatures()}
}

func PoolToPB(p array.Pool) *arrayv1.Pool {
	return &arrayv1.Pool{Name: p.Name, Created: timestamppb.New(p.Created), VolumeCount: p.VolumeCount}
}

func PoolFromPB(p *arrayv1.Pool) array.Pool {
	return array.Pool{Name: p.GetName(), Created: p.GetCreated().AsTime(), VolumeCount: p.GetVolumeCount()}
}

func VolumeToPB(v array.Volume) *arrayv1.Volume {
	return &arrayv1.Volume{Name: v.Name, Pool: v.Pool, SizeBytes: v.SizeBytes, Created: timestamppb.New(v.Created),
		Source: v.Source, UsedBytes: v.UsedBytes, SnapshotCount: v.SnapshotCount, Labels: v.Labels, ReadOnly: v.ReadOnly, Wwn: v.WWN, Group: v.Group,
		Qos: QoSToPB(v.QoS)}
}

// QoSToPB returns nil for no limit, so a volume without one carries none.
func QoSToPB(q array.QoS) *arrayv1.QoS {
	if q.IsZero() {
		return nil
	}
	return &arrayv1.QoS{TotalIops: q.TotalIOPS, ReadIops: q.ReadIOPS, WriteIops: q.WriteIOPS,
		TotalBytesPerSec: q.TotalBytesPerSec, ReadBytesPerSec: q.ReadBytesPerSec, WriteBytesPerSec: q.WriteBytesPerSec}
}

func QoSFromPB(q *arrayv1.QoS) array.QoS {
	return array.QoS{TotalIOPS: q.GetTotalIops(), ReadIOPS: q.GetReadIops(), WriteIOPS: q.GetWriteIops(),
		TotalBytesPerSec: q.GetTotalBytesPerSec(), ReadBytesPerSec: q.GetReadBytesPerSec(), WriteBytesPerSec: q.GetWriteBytesPerSec()}
}

func VolumeFromPB(v *arrayv1.Volume) array.Volume {
	return array.Volume{Name: v.GetName(), Pool: v.GetPool(), SizeBytes: v.GetSizeBytes(), Created: v.GetCreated().AsTime(),
		Source: v.GetSource(), UsedBytes: v.GetUsedBytes(), SnapshotCount: v.GetSnapshotCount(), Labels: v.GetLabels(), ReadOnly: v.GetReadOnly(), WWN: v.GetWwn(), Group: v.GetGroup(),
		QoS: QoSFromPB(v.GetQos())}
}

func SnapshotToPB(s array.Snapshot) *arrayv1.Snapshot {
	return &arrayv1.Snapshot{Volume: s.Volume, Name: s.Name, Guid: s.GUID, SizeBytes: s.SizeBytes,
		Created: timestamppb.New(s.Created), UsedBytes: s.UsedBytes, Labels: s.Labels}
}

func SnapshotFromPB(s *arrayv1.Snapshot) array.Snapshot {
	return array.Snapshot{Volume: s.GetVolume(), Name: s.GetName(), GUID: s.GetGuid(), SizeBytes: s.GetSizeBytes(),
		Created: s.GetCreated().AsTime(), UsedBytes: s.GetUsedBytes(), Labels: s.GetLabels()}
}

func ExtentsToPB(es []array.Extent) []*arrayv1.Extent {
	out := make([]*arrayv1.Extent, len(es))
	for i, e := range es {
		out[i] = &arrayv1.Extent{Offset: e.Offset, Length: e.Length, Zero: e.Zero}
	}
	return out
}

func ExtentsFromPB(es []*arrayv1.Extent) []array.Extent {
	out := make([]array.Extent, len(es))
	for i, e := range es {
		out[i] = array.Extent{Offset: e.GetOffset(), Length: e.GetLength(), Zero: e.GetZero()}
	}
	return out
}

// Map converts a slice element by element.
func Map[A, B any](in []A, f func(A) B) []B {
	out := make([]B, len(in))
	for i, a := range in {
		out[i] = f(a)
	}
	return out
}

func ExportToPB(e array.Export) *arrayv1.Export {
	return &arrayv1.Export{Name: e.Name, Volume: e.Volume, Snapshot: e.Snapshot, AttachmentId: e.AttachmentID,
		ReadOnly: e.ReadOnly, Host: e.Host, Port: int32(e.Port), Created: timestamppb.New(e.Created)}
}

func ExportFromPB(e *arrayv1.Export) array.Export {
	return array.Export{Name: e.GetName(), Volume: e.GetVolume(), Snapshot: e.GetSnapshot(), AttachmentID: e.GetAttachmentId(),
		ReadOnly: e.GetReadOnly(), Host: e.GetHost(), Port: int(e.GetPort()), Created: e.GetCreated().AsTime()}
}

func GroupToPB(g array.Group) *arrayv1.ConsistencyGroup {
	return &arrayv1.ConsistencyGroup{Name: g.Name, Pool: g.Pool, Members: g.Members, Created: timestamppb.New(g.Created), Labels: g.Labels}
}

func GroupFromPB(g *arrayv1.ConsistencyGroup) array.Group {
	return array.Group{Name: g.GetName(), Pool: g.GetPool(), Members: g.GetMembers(), Created: g.GetCreated().AsTime(), Labels: g.GetLabels()}
}

func HostToPB(h array.Host) *arrayv1.Host {
	return &arrayv1.Host{Name: h.Name, Iqns: h.IQNs, MutualChap: h.MutualCHAP, ChapUser: h.CHAPUser, ChapSecret: h.CHAPSecret,
		MutualChapUser: h.MutualCHAPUser, MutualChapSecret: h.MutualCHAPSecret, Created: timestamppb.New(h.Created),
		Labels: h.Labels, Connections: h.Connections, PreferredArrays: h.PreferredArrays}
}

func HostFromPB(h *arrayv1.Host) array.Host {
	return array.Host{Name: h.GetName(), IQNs: h.GetIqns(), MutualCHAP: h.GetMutualChap(), CHAPUser: h.GetChapUser(),
		CHAPSecret: h.GetChapSecret(), MutualCHAPUser: h.GetMutualChapUser(), MutualCHAPSecret: h.GetMutualChapSecret(),
		Created: h.GetCreated().AsTime(), Labels: h.GetLabels(), Connections: h.GetConnections(), PreferredArrays: h.GetPreferredArrays()}
}

func ConnectionToPB(c array.Connection) *arrayv1.Connection {
	out := &arrayv1.Connection{Host: c.Host, Volume: c.Volume, Snapshot: c.Snapshot, Lun: c.LUN, ReadOnly: c.ReadOnly,
		TargetIqn: c.TargetIQN, Portals: c.Portals, ChapUser: c.CHAPUser, ChapSecret: c.CHAPSecret,
		MutualChapUser: c.MutualCHAPUser, MutualChapSecret: c.MutualCHAPSecret, Wwn: c.WWN, Created: timestamppb.New(c.Created)}
	if c.Path != nil {
		out.PathState, out.PathPreferred = pathStates[c.Path.State], c.Path.Preferred
	}
	return out
}

var pathStates = map[array.PathState]arrayv1.PathState{
	array.PathOptimized:     arrayv1.PathState_PATH_STATE_ACTIVE_OPTIMIZED,
	array.PathNonOptimized:  arrayv1.PathState_PATH_STATE_ACTIVE_NON_OPTIMIZED,
	array.PathStandby:       arrayv1.PathState_PATH_STATE_STANDBY,
	array.PathUnavailable:   arrayv1.PathState_PATH_STATE_UNAVAILABLE,
	array.PathTransitioning: arrayv1.PathState_PATH_STATE_TRANSITIONING,
}

// pathOf is a connection's reported ALUA state; nil when not reported.
func pathOf(c *arrayv1.Connection) *array.Path {
	for st, pb := range pathStates {
		if pb == c.GetPathState() {
			return &array.Path{State: st, Preferred: c.GetPathPreferred()}
		}
	}
	return nil
}

func ConnectionFromPB(c *arrayv1.Connection) array.Connection {
	return array.Connection{Host: c.GetHost(), Volume: c.GetVolume(), Snapshot: c.GetSnapshot(), LUN: c.GetLun(),
		ReadOnly: c.GetReadOnly(), TargetIQN: c.GetTargetIqn(), Portals: c.GetPortals(), CHAPUser: c.GetChapUser(),
		CHAPSecret: c.GetChapSecret(), MutualCHAPUser: c.GetMutualChapUser(), MutualCHAPSecret: c.GetMutualChapSecret(),
		WWN: c.GetWwn(), Created: c.GetCreated().AsTime(), Path: pathOf(c)}
}

// The array's reservation types are SPC-4's codes, as the proto's are.
func ReservationsToPB(r array.Reservations) *arrayv1.VolumeReservations {
	out := &arrayv1.VolumeReservations{Generation: r.Generation, Type: arrayv1.ReservationType(r.Type), Aptpl: r.APTPL}
	for _, g := range r.Registrations {
		out.Registrations = append(out.Registrations, &arrayv1.Registration{InitiatorPort: g.InitiatorPort, Target: g.Target,
			RelativeTargetPort: uint32(g.RelativeTargetPort), Key: g.Key, Holder: g.Holder})
	}
	return out
}

func ReservationsFromPB(r *arrayv1.VolumeReservations) array.Reservations {
	out := array.Reservations{Generation: r.GetGeneration(), Type: array.ReservationType(r.GetType()), APTPL: r.GetAptpl()}
	for _, g := range r.GetRegistrations() {
		out.Registrations = append(out.Registrations, array.Registration{InitiatorPort: g.GetInitiatorPort(), Target: g.GetTarget(),
			RelativeTargetPort: uint16(g.GetRelativeTargetPort()), Key: g.GetKey(), Holder: g.GetHolder()})
	}
	return out
}
