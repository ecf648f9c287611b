package driver

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/volrep/volrep/array"
	"github.com/volrep/volrep/driver/extraspecs"
	"github.com/volrep/volrep/errdefs"
)

// VolumeUpdate is one entry of failover_host's volume updates.
type VolumeUpdate struct {
	VolumeID string
	Updates  ModelUpdate
}

// FailoverResult is failover_host's answer.
type FailoverResult struct {
	ActiveBackendID string
	Volumes         []VolumeUpdate
	// FailbackBytes is what a failback sent home: only what changed since
	// the failover.
	FailbackBytes int64
}

const (
	labelReplicaOf = "volrep.replica" // replication.LabelReplica
	labelInSync    = "volrep.pod_in_sync"
)

func (b *Backend) notePod(id string, online bool) {
	b.mu.Lock()
	if b.podOnline == nil {
		b.podOnline = map[string]bool{}
	}
	b.podOnline[id] = online
	b.mu.Unlock()
}

// copyOn reports whether replica, a copy's replica label, names one of
// the backend's replicas whose copies live on target's array: the
// protection group's, the pod's or a Cinder group's. One array may be both
// an async and a sync target.
func (b *Backend) copyOn(target, replica string) bool {
	addr := b.addrOf(target)
	for _, rd := range b.cfg.ReplicationDevices {
		if rd.SanIP != addr {
			continue
		}
		if replica == b.pgReplica(rd.BackendID) || replica == b.podReplica(rd.BackendID) ||
			(strings.HasPrefix(replica, groupPrefix) && strings.HasSuffix(replica, groupSuffix+"."+rd.BackendID)) {
			return true
		}
	}
	return false
}

func (b *Backend) targetIDs() []string {
	ids := make([]string, 0, len(b.cfg.ReplicationDevices))
	for _, rd := range b.cfg.ReplicationDevices {
		ids = append(ids, rd.BackendID)
	}
	return ids
}

// FailoverHost moves the backend to secondary, or home with "default".
func (b *Backend) FailoverHost(ctx context.Context, volumeIDs []string, secondary string) (FailoverResult, error) {
	if err := b.failing.Acquire(ctx, 1); err != nil {
		return FailoverResult{}, err
	}
	defer b.failing.Release(1)
	active := b.State().ActiveBackendID
	ids := b.targetIDs()
	switch {
	case len(ids) == 0:
		return FailoverResult{}, errdefs.FailedPrecondition("backend %s has no replication_device to fail over to", b.cfg.Section)
	case secondary == "default" && active == "default":
		return FailoverResult{}, errdefs.FailedPrecondition("backend %s is not failed over; there is nothing to fail back from", b.cfg.Section)
	case secondary == "default":
		return b.failback(ctx, volumeIDs, active)
	case secondary == active:
		return FailoverResult{}, errdefs.InvalidArgument("secondary_id", "%q is the array backend %s already serves from; name another of [%s], or \"default\" to fail back",
			secondary, b.cfg.Section, strings.Join(ids, ", "))
	case secondary != "" && !slices.Contains(ids, secondary):
		return FailoverResult{}, errdefs.InvalidArgument("secondary_id", "%q is not a replication_device backend_id of backend %s; configured: [%s]",
			secondary, b.cfg.Section, strings.Join(ids, ", "))
	case active != "default":
		return FailoverResult{}, errdefs.FailedPrecondition("backend %s is failed over to %s; fail back to \"default\" before failing over elsewhere", b.cfg.Section, active)
	}
	if secondary == "" {
		var err error
		if secondary, err = b.chooseSecondary(ctx); err != nil {
			return FailoverResult{}, err
		}
	}
	return b.failover(ctx, volumeIDs, secondary)
}

// chooseSecondary prefers a sync target whose pod was in sync, then the
// async target holding the newest replicated snapshot.
func (b *Backend) chooseSecondary(ctx context.Context) (string, error) {
	b.watchTargets(ctx)
	b.mu.RLock()
	online := b.podOnline
	b.mu.RUnlock()
	for _, rd := range b.cfg.SyncTargets() {
		if online[rd.BackendID] {
			return rd.BackendID, nil
		}
	}
	best, bestAt := "", time.Time{}
	for _, rd := range b.cfg.AsyncTargets() {
		at := b.newestReplicated(ctx, rd.BackendID)
		if best == "" || at.After(bestAt) {
			best, bestAt = rd.BackendID, at
		}
	}
	if best == "" {
		return "", errdefs.FailedPrecondition("no replication target of backend %s is in sync or holds a replicated snapshot", b.cfg.Section)
	}
	return best, nil
}

// newestReplicated is when the newest snapshot the protection group
// replicated to target was taken.
func (b *Backend) newestReplicated(ctx context.Context, target string) time.Time {
	var newest time.Time
	t := b.targets[target].Array
	vols, err := t.ListVolumes(ctx, b.cfg.Pool)
	if err != nil {
		return newest
	}
	for _, v := range vols {
		if v.Labels[labelReplicaOf] != b.pgReplica(target) {
			continue
		}
		snaps, err := t.ListSnapshots(ctx, v.Name)
		if err != nil {
			continue
		}
		if s := newestSnapshot(snaps); s.Created.After(newest) {
			newest = s.Created
		}
	}
	return newest
}

// failover promotes the target's copies of the backend's volumes and
// makes the target the backend's array. Async copies hold their newest
// complete replicated snapshot (a transfer in flight never shows); sync
// copies hold every acknowledged write.
func (b *Backend) failover(ctx context.Context, volumeIDs []string, target string) (FailoverResult, error) {
	t := b.targets[target]
	if err := b.awaitArray(ctx, t, "replication target "+target); err != nil {
		return FailoverResult{}, b.arrayError("replication target "+target, "replication_device", b.addrOf(target), "api_token", err)
	}
	// Stop shipping to the target if the primary still answers, so a late
	// cycle cannot meet the promoted volumes (they would refuse it anyway).
	pctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	if _, err := b.primary.Replication.SuspendReplica(pctx, b.pgReplica(target)); err != nil && !errdefs.IsNotFound(err) {
		b.log.Warn("could not suspend the protection group on the primary; carrying on", "backend_id", target, "err", err)
	}
	cancel()
	if len(volumeIDs) == 0 {
		// No list from the volume manager (the CLI): every volume the
		// target holds a copy of, since the primary may not answer.
		ids, err := volumesOn(ctx, t.Array, func(v array.Volume) bool { return b.copyOn(target, v.Labels[labelReplicaOf]) })
		if err != nil {
			return FailoverResult{}, fmt.Errorf("listing the copies on %s: %w", target, err)
		}
		volumeIDs = ids
	}
	res := FailoverResult{ActiveBackendID: target}
	b.mu.RLock()
	podInSync := false
	for _, rd := range b.cfg.SyncTargets() {
		if rd.SanIP == b.addrOf(target) && b.podOnline[rd.BackendID] {
			podInSync = true
		}
	}
	b.mu.RUnlock()
	stamp := fmt.Sprintf("failover.%d", b.opts.Now().Unix())
	for _, id := range volumeIDs {
		name := volumeName(id)
		v, err := t.Array.GetVolume(ctx, name)
		replicated := err == nil && b.copyOn(target, v.Labels[labelReplicaOf])
		if err != nil && !errdefs.IsNotFound(err) {
			return res, err
		}
		if !replicated {
			res.Volumes = append(res.Volumes, VolumeUpdate{id, ModelUpdate{Status: "error"}})
			continue
		}
		if strings.HasPrefix(v.Labels[labelReplicaOf], b.cfg.PodName+".") && podInSync {
			// Both copies were equal when the primary went: mark the point,
			// so the failback sends only what is written from here on.
			if _, err := t.Array.CreateSnapshot(ctx, name, stamp, map[string]string{labelReplicaOf: "failover", labelInSync: "true"}); err != nil {
				return res, fmt.Errorf("marking %s on %s: %w", name, target, err)
			}
		}
		if err := t.Array.SetReadOnly(ctx, name, false); err != nil {
			return res, fmt.Errorf("promoting %s on %s: %w", name, target, err)
		}
		res.Volumes = append(res.Volumes, VolumeUpdate{id, ModelUpdate{ProviderID: name, ReplicationStatus: ReplFailedOver}})
	}
	if err := b.setActive(target); err != nil {
		return res, err
	}
	// The target answered a moment ago: serve from it now rather than
	// after the run loop's next check.
	b.setState(true, "")
	b.log.Warn("backend failed over", "backend_id", target, "volumes", len(res.Volumes))
	return res, nil
}

// failback brings the backend home: for each volume the secondary holds,
// only what changed since the newest snapshot both arrays share goes back,
// then the primary's copy is promoted and the secondary's demoted, and
// replication resumes from there.
func (b *Backend) failback(ctx context.Context, volumeIDs []string, from string) (FailoverResult, error) {
	if err := b.awaitArray(ctx, b.primary, "primary array"); err != nil {
		return FailoverResult{}, b.arrayError("primary array", "san_ip", b.cfg.SanIP, "pure_api_token", err)
	}
	if _, err := b.primary.Array.CreatePool(ctx, b.cfg.Pool); err != nil {
		return FailoverResult{}, err
	}
	t := b.targets[from]
	link := "failback." + b.cfg.Section
	if _, err := t.Replication.CreateLink(ctx, array.LinkSpec{Name: link, Address: b.cfg.SanIP, Token: b.cfg.APIToken.Reveal()}); err != nil {
		return FailoverResult{}, fmt.Errorf("linking %s back to the primary: %w", from, err)
	}
	if len(volumeIDs) == 0 {
		// Promoted copies, and volumes created while failed over; not
		// the volumes of other backends that share the array.
		ids, err := volumesOn(ctx, t.Array, func(v array.Volume) bool {
			return !v.ReadOnly && (b.copyOn(from, v.Labels[labelReplicaOf]) || v.Labels[labelBackend] == b.cfg.Section)
		})
		if err != nil {
			return FailoverResult{}, fmt.Errorf("listing the volumes %s serves: %w", from, err)
		}
		volumeIDs = ids
	}
	res := FailoverResult{ActiveBackendID: "default"}
	stamp := fmt.Sprintf("failback.%d", b.opts.Now().Unix())
	// What each volume's type asks for, as the secondary's copy says: set
	// only on volumes made while failed over, which join their replication
	// once home.
	want := map[int]string{}
	for _, id := range volumeIDs {
		name := volumeName(id)
		v, err := t.Array.GetVolume(ctx, name)
		if errdefs.IsNotFound(err) || (err == nil && v.ReadOnly) {
			// Not served from the secondary: nothing to bring home.
			res.Volumes = append(res.Volumes, VolumeUpdate{id, ModelUpdate{Status: "error"}})
			continue
		}
		if err != nil {
			return res, err
		}
		want[len(res.Volumes)] = v.Labels[labelReplType]
		sent, err := b.bringHome(ctx, t, link, name, stamp)
		if err != nil {
			return res, fmt.Errorf("failing back volume %s: %w", id, err)
		}
		res.FailbackBytes += sent
		res.Volumes = append(res.Volumes, VolumeUpdate{id, ModelUpdate{ProviderID: name}})
	}
	if err := b.setActive("default"); err != nil {
		return res, err
	}
	b.setState(true, "")
	for _, rd := range b.cfg.AsyncTargets() {
		if _, err := b.primary.Replication.ResumeReplica(ctx, b.pgReplica(rd.BackendID)); err != nil && !errdefs.IsNotFound(err) {
			b.log.Warn("resuming the protection group after failback", "backend_id", rd.BackendID, "err", err)
		}
	}
	// Each volume home reports its own replication: that of the group it
	// is in at home, or, for one made while failed over, that of the group
	// it joins now.
	for i := range res.Volumes {
		u := &res.Volumes[i].Updates
		if u.ProviderID == "" {
			continue
		}
		kind, err := b.replicationOf(ctx, u.ProviderID)
		switch w := want[i]; {
		case err != nil:
			b.log.Warn("could not tell a failed-back volume's replication", "volume", u.ProviderID, "err", err)
			u.ReplicationStatus = ReplError
		case kind == extraspecs.None && (w == extraspecs.Async || w == extraspecs.Sync):
			st, err := b.replicate(ctx, u.ProviderID, w)
			if err != nil {
				b.log.Warn("a volume made while failed over could not join its replication", "volume", u.ProviderID, "type", w, "err", err)
				st = ReplError
			}
			u.ReplicationStatus = st
		case kind == extraspecs.None:
			u.ReplicationStatus = ReplDisabled
		default:
			u.ReplicationStatus = ReplEnabled
		}
	}
	b.log.Warn("backend failed back", "from", from, "volumes", len(res.Volumes), "bytes_sent", res.FailbackBytes)
	return res, nil
}

// volumesOn lists the Cinder volume ids of the driver's volumes on a that
// keep accepts.
func volumesOn(ctx context.Context, a array.Array, keep func(array.Volume) bool) ([]string, error) {
	vols, err := a.ListVolumes(ctx, "")
	if err != nil {
		return nil, err
	}
	var ids []string
	for _, v := range vols {
		if id, ok := volumeID(v.Name); ok && keep(v) {
			ids = append(ids, id)
		}
	}
	return ids, nil
}

// bringHome sends one volume's changes since failover back to the primary.
func (b *Backend) bringHome(ctx context.Context, t Conn, link, name, stamp string) (int64, error) {
	p := b.primary.Array
	if _, err := p.GetVolume(ctx, name); err == nil {
		// The primary's copy becomes a replica target for the way back; its
		// writes since the last shared snapshot were lost with the failover.
		if err := p.SetReadOnly(ctx, name, true); err != nil {
			return 0, err
		}
	} else if !errdefs.IsNotFound(err) {
		return 0, err
	}
	if err := b.adoptFailoverPoint(ctx, t, name); err != nil {
		return 0, err
	}
	if _, err := t.Array.CreateSnapshot(ctx, name, stamp, map[string]string{labelReplicaOf: "failback"}); err != nil && !errdefs.IsAlreadyExists(err) {
		return 0, err
	}
	op, err := sendSnapshot(ctx, t.Replication, array.SnapshotReplicateSpec{Volume: name, Snapshot: stamp, Link: link, RemotePool: b.cfg.Pool})
	if err != nil {
		return 0, fmt.Errorf("sending %s home: %w", name, err)
	}
	if err := p.SetReadOnly(ctx, name, false); err != nil {
		return 0, err
	}
	if err := t.Array.SetReadOnly(ctx, name, true); err != nil {
		return 0, err
	}
	b.log.Info("volume back home", "volume", name, "incremental", op.Result.Incremental, "base", op.Result.BaseSnapshot, "bytes", op.Result.BytesSent)
	return op.Result.BytesSent, nil
}

// adoptFailoverPoint gives the primary's copy of a pod volume the identity
// of the snapshot the secondary took at failover, when the two were in
// sync then: the primary has taken no write since, so its current content
// is that snapshot's, and the way home is a delta from it.
func (b *Backend) adoptFailoverPoint(ctx context.Context, t Conn, name string) error {
	snaps, err := t.Array.ListSnapshots(ctx, name)
	if err != nil {
		return err
	}
	var point *array.Snapshot
	for i, s := range snaps {
		if s.Labels[labelInSync] == "true" {
			point = &snaps[i]
		}
	}
	if point == nil {
		return nil
	}
	mine, err := b.primary.Array.ListSnapshots(ctx, name)
	if errdefs.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if slices.ContainsFunc(mine, func(s array.Snapshot) bool { return s.GUID == point.GUID }) {
		return nil
	}
	_, err = b.primary.Array.AdoptSnapshot(ctx, name, point.Name, point.GUID, map[string]string{labelReplicaOf: "failover"})
	return err
}

func (b *Backend) addrOf(id string) string {
	for _, rd := range b.cfg.ReplicationDevices {
		if rd.BackendID == id {
			return rd.SanIP
		}
	}
	return b.cfg.SanIP
}

// setActive switches the backend's array and persists the choice first.
func (b *Backend) setActive(id string) error {
	if err := b.updateState(func(st *backendState) { st.ActiveBackendID = id }); err != nil {
		return fmt.Errorf("recording the active backend: %w", err)
	}
	b.mu.Lock()
	b.active = id
	b.gen++
	b.stats = nil
	b.mu.Unlock()
	b.opts.OnState(b.State())
	// The run loop checks the new array now, and after a failback sets
	// replication up again, instead of at its next interval or backoff.
	b.Reconverge()
	return nil
}

// FailoverCompleted records the active backend Cinder settled on.
func (b *Backend) FailoverCompleted(ctx context.Context, active string) error {
	if active != "default" && !slices.Contains(b.targetIDs(), active) {
		return errdefs.InvalidArgument("active_backend_id", "%q is not \"default\" or a replication_device backend_id of [%s]", active, strings.Join(b.targetIDs(), ", "))
	}
	if err := b.failing.Acquire(ctx, 1); err != nil {
		return err
	}
	defer b.failing.Release(1)
	if b.State().ActiveBackendID == active {
		return nil
	}
	return b.setActive(active)
}
