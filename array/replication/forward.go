package replication

import (
	"context"
	"errors"
	"slices"
	"sync"
	"time"

	"github.com/volrep/volrep/errdefs"
	arrayv1 "github.com/volrep/volrep/proto/volrep/array/v1"
)

// forwardLink is the preferred array's end of a pod's Forward stream: the
// peer's clients' changes arrive on it, and each is applied here through
// the client write path, under this array's block locks, so the mirror
// stream carries it back to the peer in order with this array's own
// writes. A change is answered only when it is on both copies.
type forwardLink struct {
	p      *pod
	cs     arrayv1.TransferService_ForwardClient
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu    sync.Mutex
	queue []*arrayv1.ForwardRequest
	last  *arrayv1.ForwardState
	work  chan struct{}
	dead  chan struct{}
	once  sync.Once
}

// maxForwarded bounds the peer's changes applied here at once.
const maxForwarded = 64

func (p *pod) openForward(ctx context.Context) (*forwardLink, error) {
	fctx, cancel := context.WithCancel(ctx)
	cs, err := p.l.xfer.Forward(fctx)
	if err != nil {
		cancel()
		return nil, err
	}
	f := &forwardLink{p: p, cs: cs, cancel: cancel, work: make(chan struct{}, 1), dead: make(chan struct{})}
	f.queue = append(f.queue, &arrayv1.ForwardRequest{Msg: &arrayv1.ForwardRequest_Open{Open: &arrayv1.ForwardOpen{
		Pod: p.name, SourceArrayId: p.e.id, TimeoutMs: p.timeout.Milliseconds(), Mediated: p.claim != nil}}})
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
		f.p.wake() // the pod's loop opens a new one
	})
}

func (f *forwardLink) close() {
	f.kill()
	f.wg.Wait()
}

func (f *forwardLink) enqueue(m *arrayv1.ForwardRequest) {
	f.mu.Lock()
	f.queue = append(f.queue, m)
	f.mu.Unlock()
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
	same := f.last != nil && f.last.GetInSync() == st.GetInSync() && slices.Equal(f.last.GetVolumes(), st.GetVolumes())
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
		batch := f.queue
		f.queue = nil
		f.mu.Unlock()
		for _, m := range batch {
			if err := f.cs.Send(m); err != nil {
				f.kill()
				return
			}
		}
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
	for {
		m, err := f.cs.Recv()
		if err != nil {
			return
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
			seq, err := f.p.applyForwarded(ctx, m)
			r := &arrayv1.ForwardResult{Seq: seq}
			if err != nil {
				r.Error, r.Kind = err.Error(), errdefs.KindOf(err).Name()
			}
			f.enqueue(&arrayv1.ForwardRequest{Msg: &arrayv1.ForwardRequest_Result{Result: r}})
		}()
	}
}

// forwardState is what the peer's copies may do: the ready members take
// writes while the pod is in sync.
func (p *pod) forwardState() *arrayv1.ForwardState {
	p.mu.Lock()
	defer p.mu.Unlock()
	st := &arrayv1.ForwardState{InSync: p.inSyncLocked()}
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

// applyForwarded applies one change the peer's client made. It is
// refused unless the pod is in sync, and answered with success only if
// the pod still is once the write returned: a write whose mirrored copy
// the peer did not acknowledge makes the pod leave sync before the write
// returns (fail), and it is in sync again only after a resync sent the
// write's blocks, so success means the peer holds it.
func (p *pod) applyForwarded(ctx context.Context, msg *arrayv1.ForwardResponse) (uint64, error) {
	var seq uint64
	var vols []string
	switch m := msg.Msg.(type) {
	case *arrayv1.ForwardResponse_Write:
		seq, vols = m.Write.GetSeq(), []string{m.Write.GetVolume()}
	case *arrayv1.ForwardResponse_Zero:
		seq, vols = m.Zero.GetSeq(), []string{m.Zero.GetVolume()}
	case *arrayv1.ForwardResponse_Flush:
		seq, vols = m.Flush.GetSeq(), m.Flush.GetVolumes()
	default:
		return 0, errdefs.InvalidArgument("msg", "unexpected %T on a forward stream", m)
	}
	for _, vol := range vols {
		mem := p.memberByRemote(vol)
		if mem == nil {
			return seq, errdefs.NotFound("the peer's volume %q is no copy of a member of pod %s; write to it at its own array", vol, p.name)
		}
		if !p.inSync() {
			return seq, errdefs.Unavailable("pod %s is not in sync: writes go to the preferred array until it is back in sync", p.name)
		}
		h, err := p.e.s.OpenVolume(ctx, mem.local)
		if err != nil {
			return seq, err
		}
		switch m := msg.Msg.(type) {
		case *arrayv1.ForwardResponse_Write:
			err = h.WriteAt(ctx, m.Write.GetData(), m.Write.GetOffset(), false)
		case *arrayv1.ForwardResponse_Zero:
			err = h.Zero(ctx, m.Zero.GetOffset(), m.Zero.GetLength(), false)
		case *arrayv1.ForwardResponse_Flush:
			err = h.Flush(ctx)
		}
		if err != nil {
			if errors.Is(err, context.Canceled) {
				return seq, errdefs.Unavailable("pod %s is stopping", p.name)
			}
			return seq, err
		}
		if !p.inSync() {
			return seq, errdefs.Unavailable("pod %s lost its peer while the change was applied: it is on the preferred array, and the resync brings it to the peer", p.name)
		}
	}
	return seq, nil
}
