package driver

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/volrep/volrep/array"
	"github.com/volrep/volrep/config"
	"github.com/volrep/volrep/errdefs"
)

// SnapshotReplicate sends a snapshot from backend src to dst, as
// Cinder's snapshot_replicate blueprint describes: the source array ships
// the delta from the newest snapshot both arrays hold (all of it with
// forceFull) over a link the driver sets up. dst is another backend, or a
// replication_device backend_id of src. It returns the operation's id on
// the source array.
func (d *Driver) SnapshotReplicate(ctx context.Context, src, snapID, volID, dst string, forceFull bool) (string, error) {
	return d.SnapshotsReplicate(ctx, src, volID, dst, []string{snapID}, forceFull)
}

// SnapshotsReplicate sends several snapshots of a volume in one operation:
// oldest first, each a delta on the one before (the first a delta on the
// newest snapshot both arrays hold, or full with forceFull), so the
// destination ends with all of them.
func (d *Driver) SnapshotsReplicate(ctx context.Context, src, volID, dst string, snapIDs []string, forceFull bool) (string, error) {
	from, to, err := d.pair(src, dst)
	if err != nil {
		return "", err
	}
	if _, err := to.array.CreatePool(ctx, to.pool); err != nil {
		return "", fmt.Errorf("destination %s: %w", dst, err)
	}
	if _, err := from.activeConn().Replication.CreateLink(ctx, array.LinkSpec{Name: to.link, Address: to.addr, Token: to.token}); err != nil {
		return "", fmt.Errorf("linking backend %s to %s: %w", src, dst, err)
	}
	spec := array.SnapshotReplicateSpec{Volume: volumeName(volID), Link: to.link, RemotePool: to.pool, ForceFull: forceFull}
	if len(snapIDs) == 1 {
		spec.Snapshot = snapshotName(snapIDs[0])
	} else {
		for _, id := range snapIDs {
			spec.Snapshots = append(spec.Snapshots, snapshotName(id))
		}
	}
	id, err := from.activeConn().Replication.ReplicateSnapshot(ctx, spec)
	if errdefs.IsNotFound(err) {
		return "", errdefs.NotFound("snapshot %s of volume %s on backend %s: %v", strings.Join(snapIDs, ", "), volID, src, err)
	}
	if err != nil {
		return "", err
	}
	now := time.Now()
	if err := from.journal.record(array.Operation{ID: id, Kind: "snapshot_replicate", State: array.OpRunning, Phase: "preparing", Started: now}); err != nil {
		from.log.Warn("operation journal: not written; the operation is lost from it if volrepd restarts", "operation", id, "error", err)
	}
	d.follow(from, id)
	from.log.Info("snapshot replication started", "snapshots", snapIDs, "volume", volID, "destination", dst, "operation", id, "force_full_copy", forceFull)
	return id, nil
}

// NewestSnapshots returns the ids of the count newest snapshots of a
// volume on backend src, oldest first: those up to and including upTo
// when it is set.
func (d *Driver) NewestSnapshots(ctx context.Context, src, volID, upTo string, count int) ([]string, error) {
	b, err := d.Backend(src)
	if err != nil {
		return nil, err
	}
	ss, err := b.ListSnapshots(ctx, volID) // oldest first
	if err != nil {
		return nil, err
	}
	if upTo != "" {
		i := slices.IndexFunc(ss, func(s Snapshot) bool { return s.ID == upTo })
		if i < 0 {
			return nil, errdefs.NotFound("snapshot %s of volume %s not found on backend %s", upTo, volID, src)
		}
		ss = ss[:i+1]
	}
	if len(ss) < count {
		return nil, errdefs.FailedPrecondition("volume %s has %d snapshots on backend %s (up to %q), fewer than the %d asked for; ask for fewer",
			volID, len(ss), src, upTo, count)
	}
	var out []string
	for _, s := range ss[len(ss)-count:] {
		out = append(out, s.ID)
	}
	return out, nil
}

// destination is where a snapshot is replicated to: another backend's
// active array, or one of the source backend's replication targets.
type destination struct {
	array       array.Array
	addr, token string
	pool, link  string
}

// pair returns the source backend, up, and the destination dst names: a
// backend (up, and not the source), or else a replication_device
// backend_id of the source.
func (d *Driver) pair(src, dst string) (*Backend, destination, error) {
	from, err := d.Backend(src)
	if err != nil {
		return nil, destination{}, err
	}
	if err := from.ready(); err != nil {
		return nil, destination{}, err
	}
	to, err := d.Backend(dst)
	if err != nil {
		rd, ok := from.device(dst)
		if !ok {
			return nil, destination{}, errdefs.InvalidArgument("destination_backend", "%q is neither a backend nor a replication_device backend_id of %s: %v", dst, src, err)
		}
		if rd.SanIP == from.activeAddr() {
			return nil, destination{}, errdefs.InvalidArgument("destination_backend", "%q is the array backend %s serves from now; name another", dst, src)
		}
		return from, destination{array: from.targets[rd.BackendID].Array, addr: rd.SanIP, token: rd.APIToken.Reveal(),
			pool: from.cfg.Pool, link: "device." + rd.BackendID}, nil
	}
	if from == to {
		return nil, destination{}, errdefs.InvalidArgument("destination_backend", "is the source backend %s; name another backend or a replication_device backend_id", src)
	}
	if err := to.ready(); err != nil {
		return nil, destination{}, err
	}
	return from, destination{array: to.activeArray(), addr: to.activeAddr(), token: to.activeToken(),
		pool: to.cfg.Pool, link: "backend." + to.cfg.Section}, nil
}

// device returns the replication_device with backend_id id.
func (b *Backend) device(id string) (config.ReplicationDevice, bool) {
	for _, rd := range b.cfg.ReplicationDevices {
		if rd.BackendID == id {
			return rd, true
		}
	}
	return config.ReplicationDevice{}, false
}

// Operations returns the operations API of the backend's active array.
func (b *Backend) Operations() (array.Operations, error) {
	if err := b.ready(); err != nil {
		return nil, err
	}
	return journaledOps{Operations: b.activeConn().Replication, j: b.journal, cancel: b.cancelRun}, nil
}

// Verification is the outcome of comparing a snapshot with its replica.
type Verification struct {
	Match              bool
	Blocks             int64
	FirstMismatch      int64
	SourceCRC, DestCRC uint32
	Size               int64
}

// verifyChunk is how much each side checksums per call.
const verifyChunk = 64 << 20

// VerifySnapshot compares a snapshot on src with its replica on dst by
// the CRC-32C of every block, computed by each array locally, and reports
// the first block that differs.
func (d *Driver) VerifySnapshot(ctx context.Context, src, snapID, volID, dst string) (Verification, error) {
	from, to, err := d.pair(src, dst)
	if err != nil {
		return Verification{}, err
	}
	vol, snap := volumeName(volID), snapshotName(snapID)
	a, b := from.activeArray(), to.array
	sa, err := a.GetSnapshot(ctx, vol, snap)
	if err != nil {
		return Verification{}, err
	}
	sb, err := b.GetSnapshot(ctx, vol, snap)
	if errdefs.IsNotFound(err) {
		return Verification{}, errdefs.NotFound("backend %s has no replica of snapshot %s of volume %s; replicate it first", dst, snapID, volID)
	}
	if err != nil {
		return Verification{}, err
	}
	v := Verification{Match: true, FirstMismatch: -1, Size: sa.SizeBytes}
	if sb.SizeBytes != sa.SizeBytes {
		v.Match, v.FirstMismatch = false, min(sa.SizeBytes, sb.SizeBytes)
		return v, nil
	}
	for off := int64(0); off < sa.SizeBytes; off += verifyChunk {
		n := min(int64(verifyChunk), sa.SizeBytes-off)
		ca, err := a.Checksums(ctx, vol, snap, off, n)
		if err != nil {
			return v, err
		}
		cb, err := b.Checksums(ctx, vol, snap, off, n)
		if err != nil {
			return v, err
		}
		for i := range ca {
			v.Blocks++
			if i >= len(cb) || ca[i] != cb[i] {
				v.Match, v.FirstMismatch, v.SourceCRC = false, off+int64(i)*array.BlockSize, ca[i]
				if i < len(cb) {
					v.DestCRC = cb[i]
				}
				return v, nil
			}
		}
	}
	return v, nil
}
