// Package driver is the Cinder-style volume driver. Each cinder.conf
// backend section becomes a Backend: a primary array, reached through the
// array.Array interface, plus the replication targets its
// replication_device entries name. The driver keeps no volume data of its
// own; everything it knows about a volume lives on the arrays, in volume
// names and labels, so a restarted daemon picks up where it left off.
//
// # Addressing
//
// Every RPC names a volume by an id, and the driver finds the array volume
// by name alone: volume-<id>-cinder, snapshots snapshot-<id> of it
// (names.go). The id is the Cinder volume's name_id (the Python driver
// sends volume.name_id), which is its id unless a migration left the
// data under the migrated copy's id; provider_id is set to the array
// volume's name. The name is the only index: no lookup by label, no
// mapping table, nothing that a failover, a restart or a replica on
// another array could get out of step with (replicas carry the name).
//
// Managing an existing array volume keeps that invariant instead of
// adding a second way to find volumes: the array renames the volume to
// volume-<id>-cinder and sets the driver's labels in one bbolt
// transaction (array.Array RenameVolume; its snapshots and the sources of
// their clones follow it), then the volume joins the replication its type
// asks for, like a new one. The array refuses to rename a volume that
// something else reaches by name (an export, a host connection, a
// consistency group: protection group or pod, a sync mirror, a replica
// target), so a rename never leaves a dangling reference; the driver
// checks the same conditions first to say why in Cinder's terms.
// Unmanage is the reverse: the volume leaves the backend's protection
// group or pod (with the snapshots replication took of it), loses the
// cinder.* and volrep.* labels, and becomes volume-<id>-cinder-unmanaged,
// which is manageable again. Snapshots are adopted the same way
// (RenameSnapshot to snapshot-<id>; snapshot-<id>-unmanaged on unmanage).
package driver
