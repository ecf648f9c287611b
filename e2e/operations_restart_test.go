package e2e

import (
	"math/rand/v2"
	"strings"
	"testing"

	driverv1 "github.com/volrep/volrep/proto/volrep/driver/v1"
)

// TestOperationsSurviveSIGKILL kills site-a's volrepd (driver and source
// array) after one SnapshotReplicate finished and while another runs: after
// the restart both ids answer GetOperation from the driver's journal in
// state_dir, the finished one with its result, the interrupted one failed
// with an error that says what happened and what to do.
func TestOperationsSurviveSIGKILL(t *testing.T) {
	s := twoBackends(t)
	ctx := t.Context()
	dc := driverClient(t, s.a)
	a := s.a.Array("a")
	write := func(vol string, size int64) {
		if _, err := dc.CreateVolume(ctx, &driverv1.CreateVolumeRequest{Backend: "puredriver-1", VolumeId: vol, SizeGb: 1}); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 4<<20)
		r := rand.NewChaCha8([32]byte{2})
		for off := int64(0); off < size; off += int64(len(buf)) {
			r.Read(buf)
			if err := a.WriteVolume(ctx, "volume-"+vol+"-cinder", off, buf, false); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := dc.CreateSnapshot(ctx, &driverv1.CreateSnapshotRequest{Backend: "puredriver-1", SnapshotId: vol + "-s1", VolumeId: vol}); err != nil {
			t.Fatal(err)
		}
	}
	write("small", 8<<20)
	write("big", 512<<20)
	first, err := dc.SnapshotReplicate(ctx, &driverv1.SnapshotReplicateRequest{Backend: "puredriver-1", SnapshotId: "small-s1", VolumeId: "small", DestinationBackend: "pure-b"})
	if err != nil {
		t.Fatal(err)
	}
	done := watchOp(t, dc, first.GetOperationId(), nil)
	if done.GetState() != driverv1.OperationState_OPERATION_STATE_SUCCEEDED {
		t.Fatalf("first operation: %v", done)
	}
	second, err := dc.SnapshotReplicate(ctx, &driverv1.SnapshotReplicateRequest{Backend: "puredriver-1", SnapshotId: "big-s1", VolumeId: "big", DestinationBackend: "pure-b"})
	if err != nil {
		t.Fatal(err)
	}
	g, err := dc.GetOperation(ctx, &driverv1.GetOperationRequest{Backend: "puredriver-1", OperationId: second.GetOperationId()})
	if err != nil {
		t.Fatal(err)
	}
	s.a.Kill()
	if g.GetOperation().GetState() != driverv1.OperationState_OPERATION_STATE_RUNNING {
		t.Fatalf("second operation was not running when volrepd was killed: %v", g.GetOperation())
	}
	s.a.Start()

	var after *driverv1.Operation
	waitFor(t, func() bool {
		r, err := dc.GetOperation(ctx, &driverv1.GetOperationRequest{Backend: "puredriver-1", OperationId: first.GetOperationId()})
		after = r.GetOperation()
		return err == nil
	})
	if after.GetState() != driverv1.OperationState_OPERATION_STATE_SUCCEEDED || after.GetBytesSent() != done.GetBytesSent() ||
		after.GetBytesTotal() != done.GetBytesTotal() {
		t.Fatalf("finished operation after restart: %v, before: %v", after, done)
	}
	r, err := dc.GetOperation(ctx, &driverv1.GetOperationRequest{Backend: "puredriver-1", OperationId: second.GetOperationId()})
	if err != nil {
		t.Fatal(err)
	}
	op := r.GetOperation()
	if op.GetState() != driverv1.OperationState_OPERATION_STATE_FAILED || !strings.Contains(op.GetError(), "restarted") ||
		!strings.Contains(op.GetError(), "SnapshotReplicate again") {
		t.Fatalf("interrupted operation after restart: %v", op)
	}
	// Watching it ends at once with the same record.
	if w := watchOp(t, dc, second.GetOperationId(), nil); w.GetState() != op.GetState() || w.GetError() != op.GetError() {
		t.Fatalf("watch after restart: %v", w)
	}
	t.Logf("interrupted operation after restart: %s", op.GetError())
}
