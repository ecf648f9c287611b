package replication_test

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/volrep/volrep/array"
	"github.com/volrep/volrep/array/client"
	"github.com/volrep/volrep/array/service"
	"github.com/volrep/volrep/clock"
	"github.com/volrep/volrep/server"
)

// serveSource puts the source engine behind the real server chain, so the
// tests see what a client sees: gRPC codes.
func serveSource(t *testing.T, src *source) (array.Array, array.Replication) {
	t.Helper()
	srv := server.New(server.Options{Name: "site-a", Token: token, Logger: slog.New(slog.DiscardHandler)})
	service.New(src.st).Register(srv.GRPC())
	service.NewReplication(src.eng).Register(srv.GRPC())
	service.NewOperations(src.eng).Register(srv.GRPC())
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { srv.Serve(ctx, lis); close(done) }()
	cc, err := server.Dial(lis.Addr().String(), token)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close(); cancel(); <-done })
	return client.New(cc), client.NewReplication(cc)
}

func waitOp(t *testing.T, r array.Replication, id string) array.Operation {
	t.Helper()
	var last array.Operation
	if err := r.WatchOperation(t.Context(), id, func(o array.Operation) error { last = o; return nil }); err != nil {
		t.Fatal(err)
	}
	return last
}

func TestSnapshotReplicate(t *testing.T) {
	clk := clock.NewFake(t0)
	src, tg := newSource(t, clk), newTarget(t)
	a, r := serveSource(t, src)
	ctx := t.Context()
	if _, err := r.CreateLink(ctx, array.LinkSpec{Name: "site-b", Address: tg.addr, Token: token}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.CreateVolume(ctx, array.VolumeSpec{Name: "v", Pool: "cinder", SizeBytes: 64 * mib}); err != nil {
		t.Fatal(err)
	}
	if err := a.WriteVolume(ctx, "v", 0, bytes.Repeat([]byte{1}, 8*mib), false); err != nil {
		t.Fatal(err)
	}
	if _, err := a.CreateSnapshot(ctx, "v", "s1", nil); err != nil {
		t.Fatal(err)
	}
	spec := array.SnapshotReplicateSpec{Volume: "v", Snapshot: "s1", Link: "site-b", RemotePool: "replicas"}
	id, err := r.ReplicateSnapshot(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	op := waitOp(t, r, id)
	if op.State != array.OpSucceeded || op.Result.Incremental || op.Result.BytesSent != 8*mib || op.Done != 8*mib {
		t.Fatalf("first replication: %+v", op)
	}
	// A delta from s1, which both sides now hold.
	if err := a.WriteVolume(ctx, "v", 40*mib, bytes.Repeat([]byte{2}, mib), false); err != nil {
		t.Fatal(err)
	}
	if _, err := a.CreateSnapshot(ctx, "v", "s2", nil); err != nil {
		t.Fatal(err)
	}
	spec.Snapshot = "s2"
	id, _ = r.ReplicateSnapshot(ctx, spec)
	op = waitOp(t, r, id)
	if op.State != array.OpSucceeded || !op.Result.Incremental || op.Result.BaseSnapshot != "s1" || op.Result.BytesSent != mib {
		t.Fatalf("incremental replication: %+v", op)
	}
	// force_full_copy sends every allocated block and gives the same result.
	if _, err := a.CreateSnapshot(ctx, "v", "s3", nil); err != nil {
		t.Fatal(err)
	}
	spec.Snapshot, spec.ForceFull = "s3", true
	id, _ = r.ReplicateSnapshot(ctx, spec)
	op = waitOp(t, r, id)
	if op.State != array.OpSucceeded || op.Result.Incremental || op.Result.BytesSent != 9*mib {
		t.Fatalf("forced full copy: %+v", op)
	}
	for _, s := range []string{"s1", "s2", "s3"} {
		want, got := make([]byte, 64*mib), make([]byte, 64*mib)
		src.st.ReadSnapshot(ctx, "v", s, 0, want)
		if err := tg.st.ReadSnapshot(ctx, "v", s, 0, got); err != nil || !bytes.Equal(want, got) {
			t.Fatalf("replica of %s differs (%v)", s, err)
		}
	}
	// Again: already present, nothing sent.
	id, _ = r.ReplicateSnapshot(ctx, spec)
	if op = waitOp(t, r, id); !op.Result.AlreadyPresent || op.Result.BytesSent != 0 {
		t.Fatalf("repeat: %+v", op)
	}
}

// TestErrorCodes is the table of refusals the replica API promises.
func TestErrorCodes(t *testing.T) {
	clk := clock.NewFake(t0)
	src, tg := newSource(t, clk), newTarget(t)
	a, r := serveSource(t, src)
	ctx := t.Context()
	if _, err := r.CreateLink(ctx, array.LinkSpec{Name: "site-b", Address: tg.addr, Token: token}); err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{"v", "w", "big"} {
		size := int64(mib)
		switch v {
		case "big":
			size = 64 * mib
		case "w":
			size = 16 * mib
		}
		if _, err := a.CreateVolume(ctx, array.VolumeSpec{Name: v, Pool: "cinder", SizeBytes: size}); err != nil {
			t.Fatal(err)
		}
		if _, err := a.CreateSnapshot(ctx, v, "s", nil); err != nil {
			t.Fatal(err)
		}
	}
	// A remote volume with a snapshot of other data, for USE_BASE.
	if _, err := tg.st.CreateVolume(ctx, array.VolumeSpec{Name: "v", Pool: "replicas", SizeBytes: mib}); err != nil {
		t.Fatal(err)
	}
	if _, err := tg.st.CreateSnapshot(ctx, "v", "other", nil); err != nil {
		t.Fatal(err)
	}
	if err := a.WriteVolume(ctx, "big", 0, bytes.Repeat([]byte{3}, 64*mib), false); err != nil {
		t.Fatal(err)
	}
	if _, err := a.CreateSnapshot(ctx, "big", "full", nil); err != nil {
		t.Fatal(err)
	}
	// A replica that stays INITIALIZING: its target is unreachable.
	if _, err := r.CreateLink(ctx, array.LinkSpec{Name: "nowhere", Address: "127.0.0.1:1", Token: token}); err != nil {
		t.Fatal(err)
	}
	// A slow link keeps a transfer in flight for the ABORTED case.
	if _, err := r.CreateLink(ctx, array.LinkSpec{Name: "slow", Address: tg.addr, Token: token, BandwidthLimit: 4 * mib}); err != nil {
		t.Fatal(err)
	}
	inflight, err := r.ReplicateSnapshot(ctx, array.SnapshotReplicateSpec{Volume: "big", Snapshot: "full", Link: "slow", RemotePool: "replicas"})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		call func() error
		want codes.Code
	}{
		{"use_base with mismatched snapshots", func() error {
			_, err := r.ReplicateEntity(ctx, array.ReplicaSpec{Local: "v", Link: "site-b", Mode: array.ModeUseBase, LocalSnapshot: "s", RemoteSnapshot: "other"})
			return err
		}, codes.FailedPrecondition},
		{"change type while initializing", func() error {
			// Its first full copy crawls over the slow link.
			if err := a.WriteVolume(ctx, "w", 0, bytes.Repeat([]byte{5}, 16*mib), false); err != nil {
				return err
			}
			rep, err := r.ReplicateEntity(ctx, array.ReplicaSpec{Name: "init", Local: "w", Link: "slow", RemotePool: "replicas", Interval: time.Hour})
			if err != nil || rep.State != array.StateInitializing {
				t.Fatalf("new replica: %+v, %v", rep, err)
			}
			_, err = r.ChangeReplicaType(ctx, "init", array.TypeSync)
			if err == nil || !strings.Contains(err.Error(), "INITIALIZING") {
				t.Fatalf("change type: %v", err)
			}
			return err
		}, codes.FailedPrecondition},
		{"unknown link", func() error {
			_, err := r.ReplicateEntity(ctx, array.ReplicaSpec{Local: "v", Link: "nope", RemotePool: "replicas"})
			return err
		}, codes.NotFound},
		{"unknown remote pool", func() error {
			_, err := r.ReplicateEntity(ctx, array.ReplicaSpec{Local: "w", Link: "site-b", RemotePool: "nope"})
			return err
		}, codes.NotFound},
		{"unknown link for a snapshot", func() error {
			_, err := r.ReplicateSnapshot(ctx, array.SnapshotReplicateSpec{Volume: "v", Snapshot: "s", Link: "nope", RemotePool: "replicas"})
			return err
		}, codes.NotFound},
		{"unknown remote pool for a snapshot", func() error {
			_, err := r.ReplicateSnapshot(ctx, array.SnapshotReplicateSpec{Volume: "v", Snapshot: "s", Link: "site-b", RemotePool: "nope"})
			return err
		}, codes.NotFound},
		{"second replication of a snapshot in flight", func() error {
			_, err := r.ReplicateSnapshot(ctx, array.SnapshotReplicateSpec{Volume: "big", Snapshot: "full", Link: "slow", RemotePool: "replicas"})
			return err
		}, codes.Aborted},
		{"unreachable peer", func() error {
			_, err := r.ReplicateEntity(ctx, array.ReplicaSpec{Local: "w", Link: "nowhere", RemotePool: "replicas"})
			return err
		}, codes.Unavailable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call()
			if status.Code(err) != tc.want {
				t.Fatalf("got %v (%v), want %v", status.Code(err), err, tc.want)
			}
		})
	}
	op, err := r.CancelOperation(ctx, inflight)
	if err != nil || op.State != array.OpCanceled || op.Done >= op.Total {
		t.Fatalf("cancelling the operation in flight: %+v, %v", op, err)
	}
}
