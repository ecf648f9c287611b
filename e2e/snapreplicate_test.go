package e2e

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"math/rand/v2"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/volrep/volrep/array/client"
	"github.com/volrep/volrep/errdefs"
	driverv1 "github.com/volrep/volrep/proto/volrep/driver/v1"
	"github.com/volrep/volrep/server"
)

// twoBackends runs site-a (its array and a driver with backends pure-a and
// pure-b) and site-b (pure-b's array) as separate processes, so the
// receiving array can be killed on its own.
func twoBackends(t *testing.T) *sites {
	return startSitesWith(t, "puredriver-1, pure-b", `volume_backend_name = pure-a
san_ip = SITE_A
pure_api_token = TOKEN_A

[pure-b]
volume_backend_name = pure-b
san_ip = SITE_B
pure_api_token = TOKEN_B
`)
}

func watchOp(t *testing.T, dc driverv1.DriverServiceClient, id string, each func(*driverv1.Operation)) *driverv1.Operation {
	t.Helper()
	return watchOpEach(t, dc, "puredriver-1", id, each)
}

func watchOpOn(t *testing.T, dc driverv1.DriverServiceClient, backend, id string) *driverv1.Operation {
	t.Helper()
	return watchOpEach(t, dc, backend, id, nil)
}

func watchOpEach(t *testing.T, dc driverv1.DriverServiceClient, backend, id string, each func(*driverv1.Operation)) *driverv1.Operation {
	t.Helper()
	stream, err := dc.WatchOperation(t.Context(), &driverv1.WatchOperationRequest{Backend: backend, OperationId: id})
	if err != nil {
		t.Fatal(err)
	}
	var last *driverv1.Operation
	for {
		r, err := stream.Recv()
		if err == io.EOF {
			return last
		}
		if err != nil {
			t.Fatal(err)
		}
		last = r.GetOperation()
		if each != nil {
			each(last)
		}
	}
}

// TestSnapshotReplicateResumeAfterSIGKILL kills the receiving daemon at
// about half of a snapshot's transfer, restarts it and replicates again:
// the second run sends under 60% of the data, and the replica verifies.
func TestSnapshotReplicateResumeAfterSIGKILL(t *testing.T) {
	s := twoBackends(t)
	ctx := t.Context()
	dc := driverClient(t, s.a)
	const size = 1 << 30
	if _, err := dc.CreateVolume(ctx, &driverv1.CreateVolumeRequest{Backend: "puredriver-1", VolumeId: "big", SizeGb: 1}); err != nil {
		t.Fatal(err)
	}
	a := s.a.Array("a")
	start := time.Now()
	// Random data, stamped per 4 KiB block so no two blocks are alike.
	buf := make([]byte, 4<<20)
	rand.NewChaCha8([32]byte{1}).Read(buf)
	for off := int64(0); off < size; off += int64(len(buf)) {
		for b := 0; b < len(buf); b += 4096 {
			binary.LittleEndian.PutUint64(buf[b:], uint64(off)+uint64(b))
		}
		if err := a.WriteVolume(ctx, "volume-big-cinder", off, buf, false); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("wrote %d MiB in %s", size>>20, time.Since(start))
	if _, err := dc.CreateSnapshot(ctx, &driverv1.CreateSnapshotRequest{Backend: "puredriver-1", SnapshotId: "s1", VolumeId: "big"}); err != nil {
		t.Fatal(err)
	}
	req := &driverv1.SnapshotReplicateRequest{Backend: "puredriver-1", SnapshotId: "s1", VolumeId: "big", DestinationBackend: "pure-b"}
	resp, err := dc.SnapshotReplicate(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	killed := false
	first := watchOp(t, dc, resp.GetOperationId(), func(o *driverv1.Operation) {
		if !killed && o.GetBytesTotal() > 0 && o.GetBytesDone() >= o.GetBytesTotal()/2 {
			killed = true
			s.b.cmd.Process.Signal(syscall.SIGKILL)
		}
	})
	<-s.b.exited
	if !killed || first.GetState() != driverv1.OperationState_OPERATION_STATE_FAILED {
		t.Fatalf("first run: killed=%v, operation %v", killed, first)
	}
	t.Logf("first run: %d of %d bytes when the receiver died (%s): %s", first.GetBytesDone(), first.GetBytesTotal(), time.Since(start), first.GetError())
	s.b.Start()
	// The driver sees pure-b again once its health check passes.
	var second *driverv1.Operation
	waitFor(t, func() bool {
		resp, err = dc.SnapshotReplicate(ctx, req)
		return err == nil
	})
	second = watchOp(t, dc, resp.GetOperationId(), nil)
	total := second.GetBytesTotal()
	t.Logf("second run: resumed from %d, sent %d of %d bytes (%.0f%%)", second.GetResumedFrom(), second.GetBytesSent(), total,
		100*float64(second.GetBytesSent())/float64(total))
	if second.GetState() != driverv1.OperationState_OPERATION_STATE_SUCCEEDED || total != size {
		t.Fatalf("second run: %v", second)
	}
	// A resume sends what the receiver had not made durable, no more: the
	// rest from its checkpoint. How far the checkpoint had got when the
	// receiver died depends on the machine's load (it trails what the
	// sender counts as done by up to its fsync interval), so it is held
	// to a quarter of the whole rather than to the sender's count.
	resumed := second.GetResumedFrom()
	if resumed < total/4 || second.GetBytesSent() > total-resumed {
		t.Fatalf("second run sent %d of %d bytes (resumed from %d; %d were sent before the kill): not a resume",
			second.GetBytesSent(), total, resumed, first.GetBytesDone())
	}
	v, err := dc.VerifySnapshot(ctx, &driverv1.VerifySnapshotRequest{Backend: "puredriver-1", SnapshotId: "s1", VolumeId: "big", DestinationBackend: "pure-b"})
	if err != nil || !v.GetMatch() || v.GetBlocksCompared() != (1<<30)/4096 {
		t.Fatalf("VerifySnapshot = %v, %v", v, err)
	}
	t.Logf("verified by checksum at %s", time.Since(start))
	// Byte for byte, not just by checksum: read both snapshots over NBD.
	nbdcopy := tool(t, "nbdcopy")
	digest := func(backend string) string {
		r, err := dc.InitializeConnection(ctx, &driverv1.InitializeConnectionRequest{Backend: backend, VolumeId: "big", SnapshotId: "s1",
			Connector: &driverv1.Connector{Host: "verifier"}})
		if err != nil {
			t.Fatal(err)
		}
		out, err := run(t, false, "sh", "-c", `"$1" "$2" - | sha256sum`, "sh", nbdcopy, r.GetConnectionInfo().GetData()["uri"])
		if err != nil {
			t.Fatal(err)
		}
		return strings.Fields(out)[0]
	}
	if a, b := digest("puredriver-1"), digest("pure-b"); a != b {
		t.Fatalf("replica differs byte for byte: sha256 %s vs %s", b, a)
	}
	t.Logf("compared byte for byte at %s", time.Since(start))
	// An incremental one through the CLI, with its progress bar.
	if err := a.WriteVolume(ctx, "volume-big-cinder", 300<<20, bytes.Repeat([]byte{7}, 1<<20), false); err != nil {
		t.Fatal(err)
	}
	if _, err := dc.CreateSnapshot(ctx, &driverv1.CreateSnapshotRequest{Backend: "puredriver-1", SnapshotId: "s2", VolumeId: "big"}); err != nil {
		t.Fatal(err)
	}
	out, code := volrep(t, s.a, "-b", "puredriver-1", "snapshot", "replicate", "s2", "--volume", "big", "--to", "pure-b")
	if code != 0 || !regexp.MustCompile(`incremental\s+true`).MatchString(out) || !regexp.MustCompile(`base_snapshot\s+s1`).MatchString(out) ||
		!regexp.MustCompile(`bytes_sent\s+`+fmt.Sprint(1<<20)+`\n`).MatchString(out) {
		t.Fatalf("CLI snapshot replicate (exit %d):\n%s", code, out)
	}
	out, code = volrep(t, s.a, "-b", "puredriver-1", "snapshot", "verify", "s2", "--volume", "big", "--against", "pure-b")
	if code != 0 || !regexp.MustCompile(`match\s+true`).MatchString(out) {
		t.Fatalf("CLI snapshot verify (exit %d):\n%s", code, out)
	}
}

// TestSnapshotReplicateToReplicationDevice sends a snapshot to the
// backend's own async target: the protection group has already shipped a
// snapshot there, so only what was written after it goes.
func TestSnapshotReplicateToReplicationDevice(t *testing.T) {
	d := NewDaemon(t)
	d.Start()
	ctx := t.Context()
	dc := driverClient(t, d)
	if _, err := dc.CreateVolume(ctx, &driverv1.CreateVolumeRequest{Backend: "demo", VolumeId: "v", SizeGb: 1,
		VolumeType: &driverv1.VolumeType{Name: "async", ExtraSpecs: map[string]string{"replication_enabled": "<is> True", "replication_type": "<in> async"}}}); err != nil {
		t.Fatal(err)
	}
	a := d.Array("a")
	if err := a.WriteVolume(ctx, "volume-v-cinder", 0, pattern(0x31, 8<<20), true); err != nil {
		t.Fatal(err)
	}
	cc, err := server.Dial(d.ArrayA, d.TokenA)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	rep, err := client.NewReplication(cc).SyncReplica(ctx, "cinder-group.site-b", true)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.WriteVolume(ctx, "volume-v-cinder", 64<<20, pattern(0x32, 1<<20), true); err != nil {
		t.Fatal(err)
	}
	if _, err := dc.CreateSnapshot(ctx, &driverv1.CreateSnapshotRequest{Backend: "demo", SnapshotId: "s1", VolumeId: "v"}); err != nil {
		t.Fatal(err)
	}
	r, err := dc.SnapshotReplicate(ctx, &driverv1.SnapshotReplicateRequest{Backend: "demo", SnapshotId: "s1", VolumeId: "v", DestinationBackend: "site-b"})
	if err != nil {
		t.Fatal(err)
	}
	op := watchOpOn(t, dc, "demo", r.GetOperationId())
	if op.GetState() != driverv1.OperationState_OPERATION_STATE_SUCCEEDED || !op.GetIncremental() ||
		op.GetBaseSnapshotId() != rep.LastSnapshot || op.GetBytesSent() < 1<<20 || op.GetBytesSent() > 11<<20/10 {
		t.Fatalf("replicating s1 to the replication target after %s: %v", rep.LastSnapshot, op)
	}
	v, err := dc.VerifySnapshot(ctx, &driverv1.VerifySnapshotRequest{Backend: "demo", SnapshotId: "s1", VolumeId: "v", DestinationBackend: "site-b"})
	if err != nil || !v.GetMatch() {
		t.Fatalf("verify s1 on site-b: %v, %v", v, err)
	}
	// Naming neither a backend nor a replication_device says which exist.
	_, err = dc.SnapshotReplicate(ctx, &driverv1.SnapshotReplicateRequest{Backend: "demo", SnapshotId: "s1", VolumeId: "v", DestinationBackend: "site-c"})
	if !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), "replication_device") {
		t.Fatalf("unknown destination: %v", err)
	}
}
