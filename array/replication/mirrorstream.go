package replication

import (
	"context"
	"errors"
	"io"
	"sync"
	"time"

	"github.com/volrep/volrep/errdefs"
	arrayv1 "github.com/volrep/volrep/proto/volrep/array/v1"
)

// mirrorChunk bounds the data of one mirrored message. A client write can
// be as large as the data paths accept (32 MiB over NBD); it is sent as
// several messages so none comes near the peer connection's message limit.
const mirrorChunk = 4 << 20

// mirrorStream is the transport of a pod: one ordered Mirror stream to
// the peer. Writers queue changes (under their blocks' locks, which keeps
// changes to one block in order) and one goroutine sends them, so nobody
// waits on the network while holding a lock; a second goroutine matches
// the peer's acknowledgements to the queued changes.
type mirrorStream struct {
	cs     arrayv1.TransferService_MirrorClient
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex
	seq     uint64
	queue   []queuedMsg
	pending map[uint64]pendingOp
	work    chan struct{} // cap 1: the queue has something for the sender

	dead     chan struct{}
	deadOnce sync.Once
	err      error
	onDead   func(error) // set once the stream is proven, before it is shared
}

type queuedMsg struct {
	seq uint64
	req *arrayv1.MirrorRequest
}

type pendingOp struct {
	m           *podMember
	off, length int64
	done        chan error
	resp        chan<- *arrayv1.MirrorResponse // optional: the answer, before done
}

// errLocalSend is a message this side could not send while the stream
// itself is healthy (it never reached the peer). It fails that change
// only: the peer has not failed, so the pod keeps its stream.
type errLocalSend struct{ err error }

func (e *errLocalSend) Error() string {
	return "the change could not be sent to the peer: " + e.err.Error()
}
func (e *errLocalSend) Unwrap() error { return e.err }

func newMirrorStream(cs arrayv1.TransferService_MirrorClient, cancel context.CancelFunc) *mirrorStream {
	st := &mirrorStream{cs: cs, cancel: cancel, pending: map[uint64]pendingOp{},
		work: make(chan struct{}, 1), dead: make(chan struct{})}
	st.wg.Add(2)
	go st.sendLoop()
	go st.recvLoop()
	return st
}

// enqueue queues a change and returns where its acknowledgement arrives.
// It never blocks on the network. m, off and length say which blocks the
// change covers, so they can be marked dirty if it is lost.
func (st *mirrorStream) enqueue(m *podMember, off, length int64, build func(seq uint64) *arrayv1.MirrorRequest) (<-chan error, error) {
	return st.enqueueFor(m, off, length, build, nil)
}

// enqueueFor is enqueue that also hands the peer's answer to resp (with
// room for it) before done, for a message whose answer carries data.
func (st *mirrorStream) enqueueFor(m *podMember, off, length int64, build func(seq uint64) *arrayv1.MirrorRequest, resp chan<- *arrayv1.MirrorResponse) (<-chan error, error) {
	st.mu.Lock()
	select {
	case <-st.dead:
		st.mu.Unlock()
		return nil, st.deathErr()
	default:
	}
	st.seq++
	seq := st.seq
	done := make(chan error, 1)
	st.pending[seq] = pendingOp{m: m, off: off, length: length, done: done, resp: resp}
	st.queue = append(st.queue, queuedMsg{seq: seq, req: build(seq)})
	st.mu.Unlock()
	select {
	case st.work <- struct{}{}:
	default:
	}
	return done, nil
}

// wait waits, at most timeout, for the acknowledgement of a message the
// pod sent itself (done, from enqueue) and returns its error, the
// stream's if it dies first, or UNAVAILABLE.
func (st *mirrorStream) wait(ctx context.Context, done <-chan error, timeout time.Duration) error {
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	case <-st.dead:
		return st.deathErr()
	case <-t.C:
		return errdefs.Unavailable("the peer did not answer within %s", timeout)
	}
}

func (st *mirrorStream) sendLoop() {
	defer st.wg.Done()
	for {
		select {
		case <-st.dead:
			return
		case <-st.work:
		}
		st.mu.Lock()
		batch := st.queue
		st.queue = nil
		st.mu.Unlock()
		for _, q := range batch {
			err := st.cs.Send(q.req)
			if err == nil {
				continue
			}
			if st.broken(err) {
				st.kill(err)
				return
			}
			st.mu.Lock()
			op, ok := st.pending[q.seq]
			delete(st.pending, q.seq)
			st.mu.Unlock()
			if ok {
				op.done <- &errLocalSend{err}
			}
		}
	}
}

// broken tells a send error that ended the stream (the peer or the
// connection failed, or the stream was cancelled) from one that refused
// a single message on this side, such as a size limit.
func (st *mirrorStream) broken(err error) bool {
	select {
	case <-st.dead:
		return true
	default:
	}
	if errors.Is(err, io.EOF) || errdefs.IsUnavailable(err) || errors.Is(err, context.Canceled) ||
		errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	return false
}

func (st *mirrorStream) recvLoop() {
	defer st.wg.Done()
	for {
		r, err := st.cs.Recv()
		if err != nil {
			st.kill(err)
			return
		}
		st.mu.Lock()
		op, ok := st.pending[r.GetSeq()]
		delete(st.pending, r.GetSeq())
		st.mu.Unlock()
		if !ok {
			continue
		}
		if op.resp != nil {
			op.resp <- r
		}
		if r.GetError() != "" {
			op.done <- errors.New(r.GetError())
		} else {
			op.done <- nil
		}
	}
}

// kill ends the stream; its goroutines stop soon after (close waits).
func (st *mirrorStream) kill(err error) {
	st.deadOnce.Do(func() {
		st.mu.Lock()
		st.err = err
		onDead := st.onDead
		st.mu.Unlock()
		close(st.dead)
		st.cancel()
		if onDead != nil {
			go onDead(err)
		}
	})
}

func (st *mirrorStream) setOnDead(fn func(error)) {
	st.mu.Lock()
	st.onDead = fn
	st.mu.Unlock()
}

// close kills the stream and waits for its goroutines.
func (st *mirrorStream) close(err error) {
	st.kill(err)
	st.wg.Wait()
}

func (st *mirrorStream) deathErr() error {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.err == nil {
		return errdefs.Unavailable("mirror stream closed")
	}
	if errdefs.IsFailedPrecondition(st.err) {
		// The peer refused the stream (it carries the pod): kept as is,
		// so the pod takes the pod back instead of retrying.
		return st.err
	}
	return errdefs.Unavailable("mirror stream: %v", st.err)
}

// takePending returns, and forgets, every change not yet acknowledged.
func (st *mirrorStream) takePending() []pendingOp {
	st.mu.Lock()
	defer st.mu.Unlock()
	out := make([]pendingOp, 0, len(st.pending))
	for _, op := range st.pending {
		out = append(out, op)
	}
	clear(st.pending)
	st.queue = nil
	return out
}
