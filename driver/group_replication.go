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

// A replicating group is a protection group of its own: its consistency
// group on the primary array with an ASYNC replica to every async target,
// on the backend's schedule. A volume is in one consistency group at a
// time, so its members leave the backend's protection group while the
// group replicates; their remote copies stay and carry on as deltas.
// Whether a group replicates is whether its replicas exist, and where it
// is failed over to is where its copies are writable: the arrays hold all
// of it.

// groupReplica names a group's replica to one async target, as pgReplica
// names the backend's.
func groupReplica(cg, backendID string) string { return cg + "." + backendID }

// replicationGroup starts a replication operation on a group whose type
// replicates.
func (b *Backend) replicationGroup(ctx context.Context, id, op string) (array.Group, func(), error) {
	release, err := b.groupOp(id, op)
	if err != nil {
		return array.Group{}, nil, err
	}
	g, err := b.getGroup(ctx, b.primary.Array, id)
	switch {
	case b.failedOver():
		err = errdefs.FailedPrecondition("backend %s is failed over to %s; groups replicate from the primary array, so fail the backend back first", b.cfg.Section, b.State().ActiveBackendID)
	case err == nil && !replicatedGroup(g):
		err = errdefs.FailedPrecondition("group %s's type does not enable %s; create the group with a group type that sets it to '<is> True'", id, extraspecs.KeyGroupReplication)
	}
	if err != nil {
		release()
		return array.Group{}, nil, err
	}
	return g, release, nil
}

// groupResult reports a group and its volumes after a replication call.
func groupResult(cg string, names []string, groupStatus, volumeStatus string) GroupResult {
	res := GroupResult{Group: ModelUpdate{ProviderID: cg, Status: "available", ReplicationStatus: groupStatus}}
	for _, n := range names {
		id, _ := volumeID(n)
		res.Volumes = append(res.Volumes, VolumeUpdate{id, ModelUpdate{ProviderID: n, ReplicationStatus: volumeStatus}})
	}
	return res
}

// EnableReplication makes the group a protection group of its own and
// moves its volumes into it.
func (b *Backend) EnableReplication(ctx context.Context, id string, volumeIDs []string) (GroupResult, error) {
	g, release, err := b.replicationGroup(ctx, id, "enable replication")
	if err != nil {
		return GroupResult{}, err
	}
	defer release()
	if err := b.checkMembers(ctx, "volume_ids", g, volumeIDs); err != nil {
		return GroupResult{}, err
	}
	names := union(g.Members, volumeNames(volumeIDs))
	from, err := b.groupServedBy(ctx, names)
	if err != nil {
		return GroupResult{}, err
	}
	if from != "default" {
		return GroupResult{}, errdefs.FailedPrecondition("group %s is failed over to %s; fail it back to \"default\" (FailoverReplication) first", id, from)
	}
	// The links and target pools are the backend's; a target that was
	// down at start-up may not have them yet.
	if err := b.convergeAsync(ctx); err != nil {
		return GroupResult{}, err
	}
	reps, err := b.primary.Replication.ListReplicas(ctx, g.Name)
	if err != nil {
		return GroupResult{}, err
	}
	if len(reps) == 0 {
		// New replicas number their snapshots from 1 again: names that a
		// former replica left where it could not drop them would collide.
		b.dropGroupSnapshots(ctx, g.Name, names)
	}
	for _, rd := range b.cfg.AsyncTargets() {
		if err := b.replicateGroup(ctx, g.Name, rd.BackendID); err != nil {
			return GroupResult{}, fmt.Errorf("replicating group %s to %s: %w", id, rd.BackendID, err)
		}
	}
	in := slices.DeleteFunc(slices.Clone(names), func(n string) bool { return slices.Contains(g.Members, n) })
	if err := b.moveMembers(ctx, b.cfg.PGName, g.Name, in); err != nil {
		return GroupResult{}, err
	}
	b.kickGroup(ctx, g.Name)
	b.log.Info("group replication enabled", "group", id, "pg", g.Name, "volumes", len(names))
	return groupResult(g.Name, names, ReplEnabled, ReplEnabled), nil
}

func (b *Backend) replicateGroup(ctx context.Context, cg, target string) error {
	b.mu.RLock()
	ret, interval := b.retention(), b.cfg.ReplicaInterval
	b.mu.RUnlock()
	spec := array.ReplicaSpec{Name: groupReplica(cg, target), Kind: array.KindGroup, Local: cg, Link: target,
		Mode: array.ModeCreateTarget, RemotePool: b.cfg.Pool, Type: array.TypeAsync, Interval: interval,
		TargetRetention: ret, SourceRetention: ret}
	r := b.primary.Replication
	_, err := r.ReplicateEntity(ctx, spec)
	if errdefs.IsAlreadyExists(err) {
		_, err = r.UpdateReplica(ctx, spec.Name, array.ReplicaUpdate{Interval: interval, RPO: 2 * interval, TargetRetention: &ret, SourceRetention: &ret})
	}
	return err
}

// kickGroup ships a group now rather than at the next interval.
func (b *Backend) kickGroup(ctx context.Context, cg string) {
	for _, rd := range b.cfg.AsyncTargets() {
		if _, err := b.primary.Replication.SyncReplica(ctx, groupReplica(cg, rd.BackendID), false); err != nil {
			b.log.Warn("could not start a group's copy now; it goes at the next interval", "pg", cg, "backend_id", rd.BackendID, "err", err)
		}
	}
}

// moveMembers moves volumes from one consistency group of the primary
// array to another, putting them back if they cannot join.
func (b *Backend) moveMembers(ctx context.Context, from, to string, names []string) error {
	if len(names) == 0 {
		return nil
	}
	a := b.primary.Array
	if err := b.ensureGroup(ctx); err != nil {
		return err
	}
	if _, err := a.RemoveMembers(ctx, from, names); err != nil {
		return err
	}
	if _, err := a.AddMembers(ctx, to, names); err != nil {
		if _, rerr := a.AddMembers(ctx, from, names); rerr != nil {
			b.log.Error("volumes left both groups; they are not replicated until this is retried", "volumes", names, "from", from, "to", to, "err", rerr)
		}
		return fmt.Errorf("moving %s from %s to %s: %w", strings.Join(names, ", "), from, to, err)
	}
	return nil
}

// DisableReplication returns the group's volumes to the backend's
// protection group and drops the group's replicas. A failed-over group
// only loses its replicas: its volumes are served by the target, and the
// protection group would ship the primary's stale copies over them.
func (b *Backend) DisableReplication(ctx context.Context, id string, volumeIDs []string) (GroupResult, error) {
	g, release, err := b.replicationGroup(ctx, id, "disable replication")
	if err != nil {
		return GroupResult{}, err
	}
	defer release()
	names := union(g.Members, volumeNames(volumeIDs))
	from, err := b.groupServedBy(ctx, names)
	if err != nil {
		return GroupResult{}, err
	}
	if from != "default" {
		if err := b.dropGroupReplicas(ctx, g.Name, false); err != nil {
			return GroupResult{}, err
		}
		return groupResult(g.Name, names, ReplDisabled, ReplFailedOver), nil
	}
	if err := b.eachGroupReplica(ctx, g.Name, quiesce); err != nil {
		return GroupResult{}, err
	}
	if err := b.moveMembers(ctx, g.Name, b.cfg.PGName, g.Members); err != nil {
		return GroupResult{}, err
	}
	// A protection-group cycle now sends only what changed since the
	// newest group snapshot, while both sides still hold it.
	for _, rd := range b.cfg.AsyncTargets() {
		sctx, cancel := context.WithTimeout(ctx, time.Minute)
		if _, err := b.primary.Replication.SyncReplica(sctx, b.pgReplica(rd.BackendID), true); err != nil {
			b.log.Warn("the protection group did not ship the group's volumes yet; its next cycle sends more", "pg", b.cfg.PGName, "backend_id", rd.BackendID, "err", err)
		}
		cancel()
	}
	if err := b.dropGroupReplicas(ctx, g.Name, false); err != nil {
		return GroupResult{}, err
	}
	b.dropGroupSnapshots(ctx, g.Name, g.Members)
	b.log.Info("group replication disabled", "group", id, "pg", g.Name, "volumes", len(names))
	return groupResult(g.Name, names, ReplDisabled, ReplEnabled), nil
}

func (b *Backend) eachGroupReplica(ctx context.Context, cg string, fn func(context.Context, array.Replication, string) error) error {
	r := b.primary.Replication
	reps, err := r.ListReplicas(ctx, cg)
	if err != nil {
		return err
	}
	for _, rep := range reps {
		if err := fn(ctx, r, rep.Name); err != nil {
			return fmt.Errorf("replica %s: %w", rep.Name, err)
		}
	}
	return nil
}

// dropGroupReplicas deletes a group's replicas once no cycle is running,
// with their remote copies when deleteRemote.
func (b *Backend) dropGroupReplicas(ctx context.Context, cg string, deleteRemote bool) error {
	return b.eachGroupReplica(ctx, cg, func(ctx context.Context, r array.Replication, name string) error {
		if err := quiesce(ctx, r, name); err != nil {
			return err
		}
		return r.DeleteReplica(ctx, name, deleteRemote)
	})
}

// quiesce suspends a replica and waits for a cycle in flight to end, so
// nothing ships behind the caller's back.
func quiesce(ctx context.Context, r array.Replication, name string) error {
	for {
		rep, err := r.SuspendReplica(ctx, name)
		if err != nil || rep.SyncState != array.SyncInProgress {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// dropGroupSnapshots deletes the snapshots a group's replicas took of its
// former members, at home and on the targets: nobody prunes them now.
func (b *Backend) dropGroupSnapshots(ctx context.Context, cg string, names []string) {
	for _, rd := range b.cfg.AsyncTargets() {
		rep := groupReplica(cg, rd.BackendID)
		for _, a := range []array.Array{b.primary.Array, b.targets[rd.BackendID].Array} {
			for _, n := range names {
				if err := deleteSnapshots(ctx, a, n, func(s array.Snapshot) bool { return s.Labels[labelReplicaOwner] == rep }); err != nil {
					b.log.Warn("could not drop a former group snapshot", "volume", n, "replica", rep, "err", err)
				}
			}
		}
	}
}

// deleteSnapshots deletes a volume's snapshots that match.
func deleteSnapshots(ctx context.Context, a array.Array, volume string, match func(array.Snapshot) bool) error {
	snaps, err := a.ListSnapshots(ctx, volume)
	if errdefs.IsNotFound(err) {
		return nil
	}
	for _, s := range snaps {
		if !match(s) {
			continue
		}
		if err := a.DeleteSnapshot(ctx, volume, s.Name); err != nil && !errdefs.IsNotFound(err) {
			return err
		}
	}
	return err
}

// groupServedBy returns the async target where the volumes' copies are
// writable, which is where a failover promoted them, or "default".
func (b *Backend) groupServedBy(ctx context.Context, names []string) (string, error) {
	for _, rd := range b.cfg.AsyncTargets() {
		for _, n := range names {
			v, err := b.targets[rd.BackendID].Array.GetVolume(ctx, n)
			if errdefs.IsNotFound(err) {
				continue
			}
			if err != nil {
				return "", b.arrayError("replication target "+rd.BackendID, "replication_device", rd.SanIP, "api_token", err)
			}
			if !v.ReadOnly {
				return rd.BackendID, nil
			}
		}
	}
	return "default", nil
}

func (b *Backend) asyncTargetIDs() []string {
	var ids []string
	for _, rd := range b.cfg.AsyncTargets() {
		ids = append(ids, rd.BackendID)
	}
	return ids
}

// FailoverReplication moves a group to secondary, or home with "default".
// Like FailoverHost it works without the primary array, given the group's
// volumes.
func (b *Backend) FailoverReplication(ctx context.Context, id string, volumeIDs []string, secondary string) (GroupResult, error) {
	if err := b.failing.Acquire(ctx, 1); err != nil {
		return GroupResult{}, err
	}
	defer b.failing.Release(1)
	if b.primary.Array == nil {
		return GroupResult{}, b.ready()
	}
	if b.failedOver() {
		return GroupResult{}, errdefs.FailedPrecondition("backend %s is failed over to %s as a whole; fail it back before failing over one group", b.cfg.Section, b.State().ActiveBackendID)
	}
	release, err := b.ops.acquire("group "+id, "failover")
	if err != nil {
		return GroupResult{}, err
	}
	defer release()
	names := volumeNames(volumeIDs)
	cg := groupName(id)
	// The primary need not answer: a group fails over because its site is
	// gone. What it says, it says within seconds; if it is just back, the
	// connection must not still be waiting out gRPC's backoff.
	b.primary.reconnect()
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	g, err := b.getGroup(pctx, b.primary.Array, id)
	var reps []array.Replica
	if err == nil {
		reps, err = b.primary.Replication.ListReplicas(pctx, cg)
	}
	cancel()
	switch {
	case err == nil && !replicatedGroup(g):
		return GroupResult{}, errdefs.FailedPrecondition("group %s's type does not enable %s, so it has no replica to fail over to", id, extraspecs.KeyGroupReplication)
	case err == nil:
		names = union(names, g.Members)
	case errdefs.IsNotFound(err):
		return GroupResult{}, err
	case !errdefs.IsUnavailable(err) && !errdefs.Is(err, errdefs.KindDeadlineExceeded):
		return GroupResult{}, fmt.Errorf("asking the primary array for group %s: %w", id, err)
	case len(names) == 0:
		return GroupResult{}, errdefs.Unavailable("the primary array does not answer (%v), so group %s's members are unknown; pass its volume_ids", shortErr(err), id)
	}
	from, err := b.groupServedBy(ctx, names)
	if err != nil {
		return GroupResult{}, err
	}
	ids := b.asyncTargetIDs()
	if secondary == "" && len(ids) == 1 {
		secondary = ids[0]
	}
	switch {
	case secondary == "default" && from == "default":
		return GroupResult{}, errdefs.FailedPrecondition("group %s is not failed over; there is nothing to fail back from", id)
	case secondary == "default":
		return b.groupFailback(ctx, cg, names, from)
	case from != "default":
		return GroupResult{}, errdefs.FailedPrecondition("group %s is failed over to %s; fail it back to \"default\" before failing over elsewhere", id, from)
	case !slices.Contains(ids, secondary):
		return GroupResult{}, errdefs.InvalidArgument("secondary_backend_id", "%q is not an async replication_device backend_id of backend %s; choose one of [%s], or \"default\" to fail back",
			secondary, b.cfg.Section, strings.Join(ids, ", "))
	case g.Name != "" && len(reps) == 0:
		return GroupResult{}, errdefs.FailedPrecondition("group %s does not replicate; enable its replication (EnableReplication) and let a cycle reach %s first", id, secondary)
	}
	return b.groupFailover(ctx, cg, names, secondary)
}

// groupFailover promotes the group's copies on target at the newest group
// snapshot that every member holds there, so the set is crash-consistent
// even when the primary stopped in the middle of a cycle.
func (b *Backend) groupFailover(ctx context.Context, cg string, names []string, target string) (GroupResult, error) {
	t := b.targets[target]
	if err := b.awaitArray(ctx, t, "replication target "+target); err != nil {
		return GroupResult{}, b.arrayError("replication target "+target, "replication_device", b.addrOf(target), "api_token", err)
	}
	rep := groupReplica(cg, target)
	primaryUp := b.stopShipping(ctx, rep)
	point, snaps, err := groupPoint(ctx, t.Array, rep, names)
	if err != nil {
		return GroupResult{}, fmt.Errorf("group %s on %s: %w", cg, target, err)
	}
	res := GroupResult{ActiveBackendID: target, GroupSnapshot: point.Name,
		Group: ModelUpdate{ProviderID: cg, Status: "available", ReplicationStatus: ReplFailedOver}}
	// Members are set back first, so a failure leaves none promoted.
	stamp := fmt.Sprintf("failover.%d", b.opts.Now().Unix())
	for n, ss := range snaps {
		newer := slices.DeleteFunc(ss, func(s array.Snapshot) bool { return !s.Created.After(point.Created) })
		if len(newer) == 0 {
			continue
		}
		if err := b.rewind(ctx, target, n, point, newer, stamp); err != nil {
			return GroupResult{}, fmt.Errorf("setting %s on %s back to group snapshot %s: %w", n, target, point.Name, err)
		}
	}
	for _, n := range names {
		id, _ := volumeID(n)
		if _, ok := snaps[n]; !ok {
			// It joined after the last cycle: it has no copy consistent
			// with the others, and stays at home.
			b.log.Warn("group member has no group snapshot on the target; not failed over", "volume", n, "backend_id", target)
			res.Volumes = append(res.Volumes, VolumeUpdate{id, ModelUpdate{Status: "error"}})
			continue
		}
		if primaryUp {
			// Writes at home now would be lost at failback: refuse them.
			if err := b.primary.Array.SetReadOnly(ctx, n, true); err != nil {
				return res, fmt.Errorf("demoting %s on the primary: %w", n, err)
			}
		}
		if err := t.Array.SetReadOnly(ctx, n, false); err != nil {
			return res, fmt.Errorf("promoting %s on %s: %w", n, target, err)
		}
		res.Volumes = append(res.Volumes, VolumeUpdate{id, ModelUpdate{ProviderID: n, ReplicationStatus: ReplFailedOver}})
	}
	b.log.Warn("group failed over", "pg", cg, "backend_id", target, "group_snapshot", point.Name, "volumes", len(names))
	return res, nil
}

// stopShipping, while the primary still answers, ships what it has and
// stops the group's replica, so no cycle lands behind the failover. It
// reports whether the primary answered.
func (b *Backend) stopShipping(ctx context.Context, rep string) bool {
	ictx, cancel := context.WithTimeout(ctx, 3*time.Second)
	_, err := b.primary.Array.Info(ictx)
	cancel()
	if err != nil {
		b.log.Warn("the primary array does not answer; failing the group over to what the target holds", "replica", rep, "err", err)
		return false
	}
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	r := b.primary.Replication
	if _, err := r.SyncReplica(sctx, rep, true); err != nil {
		b.log.Warn("could not ship the group's newest writes before failing over", "replica", rep, "err", err)
	}
	if err := quiesce(sctx, r, rep); err != nil {
		b.log.Warn("could not stop the group's replica; a late cycle will be refused by the promoted volumes", "replica", rep, "err", err)
	}
	return true
}

// groupPoint finds the newest snapshot of replica rep that every volume
// holding one of rep's snapshots on t has, and returns each volume's
// snapshots of rep. A cycle ships the members one by one, so a volume may
// hold a newer one than the others.
func groupPoint(ctx context.Context, t array.Array, rep string, names []string) (array.Snapshot, map[string][]array.Snapshot, error) {
	snaps := map[string][]array.Snapshot{}
	count := map[string]int{}
	holders := 0
	for _, n := range names {
		all, err := t.ListSnapshots(ctx, n)
		if err != nil && !errdefs.IsNotFound(err) {
			return array.Snapshot{}, nil, err
		}
		for _, s := range all {
			if s.Labels[labelReplicaOwner] == rep {
				snaps[n] = append(snaps[n], s)
				count[s.Name]++
			}
		}
		if len(snaps[n]) > 0 {
			holders++
		}
	}
	var point array.Snapshot
	for _, ss := range snaps {
		for _, s := range ss {
			if count[s.Name] == holders && s.Created.After(point.Created) {
				point = s
			}
		}
	}
	if point.Name == "" {
		return point, nil, errdefs.FailedPrecondition("no group snapshot has reached the target for all members yet; wait for a replication cycle and retry")
	}
	return point, snaps, nil
}

// rewind sets a target copy that received a newer group snapshot than the
// group's point back to the point, and deletes the newer ones. An array
// moves a volume's content only by receiving, so the target sends itself
// an empty delta on top of the point, from a clone of the point that
// adopts its identity: O(1), where a full copy would be O(size).
func (b *Backend) rewind(ctx context.Context, target, name string, point array.Snapshot, newer []array.Snapshot, stamp string) error {
	t := b.targets[target]
	rd, _ := b.device(target)
	link := "rewind." + b.cfg.Section
	if _, err := t.Replication.CreateLink(ctx, array.LinkSpec{Name: link, Address: rd.SanIP, Token: rd.APIToken.Reveal()}); err != nil {
		return fmt.Errorf("linking %s to itself: %w", target, err)
	}
	defer t.Replication.DeleteLink(context.WithoutCancel(ctx), link)
	tmp := "rewind-" + name
	dropVolume(ctx, t.Array, tmp) // a leftover of an interrupted rewind
	if _, err := t.Array.CloneSnapshot(ctx, array.CloneSpec{Volume: name, Snapshot: point.Name, Name: tmp}); err != nil {
		return err
	}
	defer dropVolume(context.WithoutCancel(ctx), t.Array, tmp)
	if _, err := t.Array.AdoptSnapshot(ctx, tmp, "point", point.GUID, nil); err != nil {
		return err
	}
	if _, err := t.Array.CreateSnapshot(ctx, tmp, stamp, map[string]string{labelReplicaOf: "failover"}); err != nil {
		return err
	}
	if _, err := sendSnapshot(ctx, t.Replication, array.SnapshotReplicateSpec{Volume: tmp, Snapshot: stamp, Link: link,
		RemotePool: b.cfg.Pool, RemoteVolume: name}); err != nil {
		return err
	}
	for _, s := range newer {
		if err := t.Array.DeleteSnapshot(ctx, name, s.Name); err != nil && !errdefs.IsNotFound(err) {
			return err
		}
	}
	b.log.Warn("group member set back to the group's point", "volume", name, "backend_id", target, "group_snapshot", point.Name, "dropped", len(newer))
	return nil
}

// dropVolume deletes a scratch volume with its snapshots, if it exists.
func dropVolume(ctx context.Context, a array.Array, name string) {
	if deleteSnapshots(ctx, a, name, func(array.Snapshot) bool { return true }) == nil {
		a.DeleteVolume(ctx, name)
	}
}

// sendSnapshot replicates one snapshot over a link and waits for it.
func sendSnapshot(ctx context.Context, r array.Replication, spec array.SnapshotReplicateSpec) (array.Operation, error) {
	id, err := r.ReplicateSnapshot(ctx, spec)
	if err != nil {
		return array.Operation{}, err
	}
	var op array.Operation
	if err := r.WatchOperation(ctx, id, func(o array.Operation) error { op = o; return nil }); err != nil {
		return op, err
	}
	if op.State != array.OpSucceeded {
		// The operation's record keeps its error's kind as text: make it a
		// kind again, so an unreachable peer stays UNAVAILABLE to the caller.
		return op, errdefs.New(errdefs.ParseKind(op.ErrCode), "sending %s@%s over link %s: %s", spec.Volume, spec.Snapshot, spec.Link, op.Err)
	}
	return op, nil
}

// groupFailback brings a failed-over group home: each promoted copy sends
// what changed since the newest snapshot both arrays hold, the primary's
// copies are promoted and the target's demoted, and the group's replica
// resumes from there.
func (b *Backend) groupFailback(ctx context.Context, cg string, names []string, from string) (GroupResult, error) {
	if err := b.awaitArray(ctx, b.primary, "primary array"); err != nil {
		return GroupResult{}, b.arrayError("primary array", "san_ip", b.cfg.SanIP, "pure_api_token", err)
	}
	t := b.targets[from]
	link := "failback." + b.cfg.Section
	if _, err := t.Replication.CreateLink(ctx, array.LinkSpec{Name: link, Address: b.cfg.SanIP, Token: b.cfg.APIToken.Reveal()}); err != nil {
		return GroupResult{}, fmt.Errorf("linking %s back to the primary: %w", from, err)
	}
	res := groupResult(cg, nil, ReplEnabled, "")
	res.ActiveBackendID = "default"
	stamp := fmt.Sprintf("failback.%d", b.opts.Now().Unix())
	for _, n := range names {
		id, _ := volumeID(n)
		v, err := t.Array.GetVolume(ctx, n)
		if err != nil && !errdefs.IsNotFound(err) {
			return res, err
		}
		if err == nil && !v.ReadOnly {
			sent, err := b.bringHome(ctx, t, link, n, stamp)
			if err != nil {
				return res, fmt.Errorf("failing back volume %s: %w", id, err)
			}
			res.FailbackBytes += sent
		} else {
			// Not promoted on the target (it joined late, or the failover
			// stopped half-way): the copy at home is the newest.
			if err := b.primary.Array.SetReadOnly(ctx, n, false); err != nil && !errdefs.IsNotFound(err) {
				return res, fmt.Errorf("promoting %s on the primary: %w", n, err)
			}
		}
		res.Volumes = append(res.Volumes, VolumeUpdate{id, ModelUpdate{ProviderID: n, ReplicationStatus: ReplEnabled}})
	}
	_, err := b.primary.Replication.ResumeReplica(ctx, groupReplica(cg, from))
	switch {
	case errdefs.IsNotFound(err):
		// Replication was disabled while failed over: the volumes go back
		// to the backend's protection group.
		res.Group.ReplicationStatus = ReplDisabled
		if err := b.moveMembers(ctx, cg, b.cfg.PGName, names); err != nil {
			return res, err
		}
		b.dropGroupSnapshots(ctx, cg, names) // the failback's snapshot is the base from here
	case err != nil:
		b.log.Warn("resuming the group's replica after failback", "pg", cg, "backend_id", from, "err", err)
	}
	b.log.Warn("group failed back", "pg", cg, "from", from, "volumes", len(names), "bytes_sent", res.FailbackBytes)
	return res, nil
}
