package arrayv1

// Validate methods for every request of the array API. The server's
// validation interceptor calls them before a handler runs; a failure comes
// back as INVALID_ARGUMENT naming the field. Every request message has one,
// even when there is nothing to check, and a test in package server fails
// when an RPC's request lacks it.

import (
	v "github.com/volrep/volrep/validation"
)

// Validate accepts every GetArrayInfoRequest.
func (x *GetArrayInfoRequest) Validate() error { return nil }

// Validate checks the pool name.
func (x *CreatePoolRequest) Validate() error { return v.Name("name", x.GetName()) }

// Validate checks the pool name.
func (x *GetPoolRequest) Validate() error { return v.Name("name", x.GetName()) }

// Validate accepts every ListPoolsRequest.
func (x *ListPoolsRequest) Validate() error { return nil }

// Validate checks the pool name.
func (x *DeletePoolRequest) Validate() error { return v.Name("name", x.GetName()) }

// Validate checks the names, the block-aligned size and the label keys.
func (x *CreateVolumeRequest) Validate() error {
	return v.First(
		v.Name("name", x.GetName()),
		v.Name("pool", x.GetPool()),
		v.SizeBytes("size_bytes", x.GetSizeBytes()),
		v.MapKeys("labels", x.GetLabels()),
	)
}

// Validate checks the volume name.
func (x *GetVolumeRequest) Validate() error { return v.Name("name", x.GetName()) }

// Validate checks the pool name if one is given; empty lists every pool.
func (x *ListVolumesRequest) Validate() error { return v.OptionalName("pool", x.GetPool()) }

// Validate checks the volume name.
func (x *DeleteVolumeRequest) Validate() error { return v.Name("name", x.GetName()) }

// Validate checks the volume name and the new block-aligned size.
func (x *ExtendVolumeRequest) Validate() error {
	return v.First(
		v.Name("name", x.GetName()),
		v.SizeBytes("size_bytes", x.GetSizeBytes()),
	)
}

// Validate checks the volume name, the offset and the data length.
func (x *WriteVolumeRequest) Validate() error {
	data := x.GetData()
	return v.First(
		v.Name("name", x.GetName()),
		v.IORange("offset", x.GetOffset(), "data", int64(len(data)), 1, v.MaxIO),
	)
}

// Validate checks the volume name and the byte range.
func (x *ReadVolumeRequest) Validate() error {
	return v.First(
		v.Name("name", x.GetName()),
		v.IORange("offset", x.GetOffset(), "length", x.GetLength(), 1, v.MaxIO),
	)
}

// Validate checks the volume name.
func (x *FlushVolumeRequest) Validate() error { return v.Name("name", x.GetName()) }

// Validate checks the names and the label keys.
func (x *CreateSnapshotRequest) Validate() error {
	return v.First(
		v.Name("volume", x.GetVolume()),
		v.Name("name", x.GetName()),
		v.MapKeys("labels", x.GetLabels()),
	)
}

// Validate checks the names.
func (x *GetSnapshotRequest) Validate() error {
	return v.First(
		v.Name("volume", x.GetVolume()),
		v.Name("name", x.GetName()),
	)
}

// Validate checks the volume name.
func (x *ListSnapshotsRequest) Validate() error { return v.Name("volume", x.GetVolume()) }

// Validate checks the names.
func (x *DeleteSnapshotRequest) Validate() error {
	return v.First(
		v.Name("volume", x.GetVolume()),
		v.Name("name", x.GetName()),
	)
}

// Validate checks the names and the byte range.
func (x *ReadSnapshotRequest) Validate() error {
	return v.First(
		v.Name("volume", x.GetVolume()),
		v.Name("name", x.GetName()),
		v.IORange("offset", x.GetOffset(), "length", x.GetLength(), 1, v.MaxIO),
	)
}

// Validate checks the names, the optional pool and size (empty or zero
// keeps the source's), and the label keys.
func (x *CloneSnapshotRequest) Validate() error {
	return v.First(
		v.Name("volume", x.GetVolume()),
		v.Name("snapshot", x.GetSnapshot()),
		v.Name("name", x.GetName()),
		v.OptionalName("pool", x.GetPool()),
		v.OptionalSizeBytes("size_bytes", x.GetSizeBytes()),
		v.MapKeys("labels", x.GetLabels()),
	)
}

// Validate checks the names; an empty base means "from nothing".
func (x *DiffSnapshotsRequest) Validate() error {
	return v.First(
		v.Name("volume", x.GetVolume()),
		v.OptionalName("base", x.GetBase()),
		v.Name("snapshot", x.GetSnapshot()),
	)
}

// Validate checks the volume, the optional snapshot and the attachment id.
func (x *CreateExportRequest) Validate() error {
	return v.First(
		v.Name("volume", x.GetVolume()),
		v.OptionalName("snapshot", x.GetSnapshot()),
		v.Name("attachment_id", x.GetAttachmentId()),
	)
}

// Validate needs either the export name or the volume and attachment id.
func (x *DeleteExportRequest) Validate() error {
	if x.GetName() != "" {
		return v.Name("name", x.GetName())
	}
	return v.First(
		v.Name("volume", x.GetVolume()),
		v.OptionalName("attachment_id", x.GetAttachmentId()),
	)
}

// Validate checks the optional volume.
func (x *ListExportsRequest) Validate() error { return v.OptionalName("volume", x.GetVolume()) }
