package replication

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"maps"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/volrep/volrep/array"
	"github.com/volrep/volrep/array/mediator"
	"github.com/volrep/volrep/errdefs"
)

// replicaRec is what survives a restart.
type replicaRec struct {
	Spec        array.ReplicaSpec `json:"spec"`
	Suspended   bool              `json:"suspended,omitempty"`
	Initialized bool              `json:"initialized,omitempty"`
	Seq         int64             `json:"seq"`
	Created     time.Time         `json:"created"`
	NextTick    time.Time         `json:"next_tick"`
	// Pending is the newest snapshot taken for the replica and not yet on
	// the target.
	Pending          string        `json:"pending,omitempty"`
	LastSync         time.Time     `json:"last_sync"`
	LastSyncBytes    int64         `json:"last_sync_bytes"`
	LastSyncDuration time.Duration `json:"last_sync_duration"`
	LastSnapshot     string        `json:"last_snapshot,omitempty"`
	TotalBytes       int64         `json:"total_bytes"`
	// SyncMembers are the members of a SYNC replica whose copy on the
	// peer is complete but for the dirty blocks.
	SyncMembers []string `json:"sync_members,omitempty"`
	// MediatorName is a SYNC replica's pod's name at its mediator, chosen
	// when the pod began (mediatorName) and kept for its life, as its
	// peer keeps what the forward stream told it; empty, for pods begun
	// before names were scoped, is the pod's name alone.
	MediatorName string `json:"mediator_name,omitempty"`
}

// replica is a replica's record plus its run-time state, guarded by Engine.mu.
type replica struct {
	rec        replicaRec
	busy       bool
	syncNow    bool
	err        error
	retryAt    time.Time
	backoff    time.Duration
	throughput float64
	waiters    []chan error
	tidied     tidied
}

func (e *Engine) view(r *replica) array.Replica {
	now := e.opts.Clock.Now()
	out := array.Replica{ReplicaSpec: r.rec.Spec, LastSynchronized: r.rec.LastSync, LastSyncBytes: r.rec.LastSyncBytes,
		LastSyncDuration: r.rec.LastSyncDuration, Throughput: r.throughput, LastSnapshot: r.rec.LastSnapshot,
		Created: r.rec.Created, TotalBytesSent: r.rec.TotalBytes, SyncState: array.SyncIdle, RPOState: array.RPOOk}
	out.MemberMappings = maps.Clone(r.rec.Spec.MemberMappings)
	switch {
	case r.rec.Suspended:
		out.State = array.StateSuspended
	case r.err != nil && errdefs.IsUnavailable(r.err):
		out.State, out.Message = array.StateDegraded, r.err.Error()
	case r.err != nil:
		out.State, out.Message = array.StateError, r.err.Error()
	case !r.rec.Initialized:
		out.State = array.StateInitializing
	default:
		out.State = array.StateActive
	}
	if r.busy {
		out.SyncState = array.SyncInProgress
	}
	if p := e.pods[r.rec.Spec.Name]; p != nil {
		p.view(&out)
		out.RPOState = array.RPOOk
		if out.PeerState != array.PeerOnline {
			out.RPOState = array.RPOLagging
		}
		return out
	}
	if !r.rec.LastSync.IsZero() {
		out.Lag = now.Sub(r.rec.LastSync)
	}
	if r.rec.LastSync.IsZero() || out.Lag > r.rec.Spec.RPO {
		out.RPOState = array.RPOLagging
	}
	return out
}

func (e *Engine) replicaLocked(name string) (*replica, error) {
	r, ok := e.replicas[name]
	if !ok {
		return nil, errdefs.NotFound("replica %q not found on array %s", name, e.s.Dir())
	}
	return r, nil
}

// normalise fills defaults and checks the spec against the local array.
func (e *Engine) normalise(ctx context.Context, spec *array.ReplicaSpec) error {
	if spec.Kind == "" {
		spec.Kind = array.KindVolume
	}
	if spec.Mode == "" {
		spec.Mode = array.ModeCreateTarget
	}
	if spec.Type == "" {
		spec.Type = array.TypeAsync
	}
	if spec.Name == "" {
		spec.Name = spec.Local + "-to-" + spec.Link
	}
	for field, v := range map[string]string{"name": spec.Name, "local": spec.Local, "link": spec.Link} {
		if err := array.CheckName(field, v); err != nil {
			return err
		}
	}
	if spec.RemoteEntity == "" {
		spec.RemoteEntity = spec.Local
	}
	if spec.Interval <= 0 {
		spec.Interval = time.Hour
	}
	if spec.RPO <= 0 {
		spec.RPO = 2 * spec.Interval
	}
	switch spec.Type {
	case array.TypeAsync:
	case array.TypeSync:
		if spec.Mode != array.ModeCreateTarget {
			return errdefs.InvalidArgument("mode", "a SYNC replica (pod) creates its remote copies; use CREATE_TARGET")
		}
		if spec.SyncTimeout <= 0 {
			spec.SyncTimeout = defaultSyncTimeout
		}
	default:
		return errdefs.InvalidArgument("replication_type", "%q is not ASYNC or SYNC", spec.Type)
	}
	if len(spec.PodMediator) > 0 && spec.Type != array.TypeSync {
		return errdefs.InvalidArgument("pod_mediator", "only a SYNC replica (pod) has a mediator; remove pod_mediator or ask for SYNC")
	}
	if spec.PreferPeer {
		if err := e.canPreferPeer(*spec); err != nil {
			return err
		}
	}
	switch spec.Kind {
	case array.KindVolume:
		if _, err := e.s.GetVolume(ctx, spec.Local); err != nil {
			return err
		}
		if spec.Mode != array.ModeUseBase && len(spec.MemberMappings) == 0 {
			spec.MemberMappings = map[string]string{spec.Local: spec.RemoteEntity}
		}
	case array.KindGroup:
		if _, err := e.s.GetGroup(ctx, spec.Local); err != nil {
			return err
		}
		if spec.Mode == array.ModeUseBase {
			return errdefs.InvalidArgument("mode", "USE_BASE applies to volumes; replicate the group with CREATE_TARGET")
		}
	default:
		return errdefs.InvalidArgument("kind", "%q is not volume or group", spec.Kind)
	}
	if spec.MemberMappings == nil {
		spec.MemberMappings = map[string]string{}
	}
	if spec.Kind == array.KindVolume && spec.Mode == array.ModeUseBase {
		spec.MemberMappings = map[string]string{spec.Local: spec.RemoteEntity}
	}
	return nil
}

// ReplicateEntity creates a replica of a volume or consistency group.
func (e *Engine) ReplicateEntity(ctx context.Context, spec array.ReplicaSpec) (array.Replica, error) {
	if err := e.normalise(ctx, &spec); err != nil {
		return array.Replica{}, err
	}
	// Creating a name is one call at a time: a backend's start-up and its
	// first CreateVolume both ask for the pod's replica, and two pods for
	// one name would each send the peer an initial copy, the second
	// replacing the copy the first had mirrored writes into.
	done, err := e.reserve(ctx, "replica "+spec.Name)
	if err != nil {
		return array.Replica{}, err
	}
	defer done()
	e.mu.Lock()
	l, err := e.linkLocked(spec.Link)
	old := e.replicas[spec.Name]
	e.mu.Unlock()
	if err != nil {
		return array.Replica{}, err
	}
	if old != nil {
		if reflect.DeepEqual(old.rec.Spec, spec) {
			e.mu.Lock()
			defer e.mu.Unlock()
			return e.view(old), nil
		}
		return array.Replica{}, errdefs.AlreadyExists("replica %q already exists with another configuration; use UpdateReplica or another name", spec.Name)
	}
	if err := e.checkTarget(ctx, l, &spec); err != nil {
		return array.Replica{}, err
	}
	now := e.opts.Clock.Now()
	r := &replica{rec: replicaRec{Spec: spec, Created: now, NextTick: now}}
	if spec.Type == array.TypeSync {
		r.rec.MediatorName = e.mediatorName(ctx, l, spec.Name)
	}
	if spec.Mode == array.ModeUseBase {
		// The base is already on both sides: the replica starts active.
		r.rec.Initialized = true
		r.rec.LastSnapshot = spec.LocalSnapshot
	}
	if err := e.save(ctx, recReplicas, spec.Name, r.rec); err != nil {
		return array.Replica{}, err
	}
	e.mu.Lock()
	e.replicas[spec.Name] = r
	e.mu.Unlock()
	if spec.Type == array.TypeSync {
		if err := e.addPod(ctx, r); err != nil {
			return array.Replica{}, err
		}
	}
	e.log.Info("replica created", "replica", spec.Name, "type", spec.Type, "local", spec.Local, "link", spec.Link, "mode", spec.Mode,
		"interval", spec.Interval, "remote_pool", spec.RemotePool)
	e.wake()
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.view(r), nil
}

// checkTarget verifies the remote side the mode relies on.
func (e *Engine) checkTarget(ctx context.Context, l *link, spec *array.ReplicaSpec) error {
	unavailable := func(err error) error {
		if errdefs.IsUnavailable(err) || errdefs.Is(err, errdefs.KindDeadlineExceeded) {
			return errdefs.Unavailable("link %q to %s: peer unreachable: %v", spec.Link, l.rec.Address, err)
		}
		return err
	}
	switch spec.Mode {
	case array.ModeCreateTarget:
		if err := array.CheckName("remote_pool", spec.RemotePool); err != nil {
			return err
		}
		if _, err := l.peer.GetPool(ctx, spec.RemotePool); err != nil {
			if errdefs.IsNotFound(err) {
				return errdefs.NotFound("remote pool %q not found on the array behind link %q; create it there first", spec.RemotePool, spec.Link)
			}
			return unavailable(err)
		}
		for _, remote := range spec.MemberMappings {
			v, err := l.peer.GetVolume(ctx, remote)
			if err == nil && v.Labels[LabelReplica] != spec.Name {
				return errdefs.AlreadyExists("remote volume %q already exists on the array behind link %q; use EXISTING_TARGET to copy onto it", remote, spec.Link)
			}
			if err != nil && !errdefs.IsNotFound(err) {
				return unavailable(err)
			}
		}
	case array.ModeExistingTarget:
		if spec.Kind != array.KindVolume {
			return errdefs.InvalidArgument("mode", "EXISTING_TARGET applies to volumes")
		}
		local, err := e.s.GetVolume(ctx, spec.Local)
		if err != nil {
			return err
		}
		remote, err := l.peer.GetVolume(ctx, spec.RemoteEntity)
		if err != nil {
			if errdefs.IsNotFound(err) {
				return errdefs.NotFound("remote volume %q not found on the array behind link %q", spec.RemoteEntity, spec.Link)
			}
			return unavailable(err)
		}
		if remote.SizeBytes != local.SizeBytes {
			return errdefs.FailedPrecondition("remote volume %q has %d bytes, local %q has %d; EXISTING_TARGET needs the same size", spec.RemoteEntity, remote.SizeBytes, spec.Local, local.SizeBytes)
		}
		spec.RemotePool = remote.Pool
	case array.ModeUseBase:
		if spec.LocalSnapshot == "" || spec.RemoteSnapshot == "" {
			return errdefs.InvalidArgument("local_snapshot", "USE_BASE needs local_snapshot and remote_snapshot")
		}
		ls, err := e.s.GetSnapshot(ctx, spec.Local, spec.LocalSnapshot)
		if err != nil {
			return err
		}
		rs, err := l.peer.GetSnapshot(ctx, spec.RemoteEntity, spec.RemoteSnapshot)
		if err != nil {
			if errdefs.IsNotFound(err) {
				return errdefs.NotFound("remote snapshot %s@%s not found on the array behind link %q", spec.RemoteEntity, spec.RemoteSnapshot, spec.Link)
			}
			return unavailable(err)
		}
		if ls.GUID != rs.GUID {
			return errdefs.FailedPrecondition("local snapshot %s@%s (GUID %s) and remote snapshot %s@%s (GUID %s) do not hold the same data; pick a pair replicated from one another, or use CREATE_TARGET",
				spec.Local, spec.LocalSnapshot, ls.GUID, spec.RemoteEntity, spec.RemoteSnapshot, rs.GUID)
		}
		remote, err := l.peer.GetVolume(ctx, spec.RemoteEntity)
		if err != nil {
			return unavailable(err)
		}
		spec.RemotePool = remote.Pool
	default:
		return errdefs.InvalidArgument("mode", "%q is not CREATE_TARGET, EXISTING_TARGET or USE_BASE", spec.Mode)
	}
	return nil
}

// GetReplica returns a replica and its state.
func (e *Engine) GetReplica(ctx context.Context, name string) (array.Replica, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	r, err := e.replicaLocked(name)
	if err != nil {
		return array.Replica{}, err
	}
	return e.view(r), nil
}

// ListReplicas lists replicas, of one local entity or all.
func (e *Engine) ListReplicas(ctx context.Context, local string) ([]array.Replica, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := []array.Replica{}
	for _, r := range e.replicas {
		if local == "" || r.rec.Spec.Local == local {
			out = append(out, e.view(r))
		}
	}
	slices.SortFunc(out, func(a, b array.Replica) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// update changes a replica's record under the lock and persists it.
func (e *Engine) update(ctx context.Context, name string, f func(r *replica) error) (array.Replica, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	r, err := e.replicaLocked(name)
	if err != nil {
		return array.Replica{}, err
	}
	old := r.rec
	if err := f(r); err != nil {
		r.rec = old
		return array.Replica{}, err
	}
	if err := e.save(ctx, recReplicas, name, r.rec); err != nil {
		r.rec = old
		return array.Replica{}, err
	}
	e.wake()
	return e.view(r), nil
}

// canPreferPeer refuses PreferPeer for a replica it cannot work for: the
// peer of a pod without a mediator could not know that this array
// stopped, so it could never carry on safely.
func (e *Engine) canPreferPeer(spec array.ReplicaSpec) error {
	if spec.Type != array.TypeSync || len(spec.PodMediator) == 0 && len(e.opts.PodMediator) == 0 {
		return errdefs.InvalidArgument("prefer_peer", "only a SYNC replica (pod) with a mediator can prefer its peer at a partition: "+
			"without one the peer cannot know that this array stopped; configure volrep_pod_mediator at both arrays, or prefer this array")
	}
	return nil
}

// UpdateReplica changes the interval, RPO and retention, and which side
// of a pod carries on at a partition.
func (e *Engine) UpdateReplica(ctx context.Context, name string, u array.ReplicaUpdate) (array.Replica, error) {
	r, err := e.update(ctx, name, func(r *replica) error {
		s := &r.rec.Spec
		if u.PreferPeer != nil {
			if *u.PreferPeer {
				if err := e.canPreferPeer(*s); err != nil {
					return err
				}
			}
			s.PreferPeer = *u.PreferPeer
		}
		if u.Interval > 0 && u.Interval != s.Interval {
			s.Interval = u.Interval
			r.rec.NextTick = e.opts.Clock.Now().Add(u.Interval)
		}
		if u.RPO > 0 {
			s.RPO = u.RPO
		}
		if u.TargetRetention != nil {
			s.TargetRetention = *u.TargetRetention
		}
		if u.SourceRetention != nil {
			s.SourceRetention = *u.SourceRetention
		}
		return nil
	})
	if err == nil && u.PreferPeer != nil {
		e.mu.Lock()
		p := e.pods[name]
		e.mu.Unlock()
		if p != nil {
			p.setPreferPeer(*u.PreferPeer)
		}
	}
	return r, err
}

// SuspendReplica stops shipping until ResumeReplica.
func (e *Engine) SuspendReplica(ctx context.Context, name string) (array.Replica, error) {
	return e.update(ctx, name, func(r *replica) error { r.rec.Suspended = true; return nil })
}

// ResumeReplica restarts shipping, at once.
func (e *Engine) ResumeReplica(ctx context.Context, name string) (array.Replica, error) {
	return e.update(ctx, name, func(r *replica) error {
		r.rec.Suspended = false
		r.syncNow = true
		return nil
	})
}

// SyncReplica takes and ships a snapshot now; for a pod, it resyncs the
// peer now.
func (e *Engine) SyncReplica(ctx context.Context, name string, wait bool) (array.Replica, error) {
	p, err := e.runningPod(ctx, name)
	if err != nil {
		return array.Replica{}, err
	}
	if p != nil {
		p.wake()
		if wait {
			return e.waitSynced(ctx, name, p)
		}
		return e.GetReplica(ctx, name)
	}
	done := make(chan error, 1)
	e.mu.Lock()
	r, err := e.replicaLocked(name)
	if err != nil {
		e.mu.Unlock()
		return array.Replica{}, err
	}
	if r.rec.Suspended {
		e.mu.Unlock()
		return array.Replica{}, errdefs.FailedPrecondition("replica %q is suspended; resume it first", name)
	}
	r.syncNow = true
	r.waiters = append(r.waiters, done)
	e.mu.Unlock()
	e.wake()
	if wait {
		select {
		case err := <-done:
			if err != nil {
				return array.Replica{}, err
			}
		case <-ctx.Done():
			return array.Replica{}, ctx.Err()
		}
	}
	return e.GetReplica(ctx, name)
}

// runningPod returns the pod of a sync replica, nil for an async one. A
// sync replica is visible before its pod runs, while the call creating it
// (or changing its type) starts the pod: that call is waited for, since
// the scheduler, which ships async replicas, would never answer.
func (e *Engine) runningPod(ctx context.Context, name string) (*pod, error) {
	for waited := false; ; waited = true {
		e.mu.Lock()
		r, err := e.replicaLocked(name)
		var p *pod
		var sync, suspended bool
		if err == nil {
			p, sync, suspended = e.pods[name], r.rec.Spec.Type == array.TypeSync, r.rec.Suspended
		}
		e.mu.Unlock()
		switch {
		case err != nil:
			return nil, err
		case suspended:
			return nil, errdefs.FailedPrecondition("replica %q is suspended; resume it first", name)
		case !sync || p != nil:
			return p, nil
		case waited:
			return nil, errdefs.Unavailable("the pod of replica %q is not running; its creation or type change failed, see the array's log, and retry", name)
		}
		done, err := e.reserve(ctx, "replica "+name)
		if err != nil {
			return nil, err
		}
		done()
	}
}

// ChangeReplicaType switches between async and sync without a full
// resync: to sync, the peer's copies catch up with a delta from the newest
// snapshot both sides hold, then mirroring takes over; to async, the pod
// stops and the schedule ships deltas from the pod's last snapshot.
func (e *Engine) ChangeReplicaType(ctx context.Context, name, typ string) (array.Replica, error) {
	if typ != array.TypeAsync && typ != array.TypeSync {
		return array.Replica{}, errdefs.InvalidArgument("replication_type", "%q is not ASYNC or SYNC", typ)
	}
	// One change at a time, and none while the replica is being created:
	// each starts or stops the pod after the type is set.
	release, err := e.reserve(ctx, "replica "+name)
	if err != nil {
		return array.Replica{}, err
	}
	defer release()
	mname := name
	if typ == array.TypeSync {
		// Asked before e.mu is taken: it waits for the peer. A replica
		// that is sync already keeps the name it has, so its peer is not
		// asked.
		e.mu.Lock()
		r, err := e.replicaLocked(name)
		var l *link
		if err == nil && r.rec.Spec.Type != array.TypeSync {
			l, err = e.linkLocked(r.rec.Spec.Link)
		}
		e.mu.Unlock()
		if err == nil && l != nil {
			mname = e.mediatorName(ctx, l, name)
		}
	}
	e.mu.Lock()
	r, err := e.replicaLocked(name)
	if err != nil {
		e.mu.Unlock()
		return array.Replica{}, err
	}
	if !r.rec.Initialized && r.rec.Spec.Type == array.TypeAsync {
		e.mu.Unlock()
		return array.Replica{}, errdefs.FailedPrecondition("replica %q is INITIALIZING; change its type after the first copy completes", name)
	}
	if p := e.pods[name]; typ == array.TypeAsync && p != nil && len(p.unready()) > 0 {
		e.mu.Unlock()
		return array.Replica{}, errdefs.FailedPrecondition("replica %q is INITIALIZING its peer copies; change its type after they complete", name)
	}
	if r.busy {
		e.mu.Unlock()
		return array.Replica{}, errdefs.Aborted("replica %q is replicating now; retry when the cycle ends", name)
	}
	from := r.rec.Spec.Type
	if from == typ {
		v := e.view(r)
		e.mu.Unlock()
		return v, nil
	}
	old := r.rec
	r.rec.Spec.Type = typ
	if typ == array.TypeSync && r.rec.Spec.SyncTimeout <= 0 {
		r.rec.Spec.SyncTimeout = defaultSyncTimeout
	}
	if typ == array.TypeAsync {
		r.rec.SyncMembers = nil
		r.rec.NextTick = e.opts.Clock.Now()
	}
	if typ == array.TypeSync {
		r.rec.MediatorName = mname
	}
	rec := r.rec
	p := e.pods[name]
	e.mu.Unlock()
	if p != nil {
		// Owed before the async type is kept, so a crash between the two
		// cannot leave an async replica whose peer was never told; while
		// the pod still runs, nothing is delivered.
		err = e.oweRelease(ctx, p)
	}
	if err == nil {
		err = e.save(ctx, recReplicas, name, rec)
		if err != nil && p != nil {
			_ = e.forgetRelease(ctx, name) // the pod runs on; a record left is never delivered while it does
		}
	}
	if err != nil {
		e.mu.Lock()
		r.rec = old
		e.mu.Unlock()
		return array.Replica{}, err
	}
	if typ == array.TypeSync {
		if err := e.addPod(ctx, r); err != nil {
			return array.Replica{}, err
		}
	} else if p != nil {
		e.removePod(ctx, name, p)
	}
	e.log.Info("replica type changed", "replica", name, "from", from, "to", typ)
	e.wake()
	return e.GetReplica(ctx, name)
}

// DeleteReplica stops replicating and removes the replica's snapshots on
// this array; with deleteRemote it also removes the remote copies.
func (e *Engine) DeleteReplica(ctx context.Context, name string, deleteRemote bool) error {
	e.mu.Lock()
	r, err := e.replicaLocked(name)
	if err == nil && r.busy {
		err = errdefs.Aborted("replica %q is replicating now; retry when the cycle ends", name)
	}
	var l *link
	var p *pod
	if err == nil {
		l = e.links[r.rec.Spec.Link]
		p = e.pods[name]
		delete(e.replicas, name)
	}
	e.mu.Unlock()
	if err != nil {
		return err
	}
	if p != nil {
		if err := e.oweRelease(ctx, p); err != nil {
			e.mu.Lock()
			e.replicas[name] = r
			e.mu.Unlock()
			return err
		}
		e.removePod(ctx, name, p)
	}
	// Out of the engine now: its record and its snapshots here must go
	// with it, or a restart would bring the replica back, even if the
	// caller gave up meanwhile (a pod's stop may take its deadline).
	local := context.WithoutCancel(ctx)
	if err := e.s.DeleteRecord(local, recReplicas, name); err != nil {
		return err
	}
	members, _ := e.members(local, r.rec.Spec)
	e.pruneLocal(local, r.rec.Spec, members, func([]array.Snapshot) map[string]bool { return nil })
	if deleteRemote && l != nil {
		return e.collectRemote(ctx, l, r.rec.Spec, map[string]string{})
	}
	return nil
}

// transferID names a transfer across retries, so the receiver resumes it.
func transferID(replica, member, guid string) string {
	sum := sha256.Sum256([]byte(replica + "\x00" + member + "\x00" + guid))
	return "x" + hex.EncodeToString(sum[:20])
}

// mediatorName is the name a pod begun now takes at its mediator: scoped
// by this array (mediator.Scoped) when the peer asks under the name the
// forward stream sends it (array.FeatureMediatorName), else the pod's
// name alone, which an older peer asks under. A peer that cannot be
// asked gets the older name too: both sides must ask under one name, and
// the pod keeps it for life.
func (e *Engine) mediatorName(ctx context.Context, l *link, pod string) string {
	const infoTimeout = 5 * time.Second
	ictx, cancel := context.WithTimeout(ctx, infoTimeout)
	defer cancel()
	info, err := l.peer.Info(ictx)
	if err != nil {
		e.log.Warn("the pod's peer did not answer; the pod takes its name alone at the mediator, which pods of the same name on other arrays sharing the mediator would contend for",
			"pod", pod, "link", l.rec.Name, "err", err)
		return pod
	}
	if !info.Has(array.FeatureMediatorName) {
		e.log.Info("the pod's peer runs an older volrep; the pod takes its name alone at the mediator, for its life", "pod", pod, "link", l.rec.Name,
			"peer_version", info.Version)
		return pod
	}
	return mediator.Scoped(e.id, pod)
}
