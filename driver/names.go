package driver

import "strings"

// Array object names follow Pure's driver, so operators who know one
// recognise the other on the array.
func volumeName(id string) string   { return "volume-" + id + "-cinder" }
func snapshotName(id string) string { return "snapshot-" + id }

// volumeID reverses volumeName; ok is false for volumes the driver did not create.
func volumeID(name string) (string, bool) {
	if !strings.HasPrefix(name, "volume-") || !strings.HasSuffix(name, "-cinder") {
		return "", false
	}
	return strings.TrimSuffix(strings.TrimPrefix(name, "volume-"), "-cinder"), true
}

// snapshotID reverses snapshotName; ok is false for snapshots the driver
// did not create or that Cinder let go (unmanagedSuffix).
func snapshotID(name string) (string, bool) {
	if !strings.HasPrefix(name, "snapshot-") || strings.HasSuffix(name, unmanagedSuffix) {
		return "", false
	}
	return strings.TrimPrefix(name, "snapshot-"), true
}

const gib = 1 << 30

// Labels the driver puts on array objects.
const (
	labelVolumeID   = "cinder.volume_id"
	labelVolumeType = "cinder.volume_type"
	labelBackend    = "cinder.backend"
	labelReplType   = "volrep.replication_type"
	// labelReplicaOwner marks snapshots a replica took (replication.LabelReplica).
	labelReplicaOwner = "volrep.replica"
)
