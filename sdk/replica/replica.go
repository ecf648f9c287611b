// Package replica is the replica half of volrep's Go SDK, shaped after
// InfiniSDK's ReplicaBinder: replicate_entity (create target, existing
// target, use base), replicate_cons_group, and on a replica
// change_type_to_sync / change_type_to_async, suspend, resume and sync.
package replica

import (
	"context"
	"strings"
	"time"

	"github.com/volrep/volrep/array"
)

// Entity is what can be replicated: a volume or a consistency group.
type Entity interface {
	EntityName() string
	// EntityKind is array.KindVolume or array.KindGroup.
	EntityKind() string
}

// Named is a pool, link or snapshot, by name.
type Named interface{ Name() string }

// Option adjusts a replica request.
type Option func(*array.ReplicaSpec)

// RemotePool says where a created target goes.
func RemotePool(p Named) Option { return func(s *array.ReplicaSpec) { s.RemotePool = p.Name() } }

// RemoteEntity names the remote volume or group.
func RemoteEntity(e Entity) Option {
	return func(s *array.ReplicaSpec) { s.RemoteEntity = e.EntityName() }
}

// ReplicationType is "ASYNC" (the default) or "SYNC", as in InfiniSDK.
func ReplicationType(t string) Option {
	return func(s *array.ReplicaSpec) { s.Type = strings.ToLower(t) }
}

// Interval sets how often an async replica ships a snapshot.
func Interval(d time.Duration) Option { return func(s *array.ReplicaSpec) { s.Interval = d } }

// RPO sets the recovery point objective the replica is measured against.
func RPO(d time.Duration) Option { return func(s *array.ReplicaSpec) { s.RPO = d } }

// Name names the replica (default "<entity>-to-<link>").
func Name(n string) Option { return func(s *array.ReplicaSpec) { s.Name = n } }

// TargetRetention sets what the target keeps.
func TargetRetention(r array.Retention) Option {
	return func(s *array.ReplicaSpec) { s.TargetRetention = r }
}

// Binder makes replicas on one system.
type Binder struct {
	r array.Replication
}

// NewBinder returns a Binder over a system's replication API.
func NewBinder(r array.Replication) *Binder { return &Binder{r: r} }

func (b *Binder) create(ctx context.Context, spec array.ReplicaSpec, opts []Option) (*Replica, error) {
	for _, o := range opts {
		o(&spec)
	}
	r, err := b.r.ReplicateEntity(ctx, spec)
	if err != nil {
		return nil, err
	}
	return &Replica{r: b.r, info: r}, nil
}

// ReplicateEntity replicates a volume or group over link, creating the
// remote entity in the RemotePool option's pool (create-target mode).
func (b *Binder) ReplicateEntity(ctx context.Context, e Entity, link Named, opts ...Option) (*Replica, error) {
	return b.ReplicateEntityCreateTarget(ctx, e, link, opts...)
}

// ReplicateEntityCreateTarget is ReplicateEntity, named for its mode.
func (b *Binder) ReplicateEntityCreateTarget(ctx context.Context, e Entity, link Named, opts ...Option) (*Replica, error) {
	return b.create(ctx, array.ReplicaSpec{Kind: e.EntityKind(), Local: e.EntityName(), Link: link.Name(), Mode: array.ModeCreateTarget}, opts)
}

// ReplicateEntityExistingTarget copies onto an existing remote entity of
// the right size, given with the RemoteEntity option.
func (b *Binder) ReplicateEntityExistingTarget(ctx context.Context, e Entity, link Named, opts ...Option) (*Replica, error) {
	return b.create(ctx, array.ReplicaSpec{Kind: e.EntityKind(), Local: e.EntityName(), Link: link.Name(), Mode: array.ModeExistingTarget}, opts)
}

// ReplicateEntityUseBase starts from a local and a remote snapshot that
// hold the same data, so only the delta is ever sent.
func (b *Binder) ReplicateEntityUseBase(ctx context.Context, e Entity, link Named, local, remote Named, opts ...Option) (*Replica, error) {
	return b.create(ctx, array.ReplicaSpec{Kind: e.EntityKind(), Local: e.EntityName(), Link: link.Name(), Mode: array.ModeUseBase,
		LocalSnapshot: local.Name(), RemoteSnapshot: remote.Name()}, opts)
}

// ReplicateConsGroup replicates a consistency group; its members map to
// remote volumes of the same names.
func (b *Binder) ReplicateConsGroup(ctx context.Context, cg Entity, link Named, opts ...Option) (*Replica, error) {
	return b.ReplicateEntity(ctx, cg, link, opts...)
}

// Get returns an existing replica.
func (b *Binder) Get(ctx context.Context, name string) (*Replica, error) {
	r, err := b.r.GetReplica(ctx, name)
	if err != nil {
		return nil, err
	}
	return &Replica{r: b.r, info: r}, nil
}

// Replica is a replica, with InfiniSDK's verbs.
type Replica struct {
	r    array.Replication
	info array.Replica
}

// Info is the replica as last fetched.
func (r *Replica) Info() array.Replica { return r.info }

func (r *Replica) set(v array.Replica, err error) error {
	if err == nil {
		r.info = v
	}
	return err
}

// Refresh fetches the replica's current state.
func (r *Replica) Refresh(ctx context.Context) error {
	return r.set(r.r.GetReplica(ctx, r.info.Name))
}

// ChangeTypeToSync makes every write reach the remote before it is
// acknowledged; refused while the replica is INITIALIZING.
func (r *Replica) ChangeTypeToSync(ctx context.Context) error {
	return r.set(r.r.ChangeReplicaType(ctx, r.info.Name, array.TypeSync))
}

// ChangeTypeToAsync goes back to shipping snapshots on an interval.
func (r *Replica) ChangeTypeToAsync(ctx context.Context) error {
	return r.set(r.r.ChangeReplicaType(ctx, r.info.Name, array.TypeAsync))
}

// IsTypeSync reports whether the replica is synchronous.
func (r *Replica) IsTypeSync() bool { return r.info.Type == array.TypeSync }

// IsTypeAsync reports whether the replica is asynchronous.
func (r *Replica) IsTypeAsync() bool { return r.info.Type == array.TypeAsync }

// Suspend stops replication until Resume.
func (r *Replica) Suspend(ctx context.Context) error {
	return r.set(r.r.SuspendReplica(ctx, r.info.Name))
}

// Resume restarts replication.
func (r *Replica) Resume(ctx context.Context) error {
	return r.set(r.r.ResumeReplica(ctx, r.info.Name))
}

// Sync replicates now and waits until the data is on the remote.
func (r *Replica) Sync(ctx context.Context) error {
	return r.set(r.r.SyncReplica(ctx, r.info.Name, true))
}

// Delete stops replicating; with deleteRemote the remote copy goes too.
func (r *Replica) Delete(ctx context.Context, deleteRemote bool) error {
	return r.r.DeleteReplica(ctx, r.info.Name, deleteRemote)
}

// State is the replica's state as last fetched: "initializing", "active",
// "suspended", "degraded" or "error".
func (r *Replica) State() string { return r.info.State }
