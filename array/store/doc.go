// Package store is the array engine: pools, thin volumes, snapshots and
// clones on a local filesystem.
//
// Every volume is a chain of layers. A layer is a sparse file, addressed at
// the volume's own offsets, plus two bitmaps over 4 KiB blocks: "present"
// (this layer holds the block) and "zero" (this layer hides older data with
// zeros). A read walks the chain from the newest layer down and takes each
// block from the first layer that says anything about it; blocks nobody
// holds read as zeros and take no space.
//
// A snapshot freezes the volume's writable layer and starts a new empty one
// on top, so it costs O(1) whatever the volume's size. A clone is a new
// writable layer on top of a snapshot's layer. The difference between two
// snapshots of one lineage is the union of the bitmaps of the layers between
// them, found in O(changed blocks) without reading data.
//
// Durability: a write lands in the layer file at once; FLUSH fdatasyncs the
// file and then commits the bitmap chunks changed since the last flush to
// bbolt in one transaction. A crash therefore loses only unflushed writes,
// and metadata (volumes, snapshots, layers, bitmaps) is always consistent.
//
// Deleting a snapshot merges its layer into the neighbour above it, copying
// whichever side is smaller, so retention that deletes old snapshots costs
// O(delta) as well.
package store
