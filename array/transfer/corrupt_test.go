package transfer_test

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/volrep/volrep/array"
	"github.com/volrep/volrep/array/transfer"
	"github.com/volrep/volrep/errdefs"
	arrayv1 "github.com/volrep/volrep/proto/volrep/array/v1"
)

// corruptingClient flips one bit in the data of the nth data message it
// sends, after the sender computed the block checksums: damage on the wire.
type corruptingClient struct {
	arrayv1.TransferServiceClient
	nth   int64
	seen  atomic.Int64
	flips atomic.Int64
}

func (c *corruptingClient) Receive(ctx context.Context, opts ...grpc.CallOption) (arrayv1.TransferService_ReceiveClient, error) {
	s, err := c.TransferServiceClient.Receive(ctx, opts...)
	return &corruptingStream{TransferService_ReceiveClient: s, c: c}, err
}

type corruptingStream struct {
	arrayv1.TransferService_ReceiveClient
	c *corruptingClient
}

func (s *corruptingStream) Send(m *arrayv1.ReceiveRequest) error {
	if d := m.GetData(); d != nil && s.c.seen.Add(1) == s.c.nth {
		m = proto.Clone(m).(*arrayv1.ReceiveRequest)
		data := m.GetData().GetData()
		data[len(data)/2] ^= 0x10
		s.c.flips.Add(1)
	}
	return s.TransferService_ReceiveClient.Send(m)
}

// A block whose CRC-32C does not match is refused: the transfer fails with
// ABORTED naming the block, no snapshot appears on the target, and a clean
// send afterwards delivers the exact data.
func TestCorruptBlockIsRefused(t *testing.T) {
	ctx := t.Context()
	p := newPair(t)
	if _, err := p.src.CreateVolume(ctx, array.VolumeSpec{Name: "v", Pool: "p", SizeBytes: 16 * mib}); err != nil {
		t.Fatal(err)
	}
	fill(t, p.src, "v", 0, 6*mib, 4)
	if _, err := p.src.CreateSnapshot(ctx, "v", "s1", nil); err != nil {
		t.Fatal(err)
	}
	bad := &corruptingClient{TransferServiceClient: p.client, nth: 3}
	_, err := transfer.Send(ctx, bad, p.job(t, "v", "", "s1"), transfer.Options{})
	if bad.flips.Load() != 1 {
		t.Fatalf("the test corrupted %d messages, want 1", bad.flips.Load())
	}
	if status.Code(err) != codes.Aborted || !strings.Contains(err.Error(), "CRC-32C") {
		t.Fatalf("a corrupted block: %v (code %s), want ABORTED naming the CRC-32C check", err, status.Code(err))
	}
	if _, err := p.dst.GetSnapshot(ctx, "v", "s1"); !errdefs.IsNotFound(err) {
		t.Fatalf("the target shows s1 after a refused transfer: %v", err)
	}
	// Clean again: the retry (which may resume from a checkpoint taken
	// before the bad block) lands the exact snapshot.
	res, err := transfer.Send(ctx, p.client, p.job(t, "v", "", "s1"), transfer.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if res.ResumedFrom > 2*transfer.ChunkSize {
		t.Fatalf("the retry resumed from %d, past the corrupted chunk at %d", res.ResumedFrom, 2*transfer.ChunkSize)
	}
	p.same(t, "v", "s1")
}
