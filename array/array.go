// Package array defines what a storage array offers: pools, thin volumes,
// snapshots and clones. The engine in array/store implements it locally and
// array/client implements it over gRPC; array/testsuite holds the
// conformance suite that both must pass.
package array

import (
	"context"
	"slices"
	"time"
)

// BlockSize is the unit of allocation, change tracking and checksums.
const BlockSize = 4096

// Info describes an array.
type Info struct {
	Name          string
	ID            string
	Version       string
	CapacityBytes int64
	FreeBytes     int64
	Now           time.Time
	BlockSize     int64
	// ISCSITargetIQN and ISCSIPortals say where the array serves iSCSI;
	// both are empty when it does not (no iscsi_listen).
	ISCSITargetIQN string
	ISCSIPortals   []string
	// StreamPort is the port, on the API's host, that serves the pod
	// streams without gRPC (stream_listen); 0 when it does not.
	StreamPort int
	// Features are the protocol features the array implements (see
	// Features).
	Features []string
}

// FeatureForwardOwnCopy: as a pod's non-preferred array, the array
// answers a client's write only once its own copy holds it, not as soon
// as the preferred array applied it (volrep before 2026-12-05 did). A
// preferred array forwards its peer's client writes only to a peer that
// has it, so a pod never acknowledges a write one copy lacks.
const FeatureForwardOwnCopy = "forward-own-copy"

// FeatureLUReset: as a pod's non-preferred array, the array takes
// MirrorRequest.lu_reset on a mirror stream, a LOGICAL UNIT RESET the
// preferred array took; an older one would end the stream on it.
const FeatureLUReset = "lu-reset"

// FeatureMediatorName: as a pod's non-preferred array, the array asks
// the mediator for the pod under ForwardOpen.mediator_name; an older one
// uses the pod's name alone. A preferred array scopes a new pod's name at
// the mediator only for a peer that has it, so both ask under one name.
const FeatureMediatorName = "mediator-name"

// FeatureReservations: as a pod's non-preferred array, the array takes
// MirrorRequest.reservations on a mirror stream (the persistent
// reservations the preferred array decided for a volume) and forwards
// its hosts' PERSISTENT RESERVE OUT (ForwardResponse.reservation). A
// preferred array whose peer lacks it, and a peer whose preferred array
// does not set ForwardOpen.reservations, serve the pod's volumes without
// persistent reservations.
const FeatureReservations = "reservations"

// Features lists the protocol features this build implements.
func Features() []string {
	return []string{FeatureForwardOwnCopy, FeatureLUReset, FeatureMediatorName, FeatureReservations}
}

// Has says whether the array reports protocol feature f.
func (i Info) Has(f string) bool { return slices.Contains(i.Features, f) }

// Pool groups volumes.
type Pool struct {
	Name        string
	Created     time.Time
	VolumeCount int64
}

// VolumeSpec asks for a volume.
type VolumeSpec struct {
	Name      string
	Pool      string
	SizeBytes int64
	Labels    map[string]string
}

// Volume is a thin block device.
type Volume struct {
	Name          string
	Pool          string
	SizeBytes     int64
	Created       time.Time
	Source        string // "volume@snapshot" it was cloned from
	UsedBytes     int64
	SnapshotCount int64
	Labels        map[string]string
	// ReadOnly volumes are replica targets: only replication writes them.
	ReadOnly bool
	// WWN is the volume's SCSI identity: the 32 hex digits of its NAA 6
	// designator (see NAA). It is given at creation, kept by every replica
	// of the volume, and so the same after a failover.
	WWN string
	// QoS is the limit the array puts on the volume's attachments.
	QoS QoS
	// Group is the consistency group (protection group, pod) the volume
	// is a member of, if any.
	Group string
}

// QoS caps the I/O that a volume's attachments (every NBD export and
// iSCSI connection of it together) may do per second. A zero field is
// unlimited; the zero QoS limits nothing. Reads count against the total
// and the read limits, writes (and zeroed ranges, as one operation of no
// bytes) against the total and the write limits.
type QoS struct {
	TotalIOPS        int64
	ReadIOPS         int64
	WriteIOPS        int64
	TotalBytesPerSec int64
	ReadBytesPerSec  int64
	WriteBytesPerSec int64
}

// IsZero reports whether q limits nothing.
func (q QoS) IsZero() bool { return q == QoS{} }

// Snapshot is a read-only point-in-time image of a volume.
type Snapshot struct {
	Volume    string
	Name      string
	GUID      string
	SizeBytes int64
	Created   time.Time
	UsedBytes int64
	Labels    map[string]string
}

// Ref returns "volume@snapshot".
func (s Snapshot) Ref() string { return s.Volume + "@" + s.Name }

// Extent is a byte range of a volume. Zero means it reads as zeros.
type Extent struct {
	Offset int64
	Length int64
	Zero   bool
}

// End returns the offset just past the extent.
func (e Extent) End() int64 { return e.Offset + e.Length }

// CloneSpec asks for a volume cloned from a snapshot. Empty Pool keeps the
// source's pool; zero SizeBytes keeps the snapshot's size.
type CloneSpec struct {
	Volume    string
	Snapshot  string
	Name      string
	Pool      string
	SizeBytes int64
	Labels    map[string]string
}

// ExportSpec asks for an NBD attachment of a volume, or of a snapshot
// (always read-only).
type ExportSpec struct {
	Volume       string
	Snapshot     string
	AttachmentID string
	ReadOnly     bool
}

// Export is an authorised NBD attachment. Name is the export name clients
// must use, and a secret.
type Export struct {
	Name         string
	Volume       string
	Snapshot     string
	AttachmentID string
	ReadOnly     bool
	Host         string
	Port         int
	Created      time.Time
}

// HostSpec asks for a host: an initiator, by its iSCSI names, that
// volumes can be connected to.
type HostSpec struct {
	Name string
	// IQNs are the host's initiator names (iqn., eui. or naa. form); an
	// initiator belongs to at most one host.
	IQNs []string
	// MutualCHAP makes the array authenticate itself to the host too.
	MutualCHAP bool
	Labels     map[string]string
	// CHAPSecret and MutualCHAPSecret, when set, are the secrets a new
	// host gets instead of new random ones: a pod's two arrays must ask
	// one host for the same secret, since its initiator presents one at
	// every path. A host that exists keeps its own.
	CHAPSecret       string
	MutualCHAPSecret string
	// PreferredArrays of a new host (Host.PreferredArrays); a host that
	// exists keeps its own.
	PreferredArrays []string
}

// Host is an initiator the array authorises, with the CHAP credentials
// its logins must present. Secrets are empty unless asked for.
type Host struct {
	Name       string
	IQNs       []string
	MutualCHAP bool
	// CHAPUser is the name the host's logins present (the host's name).
	CHAPUser   string
	CHAPSecret string
	// MutualCHAPUser and MutualCHAPSecret are what the array answers the
	// host's challenge with, when MutualCHAP is set.
	MutualCHAPUser   string
	MutualCHAPSecret string
	Created          time.Time
	Labels           map[string]string
	// Connections is how many volumes and snapshots are connected.
	Connections int64
	// PreferredArrays name the arrays whose paths to a pod volume are
	// active/optimized for this host, as a FlashArray host's preferred
	// arrays: a pod's other array reports active/non-optimized to it, so
	// a host at the peer's site uses the peer's paths. Empty: each array
	// reports its own state. A state that takes no I/O (a stopped side)
	// is reported as it is.
	PreferredArrays []string
}

// ConnectionSpec connects a volume, or one of its snapshots (read-only),
// to a host.
type ConnectionSpec struct {
	Host     string
	Volume   string
	Snapshot string
}

// Connection maps a volume or snapshot to a host as a LUN of the array's
// iSCSI target. The CHAP fields are the host's, set only in the answer to
// ConnectVolume, which the attaching side needs them from.
type Connection struct {
	Host     string
	Volume   string
	Snapshot string
	LUN      int64
	ReadOnly bool
	// TargetIQN is the array's iSCSI target; Portals are where it listens
	// ("host:port").
	TargetIQN        string
	Portals          []string
	CHAPUser         string
	CHAPSecret       string
	MutualCHAPUser   string
	MutualCHAPSecret string
	WWN              string
	Created          time.Time
	// Path is the ALUA state the array reports to the host for the LUN
	// now; set by ListConnections only.
	Path *Path
}

// Group is a consistency group: volumes snapshotted at one write barrier.
type Group struct {
	Name    string
	Pool    string
	Members []string
	Created time.Time
	Labels  map[string]string
}

// Array is the interface every array implementation offers, local or remote.
type Array interface {
	Info(ctx context.Context) (Info, error)

	CreatePool(ctx context.Context, name string) (Pool, error)
	GetPool(ctx context.Context, name string) (Pool, error)
	ListPools(ctx context.Context) ([]Pool, error)
	DeletePool(ctx context.Context, name string) error

	CreateVolume(ctx context.Context, spec VolumeSpec) (Volume, error)
	GetVolume(ctx context.Context, name string) (Volume, error)
	// ListVolumes lists the volumes of a pool, or of every pool when pool is "".
	ListVolumes(ctx context.Context, pool string) ([]Volume, error)
	DeleteVolume(ctx context.Context, name string) error
	ExtendVolume(ctx context.Context, name string, sizeBytes int64) (Volume, error)
	// RevertVolume makes a volume's content one of its snapshots' in
	// O(1); open attachments read the new content from their next request.
	RevertVolume(ctx context.Context, volume, snapshot string) (Volume, error)
	WriteVolume(ctx context.Context, name string, off int64, p []byte, fua bool) error
	ReadVolume(ctx context.Context, name string, off int64, p []byte) error
	FlushVolume(ctx context.Context, name string) error

	CreateSnapshot(ctx context.Context, volume, name string, labels map[string]string) (Snapshot, error)
	GetSnapshot(ctx context.Context, volume, name string) (Snapshot, error)
	ListSnapshots(ctx context.Context, volume string) ([]Snapshot, error)
	DeleteSnapshot(ctx context.Context, volume, name string) error
	ReadSnapshot(ctx context.Context, volume, name string, off int64, p []byte) error
	CloneSnapshot(ctx context.Context, spec CloneSpec) (Volume, error)
	// Diff lists the extents of snapshot that differ from base, both of
	// volume's lineage. An empty base lists every allocated extent.
	Diff(ctx context.Context, volume, base, snapshot string) ([]Extent, error)
	// Checksums returns the CRC-32C of each 4 KiB block of a snapshot's
	// range, so arrays can compare a snapshot and its replica cheaply.
	Checksums(ctx context.Context, volume, snapshot string, off, length int64) ([]uint32, error)

	// CreateExport authorises one NBD attachment; the same spec again
	// returns the same export.
	CreateExport(ctx context.Context, spec ExportSpec) (Export, error)
	// DeleteExport revokes the export called name or, with name empty,
	// volume's exports for attachmentID (all of them when it is empty too).
	// It returns how many it revoked.
	DeleteExport(ctx context.Context, name, volume, attachmentID string) (int, error)
	ListExports(ctx context.Context, volume string) ([]Export, error)

	// CreateHost creates a host; the same spec again returns it. An IQN
	// that another host has is ALREADY_EXISTS naming that host.
	CreateHost(ctx context.Context, spec HostSpec) (Host, error)
	// GetHost returns a host, with its CHAP secrets when secrets is set.
	GetHost(ctx context.Context, name string, secrets bool) (Host, error)
	// ListHosts lists hosts by name, without secrets.
	ListHosts(ctx context.Context) ([]Host, error)
	// DeleteHost deletes a host; one with connections is
	// FAILED_PRECONDITION unless force, which disconnects them first.
	DeleteHost(ctx context.Context, name string, force bool) error
	// SetHostPreferredArrays replaces a host's preferred arrays (none
	// clears them); open sessions see the change from their next command.
	SetHostPreferredArrays(ctx context.Context, name string, arrays []string) (Host, error)
	// ConnectVolume maps a volume or snapshot to a host at the lowest free
	// LUN; connecting it again returns the same connection.
	ConnectVolume(ctx context.Context, spec ConnectionSpec) (Connection, error)
	// DisconnectVolume unmaps it: the host's open sessions fail their next
	// command on the LUN. Not connected is NOT_FOUND.
	DisconnectVolume(ctx context.Context, spec ConnectionSpec) error
	// ListConnections lists the connections of a host, of a volume, of
	// both or (both empty) of the array, by host and LUN, without secrets.
	ListConnections(ctx context.Context, host, volume string) ([]Connection, error)
	// VolumeReservations returns the SCSI-3 persistent reservations hosts
	// hold on a volume's logical unit through the array's iSCSI target.
	VolumeReservations(ctx context.Context, volume string) (Reservations, error)
	// ClearVolumeReservations drops them all for the operator, at both
	// arrays of a pod, and returns what is left.
	ClearVolumeReservations(ctx context.Context, volume string) (Reservations, error)

	CreateGroup(ctx context.Context, name, pool string, labels map[string]string) (Group, error)
	GetGroup(ctx context.Context, name string) (Group, error)
	ListGroups(ctx context.Context) ([]Group, error)
	DeleteGroup(ctx context.Context, name string) error
	AddMembers(ctx context.Context, group string, volumes []string) (Group, error)
	RemoveMembers(ctx context.Context, group string, volumes []string) (Group, error)
	// CreateGroupSnapshot snapshots every member at one write barrier.
	CreateGroupSnapshot(ctx context.Context, group, snapshot string, labels map[string]string) ([]Snapshot, error)

	// AdoptSnapshot snapshots a volume under a GUID another array's
	// snapshot has, asserting both hold the same data, so later transfers
	// between them can be deltas from it.
	AdoptSnapshot(ctx context.Context, volume, name, guid string, labels map[string]string) (Snapshot, error)
	// SetVolumeQoS replaces a volume's QoS limit (the zero QoS removes it);
	// open attachments are held to the new limit from their next request.
	// A replica target gets no limit from its source: set it there too.
	SetVolumeQoS(ctx context.Context, volume string, q QoS) (Volume, error)
	// SetReadOnly promotes a replica target (false) or demotes a volume to one (true).
	SetReadOnly(ctx context.Context, volume string, readOnly bool) error
	// CreateSnapshotSet snapshots volumes at one write barrier.
	CreateSnapshotSet(ctx context.Context, volumes []string, name string, labels map[string]string) ([]Snapshot, error)
	// RenameVolume renames a volume, its snapshots following, and when
	// labels is not nil replaces its labels, atomically. A volume reached
	// by name from outside (exported, connected, in a group, mirrored, a
	// replica target) is FAILED_PRECONDITION.
	RenameVolume(ctx context.Context, name, newName string, labels map[string]string) (Volume, error)
	// RenameSnapshot renames a snapshot and when labels is not nil
	// replaces its labels, atomically; an exported or connected snapshot
	// is FAILED_PRECONDITION.
	RenameSnapshot(ctx context.Context, volume, name, newName string, labels map[string]string) (Snapshot, error)
	// HoldWrites makes a volume's client writes wait for lease, or renews
	// the hold in force; lease 0 releases it. It returns when the hold in
	// force began (zero after a release).
	HoldWrites(ctx context.Context, volume string, lease time.Duration) (time.Time, error)
}
