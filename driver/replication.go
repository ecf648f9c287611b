package driver

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/volrep/volrep/array"
	"github.com/volrep/volrep/config"
	"github.com/volrep/volrep/driver/extraspecs"
	"github.com/volrep/volrep/driver/qosspecs"
	"github.com/volrep/volrep/errdefs"
)

// pgReplica names the protection group's replica to one async target.
func (b *Backend) pgReplica(backendID string) string { return b.cfg.PGName + "." + backendID }

// podReplica names the pod's replica to its sync target.
func (b *Backend) podReplica(backendID string) string { return b.cfg.PodOf(backendID) }

func (b *Backend) retention() array.Retention {
	return array.Retention{AllFor: b.cfg.RetentionShortTerm, PerDay: b.cfg.RetentionPerDay, Days: b.cfg.RetentionDays}
}

// setupReplication makes the primary array's links and protection group
// match the configuration. A target that cannot be reached leaves the
// backend up with replication pending; it is retried while the backend is up.
func (b *Backend) setupReplication(ctx context.Context) {
	err := errors.Join(b.convergeAsync(ctx), b.convergeSync(ctx))
	b.mu.Lock()
	was := b.replErr
	b.replErr = err
	b.mu.Unlock()
	switch {
	case err != nil && ctx.Err() == nil && (was == nil || was.Error() != err.Error()):
		b.log.Warn("replication setup incomplete; retrying", "pg", b.cfg.PGName, "err", err)
	case err == nil && len(b.cfg.AsyncTargets()) > 0:
		b.mu.RLock()
		interval, ret := b.cfg.ReplicaInterval, b.retention()
		b.mu.RUnlock()
		b.log.Info("protection group converged", "pg", b.cfg.PGName, "interval", interval,
			"retention", ret, "targets", len(b.cfg.AsyncTargets()))
	}
}

func (b *Backend) replicationPending() bool {
	b.mu.RLock()
	defer b.mu.RUnlock()
	return b.replErr != nil
}

func (b *Backend) ensureGroup(ctx context.Context) error {
	return b.ensureGroupNamed(ctx, b.cfg.PGName)
}

func (b *Backend) ensureGroupNamed(ctx context.Context, name string) error {
	_, err := b.primary.Array.CreateGroup(ctx, name, b.cfg.Pool, map[string]string{labelBackend: b.cfg.Section})
	return err
}

// convergeSync creates, idempotently, the pod stretched to each sync
// target: a consistency group with a SYNC replica.
func (b *Backend) convergeSync(ctx context.Context) error {
	return b.convergeTargets(ctx, "pod", b.cfg.PodName, b.cfg.SyncTargets(), b.convergePod)
}

// convergeAsync creates or updates, idempotently, the links to every async
// target and the protection group's replica to each, with the interval and
// retention of the configuration.
func (b *Backend) convergeAsync(ctx context.Context) error {
	return b.convergeTargets(ctx, "protection group", b.cfg.PGName, b.cfg.AsyncTargets(), b.convergeTarget)
}

// convergeTargets makes the primary's group, and for each target its pool,
// the primary's link to it and, by replicate, the group's replica to it.
// A target that fails does not keep the others from converging.
func (b *Backend) convergeTargets(ctx context.Context, what, group string, targets []config.ReplicationDevice,
	replicate func(context.Context, array.Replication, string) error) error {
	if len(targets) == 0 {
		return nil
	}
	if err := b.ensureGroupNamed(ctx, group); err != nil {
		return fmt.Errorf("%s %q: %w", what, group, err)
	}
	var errs []error
	for _, rd := range targets {
		err := b.linkTarget(ctx, rd)
		if err == nil {
			err = replicate(ctx, b.primary.Replication, rd.BackendID)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("replication_device %s (%s): %w", rd.BackendID, rd.SanIP, err))
		}
	}
	return errors.Join(errs...)
}

// linkTarget makes the backend's pool on a target and the primary's link to it.
func (b *Backend) linkTarget(ctx context.Context, rd config.ReplicationDevice) error {
	if _, err := b.targets[rd.BackendID].Array.CreatePool(ctx, b.cfg.Pool); err != nil {
		return fmt.Errorf("creating pool %q on the target: %w", b.cfg.Pool, err)
	}
	if _, err := b.primary.Replication.CreateLink(ctx, array.LinkSpec{Name: rd.BackendID, Address: rd.SanIP, Token: rd.APIToken.Reveal()}); err != nil {
		return fmt.Errorf("linking the primary array to it: %w", err)
	}
	return nil
}

func (b *Backend) convergePod(ctx context.Context, r array.Replication, id string) error {
	spec := array.ReplicaSpec{Name: b.podReplica(id), Kind: array.KindGroup, Local: b.cfg.PodName, Link: id,
		Mode: array.ModeCreateTarget, RemotePool: b.cfg.Pool, Type: array.TypeSync, SyncTimeout: b.cfg.SyncTimeout,
		PodMediator: b.cfg.PodMediator, PreferPeer: b.cfg.PreferredArray == id}
	_, err := r.ReplicateEntity(ctx, spec)
	if errdefs.IsAlreadyExists(err) {
		// Which side carries the pod on at a partition follows the
		// configuration (volrep_preferred_array) at once.
		if _, err := r.UpdateReplica(ctx, spec.Name, array.ReplicaUpdate{PreferPeer: &spec.PreferPeer}); err != nil {
			return fmt.Errorf("setting which array carries pod %s on at a partition: %w", b.cfg.PodName, err)
		}
		_, err = r.ReplicateEntity(ctx, spec)
	}
	if errdefs.IsAlreadyExists(err) {
		// The pod exists with other settings (say, another timeout); it
		// keeps them until it is recreated.
		b.log.Warn("pod exists with other settings; keeping them", "pod", b.cfg.PodName, "backend_id", id)
		return nil
	}
	return err
}

func (b *Backend) convergeTarget(ctx context.Context, r array.Replication, id string) error {
	b.mu.RLock()
	ret := b.retention()
	interval := b.cfg.ReplicaInterval
	b.mu.RUnlock()
	spec := array.ReplicaSpec{Name: b.pgReplica(id), Kind: array.KindGroup, Local: b.cfg.PGName, Link: id,
		Mode: array.ModeCreateTarget, RemotePool: b.cfg.Pool, Type: array.TypeAsync, Interval: interval,
		TargetRetention: ret, SourceRetention: ret}
	_, err := r.ReplicateEntity(ctx, spec)
	if errdefs.IsAlreadyExists(err) {
		_, err = r.UpdateReplica(ctx, spec.Name, array.ReplicaUpdate{Interval: interval, RPO: 2 * interval, TargetRetention: &ret, SourceRetention: &ret})
	}
	return err
}

// replicationOf reports how a volume is replicated now, from the groups it
// is a member of on the active array.
func (b *Backend) replicationOf(ctx context.Context, name string) (string, error) {
	kind, _, err := b.protectionOf(ctx, name)
	return kind, err
}

// protectionOf returns how a volume is replicated and the array group
// that replicates it: the protection group, the pod, or a replicating
// Cinder group's own protection group.
func (b *Backend) protectionOf(ctx context.Context, name string) (kind, group string, err error) {
	v, err := b.activeArray().GetVolume(ctx, name)
	if errdefs.IsNotFound(err) {
		return extraspecs.None, "", nil
	}
	if err != nil {
		return "", "", err
	}
	return b.protectionIn(ctx, v.Group)
}

// protectionIn is how a member of array group g is replicated.
func (b *Backend) protectionIn(ctx context.Context, g string) (kind, group string, err error) {
	switch g {
	case "":
		return extraspecs.None, "", nil
	case b.cfg.PGName:
		return extraspecs.Async, g, nil
	case b.cfg.PodName:
		return extraspecs.Sync, g, nil
	}
	cg, err := b.activeArray().GetGroup(ctx, g)
	if errdefs.IsNotFound(err) {
		return extraspecs.None, "", nil
	}
	if err != nil {
		return "", "", err
	}
	// A Cinder group holds members on the array only while it replicates.
	if cg.Labels[labelBackend] == b.cfg.Section && replicatedGroup(cg) {
		return extraspecs.Async, cg.Name, nil
	}
	return extraspecs.None, "", nil
}

// replicate puts a new volume where its replication type says.
func (b *Backend) replicate(ctx context.Context, name, kind string) (string, error) {
	if kind != extraspecs.None && b.failedOver() {
		// The volume lives on the secondary, unreplicated, until failback
		// brings it home.
		return ReplFailedOver, nil
	}
	switch kind {
	case extraspecs.None:
		return ReplDisabled, nil
	case extraspecs.Async:
		if err := b.ensureGroup(ctx); err != nil {
			return "", err
		}
		if _, err := b.primary.Array.AddMembers(ctx, b.cfg.PGName, []string{name}); err != nil {
			return "", fmt.Errorf("adding %s to protection group %q: %w", name, b.cfg.PGName, err)
		}
		// Protect the new volume now rather than at the next interval.
		status := ReplEnabled
		for _, rd := range b.cfg.AsyncTargets() {
			if err := b.syncTarget(ctx, rd, b.pgReplica(rd.BackendID), false, b.convergeTarget); err != nil {
				// The protection group's replica is missing or refuses:
				// nothing will copy the volume until that is fixed.
				status = ReplError
				b.log.Warn("could not start the first copy of a new volume; GetReplicationInfo tells why",
					"volume", name, "backend_id", rd.BackendID, "replication_status", status, "err", err)
			}
		}
		return status, nil
	case extraspecs.Sync:
		if err := b.ensureGroupNamed(ctx, b.cfg.PodName); err != nil {
			return "", err
		}
		if _, err := b.primary.Array.AddMembers(ctx, b.cfg.PodName, []string{name}); err != nil {
			return "", fmt.Errorf("adding %s to pod %q: %w", name, b.cfg.PodName, err)
		}
		// The volume is protected when this returns: its copy is on the
		// peer and every later write is mirrored. Else its status says so.
		status := ReplEnabled
		for _, rd := range b.cfg.SyncTargets() {
			wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			err := b.syncTarget(wctx, rd, b.podReplica(rd.BackendID), true, b.convergePod)
			cancel()
			if err != nil {
				st := b.podCopyStatus(ctx, rd.BackendID)
				if st == ReplError || status == ReplEnabled {
					status = st
				}
				b.log.Warn("the new volume's first copy is not on the pod's peer; GetReplicationInfo tells why",
					"volume", name, "backend_id", rd.BackendID, "replication_status", st, "err", err)
			}
		}
		return status, nil
	}
	return "", errdefs.FailedPrecondition("replication type %q is not supported", kind)
}

// syncTarget asks for a replica's sync now. When the backend's setup has
// not made that replica yet (a volume created or retyped right after
// start-up, before setupReplication ran), it makes it first, so the volume
// is protected at once instead of reported in error.
func (b *Backend) syncTarget(ctx context.Context, rd config.ReplicationDevice, replica string, wait bool,
	converge func(context.Context, array.Replication, string) error) error {
	_, err := b.primary.Replication.SyncReplica(ctx, replica, wait)
	if !errdefs.IsNotFound(err) {
		return err
	}
	if err := b.linkTarget(ctx, rd); err != nil {
		return err
	}
	if err := converge(ctx, b.primary.Replication, rd.BackendID); err != nil {
		return err
	}
	_, err = b.primary.Replication.SyncReplica(ctx, replica, wait)
	return err
}

// podCopyStatus is the replication status of a pod volume whose first
// copy did not complete: enabling while the pod is copying to its peer,
// error when it is not (the peer is away, or the pod failed).
func (b *Backend) podCopyStatus(ctx context.Context, target string) string {
	rep, err := b.primary.Replication.GetReplica(ctx, b.podReplica(target))
	if err == nil && rep.State != array.StateError && rep.PeerState == array.PeerResyncing {
		return ReplEnabling
	}
	return ReplError
}

// unreplicate takes a volume out of replication; its remote copy is
// removed by the protection group's next cycle.
func (b *Backend) unreplicate(ctx context.Context, name, kind string) error {
	switch kind {
	case extraspecs.Async:
		_, err := b.primary.Array.RemoveMembers(ctx, b.cfg.PGName, []string{name})
		return err
	case extraspecs.Sync:
		_, err := b.primary.Array.RemoveMembers(ctx, b.cfg.PodName, []string{name})
		return err
	}
	return nil
}

// Retype moves a volume to another volume type's replication.
func (b *Backend) Retype(ctx context.Context, id string, vt VolumeType) (bool, ModelUpdate, error) {
	if err := b.ready(); err != nil {
		return false, ModelUpdate{}, err
	}
	release, err := b.ops.acquire("volume "+id, "retype")
	if err != nil {
		return false, ModelUpdate{}, err
	}
	defer release()
	want, err := b.placement(vt)
	if err != nil {
		return false, ModelUpdate{}, err
	}
	if _, err := qosspecs.Parse(retypeQoSField, vt.QoSSpecs, 1); err != nil {
		return false, ModelUpdate{}, err
	}
	name := volumeName(id)
	if _, err := b.activeArray().GetVolume(ctx, name); err != nil {
		return false, ModelUpdate{}, b.volumeErr(id, err)
	}
	// The new type's limit (none, if it has no QoS) holds for attachments
	// open now from their next request: no detach is needed.
	if err := b.applyQoS(ctx, b.activeArray(), name, retypeQoSField, vt); err != nil {
		return false, ModelUpdate{}, err
	}
	have, err := b.replicationOf(ctx, name)
	if err != nil {
		return false, ModelUpdate{}, err
	}
	if have != want {
		if err := b.unreplicate(ctx, name, have); err != nil {
			return false, ModelUpdate{}, err
		}
	}
	status, err := b.replicate(ctx, name, want)
	if err != nil {
		return false, ModelUpdate{}, err
	}
	b.log.Info("volume retyped", "volume", id, "from", have, "to", want, "type", vt.Name)
	return true, ModelUpdate{ProviderID: name, ReplicationStatus: status}, nil
}

// Health values of GetReplicationInfo, as csi-addons names them.
const (
	Healthy  = "healthy"
	Degraded = "degraded"
	Error    = "error"
)

// TargetInfo is one target's view of a volume's replication.
type TargetInfo struct {
	BackendID, Type  string
	Status, Message  string
	LastSyncTime     time.Time
	LastSyncDuration time.Duration
	LastSyncBytes    int64
	Lag              time.Duration
	LastSnapshot     string
	// Sync targets: the state of each side of the pod (array.Pod* for the
	// primary, array.Peer* for the target) and the mediator's health.
	PrimaryPodState, TargetPodState string
	// Sync targets: whether each side takes client writes (array.Writes*).
	PrimaryWrites, TargetWrites    string
	MediatorState, MediatorMessage string
	MediatorHeld                   bool
	MediatorName                   string
	// Sync targets: the pod as the target array itself reports it; its
	// State is empty, and Message says why, when the target could not be asked.
	TargetOwn array.PodCopy
}

// ReplicationInfo is GetReplicationInfo's answer: the worst target first.
type ReplicationInfo struct {
	TargetInfo
	Targets []TargetInfo
}

var healthRank = map[string]int{Healthy: 0, Degraded: 1, Error: 2}

// add lists a target, and makes it the answer's headline when it is the
// first or worse than the headline so far.
func (r *ReplicationInfo) add(ti TargetInfo) {
	r.Targets = append(r.Targets, ti)
	if len(r.Targets) == 1 || healthRank[ti.Status] > healthRank[r.Status] {
		r.TargetInfo = ti
	}
}

// GetReplicationInfo reports a volume's replication to each target.
func (b *Backend) GetReplicationInfo(ctx context.Context, id string) (ReplicationInfo, error) {
	if err := b.ready(); err != nil {
		return ReplicationInfo{}, err
	}
	name := volumeName(id)
	if _, err := b.activeArray().GetVolume(ctx, name); err != nil {
		if info, ok := b.podInfoFromPeers(ctx, name, err); ok {
			return info, nil
		}
		if info, ok := b.asyncInfoFromTargets(ctx, name, err); ok {
			return info, nil
		}
		return ReplicationInfo{}, b.volumeErr(id, err)
	}
	kind, group, err := b.protectionOf(ctx, name)
	if err != nil {
		return ReplicationInfo{}, err
	}
	if kind == extraspecs.None {
		return ReplicationInfo{}, errdefs.FailedPrecondition("volume %s is not replicated: its volume type does not enable replication", id)
	}
	var out ReplicationInfo
	targets := b.cfg.AsyncTargets()
	if kind == extraspecs.Sync {
		targets = b.cfg.SyncTargets()
	}
	for _, rd := range targets {
		var ti TargetInfo
		if kind == extraspecs.Sync {
			ti = b.podInfo(ctx, rd.BackendID)
		} else {
			ti = b.targetInfo(ctx, rd.BackendID, name, group+"."+rd.BackendID)
		}
		out.add(ti)
	}
	return out, nil
}

func (b *Backend) targetInfo(ctx context.Context, id, name, replica string) TargetInfo {
	ti := TargetInfo{BackendID: id, Type: extraspecs.Async}
	rep, err := b.primary.Replication.GetReplica(ctx, replica)
	if err != nil {
		ti.Status, ti.Message = Error, fmt.Sprintf("protection group replica %s: %v", replica, err)
		return ti
	}
	ti.LastSyncDuration, ti.LastSyncBytes = rep.LastSyncDuration, rep.LastSyncBytes
	ti.LastSyncTime, ti.LastSnapshot = rep.LastSynchronized, rep.LastSnapshot
	// The volume's own newest copy on the target, which differs from the
	// group's when the volume joined after the last cycle.
	if snaps, err := b.targets[id].Array.ListSnapshots(ctx, name); err == nil {
		s := newestSnapshot(snaps)
		ti.LastSyncTime, ti.LastSnapshot = s.Created, s.Name
	} else if !errdefs.IsNotFound(err) {
		ti.Message = fmt.Sprintf("target unreachable: %v; ", err)
	} else {
		ti.LastSyncTime, ti.LastSnapshot = time.Time{}, ""
	}
	if !ti.LastSyncTime.IsZero() {
		ti.Lag = b.opts.Now().Sub(ti.LastSyncTime)
	}
	switch {
	case rep.State == array.StateError:
		ti.Status, ti.Message = Error, ti.Message+rep.Message
	case rep.State == array.StateDegraded:
		ti.Status, ti.Message = Degraded, ti.Message+rep.Message
	case rep.State == array.StateSuspended:
		ti.Status, ti.Message = Degraded, ti.Message+"replication is suspended"
	case ti.LastSyncTime.IsZero():
		ti.Status, ti.Message = Degraded, ti.Message+"the first copy has not reached the target yet"
	case ti.Lag > rep.RPO:
		ti.Status, ti.Message = Degraded, ti.Message+fmt.Sprintf("lag %s exceeds the RPO of %s", ti.Lag.Round(time.Second), rep.RPO)
	default:
		ti.Status = Healthy
	}
	return ti
}

// Schedule is a protection group's interval and retention.
type Schedule struct {
	Interval  time.Duration
	Retention array.Retention
}

// SetReplicationSchedule changes the protection group's schedule now, on
// every async target, and records it in state_dir: it stays in force
// across restarts and reloads until cinder.conf's pure_replica_* values
// change.
func (b *Backend) SetReplicationSchedule(ctx context.Context, s Schedule) (Schedule, error) {
	if err := b.ready(); err != nil {
		return Schedule{}, err
	}
	if len(b.cfg.AsyncTargets()) == 0 {
		return Schedule{}, errdefs.FailedPrecondition("backend %s has no async replication_device, so no protection group", b.cfg.Section)
	}
	ret := s.Retention
	for _, rd := range b.cfg.AsyncTargets() {
		if _, err := b.primary.Replication.UpdateReplica(ctx, b.pgReplica(rd.BackendID),
			array.ReplicaUpdate{Interval: s.Interval, RPO: 2 * s.Interval, TargetRetention: &ret, SourceRetention: &ret}); err != nil {
			return Schedule{}, err
		}
	}
	set := scheduleConf{Interval: s.Interval, ShortTerm: ret.AllFor, PerDay: ret.PerDay, Days: ret.Days}
	at := b.opts.Now()
	if err := b.updateState(func(st *backendState) {
		st.Schedule = &scheduleOverride{SetAt: at, Set: set, Conf: confSchedule(b.conf)}
	}); err != nil {
		return Schedule{}, fmt.Errorf("the schedule is in force on the arrays but was not recorded in state_dir, so a restart reverts it: %w", err)
	}
	b.mu.Lock()
	b.cfg.ReplicaInterval = s.Interval
	b.cfg.RetentionShortTerm, b.cfg.RetentionPerDay, b.cfg.RetentionDays = ret.AllFor, ret.PerDay, ret.Days
	b.mu.Unlock()
	b.log.Info("replication schedule changed", "pg", b.cfg.PGName, "interval", s.Interval, "retention", ret)
	return s, nil
}

// podInfoFromPeers answers GetReplicationInfo for a pod volume while the
// primary array cannot be reached: what each sync target's array says of
// the pod, which is then all there is to know (whether a target carries
// the pod and takes its writes). It is not a pod volume, or no target
// knows it, when ok is false.
func (b *Backend) podInfoFromPeers(ctx context.Context, name string, primaryErr error) (info ReplicationInfo, ok bool) {
	if !b.primaryUnreachable(primaryErr) {
		return info, false
	}
	for _, rd := range b.cfg.SyncTargets() {
		c := b.podCopy(ctx, rd.BackendID)
		if !slices.Contains(c.Volumes, name) {
			continue
		}
		ti := TargetInfo{BackendID: rd.BackendID, Type: extraspecs.Sync, Status: Error, TargetOwn: c,
			Message: fmt.Sprintf("the primary array cannot be reached (%v); the target array says: %s", primaryErr, c.Message)}
		if c.State == array.PodCarried && c.Writes == array.WritesOnline {
			// The volume is served: by the target, alone.
			ti.Status = Degraded
		}
		info.add(ti)
	}
	return info, len(info.Targets) > 0
}

// asyncInfoFromTargets answers GetReplicationInfo for a volume of the
// protection group while the primary array cannot be reached: the newest
// copy each async target holds, which is what a failover would bring
// back now, and how old it is. Replication itself is not running, so
// each target is in error. ok is false when no target holds a copy (or
// the primary answered something other than unreachable).
func (b *Backend) asyncInfoFromTargets(ctx context.Context, name string, primaryErr error) (info ReplicationInfo, ok bool) {
	if !b.primaryUnreachable(primaryErr) {
		return info, false
	}
	// The targets are asked at once: a site that is down too costs its
	// timeout once, not once per target after it.
	rds := b.cfg.AsyncTargets()
	found := make([][]array.Snapshot, len(rds))
	var wg sync.WaitGroup
	for i, rd := range rds {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			defer cancel()
			if snaps, err := b.targets[rd.BackendID].Array.ListSnapshots(tctx, name); err == nil {
				found[i] = snaps
			}
		}()
	}
	wg.Wait()
	for i, rd := range rds {
		if len(found[i]) == 0 {
			continue
		}
		newest := newestSnapshot(found[i])
		ti := TargetInfo{BackendID: rd.BackendID, Type: extraspecs.Async, Status: Error, LastSyncTime: newest.Created, LastSnapshot: newest.Name}
		ti.Lag = b.opts.Now().Sub(ti.LastSyncTime)
		ti.Message = fmt.Sprintf("the primary array cannot be reached (%v); the target's newest copy is %s, from %s (%s ago): "+
			"a failover to %s now brings the volume back as it was then", primaryErr, ti.LastSnapshot,
			ti.LastSyncTime.UTC().Format(time.RFC3339), ti.Lag.Round(time.Second), rd.BackendID)
		info.add(ti)
	}
	return info, len(info.Targets) > 0
}

// primaryUnreachable says err is the primary array not answering, while
// the backend is at home: then the targets' own views answer for it.
func (b *Backend) primaryUnreachable(err error) bool {
	return (errdefs.IsUnavailable(err) || errdefs.Is(err, errdefs.KindDeadlineExceeded)) && !b.failedOver()
}

// podCopies reports a pod at its non-preferred array (client.Replication).
type podCopies interface {
	GetPodCopy(ctx context.Context, pod string) (array.PodCopy, error)
}

// podCopy asks the target array how it sees the pod, briefly: the
// answer adds to the primary's, which stands without it.
func (b *Backend) podCopy(ctx context.Context, id string) array.PodCopy {
	pc, ok := b.targets[id].Replication.(podCopies)
	if !ok {
		return array.PodCopy{Message: "the target array's own view is not available over this connection"}
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	c, err := pc.GetPodCopy(ctx, b.podReplica(id))
	if err != nil {
		return array.PodCopy{Message: fmt.Sprintf("asking the target array: %v", err)}
	}
	return c
}

// podInfo reports a sync target: in sync means nothing is lost if the
// primary goes now.
func (b *Backend) podInfo(ctx context.Context, id string) (ti TargetInfo) {
	// The target is asked alongside the primary: an unreachable one costs
	// its timeout once, not on top of the primary's answer.
	own := make(chan array.PodCopy, 1)
	go func() { own <- b.podCopy(ctx, id) }()
	ti = TargetInfo{BackendID: id, Type: extraspecs.Sync}
	defer func() { ti.TargetOwn = <-own }()
	rep, err := b.primary.Replication.GetReplica(ctx, b.podReplica(id))
	if err != nil {
		ti.Status, ti.Message = Error, fmt.Sprintf("pod replica %s: %v", b.podReplica(id), err)
		return ti
	}
	ti.LastSyncBytes = rep.LastResyncBytes
	ti.PrimaryPodState, ti.TargetPodState = rep.PodState, rep.PeerState
	ti.PrimaryWrites, ti.TargetWrites = rep.Writes, rep.PeerWrites
	ti.MediatorState, ti.MediatorMessage, ti.MediatorHeld, ti.MediatorName = rep.MediatorState, rep.MediatorMessage, rep.MediatorHeld, rep.MediatorName
	b.notePod(id, rep.PeerState == array.PeerOnline)
	switch rep.PeerState {
	case array.PeerOnline:
		ti.Status, ti.LastSyncTime = Healthy, b.opts.Now()
	case array.PeerResyncing:
		ti.Status, ti.Message = Degraded, fmt.Sprintf("resyncing the peer: %d bytes to go", rep.DirtyBytes)
	default:
		ti.Status, ti.Message = Degraded, fmt.Sprintf("the peer is out of sync (%d bytes behind): %s", rep.DirtyBytes, rep.Message)
	}
	if rep.PodState == array.PodStoppedByMediator {
		ti.Status, ti.Message = Error, rep.Message
	}
	if rep.State == array.StateError {
		ti.Status = Error
	}
	return ti
}
