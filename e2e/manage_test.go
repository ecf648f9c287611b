package e2e

import (
	"strings"
	"testing"

	"github.com/volrep/volrep/array"
	"github.com/volrep/volrep/errdefs"
	driverv1 "github.com/volrep/volrep/proto/volrep/driver/v1"
)

// TestManageUnmanageCLI adopts a volume made directly on the array API
// with `volrep volume manage`, reads the data written before through an
// NBD attachment, lets it go with `volrep volume unmanage` (it stays on
// the array) and adopts it again.
func TestManageUnmanageCLI(t *testing.T) {
	qemuIO := tool(t, "qemu-io")
	d := NewDaemon(t)
	d.Start()
	c := driverClient(t, d)
	a := d.Array("a")
	ctx := t.Context()
	if _, err := a.CreateVolume(ctx, array.VolumeSpec{Name: "legacy-db", Pool: "cinder", SizeBytes: 1 << 30}); err != nil {
		t.Fatal(err)
	}
	pattern := make([]byte, 1<<20)
	for i := range pattern {
		pattern[i] = 0x5a
	}
	if err := a.WriteVolume(ctx, "legacy-db", 0, pattern, true); err != nil {
		t.Fatal(err)
	}

	out, code := volrep(t, d, "volume", "manageable")
	if code != 0 || !strings.Contains(out, "legacy-db") || !strings.Contains(out, "yes") {
		t.Fatalf("volume manageable (exit %d):\n%s", code, out)
	}
	readBack := func(id string) {
		t.Helper()
		vol := attach(t, c, id, "host-1", "")
		out, _ := run(t, false, qemuIO, "-r", "-f", "raw", vol.URI(), "-c", "read -P 0x5a 0 1M")
		if strings.Contains(out, "failed") || strings.Contains(out, "Pattern verification") {
			t.Fatalf("volume %s does not read the data written before it was managed:\n%s", id, out)
		}
		detach(t, c, id, "host-1", "")
	}

	if out, code = volrep(t, d, "volume", "manage", "legacy-db", "--id", "m1"); code != 0 || !strings.Contains(out, "volume-m1-cinder") {
		t.Fatalf("volume manage (exit %d):\n%s", code, out)
	}
	readBack("m1")
	// Managing it again, under its new name, is refused with the reason.
	if out, code = volrep(t, d, "volume", "manage", "volume-m1-cinder", "--id", "m9"); code == 0 || !strings.Contains(out, "already managed") {
		t.Fatalf("managing a managed volume (exit %d):\n%s", code, out)
	}

	if out, code = volrep(t, d, "volume", "unmanage", "m1"); code != 0 {
		t.Fatalf("volume unmanage (exit %d):\n%s", code, out)
	}
	if _, err := c.GetVolume(ctx, &driverv1.GetVolumeRequest{Backend: "demo", VolumeId: "m1"}); err == nil {
		t.Fatal("the driver still knows m1 after unmanage")
	}
	if _, err := a.GetVolume(ctx, "volume-m1-cinder-unmanaged"); err != nil {
		t.Fatalf("the unmanaged volume is not on the array: %v", err)
	}
	if _, err := a.GetVolume(ctx, "volume-m1-cinder"); !errdefs.IsNotFound(err) {
		t.Fatalf("the managed name after unmanage: %v, want NOT_FOUND", err)
	}

	if out, code = volrep(t, d, "volume", "manage", "--provider-id", "volume-m1-cinder-unmanaged", "--id", "m2"); code != 0 {
		t.Fatalf("volume manage again (exit %d):\n%s", code, out)
	}
	readBack("m2")
}
