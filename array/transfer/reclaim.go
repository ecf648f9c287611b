package transfer

import (
	"context"
	"encoding/json"
	"errors"
	"sync/atomic"
	"time"

	"github.com/volrep/volrep/array"
	"github.com/volrep/volrep/array/bitmap"
	"github.com/volrep/volrep/array/mediator"
	"github.com/volrep/volrep/errdefs"
	arrayv1 "github.com/volrep/volrep/proto/volrep/array/v1"
)

const (
	// reclaimPiece bounds the data of one Reclaim message.
	reclaimPiece = 1 << 20
	// reclaimRounds is how many rounds are sent while writes go on, before
	// the last one, with writes stopped, sends what changed meanwhile.
	reclaimRounds = 3
	// reclaimSmall ends the rounds early: this few blocks left are sent
	// with writes stopped.
	reclaimSmall = 256
	// reclaimApplyWait bounds the wait for the preferred array to apply a
	// round; after it this array carries the pod again.
	reclaimApplyWait = 30 * time.Second
)

// Reclaim hands a pod this array carried back to its preferred array
// (see the proto): rounds of changed blocks while writes go on, a last
// round with writes stopped, then the key and the mark are given up once
// the preferred array says it holds everything.
func (t *Service) Reclaim(stream arrayv1.TransferService_ReclaimServer) error {
	ctx := stream.Context()
	open, err := recvOpen(stream.Recv, (*arrayv1.ReclaimRequest).GetOpen)
	if err != nil {
		return err
	}
	if ms := open.GetTimeoutMs(); ms < 0 || ms > 3600_000 {
		return errdefs.InvalidArgument("open.timeout_ms", "is %d; give the pod's sync timeout in milliseconds (1 to 3600000), or 0 for %s", ms, reclaimApplyWait)
	}
	quiet := reclaimApplyWait
	if ms := open.GetTimeoutMs(); ms > 0 {
		quiet = time.Duration(ms) * time.Millisecond
	}
	for i, v := range open.GetVolumes() {
		if err := array.CheckName("open.volumes.volume", v.GetVolume()); err != nil {
			return err
		}
		for _, e := range v.GetExtents() {
			if e.GetOffset() < 0 || e.GetLength() <= 0 || e.GetOffset()%blockSize != 0 {
				return errdefs.InvalidArgument("open.volumes.extents", "volume %d: extent at %d of %d bytes; give block-aligned offsets and positive lengths", i, e.GetOffset(), e.GetLength())
			}
		}
	}
	p := t.fwd.pod(open.GetPod())
	p.mu.Lock()
	c := p.carry
	p.mu.Unlock()
	if c == nil {
		return errdefs.FailedPrecondition("pod %s is not carried by this array; there is nothing to reclaim", open.GetPod())
	}
	// Ranges the preferred array asks for besides this array's changes,
	// within the carried copies.
	asked := map[string]*bitmap.Bitmap{}
	for _, v := range open.GetVolumes() {
		vol, err := t.s.GetVolume(ctx, v.GetVolume())
		if errdefs.IsNotFound(err) {
			continue
		}
		if err != nil {
			return err
		}
		bm := bitmap.New()
		for _, e := range v.GetExtents() {
			// Past the copy's end there is nothing to send (the volume
			// grew at the preferred array meanwhile; its resync sends it).
			off := e.GetOffset()
			if off >= vol.SizeBytes {
				continue
			}
			end := off + min(e.GetLength(), vol.SizeBytes-off)
			bm.SetRange(uint64(off/blockSize), uint64((end+blockSize-1)/blockSize))
		}
		asked[v.GetVolume()] = bm
	}
	c.mu.Lock()
	if c.reclaiming != 0 {
		c.mu.Unlock()
		return errdefs.FailedPrecondition("pod %s is being reclaimed by another stream", open.GetPod())
	}
	c.reclaims++
	me := c.reclaims
	c.reclaiming = me
	c.mu.Unlock()
	log := t.log.With("pod", open.GetPod())
	log.Info("handing the pod back to its preferred array", "source_array", open.GetSourceArrayId())
	released := false
	defer func() {
		c.mu.Lock()
		if c.reclaiming == me {
			c.reclaiming = 0
			if !released {
				// This array carries the pod again; everything stays dirty.
				c.handing = false
			}
		}
		c.mu.Unlock()
	}()
	var sent int64
	var stopped time.Time // when this array stopped taking writes
	for round := 1; ; round++ {
		last := false
		c.mu.Lock()
		left := uint64(0)
		for _, f := range c.fresh {
			left += f.Count()
		}
		if round > reclaimRounds || (round > 1 && left <= reclaimSmall) {
			last, c.handing = true, true
			stopped = time.Now()
		}
		c.mu.Unlock()
		if last {
			// No write is admitted now; wait for those admitted before to
			// be recorded, so this round sees every one.
			for c.admitted.Load() > 0 {
				if err := ctx.Err(); err != nil {
					return err
				}
				time.Sleep(100 * time.Microsecond)
			}
		}
		todo := map[string]*bitmap.Bitmap{}
		c.mu.Lock()
		for v, f := range c.fresh {
			c.fresh[v] = bitmap.New()
			if round > 1 {
				todo[v] = f
				continue
			}
			// The first round sends everything changed (fresh is part of
			// it), and what the preferred array asked for.
			todo[v] = c.dirty[v].Clone()
			if a := asked[v]; a != nil {
				todo[v].Or(a)
			}
		}
		c.mu.Unlock()
		rd := reclaimRound{stream: stream, pod: open.GetPod(), todo: todo, sent: sent, last: last, wait: reclaimApplyWait}
		if !last {
			n, err := t.sendRound(ctx, rd, func() {})
			if sent += n; err != nil {
				return err
			}
			continue
		}
		rd.wait = quiet
		n, err := t.lastRound(ctx, c, me, rd, quiet)
		if sent += n; err != nil {
			return err
		}
		break
	}
	if err := t.release(ctx, p); err != nil {
		return err
	}
	released = true
	log.Info("pod handed back to its preferred array", "bytes", sent, "writes_stopped_ms", time.Since(stopped).Milliseconds())
	return stream.Send(&arrayv1.ReclaimResponse{Msg: &arrayv1.ReclaimResponse_Released{Released: &arrayv1.ReclaimReleased{}}})
}

// reclaimRound is one round of a hand-back: the blocks to send, and how
// long to wait for the preferred array to apply them.
type reclaimRound struct {
	stream arrayv1.TransferService_ReclaimServer
	pod    string
	todo   map[string]*bitmap.Bitmap
	sent   int64 // bytes of the rounds before
	last   bool
	wait   time.Duration
}

// sendRound sends a round's blocks and its end, and waits until the
// preferred array says they are durable there, so the next round (the
// last, with writes stopped here) has little left to make durable. It
// calls progress after each message sent and returns the bytes sent.
func (t *Service) sendRound(ctx context.Context, rd reclaimRound, progress func()) (int64, error) {
	n, err := t.sendBlocks(ctx, rd.stream, rd.todo, progress)
	if err != nil {
		return n, err
	}
	if err := rd.stream.Send(&arrayv1.ReclaimResponse{Msg: &arrayv1.ReclaimResponse_Round{Round: &arrayv1.ReclaimRound{Bytes: rd.sent + n, Last: rd.last}}}); err != nil {
		return n, err
	}
	progress()
	return n, awaitApplied(rd.stream, rd.pod, rd.wait)
}

// lastRound runs the last round, during which this array refuses the
// pod's writes, watched: if the preferred array takes nothing for quiet
// (the pod's sync timeout), this array takes the pod's writes again at
// once, rather than when the stream's keepalive gives up or the round's
// wait ends, and the hand-back fails; everything it carried stays dirty
// for the next one. The round runs on a goroutine of its own because a
// Send to a peer that went silent blocks until the transport dies; the
// handler still waits for that goroutine before it returns, so the
// stream is never used after it, but it gives the reclaim slot (me) up
// at once, so the preferred array's next hand-back, on a new stream, is
// not refused until then (gRPC's keepalive, about 15 s).
func (t *Service) lastRound(ctx context.Context, c *carrying, me uint64, rd reclaimRound, quiet time.Duration) (int64, error) {
	var beat atomic.Int64
	beat.Store(time.Now().UnixNano())
	type result struct {
		n   int64
		err error
	}
	done := make(chan result, 1)
	go func() {
		n, err := t.sendRound(ctx, rd, func() { beat.Store(time.Now().UnixNano()) })
		done <- result{n, err}
	}()
	tick := time.NewTicker(max(quiet/8, 5*time.Millisecond))
	defer tick.Stop()
	for {
		select {
		case r := <-done:
			return r.n, r.err
		case <-tick.C:
			silent := time.Since(time.Unix(0, beat.Load()))
			if silent < quiet {
				continue
			}
			c.mu.Lock()
			if c.reclaiming == me {
				c.handing, c.reclaiming = false, 0
			}
			c.mu.Unlock()
			t.log.Warn("the preferred array went quiet during the last round of a hand-back; this array takes the pod's writes again, and a new hand-back at once, and keeps everything it carried for it",
				"pod", rd.pod, "silent", silent.Round(time.Millisecond))
			r := <-done
			return r.n, errdefs.Unavailable("pod %s: the preferred array took nothing of the hand-back's last round for %s (the pod's sync timeout); this array carries the pod again, and the preferred array asks for it once more when it can", rd.pod, quiet)
		}
	}
}

// awaitApplied waits for the preferred array to say a round is applied
// and durable. Recv runs on its own goroutine, which ends with the
// handler if the wait times out.
func awaitApplied(stream arrayv1.TransferService_ReclaimServer, pod string, within time.Duration) error {
	applied := make(chan error, 1)
	go func() {
		m, err := stream.Recv()
		if err == nil && m.GetApplied() == nil {
			err = errdefs.InvalidArgument("msg", "expected applied after a round, got %T", m.GetMsg())
		}
		applied <- err
	}()
	wait := time.NewTimer(within)
	defer wait.Stop()
	select {
	case err := <-applied:
		return err
	case <-wait.C:
		return errdefs.Unavailable("pod %s: the preferred array did not apply a round of changed blocks within %s; this array carries the pod again", pod, within)
	}
}

// sendBlocks sends the blocks of each volume's bitmap, with their CRCs.
func (t *Service) sendBlocks(ctx context.Context, stream arrayv1.TransferService_ReclaimServer, todo map[string]*bitmap.Bitmap, progress func()) (int64, error) {
	var sent int64
	buf := make([]byte, reclaimPiece)
	var crcs []uint32
	for v, bm := range todo {
		var err error
		bm.Runs(0, ^uint64(0), func(lo, hi uint64) bool {
			for b := lo; b < hi && err == nil; b += reclaimPiece / blockSize {
				n := min(hi-b, reclaimPiece/blockSize)
				off, data := int64(b)*blockSize, buf[:int64(n)*blockSize]
				if err = t.s.ReadVolume(ctx, v, off, data); err != nil {
					return false
				}
				crcs = blockCRCs(data, crcs)
				err = stream.Send(&arrayv1.ReclaimResponse{Msg: &arrayv1.ReclaimResponse_Data{Data: &arrayv1.ReclaimData{Volume: v,
					Chunk: &arrayv1.DataChunk{Offset: off, Data: data, Crc32C: crcs}}}})
				if err == nil {
					progress()
				}
				sent += int64(len(data))
			}
			return err == nil
		})
		if err != nil {
			return sent, err
		}
	}
	return sent, nil
}

// release gives the pod's key and this array's mark up, forgets the
// carried record, and turns the copies back to forwarding (refused until
// the preferred array opens its forward stream).
func (t *Service) release(ctx context.Context, p *podForward) error {
	p.mu.Lock()
	cl, mname := p.claim, p.mediatorNameLocked()
	p.mu.Unlock()
	if cl != nil {
		mname = cl.Pod()
		rctx, cancel := context.WithTimeout(ctx, t.med.TTL())
		err := cl.Release(rctx)
		cancel()
		if err != nil {
			// The hand-back does not wait for the mediator: the preferred
			// array holds every block now, so the arrays, which see each
			// other, go on. The claim stops (its lease ends by itself),
			// and the mark, which would keep the preferred array from
			// carrying on alone at a later partition, is cleared once the
			// mediator answers; the record keeps that promise across a
			// restart.
			data, perr := json.Marshal(unmarkRec{MediatorName: mname})
			if perr == nil {
				perr = t.s.PutRecord(context.WithoutCancel(ctx), recUnmark, p.name, data)
			}
			if perr != nil {
				return errors.Join(errdefs.Unavailable("pod %s: the mediator did not answer, and recording that this array's mark is still to be cleared failed; this array carries the pod until either works", p.name), err, perr)
			}
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
			cl.Close(cctx)
			cancel()
			t.unmarkLater(p, mname)
			t.log.Warn("handing the pod back without the mediator, which did not answer; this array clears its mark there once it does, and does not ask for the pod meanwhile",
				"pod", p.name, "err", err)
		}
	} else {
		t.log.Warn("this array carried the pod but has no mediator configured now: its mark stays at the mediator, and the preferred array cannot take the pod's key "+
			"until an operator drops it; the preferred array holds every block now, so nothing is lost: "+
			t.forgetMarkCommand(mname), "pod", p.name, "key", mediator.AheadKey(mname))
	}
	p.mu.Lock()
	p.claim, p.carry = nil, nil
	p.mu.Unlock()
	if err := t.s.DeleteRecord(context.WithoutCancel(ctx), recCarried, p.name); err != nil {
		t.log.Warn("forgetting the carried pod's record; a restart resends its blocks", "pod", p.name, "err", err)
	}
	if t.OnCarry != nil {
		t.OnCarry(p.name, false)
	}
	return nil
}

// ReclaimTarget is the preferred array's side of Reclaim.
type ReclaimTarget struct {
	Pod, SourceArrayID string
	// Timeout is the pod's sync timeout: how long the peer, which refuses
	// the pod's writes during the last round, waits for this array.
	Timeout time.Duration
	// Volumes are the peer's copies, each with the ranges to take from it
	// besides the blocks the peer changed.
	Volumes map[string][]*arrayv1.Extent
	// Apply writes a verified block range to the peer copy's counterpart
	// here; Flush makes everything applied so far durable (at the end of
	// each round); Done is called once the last round is durable, before
	// the peer is told so.
	Apply func(ctx context.Context, volume string, off int64, data []byte) error
	Flush func(ctx context.Context) error
	Done  func(ctx context.Context) error
}

// ReclaimFrom takes a carried pod back from the peer through xfer: every
// block arrives with its CRC-32C, checked before it is applied. It returns
// the bytes taken once the peer has given the pod up.
func ReclaimFrom(ctx context.Context, xfer arrayv1.TransferServiceClient, rt ReclaimTarget) (int64, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	cs, err := xfer.Reclaim(ctx)
	if err != nil {
		return 0, err
	}
	open := &arrayv1.ReclaimOpen{Pod: rt.Pod, SourceArrayId: rt.SourceArrayID, TimeoutMs: rt.Timeout.Milliseconds()}
	for v, ext := range rt.Volumes {
		open.Volumes = append(open.Volumes, &arrayv1.ReclaimVolume{Volume: v, Extents: ext})
	}
	if err := cs.Send(&arrayv1.ReclaimRequest{Msg: &arrayv1.ReclaimRequest_Open{Open: open}}); err != nil {
		return 0, err
	}
	var got int64
	var crcs []uint32
	for {
		m, err := cs.Recv()
		if err != nil {
			return got, err
		}
		switch m := m.Msg.(type) {
		case *arrayv1.ReclaimResponse_Data:
			c := m.Data.GetChunk()
			if _, ok := rt.Volumes[m.Data.GetVolume()]; !ok {
				return got, errdefs.InvalidArgument("data.volume", "the peer sent %q, which was not asked for", m.Data.GetVolume())
			}
			if c.GetOffset() < 0 || c.GetOffset()%blockSize != 0 {
				return got, errdefs.InvalidArgument("data.chunk.offset", "%d is not block-aligned", c.GetOffset())
			}
			if crcs, err = checkCRCs(c.GetOffset(), c.GetData(), c.GetCrc32C(), crcs); err != nil {
				return got, err
			}
			if err := rt.Apply(ctx, m.Data.GetVolume(), c.GetOffset(), c.GetData()); err != nil {
				return got, err
			}
			got += int64(len(c.GetData()))
		case *arrayv1.ReclaimResponse_Round:
			// Durable while the peer reads the next round, so the last
			// round, with the peer's writes stopped, has little to flush.
			if err := rt.Flush(ctx); err != nil {
				return got, err
			}
			if m.Round.GetLast() {
				if err := rt.Done(ctx); err != nil {
					return got, err
				}
			}
			if err := cs.Send(&arrayv1.ReclaimRequest{Msg: &arrayv1.ReclaimRequest_Applied{Applied: &arrayv1.ReclaimApplied{}}}); err != nil {
				return got, err
			}
		case *arrayv1.ReclaimResponse_Released:
			return got, nil
		default:
			return got, errdefs.InvalidArgument("msg", "unexpected %T on a reclaim stream", m)
		}
	}
}
