package transfer

import (
	"context"
	"errors"
	"io"
	"sync"
	"sync/atomic"

	"github.com/volrep/volrep/array"
	"github.com/volrep/volrep/errdefs"
	arrayv1 "github.com/volrep/volrep/proto/volrep/array/v1"
	"github.com/volrep/volrep/server/rawstream"
)

// Mirror applies a pod's writes to this array's copies, in the order they
// arrive, and acknowledges each once applied (a flush once durable). The
// copies change only through this stream: their clients' writes are
// forwarded to the pod's preferred array (forward.go) and come back here.
func (t *Service) Mirror(stream arrayv1.TransferService_MirrorServer) error {
	ctx := stream.Context()
	open, err := recvOpen(stream.Recv, (*arrayv1.MirrorRequest).GetOpen)
	if err != nil {
		return err
	}
	// From the moment this array carries the pod, or a later stream from
	// the preferred array replaces this one, the stream applies nothing
	// more: the preferred array would be a second writer, or a change it
	// gave up on (and resent on the new stream) would land over a newer one.
	adm := &mirrorAdmission{source: open.GetSourceArrayId()}
	p := t.fwd.pod(open.GetPod())
	if err := p.admitMirror(adm); err != nil {
		return err
	}
	defer p.mirrorDone(adm)
	log := t.log.With("pod", open.GetPod())
	log.Info("mirror stream open", "source_array", open.GetSourceArrayId())
	defer log.Info("mirror stream closed")
	// A reset's answer waits for this array's commands that ran when it
	// came, and they may wait on this stream (a write forwarded to the
	// preferred array waits for its copy, mirrored back here), so it is
	// sent from its own goroutine while the stream goes on; the preferred
	// array matches answers by sequence number, in any order.
	var sendMu sync.Mutex
	send := func(resp *arrayv1.MirrorResponse) error {
		sendMu.Lock()
		defer sendMu.Unlock()
		return stream.Send(resp)
	}
	drainCtx, stopDrains := context.WithCancel(ctx)
	var drains sync.WaitGroup
	defer drains.Wait()
	defer stopDrains()
	for {
		msg, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		a, err := t.applyMirror(ctx, p, adm, open.GetPod(), msg)
		if err != nil {
			return err
		}
		if a.err == nil && a.tag.seq != 0 {
			// A write this array's client made: done once here too.
			p.mirrored(a.tag.session, a.tag.seq)
		}
		resp := &arrayv1.MirrorResponse{Seq: a.seq, Reservations: a.reservations}
		if a.err != nil {
			resp.Error = a.err.Error()
		}
		if a.drain != nil {
			drains.Add(1)
			go func() {
				defer drains.Done()
				if a.drain(drainCtx) == nil {
					_ = send(resp) // a failed send ends the stream's Recv too
				}
			}()
			continue
		}
		if err := send(resp); err != nil {
			return err
		}
	}
}

// mirrorAdmission is one open mirror stream's standing at this array.
// Its flags are read under the pod's applyMu, around each change applied,
// and set before a barrier on it (podForward.stopMirrors).
type mirrorAdmission struct {
	source     string      // the array that opened the stream
	carried    atomic.Bool // this array carries the pod: the preferred array reclaims first
	superseded atomic.Bool // a later stream from the preferred array replaced this one
}

type forwardTag struct{ session, seq uint64 }

// applied is what one mirror message did: its sequence number, the
// forwarded write it carries (if any), and its own failure, which is
// answered to the preferred array rather than ending the stream.
type applied struct {
	seq uint64
	tag forwardTag
	err error
	// drain, for a LOGICAL UNIT RESET or a PREEMPT AND ABORT, is to be
	// waited for before it is answered (store.NoteSharedReset,
	// store.InstallReservations).
	drain func(context.Context) error
	// reservations: this array's state of the volume's persistent
	// reservations, when newer than the one the preferred array sent.
	reservations []byte
}

// applyMirror applies one message of a mirror stream, under the pod's
// applyMu so that no change of a stream that was stopped lands after the
// moment it was stopped. An error ends the stream.
func (t *Service) applyMirror(ctx context.Context, p *podForward, adm *mirrorAdmission, pod string, msg *arrayv1.MirrorRequest) (applied, error) {
	p.applyMu.Lock()
	defer p.applyMu.Unlock()
	switch {
	case adm.carried.Load():
		return applied{}, errdefs.FailedPrecondition("pod %s: this array carries the pod now; the preferred array takes its writes back first (Reclaim)", pod)
	case adm.superseded.Load():
		return applied{}, errdefs.Unavailable("pod %s: a newer mirror stream from the preferred array replaced this one; it applies nothing more", pod)
	}
	var a applied
	switch m := msg.Msg.(type) {
	case *arrayv1.MirrorRequest_Write:
		a.seq = m.Write.GetSeq()
		a.err = t.s.ApplyMirrored(ctx, m.Write.GetVolume(), m.Write.GetOffset(), m.Write.GetData())
		a.tag = forwardTag{m.Write.GetForwardedSession(), m.Write.GetForwardedSeq()}
	case *arrayv1.MirrorRequest_Zero:
		a.seq = m.Zero.GetSeq()
		a.err = t.s.ApplyMirroredZero(ctx, m.Zero.GetVolume(), m.Zero.GetOffset(), m.Zero.GetLength())
	case *arrayv1.MirrorRequest_LuReset:
		a.seq = m.LuReset.GetSeq()
		if a.drain, a.err = t.s.NoteSharedReset(ctx, m.LuReset.GetVolume()); errdefs.IsNotFound(a.err) {
			a.err = nil // a copy gone meanwhile: nobody here to tell
		}
	case *arrayv1.MirrorRequest_Reservations:
		a.seq = m.Reservations.GetSeq()
		a.reservations, a.drain, a.err = t.s.InstallReservations(ctx, m.Reservations.GetVolume(), m.Reservations.GetState())
		if errdefs.IsNotFound(a.err) {
			a.err = nil
		}
	case *arrayv1.MirrorRequest_Flush:
		a.seq = m.Flush.GetSeq()
		// A copy gone is one whose volume left the pod after the flush
		// was queued (the preferred array deletes it as it leaves): it
		// holds nothing to make durable. A copy deleted here by hand
		// fails the writes mirrored to it instead, which the pod sees.
		for _, v := range m.Flush.GetVolumes() {
			if a.err = t.s.ApplyMirroredFlush(ctx, v); a.err != nil && !errdefs.IsNotFound(a.err) {
				break
			}
			a.err = nil
		}
	default:
		return applied{}, errdefs.InvalidArgument("msg", "unexpected %T on a mirror stream", m)
	}
	return a, nil
}

// podOpen is the first message of a pod's Mirror or Forward stream.
type podOpen interface {
	GetPod() string
	GetSourceArrayId() string
}

// recvOpen reads a pod stream's first message, which must be its open,
// and checks it.
func recvOpen[M any, O interface {
	podOpen
	comparable
}](recv func() (M, error), get func(M) O) (O, error) {
	var none O
	m, err := recv()
	if err != nil {
		return none, err
	}
	open := get(m)
	if open == none {
		return none, errdefs.InvalidArgument("open", "the first message must name the pod")
	}
	return open, checkPodOpen(open)
}

// checkPodOpen checks the names a stream's open message carries: they go
// into logs and error messages, so they are checked like any other name
// before they are used.
func checkPodOpen(open podOpen) error {
	if err := array.CheckName("open.pod", open.GetPod()); err != nil {
		return err
	}
	if id := open.GetSourceArrayId(); id != "" {
		return array.CheckName("open.source_array_id", id)
	}
	return nil
}

// RegisterStreams serves the pod streams (Mirror and Forward) on a raw
// stream server too: each of their messages is a client write waiting on
// the round trip (server/rawstream).
func (t *Service) RegisterStreams(s *rawstream.Server) {
	rawstream.Register(s, arrayv1.TransferService_Mirror_FullMethodName, t.Mirror)
	rawstream.Register(s, arrayv1.TransferService_Forward_FullMethodName, t.Forward)
}
