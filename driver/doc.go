// Package driver is the Cinder-style volume driver. Each cinder.conf
// backend section becomes a Backend: a primary array, reached through the
// array.Array interface, plus the replication targets its
// replication_device entries name. The driver keeps no volume data of its
// own; everything it knows about a volume lives on the arrays, in volume
// names and labels, so a restarted daemon picks up where it left off.
package driver
