package driver

import (
	"context"
	"net"
	"strconv"

	"github.com/volrep/volrep/array"
	"github.com/volrep/volrep/config"
	"github.com/volrep/volrep/errdefs"
)

// Connector is the attaching host, as os-brick describes it.
type Connector struct {
	Host, IP, Initiator string
	Multipath           bool
}

// ConnectionInfo is Cinder's connection_info.
type ConnectionInfo struct {
	// DriverVolumeType is "iscsi" or "nbd".
	DriverVolumeType string
	Data             map[string]string
	// ISCSI is set for "iscsi".
	ISCSI *ISCSITarget
}

// InitializeConnection authorises the connector's host to attach a volume,
// or a snapshot read-only, over the backend's protocol (see protocol).
func (b *Backend) InitializeConnection(ctx context.Context, volumeID, snapshotID string, c Connector) (ConnectionInfo, error) {
	if err := b.ready(); err != nil {
		return ConnectionInfo{}, err
	}
	p, err := b.protocol(ctx, false)
	if err != nil {
		return ConnectionInfo{}, err
	}
	if p == config.ProtocolISCSI {
		return b.initializeISCSI(ctx, volumeID, snapshotID, c)
	}
	return b.initializeNBD(ctx, volumeID, snapshotID, c)
}

// initializeNBD says where to connect over NBD. The export name is a
// secret for this attachment; TerminateConnection revokes it.
func (b *Backend) initializeNBD(ctx context.Context, volumeID, snapshotID string, c Connector) (ConnectionInfo, error) {
	spec := array.ExportSpec{Volume: volumeName(volumeID), AttachmentID: c.Host}
	if snapshotID != "" {
		spec.Snapshot = snapshotName(snapshotID)
	}
	a, addr, err := b.servingArray(ctx, spec.Volume)
	if err != nil {
		return ConnectionInfo{}, err
	}
	e, err := a.CreateExport(ctx, spec)
	if errdefs.IsNotFound(err) {
		if snapshotID != "" {
			return ConnectionInfo{}, errdefs.NotFound("snapshot %s of volume %s not found on backend %s", snapshotID, volumeID, b.cfg.Section)
		}
		return ConnectionInfo{}, b.volumeErr(volumeID, err)
	}
	if err != nil {
		return ConnectionInfo{}, err
	}
	ci := nbdConnectionInfo(e, addr, volumeID, snapshotID)
	// The URI holds the export name, a secret: log where, not what.
	b.log.Info("attachment authorised", "volume", volumeID, "snapshot", snapshotID, "host", c.Host,
		"nbd", net.JoinHostPort(ci.Data["host"], ci.Data["port"]))
	return ci, nil
}

// nbdConnectionInfo is the connection info of an export on the array at
// addr (its API address).
func nbdConnectionInfo(e array.Export, addr, volumeID, snapshotID string) ConnectionInfo {
	host := e.Host
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		// The array listens on every address; clients reach it where the
		// driver does.
		host, _, _ = net.SplitHostPort(addr)
	}
	hostPort := net.JoinHostPort(host, strconv.Itoa(e.Port))
	data := map[string]string{
		"host": host, "port": strconv.Itoa(e.Port), "export_name": e.Name,
		"uri":       "nbd://" + hostPort + "/" + e.Name,
		"read_only": strconv.FormatBool(e.ReadOnly), "volume_id": volumeID,
		"access_mode": "rw",
	}
	if e.ReadOnly {
		data["access_mode"] = "ro"
	}
	if snapshotID != "" {
		data["snapshot_id"] = snapshotID
	}
	return ConnectionInfo{DriverVolumeType: "nbd", Data: data}
}

// TerminateConnection revokes the connector host's attachment of a volume
// (or snapshot); with no host it revokes them all. Sessions still open on
// a revoked attachment fail their next request. It revokes NBD exports and
// iSCSI connections alike, so attachments made before volrep_protocol
// changed are revoked too.
func (b *Backend) TerminateConnection(ctx context.Context, volumeID, snapshotID string, c Connector) error {
	if err := b.ready(); err != nil {
		return err
	}
	vol := volumeName(volumeID)
	a, _, err := b.servingArray(ctx, vol)
	if err != nil {
		return err
	}
	snap := ""
	if snapshotID != "" {
		snap = snapshotName(snapshotID)
	}
	if err := b.terminateISCSI(ctx, a, vol, snap, c); err != nil {
		return err
	}
	if snap == "" {
		// A pod volume is connected at its peer too (podPeerPaths). Not
		// only while it is in the pod: one retyped out since keeps the
		// connection it was attached with.
		b.terminatePodPeers(ctx, vol, c)
	}
	return b.terminateNBD(ctx, a, vol, snap, c)
}

func (b *Backend) terminateNBD(ctx context.Context, a array.Array, vol, snap string, c Connector) error {
	exports, err := a.ListExports(ctx, vol)
	if err != nil {
		return err
	}
	for _, e := range exports {
		if e.Snapshot != snap || (c.Host != "" && e.AttachmentID != c.Host) {
			continue
		}
		if _, err := a.DeleteExport(ctx, e.Name, "", ""); err != nil {
			return err
		}
		b.log.Info("attachment revoked", "volume", vol, "snapshot", snap, "host", e.AttachmentID)
	}
	return nil
}

// servingArray returns the array that serves a volume's writes, and its
// address: the backend's active array, or for a member of a Cinder group
// failed over on its own (FailoverReplication) the target that holds the
// group's promoted copies.
func (b *Backend) servingArray(ctx context.Context, name string) (array.Array, string, error) {
	a, addr := b.activeArray(), b.activeAddr()
	if b.failedOver() {
		return a, addr, nil
	}
	v, err := a.GetVolume(ctx, name)
	if err != nil || !v.ReadOnly {
		// A missing volume is reported by the call that needs it.
		return a, addr, nil
	}
	id, err := b.groupServedBy(ctx, []string{name})
	if err != nil || id == "default" {
		return a, addr, err
	}
	return b.targets[id].Array, b.addrOf(id), nil
}

// activeAddr is the API address of the array serving the backend now.
func (b *Backend) activeAddr() string {
	b.mu.RLock()
	defer b.mu.RUnlock()
	for _, rd := range b.cfg.ReplicationDevices {
		if rd.BackendID == b.active {
			return rd.SanIP
		}
	}
	return b.cfg.SanIP
}

// activeToken is the API token of the array serving the backend now.
func (b *Backend) activeToken() string {
	b.mu.RLock()
	defer b.mu.RUnlock()
	for _, rd := range b.cfg.ReplicationDevices {
		if rd.BackendID == b.active {
			return rd.APIToken.Reveal()
		}
	}
	return b.cfg.APIToken.Reveal()
}
