package driver

import (
	"bytes"
	"testing"

	"github.com/volrep/volrep/errdefs"
)

// TestRevertToSnapshot reverts through the driver against a real array
// over gRPC, and checks the refusals: another volume's snapshot, and a
// volume whose group is being failed over.
func TestRevertToSnapshot(t *testing.T) {
	ctx := t.Context()
	b, primary, _ := pairedBackend(t, "async")
	for _, id := range []string{"v1", "v2"} {
		if _, err := b.CreateVolume(ctx, id, 1, asyncSpecs, ""); err != nil {
			t.Fatal(err)
		}
	}
	a := bytes.Repeat([]byte{'A'}, 8192)
	if err := primary.st.WriteVolume(ctx, volumeName("v1"), 0, a, false); err != nil {
		t.Fatal(err)
	}
	if _, err := b.CreateSnapshot(ctx, "s1", "v1"); err != nil {
		t.Fatal(err)
	}
	if err := primary.st.WriteVolume(ctx, volumeName("v1"), 0, bytes.Repeat([]byte{'B'}, 4096), false); err != nil {
		t.Fatal(err)
	}
	if err := b.RevertToSnapshot(ctx, "v1", "s1"); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(a))
	if err := primary.st.ReadVolume(ctx, volumeName("v1"), 0, got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, a) {
		t.Fatalf("after the revert v1 reads %q..., want the snapshot's A", got[:4])
	}

	if err := b.RevertToSnapshot(ctx, "v2", "s1"); !errdefs.IsNotFound(err) {
		t.Fatalf("reverting v2 to v1's snapshot: %v, want NOT_FOUND", err)
	}
	if err := b.RevertToSnapshot(ctx, "ghost", "s1"); !errdefs.IsNotFound(err) {
		t.Fatalf("reverting an unknown volume: %v, want NOT_FOUND", err)
	}

	// Only a replicated group fails over.
	if _, err := b.CreateGroup(ctx, "g1", replGroup); err != nil {
		t.Fatal(err)
	}
	if _, err := b.UpdateGroup(ctx, "g1", []string{"v1"}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := b.EnableReplication(ctx, "g1", []string{"v1"}); err != nil {
		t.Fatal(err)
	}
	release, err := b.ops.acquire("group g1", "failover")
	if err != nil {
		t.Fatal(err)
	}
	err = b.RevertToSnapshot(ctx, "v1", "s1")
	release()
	if !errdefs.IsFailedPrecondition(err) {
		t.Fatalf("reverting a volume whose group is failing over: %v, want FAILED_PRECONDITION", err)
	}
	if err := b.RevertToSnapshot(ctx, "v1", "s1"); err != nil {
		t.Fatalf("after the failover ended: %v", err)
	}
}
