package driver

import (
	"context"
	"slices"
	"strings"
	"time"

	"github.com/volrep/volrep/array"
	"github.com/volrep/volrep/config"
	"github.com/volrep/volrep/errdefs"
)

// Replica access at a target: a DR test reads a volume's replicated
// snapshot where it landed, without a failover. Only snapshots are
// attached, and snapshot attachments are read-only in the engine, so
// nothing at the target becomes writable; the replica volume itself (which
// the next cycle overwrites) is never exported. Target retention spares an
// attached snapshot until it is detached (array/replication pruneRemote).

// LatestSnapshot asks AttachReplica for the newest replicated snapshot.
const LatestSnapshot = "latest"

// ReplicaAttachment is what AttachReplica attached, and how to reach it.
type ReplicaAttachment struct {
	ConnectionInfo
	// Snapshot is the snapshot's name at the target ("latest" resolved).
	Snapshot string
	// Created is when the source took it: the replica's point in time.
	Created time.Time
}

// AttachReplica attaches a replicated snapshot of a volume (by name, or
// LatestSnapshot) read-only at the replication target backendID, over
// the protocol that target serves.
func (b *Backend) AttachReplica(ctx context.Context, volumeID, backendID, snapshot string, c Connector) (ReplicaAttachment, error) {
	if err := b.ready(); err != nil {
		return ReplicaAttachment{}, err
	}
	t, err := b.replicaTarget(backendID)
	if err != nil {
		return ReplicaAttachment{}, err
	}
	if active := b.State().ActiveBackendID; active == backendID {
		return ReplicaAttachment{}, errdefs.FailedPrecondition("backend %s is failed over to %s: its volumes there are the live ones, not replicas; attach them with volrep volume attach", b.cfg.Section, backendID)
	}
	for _, rd := range b.cfg.SyncTargets() {
		if rd.BackendID == backendID {
			// A pod mirrors writes, not snapshots: there is no point in
			// time to read there without disturbing the mirror.
			return ReplicaAttachment{}, errdefs.FailedPrecondition("replication target %s of backend %s is sync (pod %s): it keeps no snapshots to attach; attach at an async target [%s]",
				backendID, b.cfg.Section, b.cfg.PodName, strings.Join(backendIDs(b.cfg.AsyncTargets()), ", "))
		}
	}
	if snapshot == "" {
		snapshot = LatestSnapshot
	}
	p := b.cfg.Protocol
	if p == "" {
		if p, err = probeISCSI(ctx, t.Array); err != nil {
			return ReplicaAttachment{}, b.arrayError("replication target "+backendID, "replication_device", b.addrOf(backendID), "api_token", err)
		}
	}
	if p == config.ProtocolISCSI && c.Initiator == "" {
		return ReplicaAttachment{}, errdefs.InvalidArgument("connector.initiator",
			"is required: replication target %s of backend %s serves iSCSI", backendID, b.cfg.Section)
	}
	name, addr := volumeName(volumeID), b.addrOf(backendID)
	// Target retention may prune the newest snapshot between finding it
	// and attaching it, once a newer one landed: look again.
	for attempt := 0; ; attempt++ {
		snap, err := b.replicaSnapshot(ctx, t.Array, volumeID, backendID, snapshot)
		if err != nil {
			return ReplicaAttachment{}, err
		}
		var ci ConnectionInfo
		if p == config.ProtocolISCSI {
			var conn array.Connection
			conn, err = b.connectISCSI(ctx, t.Array, array.ConnectionSpec{Volume: name, Snapshot: snap.Name}, c, "")
			if err == nil && len(conn.Portals) == 0 {
				return ReplicaAttachment{}, errdefs.FailedPrecondition("replication target %s at %s reports no iSCSI portal; set its iscsi_listen, or volrep_protocol = nbd", backendID, addr)
			}
			ci = iscsiConnectionInfo(conn, addr, volumeID, snap.Name, c)
		} else {
			var e array.Export
			e, err = t.Array.CreateExport(ctx, array.ExportSpec{Volume: name, Snapshot: snap.Name, AttachmentID: c.Host, ReadOnly: true})
			ci = nbdConnectionInfo(e, addr, volumeID, snap.Name)
		}
		if errdefs.IsNotFound(err) && snapshot == LatestSnapshot && attempt < 2 {
			continue
		}
		if errdefs.IsNotFound(err) {
			return ReplicaAttachment{}, errdefs.NotFound("snapshot %q of volume %s left replication target %s (retention pruned it); attach another, or latest", snap.Name, volumeID, backendID)
		}
		if err != nil {
			return ReplicaAttachment{}, err
		}
		b.log.Info("replica attached", "volume", volumeID, "backend_id", backendID, "snapshot", snap.Name, "host", c.Host, "protocol", p)
		return ReplicaAttachment{ConnectionInfo: ci, Snapshot: snap.Name, Created: snap.Created}, nil
	}
}

// DetachReplica revokes the connector's attachments of a volume's
// replicated snapshots at backendID: one snapshot's, or with snapshot ""
// all of them; with no connector host or initiator, every host's. It
// never touches an attachment of the replica volume itself.
func (b *Backend) DetachReplica(ctx context.Context, volumeID, backendID, snapshot string, c Connector) error {
	if err := b.ready(); err != nil {
		return err
	}
	t, err := b.replicaTarget(backendID)
	if err != nil {
		return err
	}
	name := volumeName(volumeID)
	snaps := map[string]bool{}
	exports, err := t.Array.ListExports(ctx, name)
	if err != nil && !errdefs.IsNotFound(err) {
		return err
	}
	for _, e := range exports {
		if e.Snapshot != "" {
			snaps[e.Snapshot] = true
		}
	}
	conns, err := volumeConnections(ctx, t.Array, name)
	if err != nil {
		return err
	}
	for _, cn := range conns {
		if cn.Snapshot != "" {
			snaps[cn.Snapshot] = true
		}
	}
	for s := range snaps {
		if snapshot != "" && s != snapshot {
			continue
		}
		if err := b.terminateISCSI(ctx, t.Array, name, s, c); err != nil {
			return err
		}
		if err := b.terminateNBD(ctx, t.Array, name, s, c); err != nil {
			return err
		}
	}
	b.log.Info("replica detached", "volume", volumeID, "backend_id", backendID, "snapshot", snapshot, "host", c.Host)
	return nil
}

// replicaTarget is the connection to a replication target of the backend.
// A detach works at any of them, also the one a failover made active, so
// that a replica attached before the failover can still be let go.
func (b *Backend) replicaTarget(backendID string) (Conn, error) {
	ids := b.targetIDs()
	if !slices.Contains(ids, backendID) {
		return Conn{}, errdefs.InvalidArgument("backend_id", "%q is not a replication target of backend %s: its replication_device backend_ids are [%s]",
			backendID, b.cfg.Section, strings.Join(ids, ", "))
	}
	return b.targets[backendID], nil
}

// replicaSnapshot finds the replicated snapshot of a volume at target:
// by name, or the newest for LatestSnapshot.
func (b *Backend) replicaSnapshot(ctx context.Context, target array.Array, volumeID, backendID, snapshot string) (array.Snapshot, error) {
	name := volumeName(volumeID)
	notYet := func() error {
		return errdefs.FailedPrecondition("volume %s has no replicated snapshot at replication target %s yet: its volume type must replicate to it, and the first copy lands with the protection group's next cycle (every %s); wait for it, or shorten the interval (volrep replication schedule --interval 30s)",
			volumeID, backendID, b.cfg.ReplicaInterval)
	}
	v, err := target.GetVolume(ctx, name)
	if errdefs.IsNotFound(err) {
		// Tell a volume the backend does not have from one not copied yet.
		if _, serr := b.activeArray().GetVolume(ctx, name); errdefs.IsNotFound(serr) {
			return array.Snapshot{}, b.volumeErr(volumeID, serr)
		}
		return array.Snapshot{}, notYet()
	}
	if err != nil {
		return array.Snapshot{}, err
	}
	if !b.copyOn(backendID, v.Labels[labelReplicaOf]) {
		return array.Snapshot{}, errdefs.FailedPrecondition("volume %s at replication target %s is not a replica of backend %s (labelled %s=%q); its volume type may not replicate to %s",
			name, backendID, b.cfg.Section, labelReplicaOf, v.Labels[labelReplicaOf], backendID)
	}
	snaps, err := target.ListSnapshots(ctx, name)
	if err != nil {
		return array.Snapshot{}, err
	}
	if len(snaps) == 0 {
		return array.Snapshot{}, notYet()
	}
	if snapshot == LatestSnapshot {
		return newestSnapshot(snaps), nil
	}
	names := make([]string, 0, len(snaps))
	for _, s := range snaps {
		if s.Name == snapshot {
			return s, nil
		}
		names = append(names, s.Name)
	}
	return array.Snapshot{}, errdefs.NotFound("snapshot %q of volume %s is not at replication target %s; it holds [%s], or ask for latest",
		snapshot, volumeID, backendID, strings.Join(names, ", "))
}

func backendIDs(rds []config.ReplicationDevice) []string {
	ids := make([]string, 0, len(rds))
	for _, rd := range rds {
		ids = append(ids, rd.BackendID)
	}
	return ids
}

// newestSnapshot is the snapshot of snaps created last (the first of
// those created at the same moment), the zero Snapshot when there is none.
func newestSnapshot(snaps []array.Snapshot) array.Snapshot {
	var newest array.Snapshot
	for i, s := range snaps {
		if i == 0 || s.Created.After(newest.Created) {
			newest = s
		}
	}
	return newest
}
