package e2e

import (
	"strings"
	"testing"

	driverv1 "github.com/volrep/volrep/proto/volrep/driver/v1"
)

// TestRevertOverNBD writes pattern A with qemu-io, snapshots, writes
// pattern B, reverts through the driver API and reads A back with qemu-io
// read -P; a connection that stayed open across the revert reads A on its
// next request. Then the volume is extended online.
func TestRevertOverNBD(t *testing.T) {
	qemuIO := tool(t, "qemu-io")
	d := NewDaemon(t)
	d.Start()
	c := driverClient(t, d)
	createVolume(t, c, "revvol", 1)
	vol := attach(t, c, "revvol", "host-1", "")
	run(t, false, qemuIO, "-f", "raw", vol.URI(), "-c", "write -P 0xaa 0 1M", "-c", "flush")
	if _, err := c.CreateSnapshot(t.Context(), &driverv1.CreateSnapshotRequest{Backend: "demo", VolumeId: "revvol", SnapshotId: "s1"}); err != nil {
		t.Fatal(err)
	}
	run(t, false, qemuIO, "-f", "raw", vol.URI(), "-c", "write -P 0xbb 0 1M", "-c", "write -P 0xcc 2M 64k", "-c", "flush")
	out, _ := run(t, false, qemuIO, "-r", "-f", "raw", vol.URI(), "-c", "read -P 0xbb 0 1M", "-c", "read -P 0xcc 2M 64k")
	if strings.Contains(out, "failed") {
		t.Fatalf("pattern B is not there before the revert:\n%s", out)
	}

	open, err := dialNBD(vol.Addr(), vol["export_name"])
	if err != nil {
		t.Fatal(err)
	}
	defer open.Close()
	got := make([]byte, 4096)
	if err := open.ReadAt(got, 0); err != nil || got[0] != 0xbb {
		t.Fatalf("open connection before the revert: %#x, %v", got[0], err)
	}

	if _, err := c.RevertToSnapshot(t.Context(), &driverv1.RevertToSnapshotRequest{Backend: "demo", VolumeId: "revvol", SnapshotId: "s1", SnapshotVolumeId: "revvol"}); err != nil {
		t.Fatal(err)
	}
	if err := open.ReadAt(got, 0); err != nil {
		t.Fatal(err)
	}
	if i := firstDiff(got, pattern(0xaa, 4096)); i >= 0 {
		t.Fatalf("the connection open across the revert reads byte %d = %#x, want 0xaa", i, got[i])
	}
	out, _ = run(t, false, qemuIO, "-r", "-f", "raw", vol.URI(), "-c", "read -P 0xaa 0 1M", "-c", "read -P 0 2M 64k")
	if strings.Contains(out, "failed") {
		t.Fatalf("after the revert the volume does not read as the snapshot:\n%s", out)
	}

	// Online extend: the connection open since before stays usable, and
	// an NBD client that reconnects sees the new size.
	if _, err := c.ExtendVolume(t.Context(), &driverv1.ExtendVolumeRequest{Backend: "demo", VolumeId: "revvol", NewSizeGb: 2}); err != nil {
		t.Fatal(err)
	}
	if err := open.ReadAt(got, 0); err != nil || got[0] != 0xaa {
		t.Fatalf("the open connection after an extend: %#x, %v", got[0], err)
	}
	if out, _ := run(t, false, qemuIO, "-r", "-f", "raw", vol.URI(), "-c", "length", "-c", "read -P 0 1G 64k"); !strings.Contains(out, "2 GiB") || strings.Contains(out, "failed") {
		t.Fatalf("NBD after the extend:\n%s", out)
	}

	// Another volume's snapshot is refused before it reaches the array.
	createVolume(t, c, "other", 1)
	_, err = c.RevertToSnapshot(t.Context(), &driverv1.RevertToSnapshotRequest{Backend: "demo", VolumeId: "other", SnapshotId: "s1", SnapshotVolumeId: "revvol"})
	if err == nil || !strings.Contains(err.Error(), "is of volume revvol, not other") {
		t.Fatalf("reverting to another volume's snapshot: %v", err)
	}
}
