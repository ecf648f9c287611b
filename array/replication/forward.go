package replication

import (
	"context"
	"errors"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/volrep/volrep/array"
	"github.com/volrep/volrep/array/store"
	"github.com/volrep/volrep/errdefs"
	arrayv1 "github.com/volrep/volrep/proto/volrep/array/v1"
)

// forwardLink is the preferred array's end of a pod's Forward stream: the
// peer's clients' changes arrive on it, and each is applied here through
// the client write path, under this array's block locks, so the mirror
// stream carries it back to the peer in order with this array's own
// writes. A change is answered only when it is on both copies.
type forwardLink struct {
	p *pod
	// session names the stream on the mirrored copies of its writes.
	session uint64
	cs      arrayv1.TransferService_ForwardClient
	cancel  context.CancelFunc
	wg      sync.WaitGroup

	mu    sync.Mutex
	queue []*arrayv1.ForwardRequest
	// sent are closed by sendLoop once everything queued before each was
	// sent (leave waits on one).
	sent []chan struct{}
	last *arrayv1.ForwardState
	work chan struct{}
	dead chan struct{}
	once sync.Once
	// refused: the peer ended the stream with FAILED_PRECONDITION (it
	// refuses this pod's stream, say, for another array's pod of the
	// same name there); the pod then opens another only at its next
	// step, not at once, and logs the reason once.
	refused error
}

// maxForwarded bounds the peer's changes applied here at once.
const maxForwarded = 64

func (p *pod) openForward(ctx context.Context) (*forwardLink, error) {
	fctx, cancel := context.WithCancel(ctx)
	// A peer from before FeatureForwardOwnCopy would answer its client as
	// soon as this array applied a write, before its own copy held it: it
	// takes no forwarded writes, and the pod stays active/passive.
	cs, err := openPodStream(fctx, p.l, p.e.log, arrayv1.TransferService_Forward_FullMethodName, array.FeatureForwardOwnCopy, p.timeout,
		func(ctx context.Context) (arrayv1.TransferService_ForwardClient, error) { return p.l.xfer.Forward(ctx) })
	if err != nil {
		cancel()
		return nil, err
	}
	f := &forwardLink{p: p, session: rand.Uint64() | 1, cs: cs, cancel: cancel, work: make(chan struct{}, 1), dead: make(chan struct{})}
	open := &arrayv1.ForwardOpen{Pod: p.name, SourceArrayId: p.e.id, TimeoutMs: p.timeout.Milliseconds(), Mediated: p.claim != nil, Session: f.session,
		CompareAndWrite: true, LuReset: true, Reservations: p.e.s.KeepsReservations()}
	if p.claim != nil {
		open.MediatorName = p.claim.Pod()
	}
	f.queue = append(f.queue, &arrayv1.ForwardRequest{Msg: &arrayv1.ForwardRequest_Open{Open: open}})
	f.wg.Add(3)
	go f.sendLoop()
	go f.recvLoop(fctx)
	go f.heartbeat(fctx)
	f.pushState(true)
	return f, nil
}

func (f *forwardLink) alive() bool {
	select {
	case <-f.dead:
		return false
	default:
		return true
	}
}

func (f *forwardLink) kill() {
	f.once.Do(func() {
		close(f.dead)
		f.cancel()
		if f.refusal() == nil {
			f.p.wake() // the pod's loop opens a new one
		}
	})
}

func (f *forwardLink) refusal() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.refused
}

func (f *forwardLink) close() {
	f.kill()
	f.wg.Wait()
}

func (f *forwardLink) enqueue(m *arrayv1.ForwardRequest) {
	f.mu.Lock()
	f.queue = append(f.queue, m)
	f.mu.Unlock()
	f.kick()
}

// kick wakes sendLoop.
func (f *forwardLink) kick() {
	select {
	case f.work <- struct{}{}:
	default:
	}
}

// pushState sends the pod's state to the peer when it changed, or always
// with force (the heartbeat the peer's watchdog waits for).
func (f *forwardLink) pushState(force bool) {
	st := f.p.forwardState()
	f.mu.Lock()
	same := f.last != nil && f.last.GetInSync() == st.GetInSync() && f.last.GetReceiverPreferred() == st.GetReceiverPreferred() &&
		slices.Equal(f.last.GetVolumes(), st.GetVolumes())
	if same && !force {
		f.mu.Unlock()
		return
	}
	f.last = st
	f.mu.Unlock()
	f.enqueue(&arrayv1.ForwardRequest{Msg: &arrayv1.ForwardRequest_State{State: st}})
}

func (f *forwardLink) sendLoop() {
	defer f.wg.Done()
	for {
		select {
		case <-f.dead:
			return
		case <-f.work:
		}
		f.mu.Lock()
		batch, sent := f.queue, f.sent
		f.queue, f.sent = nil, nil
		f.mu.Unlock()
		for _, m := range batch {
			if err := f.cs.Send(m); err != nil {
				f.kill()
				return
			}
		}
		for _, c := range sent {
			close(c)
		}
	}
}

// leave tells the peer, before the stream closes, that the pod names no
// copies there any more (the pod was removed or made async, never at a
// shutdown): the peer drops its forwarders and its record of them, and
// its copies are plain replicas again. It waits at most timeout for the
// state to be sent, and no longer than ctx.
func (f *forwardLink) leave(ctx context.Context, timeout time.Duration) {
	f.pushState(true)
	// Registered after the state is queued: sendLoop closes it once the
	// batch that holds the state, or a later one, is sent. The kick makes
	// that later batch, empty, should the state's have been taken already.
	sent := make(chan struct{})
	f.mu.Lock()
	f.sent = append(f.sent, sent)
	f.mu.Unlock()
	f.kick()
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-sent:
	case <-f.dead:
	case <-t.C:
	case <-ctx.Done():
	}
}

func (f *forwardLink) heartbeat(ctx context.Context) {
	defer f.wg.Done()
	t := time.NewTicker(max(f.p.timeout/4, 10*time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-f.dead:
			return
		case <-ctx.Done():
			return
		case <-t.C:
			f.pushState(true)
		}
	}
}

func (f *forwardLink) recvLoop(ctx context.Context) {
	defer f.wg.Done()
	defer f.kill()
	sem := make(chan struct{}, maxForwarded)
	var handlers sync.WaitGroup
	defer handlers.Wait()
	drainCtx, stopDrains := context.WithCancel(ctx)
	defer stopDrains() // before handlers.Wait
	for {
		m, err := f.cs.Recv()
		if err != nil {
			if errdefs.IsFailedPrecondition(err) {
				f.mu.Lock()
				f.refused = err
				f.mu.Unlock()
			}
			return
		}
		if r := m.GetLuReset(); r != nil {
			// Answered once this array's commands that ran when it came
			// are done: waited for off the loop, which goes on taking the
			// peer's writes meanwhile.
			drain := f.p.noteReset(ctx, r.GetVolume())
			handlers.Add(1)
			go func() {
				defer handlers.Done()
				if drain(drainCtx) == nil {
					f.result(r.GetSeq(), nil, false)
				}
			}()
			continue
		}
		if r := m.GetReservation(); r != nil {
			// Off the loop: deciding waits for the peer to take the new
			// state on the mirror stream, and a PREEMPT AND ABORT for the
			// writes running here, some of them the peer's own.
			handlers.Add(1)
			go func() {
				defer handlers.Done()
				reply, err := f.p.decideReservation(drainCtx, r.GetVolume(), r.GetRequest())
				f.answer(&arrayv1.ForwardResult{Seq: r.GetSeq(), ReservationReply: reply}, err)
			}()
			continue
		}
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			return
		}
		handlers.Add(1)
		go func() {
			defer handlers.Done()
			defer func() { <-sem }()
			if w := m.GetWrite(); w != nil {
				f.applyWrite(ctx, w)
				return
			}
			seq, err := f.p.applyForwarded(ctx, m)
			f.result(seq, err, false)
		}()
	}
}

// result answers a forwarded change.
func (f *forwardLink) result(seq uint64, err error, mirrorPending bool) {
	f.answer(&arrayv1.ForwardResult{Seq: seq, MirrorPending: mirrorPending}, err)
}

// answer sends r, with err's message and kind when it failed.
func (f *forwardLink) answer(r *arrayv1.ForwardResult, err error) {
	if err != nil {
		r.Error, r.Kind = err.Error(), errdefs.KindOf(err).Name()
	}
	if me := (*store.MiscompareError)(nil); errors.As(err, &me) {
		r.Miscompare, r.MiscompareOffset = true, int64(me.Offset)
	}
	f.enqueue(&arrayv1.ForwardRequest{Msg: &arrayv1.ForwardRequest_Result{Result: r}})
}

// applyWrite applies a write the peer's client made, and answers it as
// soon as it is applied here (mirror_pending): the peer completes it when
// the mirrored copy, tagged with its seq, is applied there, one round
// trip sooner than waiting here for the peer's acknowledgement. Should
// the mirrored copy not reach the peer, a second result fails the write
// there (unless the copy was applied after all). A write with compare
// bytes (COMPARE AND WRITE) is compared with this copy first, under the
// block locks that order the pod's writes, and a miscompare writes
// nothing.
func (f *forwardLink) applyWrite(ctx context.Context, w *arrayv1.MirrorWrite) {
	p, seq := f.p, w.GetSeq()
	h, err := p.forwardedHandle(ctx, w.GetVolume())
	if err != nil {
		f.result(seq, err, false)
		return
	}
	tag := store.MirrorTag{Session: f.session, Seq: seq}
	var wait store.Wait
	if cmp := w.GetCompare(); len(cmp) > 0 {
		wait, err = h.CompareAndWriteTagged(ctx, cmp, w.GetData(), w.GetOffset(), tag)
	} else {
		wait, err = h.WriteTagged(ctx, w.GetData(), w.GetOffset(), tag)
	}
	if err != nil {
		f.result(seq, forwardedErr(p, err), false)
		_ = wait(ctx)
		return
	}
	f.result(seq, nil, true)
	if err := wait(ctx); err != nil {
		f.result(seq, forwardedErr(p, err), false)
		return
	}
	if !p.inSync() {
		f.result(seq, errdefs.Unavailable("pod %s lost its peer while the write was applied: it is on the preferred array, and the resync brings it to the peer", p.name), false)
	}
}

// noteReset applies a LOGICAL UNIT RESET the peer took of its copy
// remote to this array's sessions of the member, and returns the wait for
// their commands that were running (store.NoteSharedReset).
func (p *pod) noteReset(ctx context.Context, remote string) (drain func(context.Context) error) {
	if mem := p.memberByRemote(remote); mem != nil {
		drain, err := p.e.s.NoteSharedReset(ctx, mem.local)
		if err == nil {
			return drain
		}
		if ctx.Err() == nil {
			p.e.log.Warn("a LOGICAL UNIT RESET the peer took is not raised here", "pod", p.name, "volume", mem.local, "err", err)
		}
	}
	return func(context.Context) error { return nil }
}

// ShareReset tells the peer of a LOGICAL UNIT RESET of this member's copy
// here (store.ResetSharer), over the mirror stream when the peer takes it,
// and waits (up to the sync timeout) until the peer has recorded it, so
// its hosts' paths see the unit attention by the time the reset is
// answered here, or until ctx ends. A pod out of sync has no peer paths
// to tell.
func (m *podMember) ShareReset(ctx context.Context) {
	p := m.p
	if !p.l.has(array.FeatureLUReset) {
		return
	}
	p.mu.Lock()
	st, synced := p.stream, p.inSyncLocked()
	p.mu.Unlock()
	if st == nil || !synced {
		return
	}
	done, err := st.enqueue(nil, 0, 0, func(seq uint64) *arrayv1.MirrorRequest {
		return &arrayv1.MirrorRequest{Msg: &arrayv1.MirrorRequest_LuReset{LuReset: &arrayv1.ForwardReset{Seq: seq, Volume: m.remote}}}
	})
	if err == nil {
		_ = st.wait(ctx, done, p.timeout)
	}
}

var _ store.ResetSharer = (*podMember)(nil)

func forwardedErr(p *pod, err error) error {
	if errors.Is(err, context.Canceled) {
		return errdefs.Unavailable("pod %s is stopping", p.name)
	}
	return err
}

// forwardedHandle opens the member a forwarded change names, refusing it
// unless the pod is in sync.
func (p *pod) forwardedHandle(ctx context.Context, remote string) (*store.Handle, error) {
	mem := p.memberByRemote(remote)
	if mem == nil {
		return nil, errdefs.NotFound("the peer's volume %q is no copy of a member of pod %s; write to it at its own array", remote, p.name)
	}
	if !p.inSync() {
		return nil, errdefs.Unavailable("pod %s is not in sync: writes go to the preferred array until it is back in sync", p.name)
	}
	return p.e.s.OpenVolume(ctx, mem.local)
}

// forwardState is what the peer's copies may do: the ready members take
// writes while the pod is in sync.
func (p *pod) forwardState() *arrayv1.ForwardState {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.leaving {
		return &arrayv1.ForwardState{}
	}
	st := &arrayv1.ForwardState{InSync: p.inSyncLocked(), ReceiverPreferred: p.preferPeer.Load()}
	for _, m := range p.members {
		if m.ready {
			st.Volumes = append(st.Volumes, m.remote)
		}
	}
	slices.Sort(st.Volumes)
	return st
}

// inSyncLocked says the peer holds every acknowledged write and takes
// the new ones. Called with p.mu held.
func (p *pod) inSyncLocked() bool {
	return p.synced && p.stream != nil && !p.stoppedLocked()
}

// peerWritesLocked says the peer's copy takes its clients' writes: it
// forwards them here over a live stream while the pod is in sync. Called
// with p.mu held.
func (p *pod) peerWritesLocked() bool {
	return p.fwd != nil && p.fwd.alive() && p.inSyncLocked()
}

func (p *pod) inSync() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.inSyncLocked()
}

func (p *pod) memberByRemote(remote string) *podMember {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, m := range p.members {
		if m.remote == remote && m.ready {
			return m
		}
	}
	return nil
}

// applyForwarded applies a zero or flush the peer's client made. It is
// refused unless the pod is in sync, and answered with success only if
// the pod still is once the change returned: a change whose mirrored copy
// the peer did not acknowledge makes the pod leave sync before the change
// returns (fail), and it is in sync again only after a resync sent its
// blocks, so success means the peer holds it.
func (p *pod) applyForwarded(ctx context.Context, msg *arrayv1.ForwardResponse) (uint64, error) {
	var seq uint64
	var vols []string
	switch m := msg.Msg.(type) {
	case *arrayv1.ForwardResponse_Zero:
		seq, vols = m.Zero.GetSeq(), []string{m.Zero.GetVolume()}
	case *arrayv1.ForwardResponse_Flush:
		seq, vols = m.Flush.GetSeq(), m.Flush.GetVolumes()
	default:
		return 0, errdefs.InvalidArgument("msg", "unexpected %T on a forward stream", m)
	}
	for _, vol := range vols {
		h, err := p.forwardedHandle(ctx, vol)
		if err != nil {
			return seq, err
		}
		switch m := msg.Msg.(type) {
		case *arrayv1.ForwardResponse_Zero:
			err = h.Zero(ctx, m.Zero.GetOffset(), m.Zero.GetLength(), false)
		case *arrayv1.ForwardResponse_Flush:
			err = h.Flush(ctx)
		}
		if err != nil {
			return seq, forwardedErr(p, err)
		}
		if !p.inSync() {
			return seq, errdefs.Unavailable("pod %s lost its peer while the change was applied: it is on the preferred array, and the resync brings it to the peer", p.name)
		}
	}
	return seq, nil
}
