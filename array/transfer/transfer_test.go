package transfer_test

import (
	"bytes"
	"context"
	"log/slog"
	"math/rand/v2"
	"net"
	"testing"
	"time"

	"golang.org/x/time/rate"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/volrep/volrep/array"
	"github.com/volrep/volrep/array/store"
	"github.com/volrep/volrep/array/transfer"
	"github.com/volrep/volrep/errdefs"
	arrayv1 "github.com/volrep/volrep/proto/volrep/array/v1"
	"github.com/volrep/volrep/server"
)

const mib = 1 << 20

type pair struct {
	src, dst *store.Store
	client   arrayv1.TransferServiceClient
}

// newPair runs a source engine in-process and a target engine behind the
// real gRPC server chain.
func newPair(t *testing.T) *pair {
	t.Helper()
	return newPairWith(t, transfer.ServiceOptions{})
}

// newPairWith is newPair with the target's service options.
func newPairWith(t *testing.T, opts transfer.ServiceOptions) *pair {
	t.Helper()
	ctx := t.Context()
	src, err := store.Open(t.TempDir(), store.Options{Name: "src"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { src.Close() })
	dst, err := store.Open(t.TempDir(), store.Options{Name: "dst"})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []*store.Store{src, dst} {
		if _, err := s.CreatePool(ctx, "p"); err != nil {
			t.Fatal(err)
		}
	}
	srv := server.New(server.Options{Name: "dst", Token: "tok"})
	ts, err := transfer.NewService(ctx, dst, slog.New(slog.DiscardHandler), opts)
	if err != nil {
		t.Fatal(err)
	}
	ts.Register(srv.GRPC())
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { srv.Serve(sctx, lis); close(done) }()
	cc, err := server.Dial(lis.Addr().String(), "tok")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close(); cancel(); <-done; ts.Close(); dst.Close() })
	return &pair{src: src, dst: dst, client: arrayv1.NewTransferServiceClient(cc)}
}

func fill(t *testing.T, s *store.Store, vol string, off int64, n int, seed uint64) []byte {
	t.Helper()
	r := rand.New(rand.NewPCG(seed, seed))
	p := make([]byte, n)
	for i := range p {
		p[i] = byte(r.Uint32())
	}
	if err := s.WriteVolume(t.Context(), vol, off, p, false); err != nil {
		t.Fatal(err)
	}
	return p
}

// job builds the transfer of snap (a delta from base when base is set).
func (p *pair) job(t *testing.T, vol, base, snap string) transfer.Job {
	t.Helper()
	ctx := t.Context()
	sn, err := p.src.GetSnapshot(ctx, vol, snap)
	if err != nil {
		t.Fatal(err)
	}
	ext, err := p.src.Diff(ctx, vol, base, snap)
	if err != nil {
		t.Fatal(err)
	}
	h, err := p.src.OpenSnapshot(ctx, vol, snap)
	if err != nil {
		t.Fatal(err)
	}
	hdr := &arrayv1.ReceiveHeader{TransferId: "t-" + snap, Volume: vol, Pool: "p", SizeBytes: sn.SizeBytes,
		SnapshotName: snap, SnapshotGuid: sn.GUID, SnapshotCreated: timestamppb.New(sn.Created), ReadOnly: true}
	if base != "" {
		b, err := p.src.GetSnapshot(ctx, vol, base)
		if err != nil {
			t.Fatal(err)
		}
		hdr.BaseGuid = b.GUID
	}
	return transfer.Job{Header: hdr, Extents: ext, Source: h}
}

func (p *pair) same(t *testing.T, vol, snap string) {
	t.Helper()
	ctx := t.Context()
	sn, err := p.src.GetSnapshot(ctx, vol, snap)
	if err != nil {
		t.Fatal(err)
	}
	a, b := make([]byte, sn.SizeBytes), make([]byte, sn.SizeBytes)
	if err := p.src.ReadSnapshot(ctx, vol, snap, 0, a); err != nil {
		t.Fatal(err)
	}
	if err := p.dst.ReadSnapshot(ctx, vol, snap, 0, b); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a, b) {
		t.Fatalf("%s@%s differs between source and target", vol, snap)
	}
	got, err := p.dst.GetSnapshot(ctx, vol, snap)
	if err != nil || got.GUID != sn.GUID || !got.Created.Equal(sn.Created) {
		t.Fatalf("target snapshot %+v, %v: GUID or time not kept", got, err)
	}
}

func TestFullThenDelta(t *testing.T) {
	ctx := t.Context()
	p := newPair(t)
	if _, err := p.src.CreateVolume(ctx, array.VolumeSpec{Name: "v", Pool: "p", SizeBytes: 16 * mib}); err != nil {
		t.Fatal(err)
	}
	fill(t, p.src, "v", 0, 5*mib, 1)
	fill(t, p.src, "v", 12*mib, mib, 2)
	if _, err := p.src.CreateSnapshot(ctx, "v", "s1", nil); err != nil {
		t.Fatal(err)
	}
	res, err := transfer.Send(ctx, p.client, p.job(t, "v", "", "s1"), transfer.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if res.DataBytes != 6*mib || res.Total != 6*mib {
		t.Fatalf("full copy sent %d of %d bytes, want only the 6 MiB allocated", res.DataBytes, res.Total)
	}
	p.same(t, "v", "s1")
	// The target volume reads as the snapshot and refuses writes.
	if err := p.dst.WriteVolume(ctx, "v", 0, []byte{1}, false); !errdefs.IsFailedPrecondition(err) {
		t.Fatalf("write to replica target: %v", err)
	}
	// A delta: 3 blocks rewritten and a zeroed range over old data.
	fill(t, p.src, "v", 4096*7, 3*4096, 3)
	h, _ := p.src.OpenVolume(ctx, "v")
	if err := h.Zero(ctx, mib, mib, false); err != nil {
		t.Fatal(err)
	}
	if _, err := p.src.CreateSnapshot(ctx, "v", "s2", nil); err != nil {
		t.Fatal(err)
	}
	res, err = transfer.Send(ctx, p.client, p.job(t, "v", "s1", "s2"), transfer.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if res.DataBytes != 3*4096 {
		t.Fatalf("delta sent %d data bytes, want %d", res.DataBytes, 3*4096)
	}
	p.same(t, "v", "s2")
	p.same(t, "v", "s1")
	got := make([]byte, 4096)
	if err := p.dst.ReadVolume(ctx, "v", mib, got); err != nil || !bytes.Equal(got, make([]byte, 4096)) {
		t.Fatalf("zeroed range not zero on the target volume: %v", err)
	}
	// Sending it again is a no-op.
	res, err = transfer.Send(ctx, p.client, p.job(t, "v", "s1", "s2"), transfer.Options{})
	if err != nil || !res.AlreadyReceived || res.DataBytes != 0 {
		t.Fatalf("resend: %+v, %v", res, err)
	}
	// A delta from a base the target does not have is refused.
	if _, err := p.src.CreateSnapshot(ctx, "v", "s3", nil); err != nil {
		t.Fatal(err)
	}
	j := p.job(t, "v", "s2", "s3")
	j.Header.BaseGuid = "not-there"
	if _, err := transfer.Send(ctx, p.client, j, transfer.Options{}); !errdefs.IsFailedPrecondition(err) {
		t.Fatalf("unknown base: %v", err)
	}
}

// TestResume cuts a transfer after some chunks and checks that sending it
// again continues from the receiver's checkpoint.
func TestResume(t *testing.T) {
	ctx := t.Context()
	p := newPair(t)
	size := int64(3 * transfer.CheckpointEvery)
	if _, err := p.src.CreateVolume(ctx, array.VolumeSpec{Name: "big", Pool: "p", SizeBytes: size}); err != nil {
		t.Fatal(err)
	}
	for off := int64(0); off < size; off += 16 * mib {
		fill(t, p.src, "big", off, 16*mib, uint64(off))
	}
	if _, err := p.src.CreateSnapshot(ctx, "big", "s", nil); err != nil {
		t.Fatal(err)
	}
	cctx, cut := context.WithCancel(ctx)
	var sent int64
	_, err := transfer.Send(cctx, p.client, p.job(t, "big", "", "s"), transfer.Options{Progress: func(pr transfer.Progress) {
		sent = pr.Done
		if pr.Done >= size*6/10 {
			cut()
		}
	}})
	if err == nil {
		t.Fatal("cut transfer succeeded")
	}
	// The receiver notices the broken stream and checkpoints; give it a moment.
	deadline := time.Now().Add(10 * time.Second)
	var res transfer.Result
	for {
		res, err = transfer.Send(ctx, p.client, p.job(t, "big", "", "s"), transfer.Options{})
		if err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	if res.ResumedFrom < transfer.CheckpointEvery || res.DataBytes > size*6/10 {
		t.Fatalf("second run resumed from %d and sent %d of %d bytes (first run got to %d)", res.ResumedFrom, res.DataBytes, size, sent)
	}
	p.same(t, "big", "s")
}

// TestCompressionAndLimit measures both link options on the same data.
func TestCompressionAndLimit(t *testing.T) {
	ctx := t.Context()
	p := newPair(t)
	if _, err := p.src.CreateVolume(ctx, array.VolumeSpec{Name: "c", Pool: "p", SizeBytes: 8 * mib}); err != nil {
		t.Fatal(err)
	}
	// Compressible data: text-like repetition.
	text := bytes.Repeat([]byte("volrep replicates volumes between arrays. "), 8*mib/40)[:8*mib]
	if err := p.src.WriteVolume(ctx, "c", 0, text, false); err != nil {
		t.Fatal(err)
	}
	if _, err := p.src.CreateSnapshot(ctx, "c", "s", nil); err != nil {
		t.Fatal(err)
	}
	res, err := transfer.Send(ctx, p.client, p.job(t, "c", "", "s"), transfer.Options{Compress: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("zstd: %d data bytes took %d on the wire (%.1fx)", res.DataBytes, res.WireBytes, float64(res.DataBytes)/float64(res.WireBytes))
	if res.WireBytes*4 > res.DataBytes {
		t.Fatalf("compression saved too little: %d → %d", res.DataBytes, res.WireBytes)
	}
	p.same(t, "c", "s")

	// 4 MiB at 8 MiB/s with a 1 MiB burst takes about 0.4 s.
	if _, err := p.src.CreateVolume(ctx, array.VolumeSpec{Name: "l", Pool: "p", SizeBytes: 4 * mib}); err != nil {
		t.Fatal(err)
	}
	fill(t, p.src, "l", 0, 4*mib, 9)
	if _, err := p.src.CreateSnapshot(ctx, "l", "s", nil); err != nil {
		t.Fatal(err)
	}
	lim := rate.NewLimiter(rate.Limit(8*mib), mib)
	lim.WaitN(ctx, mib) // start with an empty bucket
	start := time.Now()
	res, err = transfer.Send(ctx, p.client, p.job(t, "l", "", "s"), transfer.Options{Limiter: lim})
	if err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	rateGot := float64(res.WireBytes) / took.Seconds()
	t.Logf("limited: %d bytes in %s = %.1f MiB/s (limit 8 MiB/s)", res.WireBytes, took, rateGot/mib)
	if rateGot > 8*mib*1.15 || took < 350*time.Millisecond {
		t.Fatalf("limit not honoured: %.1f MiB/s in %s", rateGot/mib, took)
	}
	p.same(t, "l", "s")
}
