package array

import (
	"context"
	"errors"
	"time"

	"github.com/volrep/volrep/errdefs"
)

// Link states.
const (
	LinkConnected    = "connected"
	LinkUnreachable  = "unreachable"
	LinkUnauthorized = "unauthorized"
)

// LinkSpec asks for a connection to a peer array.
type LinkSpec struct {
	Name    string
	Address string
	Token   string
	// BandwidthLimit caps replication on the link in bytes per second; 0 is unlimited.
	BandwidthLimit int64
	Compression    bool
}

// Link is an authenticated connection to a peer array.
type Link struct {
	Name            string
	Address         string
	State           string
	RemoteArrayName string
	RemoteArrayID   string
	LastError       string
	LastChecked     time.Time
	ClockSkew       time.Duration
	BandwidthLimit  int64
	Compression     bool
	// PodsOwedRelease are the pods removed here whose peer has yet to
	// hear that their copies are plain replicas (sorted).
	PodsOwedRelease []string
}

// Replica kinds, modes, types and states, in InfiniSDK's terms.
const (
	KindVolume = "volume"
	KindGroup  = "group"

	ModeCreateTarget   = "create_target"
	ModeExistingTarget = "existing_target"
	ModeUseBase        = "use_base"

	TypeAsync = "async"
	TypeSync  = "sync"

	StateInitializing = "initializing"
	StateActive       = "active"
	StateSuspended    = "suspended"
	StateDegraded     = "degraded"
	StateError        = "error"

	SyncIdle       = "idle"
	SyncInProgress = "sync_in_progress"
	SyncInSync     = "in_sync"
	SyncOutOfSync  = "out_of_sync"

	RPOOk      = "ok"
	RPOLagging = "lagging"

	PeerOnline    = "online"
	PeerOffline   = "offline"
	PeerResyncing = "resyncing"

	PodOnline            = "online"
	PodResyncing         = "resyncing"
	PodDegraded          = "degraded"
	PodStoppedByMediator = "stopped_by_mediator"
	// The non-preferred array carries the pod alone (the mediator gave it
	// the pod while the preferred array was cut off from both), and hands
	// it back when the preferred array returns.
	PodCarried    = "carried"
	PodHandedBack = "handed_back"
	// The non-preferred array's own view: its preferred array does not
	// reach it, so its copies take no writes (PodCopy).
	PodOffline = "offline"

	MediatorHealthy     = "healthy"
	MediatorUnreachable = "unreachable"

	// A pod side's client writes: taken ("online"; at the non-preferred
	// array, forwarded to the preferred one), or refused ("stopped").
	WritesOnline  = "online"
	WritesStopped = "stopped"
)

// PodStoppedError is the error of a write to a pod its mediator stopped
// (an UNAVAILABLE error inside). Unlike an array shutting down, the
// connection stays: each write fails at once (NBD EIO, iSCSI's ALUA
// unavailable sense) and the next may succeed when the pod resumes.
type PodStoppedError struct{ Err error }

func (e *PodStoppedError) Error() string { return e.Err.Error() }
func (e *PodStoppedError) Unwrap() error { return e.Err }

// Retention keeps every snapshot for AllFor, then PerDay snapshots a day
// for Days days.
type Retention struct {
	AllFor time.Duration
	PerDay int
	Days   int
}

// ReplicaSpec asks for a replica of a local volume or consistency group.
type ReplicaSpec struct {
	Name string
	Kind string
	// Local is the local volume or group.
	Local string
	Link  string
	Mode  string
	// RemotePool is where CREATE_TARGET creates the remote entity.
	RemotePool string
	// RemoteEntity is the remote volume or group (default: Local's name).
	RemoteEntity string
	// MemberMappings maps local members to remote volume names (default: same names).
	MemberMappings map[string]string
	// LocalSnapshot and RemoteSnapshot are USE_BASE's common starting point.
	LocalSnapshot, RemoteSnapshot string
	Type                          string
	Interval, RPO                 time.Duration
	TargetRetention               Retention
	SourceRetention               Retention
	// SyncTimeout is how long a SYNC replica's write may wait for the
	// peer before the pod carries on without it.
	SyncTimeout time.Duration
	// PodMediator are the etcd endpoints (host:port) of a SYNC replica's
	// mediator; none means the array's default (or no mediator).
	PodMediator []string
	// PreferPeer: when the arrays of a SYNC replica with a mediator lose
	// each other while both reach it, the peer carries the pod on and
	// this array stops (volrep_preferred_array naming the sync target).
	// This array still orders the pod's writes while both run.
	PreferPeer bool
}

// Replica is a replica and how it is doing.
type Replica struct {
	ReplicaSpec
	State            string
	SyncState        string
	Message          string
	RPOState         string
	LastSynchronized time.Time
	LastSyncBytes    int64
	LastSyncDuration time.Duration
	Throughput       float64
	Lag              time.Duration
	LastSnapshot     string
	Created          time.Time
	TotalBytesSent   int64
	// SYNC replicas: the peer's state (PeerOnline, PeerOffline,
	// PeerResyncing), what the last resync sent, and what is still dirty.
	PeerState       string
	LastResyncBytes int64
	DirtyBytes      int64
	// MirroredBytes counts client writes the peer acknowledged (SYNC),
	// since the pod started in this process.
	MirroredBytes int64
	// SYNC replicas: this side's state (PodOnline, PodResyncing,
	// PodDegraded, PodStoppedByMediator) and, with a mediator, its health
	// (MediatorHealthy, MediatorUnreachable), why, and whether this side
	// holds the pod's key.
	PodState        string
	MediatorState   string
	MediatorMessage string
	MediatorHeld    bool
	// MediatorName is the pod's name at its mediator (mediator.Scoped).
	MediatorName string
	// SYNC replicas: whether this side and the peer take client writes
	// (WritesOnline, WritesStopped).
	Writes, PeerWrites string
}

// PodCopy is a pod at its non-preferred array, as that array sees it:
// the other half of what the preferred array's Replica says, which an
// operator needs when the two arrays cannot reach each other.
type PodCopy struct {
	Pod string
	// PodOnline, PodResyncing, PodOffline or PodCarried.
	State string
	// WritesOnline or WritesStopped: whether its copies take client writes.
	Writes  string
	Volumes []string
	// With a mediator this array asked: its health and whether this array
	// holds the pod's key.
	MediatorState string
	MediatorHeld  bool
	Message       string
	// SourceArrayID is the ID of the preferred array whose pod this is
	// here; "" when not known.
	SourceArrayID string
}

// ReplicaUpdate changes a replica's schedule; zero fields stay as they are.
type ReplicaUpdate struct {
	Interval, RPO   time.Duration
	TargetRetention *Retention
	SourceRetention *Retention
	// PreferPeer, when set, changes ReplicaSpec.PreferPeer.
	PreferPeer *bool
}

// Replication is what an array offers for replicating to peers.
type Replication interface {
	CreateLink(ctx context.Context, spec LinkSpec) (Link, error)
	GetLink(ctx context.Context, name string) (Link, error)
	ListLinks(ctx context.Context) ([]Link, error)
	DeleteLink(ctx context.Context, name string) error

	// ReplicateEntity creates a replica of a volume or, with Kind group,
	// a consistency group; an identical request returns the existing one.
	ReplicateEntity(ctx context.Context, spec ReplicaSpec) (Replica, error)
	GetReplica(ctx context.Context, name string) (Replica, error)
	ListReplicas(ctx context.Context, local string) ([]Replica, error)
	UpdateReplica(ctx context.Context, name string, u ReplicaUpdate) (Replica, error)
	DeleteReplica(ctx context.Context, name string, deleteRemote bool) error
	SuspendReplica(ctx context.Context, name string) (Replica, error)
	ResumeReplica(ctx context.Context, name string) (Replica, error)
	// SyncReplica replicates now; with wait it returns when the data is on the target.
	SyncReplica(ctx context.Context, name string, wait bool) (Replica, error)
	ChangeReplicaType(ctx context.Context, name, typ string) (Replica, error)

	Operations
}

// Operation states.
const (
	OpRunning   = "running"
	OpSucceeded = "succeeded"
	OpFailed    = "failed"
	OpCanceled  = "canceled"
)

// SnapshotReplicateSpec asks to send one snapshot over a link.
type SnapshotReplicateSpec struct {
	Volume, Snapshot string
	Link             string
	RemotePool       string
	// RemoteVolume defaults to Volume.
	RemoteVolume string
	// ForceFull sends the first snapshot in full.
	ForceFull bool
	// Snapshots are more snapshots of Volume to send in the same
	// operation, with Snapshot (if set): oldest first, each a delta on the
	// one before, so the target ends with all of them.
	Snapshots []string
	// RemoteLabels label the remote volume when the transfer creates it,
	// over the source labels the array sets.
	RemoteLabels map[string]string
}

// SnapshotReplicateResult is what a snapshot replication did.
type SnapshotReplicateResult struct {
	BaseSnapshot, BaseGUID       string
	Incremental                  bool
	BytesSent, BytesTotal        int64
	ResumedFrom                  int64
	RemoteVolume, RemoteSnapshot string
	AlreadyPresent               bool
	// Steps are the snapshots an operation sent, oldest first, when it
	// sent several; the fields above then sum the bytes, take the base
	// of the first and name the last.
	Steps []SnapshotReplicateResult
}

// End records how an operation ended at at: succeeded for a nil err,
// canceled for context.Canceled, else failed with err and its kind.
func (o *Operation) End(err error, at time.Time) {
	o.Finished = at
	switch {
	case err == nil:
		o.State, o.Phase, o.Done = OpSucceeded, "done", o.Total
	case errors.Is(err, context.Canceled):
		o.State, o.Err, o.ErrCode = OpCanceled, "canceled", "CANCELED"
	default:
		o.State, o.Err, o.ErrCode = OpFailed, err.Error(), errdefs.KindOf(err).Name()
	}
}

// Operation is long-running work and how far it has come.
type Operation struct {
	ID, Kind, Target  string
	State, Phase      string
	Done, Total       int64
	Rate              float64
	ETA               time.Duration
	Started, Finished time.Time
	Err, ErrCode      string
	Result            SnapshotReplicateResult
	// WritesHeld is how long a volume migration held the volume's writes
	// for its last pass and the switch (driver operations only).
	WritesHeld time.Duration `json:",omitempty"`
}

// Operations follows an array's long-running work.
type Operations interface {
	// ReplicateSnapshot starts sending a snapshot and returns the operation's id.
	ReplicateSnapshot(ctx context.Context, spec SnapshotReplicateSpec) (string, error)
	GetOperation(ctx context.Context, id string) (Operation, error)
	ListOperations(ctx context.Context) ([]Operation, error)
	// WatchOperation calls fn with the operation as it progresses, until it
	// finishes, fn fails or ctx ends.
	WatchOperation(ctx context.Context, id string, fn func(Operation) error) error
	CancelOperation(ctx context.Context, id string) (Operation, error)
}
