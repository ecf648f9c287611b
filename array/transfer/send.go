package transfer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/klauspost/compress/zstd"
	"golang.org/x/time/rate"
	"google.golang.org/protobuf/proto"

	"github.com/volrep/volrep/array"
	"github.com/volrep/volrep/array/wire"
	"github.com/volrep/volrep/errdefs"
	arrayv1 "github.com/volrep/volrep/proto/volrep/array/v1"
)

// ChunkSize is the most data one message carries.
const ChunkSize = 1 << 20

// Reader reads the snapshot being sent.
type Reader interface {
	ReadAt(ctx context.Context, p []byte, off int64) error
}

// Job is one snapshot to send.
type Job struct {
	// Header describes the snapshot to the receiver; Send sets Compressed.
	Header *arrayv1.ReceiveHeader
	// Extents lists, in ascending order, what differs from the base the
	// header names: data to read from Source, and ranges that became zero.
	Extents []array.Extent
	Source  Reader
}

// Options tune a transfer.
type Options struct {
	// Compress sends data zstd-compressed.
	Compress bool
	// Limiter caps the bytes put on the wire per second; nil is unlimited.
	Limiter *rate.Limiter
	// Progress is called after each message with the data bytes done so far.
	Progress func(Progress)
}

// Progress reports how far a transfer has come.
type Progress struct {
	Phase       string // "connecting", "sending", "committing", "done"
	Done, Total int64  // data bytes
	Started     time.Time
}

// Result describes a finished transfer.
type Result struct {
	Snapshot array.Snapshot
	// DataBytes is the data sent in this session; WireBytes is what it
	// took on the wire after compression.
	DataBytes, WireBytes int64
	// ResumedFrom is the offset the receiver asked to resume from.
	ResumedFrom int64
	// Total is the data the whole snapshot delta holds.
	Total int64
	// AlreadyReceived means the target had the snapshot; nothing was sent.
	AlreadyReceived bool
	Duration        time.Duration
}

type chunk struct {
	off  int64
	zero bool
	n    int64
	data []byte // wire form
	raw  []byte // the read buffer, back to bufs once sent
	crcs []uint32
	err  error
}

// bufs recycles read buffers: Send has copied a message into gRPC's own
// buffers by the time it returns.
var bufs = sync.Pool{New: func() any { b := make([]byte, ChunkSize); return &b }}

// Send ships job over a new Receive stream and waits for the commit.
func Send(ctx context.Context, c arrayv1.TransferServiceClient, job Job, opts Options) (Result, error) {
	start := time.Now()
	res := Result{}
	for _, e := range job.Extents {
		if !e.Zero {
			res.Total += e.Length
		}
	}
	report := func(phase string, done int64) {
		if opts.Progress != nil {
			opts.Progress(Progress{Phase: phase, Done: done, Total: res.Total, Started: start})
		}
	}
	report("connecting", 0)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := c.Receive(ctx)
	if err != nil {
		return res, err
	}
	hdr := proto.Clone(job.Header).(*arrayv1.ReceiveHeader)
	hdr.Compressed = opts.Compress
	if err := stream.Send(&arrayv1.ReceiveRequest{Msg: &arrayv1.ReceiveRequest_Header{Header: hdr}}); err != nil {
		return res, recvErr(stream, err)
	}
	first, err := stream.Recv()
	if err != nil {
		return res, err
	}
	ready := first.GetReady()
	if ready == nil {
		return res, errors.New("receiver did not answer the header with ready")
	}
	if ready.GetAlreadyReceived() {
		res.AlreadyReceived = true
		stream.CloseSend()
		if r, err := stream.Recv(); err == nil && r.GetCommitted() != nil {
			res.Snapshot = wire.SnapshotFromPB(r.GetCommitted().GetSnapshot())
		}
		res.Duration = time.Since(start)
		report("done", res.Total)
		return res, nil
	}
	res.ResumedFrom = ready.GetResumeOffset()

	chunks := make(chan chunk, 4)
	go produce(ctx, job, res.ResumedFrom, opts.Compress, chunks)
	var d digest
	done := int64(0)
	for _, e := range job.Extents {
		if !e.Zero && e.End() <= res.ResumedFrom {
			done += e.Length
		} else if !e.Zero && e.Offset < res.ResumedFrom {
			done += res.ResumedFrom - e.Offset
		}
	}
	for ch := range chunks {
		if ch.err != nil {
			return res, ch.err
		}
		var msg *arrayv1.ReceiveRequest
		if ch.zero {
			d.zero(ch.off, ch.n)
			msg = &arrayv1.ReceiveRequest{Msg: &arrayv1.ReceiveRequest_Zero{Zero: &arrayv1.ZeroExtent{Offset: ch.off, Length: ch.n}}}
		} else {
			d.data(ch.off, ch.crcs)
			if opts.Limiter != nil {
				if err := waitN(ctx, opts.Limiter, len(ch.data)); err != nil {
					return res, err
				}
			}
			msg = &arrayv1.ReceiveRequest{Msg: &arrayv1.ReceiveRequest_Data{Data: &arrayv1.DataChunk{
				Offset: ch.off, Data: ch.data, Crc32C: ch.crcs, Length: ch.n}}}
			res.DataBytes += ch.n
			res.WireBytes += int64(len(ch.data))
			done += ch.n
		}
		err := stream.Send(msg)
		if ch.raw != nil {
			bufs.Put(&ch.raw)
		}
		if err != nil {
			return res, recvErr(stream, err)
		}
		report("sending", done)
	}
	if err := ctx.Err(); err != nil {
		return res, err
	}
	report("committing", done)
	if err := stream.Send(&arrayv1.ReceiveRequest{Msg: &arrayv1.ReceiveRequest_Trailer{Trailer: &arrayv1.ReceiveTrailer{Blocks: d.blocks, Digest: d.sum}}}); err != nil {
		return res, recvErr(stream, err)
	}
	if err := stream.CloseSend(); err != nil {
		return res, err
	}
	r, err := stream.Recv()
	if err != nil {
		return res, err
	}
	if r.GetCommitted() == nil {
		return res, errors.New("receiver ended without committing")
	}
	res.Snapshot = wire.SnapshotFromPB(r.GetCommitted().GetSnapshot())
	res.Duration = time.Since(start)
	report("done", res.Total)
	return res, nil
}

// recvErr prefers the receiver's status to the local send error, which
// is only io.EOF when the receiver has already ended the stream.
func recvErr(stream arrayv1.TransferService_ReceiveClient, err error) error {
	if errors.Is(err, io.EOF) {
		if _, rerr := stream.Recv(); rerr != nil {
			return rerr
		}
	}
	return err
}

// waitN takes n tokens, in bursts the limiter allows.
func waitN(ctx context.Context, l *rate.Limiter, n int) error {
	for n > 0 {
		take := min(n, l.Burst())
		if err := l.WaitN(ctx, take); err != nil {
			return err
		}
		n -= take
	}
	return nil
}

// produce reads, checksums and compresses ahead of the sender, so disk,
// CPU and network overlap.
func produce(ctx context.Context, job Job, from int64, compress bool, out chan<- chunk) {
	defer close(out)
	var enc *zstd.Encoder
	if compress {
		var err error
		enc, err = zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1))
		if err != nil {
			out <- chunk{err: err}
			return
		}
		defer enc.Close()
	}
	send := func(c chunk) bool {
		select {
		case out <- c:
			return true
		case <-ctx.Done():
			return false
		}
	}
	for _, e := range job.Extents {
		off, end := max(e.Offset, from), e.End()
		if off >= end {
			continue
		}
		if e.Zero {
			if !send(chunk{off: off, zero: true, n: end - off}) {
				return
			}
			continue
		}
		for off < end {
			n := min(int64(ChunkSize), end-off)
			buf := (*bufs.Get().(*[]byte))[:n]
			if err := job.Source.ReadAt(ctx, buf, off); err != nil {
				send(chunk{err: fmt.Errorf("reading %d bytes at %d: %w", n, off, err)})
				return
			}
			c := chunk{off: off, n: n, data: buf, raw: buf, crcs: blockCRCs(buf, make([]uint32, 0, (n+blockSize-1)/blockSize))}
			if enc != nil {
				c.data = enc.EncodeAll(buf, make([]byte, 0, n/2))
			}
			if !send(c) {
				return
			}
			off += n
		}
	}
}

// CheckExtents refuses extents that are unaligned or out of order, which
// would make resuming by offset unsound.
func CheckExtents(es []array.Extent) error {
	var last int64
	for _, e := range es {
		if e.Offset%blockSize != 0 || e.Length%blockSize != 0 || e.Length <= 0 || e.Offset < last {
			return errdefs.InvalidArgument("extents", "extent [%d, +%d) is unaligned or out of order", e.Offset, e.Length)
		}
		last = e.End()
	}
	return nil
}

// Target names where a snapshot lands on the receiver.
type Target struct {
	Volume     string
	Pool       string
	TransferID string
	Labels     map[string]string
}
