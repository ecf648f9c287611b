package transfer

import (
	"errors"
	"io"
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
	// From the moment this array carries the pod, the stream applies
	// nothing more: the preferred array would be a second writer.
	var carried atomic.Bool
	p := t.fwd.pod(open.GetPod())
	if err := p.admitMirror(&carried); err != nil {
		return err
	}
	defer p.mirrorDone(&carried)
	log := t.log.With("pod", open.GetPod())
	log.Info("mirror stream open", "source_array", open.GetSourceArrayId())
	defer log.Info("mirror stream closed")
	for {
		msg, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if carried.Load() {
			return errdefs.FailedPrecondition("pod %s: this array carries the pod now; the preferred array takes its writes back first (Reclaim)", open.GetPod())
		}
		var seq uint64
		switch m := msg.Msg.(type) {
		case *arrayv1.MirrorRequest_Write:
			seq = m.Write.GetSeq()
			err = t.s.ApplyMirrored(ctx, m.Write.GetVolume(), m.Write.GetOffset(), m.Write.GetData())
			if fs := m.Write.GetForwardedSeq(); fs != 0 && err == nil {
				// A write this array's client made: done once here too.
				p.mirrored(m.Write.GetForwardedSession(), fs)
			}
		case *arrayv1.MirrorRequest_Zero:
			seq = m.Zero.GetSeq()
			err = t.s.ApplyMirroredZero(ctx, m.Zero.GetVolume(), m.Zero.GetOffset(), m.Zero.GetLength())
		case *arrayv1.MirrorRequest_Flush:
			seq = m.Flush.GetSeq()
			for _, v := range m.Flush.GetVolumes() {
				if err = t.s.ApplyMirroredFlush(ctx, v); err != nil && !errdefs.IsNotFound(err) {
					break
				}
				err = nil
			}
		default:
			return errdefs.InvalidArgument("msg", "unexpected %T on a mirror stream", m)
		}
		resp := &arrayv1.MirrorResponse{Seq: seq}
		if err != nil {
			resp.Error = err.Error()
		}
		if err := stream.Send(resp); err != nil {
			return err
		}
	}
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
