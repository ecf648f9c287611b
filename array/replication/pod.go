package replication

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/volrep/volrep/array"
	"github.com/volrep/volrep/array/bitmap"
	"github.com/volrep/volrep/array/mediator"
	"github.com/volrep/volrep/array/store"
	"github.com/volrep/volrep/array/transfer"
	"github.com/volrep/volrep/errdefs"
	arrayv1 "github.com/volrep/volrep/proto/volrep/array/v1"
)

// A pod is a SYNC replica: a volume or consistency group whose every
// write is on the peer array before it is acknowledged. The array that
// owns the replica is the pod's preferred array: it sequences every
// write. The peer's copies change only through the mirror stream, so the
// two sides can never take conflicting writes; while the pod is in sync
// they take client writes too, which the peer forwards here (forward.go):
// each is applied through this array's client write path, under its
// block locks, comes back to the peer on the mirror stream in order with
// this array's own writes, and is answered only then. When the pod is not
// in sync, or the peer cannot reach this array, the peer refuses writes.
//
// When the peer does not answer within the timeout, the pod carries on at
// the preferred array: the peer is out of sync and the blocks it misses
// are recorded in a dirty bitmap, persisted with every flush. When the peer
// is back, only the dirty blocks are sent, in order with new writes, and
// the pod is in sync again.
//
// With a mediator (an etcd cluster, array/mediator) the preferred array
// carries on without its peer only while it holds the pod's key there.
// When it can reach neither the peer nor the mediator it cannot know that
// it may, so the pod stops: client writes fail at once, before they touch
// this copy, and nothing new is recorded, until the peer or the mediator
// is back; then the pod resumes by itself.

const (
	defaultSyncTimeout = 5 * time.Second
	recPodDirty        = "pod-dirty"
	// resyncWindow is how many resync pieces (of 256 blocks) may wait for
	// the peer at once.
	resyncWindow = 32
	bs           = array.BlockSize
)

type pod struct {
	e       *Engine
	name    string
	timeout time.Duration
	l       *link
	// ctx lives as long as the pod; cancel ends it (stop, or the engine).
	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}
	kick   chan struct{}
	// stopping hands the context of the call that stops the pod to its
	// goroutine, which gives the pod's key up within it (cap 1).
	stopping chan context.Context

	mu      sync.Mutex
	members map[string]*podMember
	stream  *mirrorStream
	fwd     *forwardLink // the peer's clients' writes; nil until the peer is reached
	// leaving: stop has begun; the forward state names no copies.
	leaving bool
	// fwdRefused is the last reason the peer was refused a forward stream
	// for lacking a protocol feature, logged once; peerRefusal the last
	// reason the peer refused one with. Only step writes them (under mu),
	// and the replica's view shows them while the peer takes no writes.
	fwdRefused, peerRefusal string
	synced                  bool // the peer holds every acknowledged write
	lastErr                 error
	lastResync              int64
	mirrored                atomic.Int64 // client bytes the peer acknowledged
	verify                  bool         // after a crash: compare both sides before trusting the dirty bitmaps
	state                   string       // the last state reported (array.Pod*)
	// left maps former members to their copies at the peer that the peer
	// did not delete when they left (podleft.go). leftMu guards it and
	// its records, and is held across their commits but never across
	// the peer's answer.
	leftMu  sync.Mutex
	left    map[string]*leftCopy
	leftGen uint64

	// med and claim are the pod's mediator and its hold on the pod's key;
	// nil without a mediator. Set before the pod is shared.
	med   *mediator.Client
	claim *mediator.Claim
	// marked is the pod's mark at the mediator (this copy holds
	// acknowledged writes the peer lacks): set before the first such
	// write is acknowledged, cleared once the pod is in sync again.
	// markMu guards it and markCall, the one Mark or Unmark in flight,
	// and is never held across the mediator's answer: the writes that
	// need the mark wait for the call in flight instead, with no lock.
	markMu   sync.Mutex
	marked   markState
	markCall *markCall
	// preferPeer: at a partition the peer carries the pod on, so this
	// array gives the pod's key up when it loses an in-sync peer
	// (ReplicaSpec.PreferPeer; UpdateReplica changes it).
	preferPeer atomic.Bool
}

type markState int

const (
	markUnknown markState = iota // after a start, or an unmark that failed: cleared at the next sync
	markSet
	markClear
)

// markCall is a Mark (set) or Unmark at the mediator in flight; err is
// its outcome once done is closed.
type markCall struct {
	set  bool
	done chan struct{}
	err  error
}

// beginMarkLocked makes a call to the mediator the one in flight, or
// returns the one already in flight (ok false). Called with markMu held.
func (p *pod) beginMarkLocked(set bool) (c *markCall, ok bool) {
	if p.markCall != nil {
		return p.markCall, false
	}
	p.markCall = &markCall{set: set, done: make(chan struct{})}
	return p.markCall, true
}

// endMark records the outcome of the call in flight and lets its waiters
// go.
func (p *pod) endMark(c *markCall, state markState, err error) {
	p.markMu.Lock()
	p.marked, c.err, p.markCall = state, err, nil
	p.markMu.Unlock()
	close(c.done)
}

// ensureMarked is called before a write is acknowledged without the peer:
// with a mediator, the peer may take the pod over only while no mark of
// this array's stands, so the mark must be at the mediator first. An
// error means the write must not be acknowledged. Writes that need the
// mark at once share one Mark; one behind an Unmark in flight marks again
// after it, so the mediator sees them in order. A write whose ctx ends
// stops waiting, whichever write began the call; the call itself, which
// others may share, runs to its own timeout in a goroutine of its own,
// which the pod's goroutine waits for when it ends.
func (p *pod) ensureMarked(ctx context.Context) error {
	if p.claim == nil {
		return nil
	}
	for {
		p.markMu.Lock()
		// While an Unmark is in flight the mark may be gone already.
		if p.marked == markSet && p.markCall == nil {
			p.markMu.Unlock()
			return nil
		}
		before := p.marked
		c, mine := p.beginMarkLocked(true)
		p.markMu.Unlock()
		if mine {
			go p.mark(c, before)
		}
		select {
		case <-c.done: // bounded: the call has the pod's timeout
		case <-ctx.Done():
			return ctx.Err()
		}
		if !c.set {
			continue // an Unmark: mark again after it
		}
		if c.err != nil {
			return &array.PodStoppedError{Err: errdefs.Unavailable("pod %s: the peer is gone and this array could not record at the mediator that it carries on alone (%v); "+
				"the write is not acknowledged", p.name, c.err)}
		}
		return nil
	}
}

// mark makes the Mark call c at the mediator; before is the mark's state
// to keep should it fail. It ends with the pod.
func (p *pod) mark(c *markCall, before markState) {
	// The pod's context: a pod that stops has no use for the mark, and
	// its goroutine, which waits for this call, must not wait long.
	ctx, cancel := context.WithTimeout(p.ctx, p.timeout)
	defer cancel()
	if err := p.claim.Mark(ctx); err != nil {
		p.endMark(c, before, err)
		return
	}
	p.endMark(c, markSet, nil)
	p.e.log.Info("pod marked at the mediator: this array acknowledges writes its peer lacks", "pod", p.name)
}

// awaitMark waits for the Mark or Unmark in flight, if any: the pod's
// goroutine, as it ends, outlives the calls it may have left running.
func (p *pod) awaitMark() {
	p.markMu.Lock()
	c := p.markCall
	p.markMu.Unlock()
	if c != nil {
		<-c.done
	}
}

// unmark clears this array's mark once the pod is in sync; it is tried
// again at the next step when the mediator does not answer, or when a
// call is in flight.
func (p *pod) unmark(ctx context.Context) {
	if p.claim == nil {
		return
	}
	p.markMu.Lock()
	p.mu.Lock()
	synced := p.synced
	p.mu.Unlock()
	if p.marked == markClear || !synced {
		p.markMu.Unlock()
		return
	}
	c, mine := p.beginMarkLocked(false)
	p.markMu.Unlock()
	if !mine {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	if err := p.claim.Unmark(ctx); err != nil {
		// The mediator may have cleared it all the same: the next write
		// acknowledged without the peer marks again.
		p.endMark(c, markUnknown, err)
		p.e.log.Warn("clearing the pod's mark at the mediator; until it is cleared the peer cannot take the pod over", "pod", p.name, "err", err)
		return
	}
	p.endMark(c, markClear, nil)
}

// stoppedLocked says the pod may take no writes: it has no peer, and a
// mediator it does not hold (or cannot prove it still holds) the key of.
// Called with p.mu held; it never waits on the network.
func (p *pod) stoppedLocked() bool {
	return p.claim != nil && p.stream == nil && !p.claim.Held()
}

func (p *pod) stopped() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stoppedLocked()
}

func (p *pod) errStopped() error {
	msg := "no answer"
	st := p.claim.Status()
	if st.Yielding {
		return &array.PodStoppedError{Err: errdefs.Unavailable("pod %s is stopped here: it lost its peer, which carries the pod on at a partition (volrep_preferred_array), "+
			"and gave the pod's key up for it; it takes the pod back by itself once it reaches the peer, or carries on alone if the peer has not taken the key within %s",
			p.name, p.med.TTL())}
	}
	if st.Reachable && st.Holder != "" {
		return &array.PodStoppedError{Err: errdefs.Unavailable("pod %s is stopped here: the peer %q carries it alone (it holds the pod's key at the mediator) "+
			"and takes its writes; this array takes the pod back by itself once it reaches the peer", p.name, st.Holder)}
	}
	if st.Err != nil {
		msg = st.Err.Error()
	} else if st.Holder != "" {
		msg = fmt.Sprintf("the key is held by %q", st.Holder)
	}
	return &array.PodStoppedError{Err: errdefs.Unavailable("pod %s is stopped by its mediator: this array reaches neither its peer nor the pod's key at the mediator (%s), "+
		"so it cannot know it may carry on alone; writes resume by themselves when either is back", p.name, msg)}
}

// stateLocked is the pod's state at this side. Called with p.mu held.
func (p *pod) stateLocked() string {
	switch {
	case p.synced:
		return array.PodOnline
	case p.stream != nil:
		return array.PodResyncing
	case p.stoppedLocked():
		return array.PodStoppedByMediator
	}
	return array.PodDegraded
}

// noteState records a change of the pod's state: a log record and the
// engine's hook (a metric).
func (p *pod) noteState() {
	p.mu.Lock()
	st := p.stateLocked()
	was := p.state
	p.state = st
	fwd := p.fwd
	p.mu.Unlock()
	if fwd != nil {
		fwd.pushState(false)
	}
	if st == was {
		return
	}
	attrs := []any{"pod", p.name, "from", was, "to", st}
	if p.claim != nil {
		ms := p.claim.Status()
		attrs = append(attrs, "mediator_held", ms.Held, "mediator_reachable", ms.Reachable)
		if ms.Err != nil {
			attrs = append(attrs, "mediator_err", ms.Err)
		}
	}
	if st == array.PodStoppedByMediator {
		p.e.log.Error("pod stopped: neither its peer nor the mediator answers; its writes fail until either is back", attrs...)
	} else {
		p.e.log.Info("pod state changed", attrs...)
	}
	if p.e.opts.OnPodState != nil {
		p.e.opts.OnPodState(p.name, st)
	}
}

// Admit refuses a client's change while the mediator has stopped the pod,
// before it is applied here (store.Admitter).
func (m *podMember) Admit() error {
	// No wake: the pod's loop retries the peer on its own backoff, and
	// the claim wakes it when the mediator is back; refused writes must
	// not make it spin.
	if m.p.claim == nil || !m.p.stopped() {
		return nil
	}
	return m.p.errStopped()
}

// Path reports this side's ALUA state (store.PathReporter): the array
// that takes the pod's writes is optimized and preferred; stopped by the
// mediator it is unavailable, so a host's multipath fails over at once
// rather than retrying writes that cannot land.
func (m *podMember) Path() array.Path {
	p := m.p
	p.mu.Lock()
	stopped, peer := p.stoppedLocked(), p.peerWritesLocked()
	p.mu.Unlock()
	if stopped {
		return array.Path{State: array.PathUnavailable}
	}
	return array.Path{State: array.PathOptimized, Preferred: true, Alone: !peer}
}

// podMember is one volume of a pod; it is the store's Mirror for it.
type podMember struct {
	p             *pod
	local, remote string
	// ready: the peer's copy holds everything but the dirty blocks.
	ready        bool
	dirty        *bitmap.Bitmap
	dirtyChanged bool
	// resyncing are dirty blocks on their way to the peer.
	resyncing *bitmap.Bitmap
	// unflushed are blocks the peer acknowledged but has not yet made
	// durable: a peer that dies loses them with its page cache's bitmap,
	// so on failure they become dirty, and a flush to the peer clears them.
	unflushed *bitmap.Bitmap
	// changes counts changes to this copy's size or QoS limit, matched
	// those the peer's copy is known to have followed (matchPeers).
	changes, matched uint64
	// reservationsOn is the stream that carried this copy's persistent
	// reservations to the peer (shareAllReservations).
	reservationsOn *mirrorStream
}

// markDirty records blocks the peer misses. Called with p.mu held.
func (m *podMember) markDirty(off, length int64) {
	m.dirty.SetRange(uint64(off/bs), uint64((off+length+bs-1)/bs))
	m.dirtyChanged = true
	m.p.synced = false
}

// Write queues a client write for the peer (store.Mirror), in pieces of
// at most mirrorChunk bytes. The data is copied: the sender may still
// hold it after the client's write has returned (when the peer timed out).
func (m *podMember) Write(off int64, p []byte) store.Wait {
	return m.WriteTagged(off, p, store.MirrorTag{})
}

// WriteTagged is Write with tag on the last piece (store.Tagger): the
// peer answers the forwarded write it names once that piece, and so every
// piece before it, is applied there.
func (m *podMember) WriteTagged(off int64, p []byte, tag store.MirrorTag) store.Wait {
	var changes []change
	for at := int64(0); at < int64(len(p)); at += mirrorChunk {
		data := bytes.Clone(p[at:min(at+mirrorChunk, int64(len(p)))])
		o := off + at
		var t store.MirrorTag
		if at+mirrorChunk >= int64(len(p)) {
			t = tag
		}
		changes = append(changes, change{o, int64(len(data)), func(seq uint64) *arrayv1.MirrorRequest {
			return &arrayv1.MirrorRequest{Msg: &arrayv1.MirrorRequest_Write{Write: &arrayv1.MirrorWrite{Seq: seq, Volume: m.remote, Offset: o, Data: data,
				ForwardedSession: t.Session, ForwardedSeq: t.Seq}}}
		}})
	}
	return m.p.submit(m, changes)
}

// Zero queues a zeroed range for the peer (store.Mirror).
func (m *podMember) Zero(off, length int64) store.Wait {
	return m.p.submit(m, []change{{off, length, func(seq uint64) *arrayv1.MirrorRequest {
		return &arrayv1.MirrorRequest{Msg: &arrayv1.MirrorRequest_Zero{Zero: &arrayv1.MirrorZero{Seq: seq, Volume: m.remote, Offset: off, Length: length}}}
	}}})
}

// Resize grows the peer's copy before the volume grows here
// (store.Resizer), so writes to the new range can be mirrored at once.
// With the peer away the volume grows here alone while this array
// carries the pod: the next resync grows the peer's copy first
// (matchPeers). A stopped pod refuses, as it refuses writes: the peer may
// carry it, and its hosts would see one size on one path and another on
// the other.
func (m *podMember) Resize(ctx context.Context, size int64) error {
	p := m.p
	p.mu.Lock()
	if p.stoppedLocked() {
		p.mu.Unlock()
		return errdefs.Unavailable("volume %q cannot grow while its pod is stopped here (%v); extend it once the pod is back in sync "+
			"(volrep replication info shows the pod's state)", m.local, p.errStopped())
	}
	online := p.stream != nil && m.ready
	m.changes++
	p.synced = false
	p.mu.Unlock()
	defer p.wake()
	if !online {
		return nil
	}
	// The peer grows first, so the first write to the new range here can
	// be mirrored; matchPeers then confirms it.
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	if _, err := p.l.peer.ExtendVolume(ctx, m.remote, size); err != nil {
		p.e.log.Warn("growing the pod peer's copy; the resync grows it", "pod", p.name, "volume", m.local, "err", err)
	}
	return nil
}

// SetQoS gives the peer's copy the limit this copy just took
// (store.QoSKeeper): hosts reach a pod volume through both arrays, so a
// limit held here only would be one they bypass at the peer. A peer that
// cannot take it now gets it when the pod next steps.
func (m *podMember) SetQoS(ctx context.Context, q array.QoS) {
	p := m.p
	p.mu.Lock()
	m.changes++
	online := p.stream != nil && m.ready
	p.mu.Unlock()
	if online {
		ctx, cancel := context.WithTimeout(ctx, p.timeout)
		defer cancel()
		err := p.matchPeer(ctx, m)
		if err == nil {
			return
		}
		p.e.log.Warn("giving the pod peer's copy its QoS limit; retried until it takes it", "pod", p.name, "volume", m.local, "err", err)
	}
	p.wake()
}

// matchPeers gives the peer's copy of every member whose size or limit
// changed here what this copy has, before the resync writes to a range
// the peer's copy may lack.
func (p *pod) matchPeers(ctx context.Context) error {
	for _, m := range p.readyMembers() {
		p.mu.Lock()
		stale := m.changes != m.matched
		p.mu.Unlock()
		if !stale {
			continue
		}
		if err := p.matchPeer(ctx, m); err != nil {
			return err
		}
	}
	return nil
}

// matchPeer grows the peer's copy of m to this copy's size and gives it
// this copy's QoS limit.
func (p *pod) matchPeer(ctx context.Context, m *podMember) error {
	p.mu.Lock()
	gen := m.changes
	p.mu.Unlock()
	v, err := p.e.s.GetVolume(ctx, m.local)
	if errdefs.IsNotFound(err) {
		return nil // deleted here; refresh drops it
	}
	if err != nil {
		return err
	}
	rv, err := p.l.peer.ExtendVolume(ctx, m.remote, v.SizeBytes)
	if err != nil {
		return fmt.Errorf("growing %s on the peer to %d bytes: %w", m.remote, v.SizeBytes, err)
	}
	if rv.QoS != v.QoS {
		if _, err := p.l.peer.SetVolumeQoS(ctx, m.remote, v.QoS); err != nil {
			return fmt.Errorf("giving %s on the peer its QoS limit: %w", m.remote, err)
		}
	}
	p.mu.Lock()
	m.matched = max(m.matched, gen)
	p.mu.Unlock()
	return nil
}

// change is one message's worth of a client's change to a member.
type change struct {
	off, length int64
	build       func(seq uint64) *arrayv1.MirrorRequest
}

// Flush makes the mirrored writes durable on the peer, and the dirty
// bitmaps durable here (store.Mirror).
func (m *podMember) Flush(ctx context.Context) error { return m.p.flush(ctx) }

// Diverged marks a range the local write failed on, after the peer may
// have applied it: the resync copies this side's content over (store.Mirror).
func (m *podMember) Diverged(off, length int64) {
	m.p.mu.Lock()
	m.markDirty(off, length)
	m.p.mu.Unlock()
	m.p.wake()
}

// submit queues a client's change, or records it dirty when the peer is
// not there. The wait it returns is bounded by the pod's timeout however
// the peer behaves: after it the pod carries on without the peer.
func (p *pod) submit(m *podMember, changes []change) store.Wait {
	p.mu.Lock()
	st := p.stream
	if p.stoppedLocked() {
		// Admitted just before the pod stopped: the write fails, and the
		// store marks its blocks diverged (Diverged) once applied here.
		p.mu.Unlock()
		err := p.errStopped()
		return func(context.Context) error { return err }
	}
	if st == nil || !m.ready {
		for _, c := range changes {
			m.markDirty(c.off, c.length)
		}
		p.mu.Unlock()
		if p.claim == nil || st != nil {
			// With the stream up, the member is new: the peer's copy of
			// it takes no writes until its initial copy is done.
			return nil
		}
		return p.ensureMarked
	}
	p.mu.Unlock()
	dones := make([]<-chan error, len(changes))
	for i, c := range changes {
		done, err := st.enqueue(m, c.off, c.length, c.build)
		if err != nil {
			// The stream died; fail drops it from the pod and marks the
			// rest of the change dirty.
			for _, r := range changes[i:] {
				p.fail(st, err, m, r.off, r.length)
			}
			changes, dones = changes[:i], dones[:i]
			break
		}
		dones[i] = done
	}
	return func(ctx context.Context) error {
		deadline := time.NewTimer(p.timeout)
		defer deadline.Stop()
		var first error
		for i, c := range changes {
			acked, err := p.await(ctx, st, dones[i], deadline.C, m, c.off, c.length)
			if err != nil && ctx.Err() != nil {
				// The client stopped waiting: the store marks the whole
				// change diverged, and the pieces not yet acknowledged stay
				// queued to the peer, or turn dirty if it fails.
				return err
			}
			if err != nil && first == nil {
				first = err
			}
			if acked {
				p.mirrored.Add(c.length)
			}
		}
		return first
	}
}

// await waits for the peer's acknowledgement of one change until deadline
// fires, or until ctx ends (ctx's error, and nothing recorded). It returns
// an error only when the change failed on this side with the peer
// healthy: the write is then not acknowledged, and its blocks are dirty
// so the resync sends them. When the peer fails or times out, the pod
// drops it and carries on (nil). acked says the peer has the change.
func (p *pod) await(ctx context.Context, st *mirrorStream, done <-chan error, deadline <-chan time.Time, m *podMember, off, length int64) (acked bool, _ error) {
	var err error
	select {
	case err = <-done:
	case <-st.dead:
		err = st.deathErr()
	case <-deadline:
		err = errdefs.Unavailable("the peer did not acknowledge a write within %s", p.timeout)
	case <-ctx.Done():
		return false, ctx.Err()
	}
	var local *errLocalSend
	switch {
	case err == nil:
		p.mu.Lock()
		switch {
		case m == nil:
		case p.stream == st:
			m.unflushed.SetRange(uint64(off/bs), uint64((off+length+bs-1)/bs))
		default:
			// The stream failed after acknowledging: fail has already
			// turned the unflushed blocks dirty, and this one must be too.
			m.markDirty(off, length)
		}
		p.mu.Unlock()
		return true, nil
	case errors.As(err, &local):
		p.e.log.Error("a pod change could not be sent to its peer; the write fails and the resync sends its blocks",
			"pod", p.name, "offset", off, "length", length, "err", local.err)
		if m != nil {
			p.mu.Lock()
			m.markDirty(off, length)
			p.mu.Unlock()
			p.wake()
		}
		return false, fmt.Errorf("pod %s: %w", p.name, err)
	}
	p.fail(st, err, m, off, length)
	if p.stopped() {
		// The peer is gone and the mediator did not let this side carry
		// on: the write is not acknowledged (its blocks are dirty).
		return false, p.errStopped()
	}
	if m != nil {
		return false, p.ensureMarked(ctx)
	}
	return false, nil
}

// awaitFor waits, at most the pod's timeout, for one change the pod
// itself sent (a flush or a resync piece), and says whether the peer has it.
func (p *pod) awaitFor(ctx context.Context, st *mirrorStream, done <-chan error, m *podMember, off, length int64) bool {
	t := time.NewTimer(p.timeout)
	defer t.Stop()
	acked, _ := p.await(ctx, st, done, t.C, m, off, length)
	return acked && p.streamIs(st)
}

func (p *pod) streamIs(st *mirrorStream) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stream == st
}

// fail drops the stream: everything it had not acknowledged becomes dirty.
// A pod that prefers its peer and was in sync gives the pod's key up for
// the peer before it returns, so the write that saw the failure is not
// acknowledged here: the peer, which holds every acknowledged write,
// carries the pod on.
func (p *pod) fail(st *mirrorStream, err error, m *podMember, off, length int64) {
	p.mu.Lock()
	yielded := false
	if p.stream == st {
		// Under p.mu, so no writer finds the stream gone and the key
		// still held, which would let it mark and acknowledge its write.
		if p.synced && p.claim != nil && p.preferPeer.Load() && !errors.Is(err, context.Canceled) {
			yielded = p.claim.Yield(p.med.TTL())
		}
		p.stream, p.synced, p.lastErr = nil, false, err
		if errors.Is(err, context.Canceled) {
			// The engine is stopping: nothing is lost, and nothing to warn of.
			p.e.log.Info("pod stream closed", "pod", p.name, "link", p.l.rec.Name)
		} else {
			p.e.log.Warn("pod lost its peer; carrying on at the preferred array and recording the blocks it misses",
				"pod", p.name, "link", p.l.rec.Name, "err", err)
		}
	}
	for _, op := range st.takePending() {
		if op.m != nil {
			op.m.markDirty(op.off, op.length)
		}
	}
	if m != nil {
		m.markDirty(off, length)
	}
	for _, mm := range p.members {
		if !mm.unflushed.Empty() {
			mm.dirty.Or(mm.unflushed)
			mm.dirtyChanged, p.synced = true, false
			mm.unflushed = bitmap.New()
		}
	}
	p.mu.Unlock()
	if yielded {
		p.e.log.Warn("pod lost its peer, which it prefers at a partition; giving the pod's key up for it (volrep_preferred_array)",
			"pod", p.name, "link", p.l.rec.Name, "asks_again_in", p.med.TTL())
	}
	st.kill(err)
	p.noteState()
	p.wake()
}

// setPreferPeer changes which side carries the pod on at a partition,
// and tells the peer.
func (p *pod) setPreferPeer(v bool) {
	if p.preferPeer.Swap(v) == v {
		return
	}
	if p.claim != nil {
		p.claim.SetPreferred(!v)
	}
	p.mu.Lock()
	fwd := p.fwd
	p.mu.Unlock()
	if fwd != nil {
		fwd.pushState(false)
	}
}

func (p *pod) wake() {
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

func (p *pod) flush(ctx context.Context) error {
	if p.claim != nil && p.stopped() {
		if err := p.persistDirty(); err != nil {
			return err
		}
		return p.errStopped()
	}
	p.mu.Lock()
	st := p.stream
	var vols []string
	// The blocks this flush makes durable at the peer are taken out of
	// unflushed now, not cleared by number when it is acknowledged: a
	// block written again after the flush was queued is not covered by
	// it, and its new acknowledgement must leave it unflushed.
	covered := map[*podMember]*bitmap.Bitmap{}
	if st != nil {
		for _, m := range p.members {
			if m.ready {
				vols = append(vols, m.remote)
				covered[m], m.unflushed = m.unflushed, bitmap.New()
			}
		}
	}
	p.mu.Unlock()
	if len(vols) > 0 {
		done, err := st.enqueue(nil, 0, 0, func(seq uint64) *arrayv1.MirrorRequest {
			return &arrayv1.MirrorRequest{Msg: &arrayv1.MirrorRequest_Flush{Flush: &arrayv1.MirrorFlush{Seq: seq, Volumes: vols}}}
		})
		acked := err == nil && p.awaitFor(ctx, st, done, nil, 0, 0)
		if !acked {
			p.mu.Lock()
			for m, bm := range covered {
				if p.stream == st {
					m.unflushed.Or(bm)
					continue
				}
				// The stream failed: fail turned what it saw unflushed
				// dirty; these blocks were out of its sight.
				if !bm.Empty() {
					m.dirty.Or(bm)
					m.dirtyChanged, p.synced = true, false
				}
			}
			p.mu.Unlock()
			if err := ctx.Err(); err != nil {
				// The client gave up before the peer answered: its blocks
				// are still unflushed there, so the flush is not done.
				return err
			}
		}
	}
	return p.persistDirty()
}

// unflushedBlocks reports whether the peer holds writes it has not made
// durable yet.
func (p *pod) unflushedBlocks() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, m := range p.members {
		if !m.unflushed.Empty() {
			return true
		}
	}
	return false
}

// persistDirty stores the dirty bitmaps that changed, so a crash of this
// array does not forget what the peer misses. They commit together, so a
// client's flush during a partition costs one metadata commit however
// many members were written; a commit that fails leaves them to the next.
func (p *pod) persistDirty() error {
	saves := map[string][]byte{}
	var saved []*podMember
	p.mu.Lock()
	for _, m := range p.members {
		if !m.dirtyChanged {
			continue
		}
		data, err := m.dirty.Encode()
		if err != nil {
			p.mu.Unlock()
			return err
		}
		saves[p.name+"/"+m.local] = data
		saved = append(saved, m)
		m.dirtyChanged = false
	}
	p.mu.Unlock()
	if len(saves) == 0 {
		return nil
	}
	err := p.e.s.PutRecords(context.Background(), recPodDirty, saves)
	if err != nil {
		p.mu.Lock()
		for _, m := range saved {
			m.dirtyChanged = true
		}
		p.mu.Unlock()
	}
	return err
}

// loadDirty reads the persisted dirty bitmaps of the pod's members named
// in locals, in one read of the pod's records. A record that cannot be
// read means the blocks that member's peer copy misses are unknown: its
// bitmap is left out and the error returned, and the caller has the pod
// compare both copies in full before it trusts any bitmap.
func (p *pod) loadDirty(ctx context.Context, locals []string) (map[string]*bitmap.Bitmap, error) {
	prefix := p.name + "/"
	want := make(map[string]bool, len(locals))
	for _, l := range locals {
		want[l] = true
	}
	dirty := make(map[string]*bitmap.Bitmap, len(locals))
	var errs []error
	err := p.e.s.Records(ctx, recPodDirty, prefix, func(k string, data []byte) error {
		local := strings.TrimPrefix(k, prefix)
		if !want[local] {
			return nil
		}
		bm, err := bitmap.Decode(data)
		if err != nil {
			errs = append(errs, fmt.Errorf("volume %s: %w", local, err))
			return nil
		}
		dirty[local] = bm
		return nil
	})
	return dirty, errors.Join(append(errs, err)...)
}

// startPod installs the pod's mirrors on its member volumes. It runs when
// the engine loads, before the array serves clients, so no write escapes.
func (e *Engine) startPod(ctx context.Context, r *replica) (*pod, error) {
	spec := r.rec.Spec
	e.mu.Lock()
	l, err := e.linkLocked(spec.Link)
	e.mu.Unlock()
	if err != nil {
		return nil, err
	}
	timeout := spec.SyncTimeout
	if timeout <= 0 {
		timeout = defaultSyncTimeout
	}
	p := &pod{e: e, name: spec.Name, timeout: timeout, l: l, kick: make(chan struct{}, 1), done: make(chan struct{}), stopping: make(chan context.Context, 1),
		members: map[string]*podMember{}, left: map[string]*leftCopy{}, verify: !e.s.WasClean()}
	if err := p.loadLeft(ctx); err != nil {
		return nil, fmt.Errorf("pod %s: copies its former members left at the peer: %w", spec.Name, err)
	}
	eps := spec.PodMediator
	if len(eps) == 0 {
		eps = e.opts.PodMediator
	}
	if len(eps) > 0 {
		med, err := mediator.New(eps, mediator.Options{TTL: e.opts.MediatorTTL})
		if err != nil {
			return nil, fmt.Errorf("pod %s: %w", spec.Name, err)
		}
		// This array orders the pod's writes; it is also the side the
		// mediator prefers, unless the pod prefers its peer.
		p.med = med
		p.preferPeer.Store(spec.PreferPeer)
		// A pod begun before names were scoped has none recorded.
		p.claim = med.Claim(cmp.Or(r.rec.MediatorName, spec.Name), e.id, !spec.PreferPeer, func(mediator.Status) {
			p.noteState()
			p.wake()
		})
	}
	// Before refresh installs the mirrors: a write may begin a Mark,
	// which ends with the pod.
	pctx, cancel := context.WithCancel(e.runCtx)
	p.ctx, p.cancel = pctx, cancel
	if err := p.refresh(ctx); err != nil {
		cancel()
		p.closeMediator(ctx)
		return nil, err
	}
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		defer close(p.done)
		// The claim lives as long as the pod's goroutine, which ends with
		// the pod or with the engine. Giving the key up is best effort
		// (the lease ends it anyway): bounded by the lease when the
		// engine stops, and by the pod's timeout and the context of the
		// call that ends the pod, which must not wait on a mediator
		// that does not answer.
		defer func() {
			select {
			case sctx := <-p.stopping:
				rctx, cancel := context.WithTimeout(sctx, p.timeout)
				defer cancel()
				p.closeMediator(rctx)
			default:
				p.closeMediator(context.WithoutCancel(pctx))
			}
			// A Mark a write began ends with the mediator's client, or
			// within the pod's timeout.
			p.awaitMark()
		}()
		p.run(pctx)
	}()
	p.wake()
	return p, nil
}

// refresh matches the pod's members to the group's, installing and
// removing mirrors.
func (p *pod) refresh(ctx context.Context) error {
	e := p.e
	e.mu.Lock()
	r := e.replicas[p.name]
	var spec array.ReplicaSpec
	var synced []string
	if r != nil {
		spec, synced = r.rec.Spec, r.rec.SyncMembers
	}
	e.mu.Unlock()
	if r == nil {
		return nil
	}
	members, err := e.members(ctx, spec)
	if err != nil {
		return err
	}
	// The new members' dirty bitmaps are read before p.mu is taken, which
	// the write path needs.
	p.mu.Lock()
	var joining []string
	for local := range members {
		if _, ok := p.members[local]; !ok {
			joining = append(joining, local)
		}
	}
	p.mu.Unlock()
	var dirty map[string]*bitmap.Bitmap
	var derr error
	if len(joining) > 0 {
		if dirty, derr = p.loadDirty(ctx, joining); derr != nil {
			e.log.Error("the pod's record of the blocks its peer misses is unreadable; comparing both copies in full before resyncing",
				"pod", p.name, "err", derr)
		}
	}
	var add []*podMember
	var gone []*podMember
	p.mu.Lock()
	if derr != nil {
		p.verify = true
	}
	for local, remote := range members {
		if _, ok := p.members[local]; !ok {
			m := &podMember{p: p, local: local, remote: remote, ready: slices.Contains(synced, local), dirty: cmp.Or(dirty[local], bitmap.New()),
				unflushed: bitmap.New(), resyncing: bitmap.New(),
				// The volume may have grown, or its limit changed, while
				// the pod was not running (changes are not persisted):
				// check the peer's copy once.
				changes: 1}
			p.members[local] = m
			add = append(add, m)
			if !m.ready || !m.dirty.Empty() {
				p.synced = false
			}
		}
	}
	for local, m := range p.members {
		if _, ok := members[local]; !ok {
			delete(p.members, local)
			gone = append(gone, m)
		}
	}
	p.mu.Unlock()
	for _, m := range add {
		if err := p.rejoined(ctx, m.local); err != nil {
			return err
		}
	}
	// Mirrors are set outside p.mu: the write path takes p.mu under the
	// store's I/O lock, which SetMirror needs exclusively.
	for _, m := range add {
		if err := e.s.SetMirror(ctx, m.local, m); err != nil && !errdefs.IsNotFound(err) {
			return err
		}
	}
	for _, m := range gone {
		if err := e.s.SetMirror(ctx, m.local, nil); err != nil && !errdefs.IsNotFound(err) {
			return err
		}
		_ = e.s.DeleteRecord(ctx, recPodDirty, p.name+"/"+m.local)
		e.setSynced(ctx, p.name, m.local, false)
		// The peer's copy goes with the membership, unless another
		// replica (the protection group, after a retype) still uses it.
		if !e.coveredElsewhere(ctx, p.name, m.local) {
			p.dropFormer(ctx, m)
		}
	}
	if len(add)+len(gone) > 0 {
		p.wake()
	}
	return nil
}

// stop ends the pod, which was removed or made async: its goroutine,
// its streams and its mirrors. The peer is told first that its copies
// are the pod's no more.
func (p *pod) stop(ctx context.Context) {
	p.mu.Lock()
	p.leaving = true
	fwd := p.fwd
	p.mu.Unlock()
	if fwd != nil {
		fwd.leave(ctx, p.timeout)
	}
	select {
	case p.stopping <- ctx:
	default: // stopped already
	}
	p.cancel()
	// The goroutine's step ends within the pod's timeout once cancelled.
	<-p.done
	p.mu.Lock()
	st := p.stream
	p.stream = nil
	fwd = p.fwd
	p.fwd = nil
	members := make([]*podMember, 0, len(p.members))
	for _, m := range p.members {
		members = append(members, m)
	}
	p.mu.Unlock()
	if st != nil {
		st.close(errors.New("pod stopped"))
	}
	if fwd != nil {
		fwd.close()
	}
	_ = p.persistDirty()
	for _, m := range members {
		_ = p.e.s.SetMirror(ctx, m.local, nil)
	}
}

// closeMediator gives the pod's key up and ends the mediator's goroutines.
func (p *pod) closeMediator(ctx context.Context) {
	if p.claim != nil {
		p.claim.Close(ctx)
		_ = p.med.Close()
	}
}

// watchPeer pings an in-sync peer every half timeout while the pod
// prefers it at a partition: the peer asks the mediator for the pod as
// soon as this array falls silent, and this array, idle or not, must
// learn of the partition as soon and give the key up (fail yields it).
// A ping is a mirrored flush of no volume, which the peer answers at
// once.
func (p *pod) watchPeer(ctx context.Context) {
	t := time.NewTicker(max(p.timeout/2, 10*time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		p.mu.Lock()
		st := p.stream
		if !p.synced {
			st = nil
		}
		p.mu.Unlock()
		if st == nil || !p.preferPeer.Load() {
			continue
		}
		done, err := st.enqueue(nil, 0, 0, func(seq uint64) *arrayv1.MirrorRequest {
			return &arrayv1.MirrorRequest{Msg: &arrayv1.MirrorRequest_Flush{Flush: &arrayv1.MirrorFlush{Seq: seq}}}
		})
		if err == nil {
			p.awaitFor(context.Background(), st, done, nil, 0, 0)
		}
	}
}

// run brings the peer back in sync whenever it is not: reconnect,
// initial copies of new members, then the dirty blocks.
func (p *pod) run(ctx context.Context) {
	if p.claim != nil {
		var wg sync.WaitGroup
		defer wg.Wait()
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.watchPeer(ctx)
		}()
	}
	backoff := 100 * time.Millisecond
	idle := 5 * time.Second
	wait := time.Duration(0)
	for {
		select {
		case <-ctx.Done():
			return
		case <-p.kick:
		case <-time.After(wait):
		}
		err := p.step(ctx)
		if ctx.Err() != nil {
			return
		}
		p.noteState()
		p.mu.Lock()
		if err != nil {
			p.lastErr = err
		}
		synced := p.synced
		p.mu.Unlock()
		switch {
		case err != nil:
			wait = backoff
			backoff = min(2*backoff, 5*time.Second)
		case synced && p.unflushedBlocks():
			// Bound what a peer crash can cost: flush it every second.
			wait, backoff = time.Second, 100*time.Millisecond
		case synced:
			wait, backoff = idle, 100*time.Millisecond
		default:
			wait = 0
		}
	}
}

func (p *pod) step(ctx context.Context) error {
	p.mu.Lock()
	st := p.stream
	p.mu.Unlock()
	if st == nil {
		p.l.reconnect(ctx)
		var err error
		st, err = p.open(ctx)
		if errdefs.IsFailedPrecondition(err) && p.claim != nil {
			// The peer carried the pod while this array was cut off:
			// take its writes back first.
			var n int64
			if n, err = p.reclaim(ctx); err != nil {
				return fmt.Errorf("taking back the writes the peer took while it carried the pod: %w", err)
			}
			p.mu.Lock()
			p.lastResync = n
			p.mu.Unlock()
			st, err = p.open(ctx)
		}
		if err != nil {
			return err
		}
		p.mu.Lock()
		p.stream = st
		p.mu.Unlock()
		p.e.log.Info("pod peer connected; resyncing", "pod", p.name, "link", p.l.rec.Name)
		// Recorded now: the step may end in sync, and a state noted only
		// after it would skip the resync.
		p.noteState()
	}
	for _, m := range p.unready() {
		if err := p.initMember(ctx, m); err != nil {
			return fmt.Errorf("initial copy of %s: %w", m.local, err)
		}
	}
	p.mu.Lock()
	verify := p.verify
	p.verify = false
	p.mu.Unlock()
	if verify {
		if err := p.compare(ctx); err != nil {
			p.mu.Lock()
			p.verify = true
			p.mu.Unlock()
			return err
		}
	}
	if err := p.matchPeers(ctx); err != nil {
		return err
	}
	sent, err := p.resync(ctx, st)
	if err != nil {
		p.fail(st, err, nil, 0, 0)
		return err
	}
	if err := p.shareAllReservations(ctx, st); err != nil {
		return err
	}
	// In sync means durable there too.
	if err := p.flush(ctx); err != nil {
		return err
	}
	p.mu.Lock()
	fwd, leaving := p.fwd, p.leaving
	p.mu.Unlock()
	if fwd != nil && fwd.alive() {
		p.setRefusal(&p.peerRefusal, "")
	}
	if !leaving && (fwd == nil || !fwd.alive()) {
		if fwd != nil {
			if r := fwd.refusal(); r == nil {
				p.setRefusal(&p.peerRefusal, "")
			} else if r.Error() != p.peerRefusal {
				p.setRefusal(&p.peerRefusal, r.Error())
				p.e.log.Warn("the peer refused the pod's forward stream; its copies there take no client writes (this side's writes go on), and it is asked again at each step",
					"pod", p.name, "err", r)
			}
			fwd.close()
		}
		if fwd, err = p.openForward(ctx); err != nil {
			// The peer's clients cannot write; this side's writes go on.
			// An old peer is refused on every step: say so once.
			var old *peerTooOld
			switch {
			case !errors.As(err, &old):
				p.setRefusal(&p.fwdRefused, "")
				p.e.log.Warn("opening the pod's forward stream; the peer's copies take no client writes until it is open", "pod", p.name, "err", err)
			case err.Error() != p.fwdRefused:
				p.setRefusal(&p.fwdRefused, err.Error())
				p.e.log.Error("the pod's peer array is too old to take its clients' writes safely; it serves reads only, and writes go to this array, until it is upgraded",
					"pod", p.name, "err", err)
			}
		} else {
			p.setRefusal(&p.fwdRefused, "")
		}
		p.mu.Lock()
		p.fwd = fwd
		p.mu.Unlock()
	}
	p.mu.Lock()
	// Read after the forward stream is opened: the peer may have failed
	// meanwhile.
	clean := p.stream == st
	for _, m := range p.members {
		clean = clean && m.ready && m.dirty.Empty()
	}
	if sent > 0 {
		p.lastResync = sent
	}
	was := p.synced
	p.synced = clean
	if clean {
		p.lastErr = nil
	}
	p.mu.Unlock()
	if clean && !was {
		p.e.log.Info("pod in sync", "pod", p.name, "resync_bytes", sent)
	}
	if clean {
		p.unmark(ctx)
	}
	if fwd != nil {
		fwd.pushState(false)
	}
	if clean {
		// Housekeeping, once in sync: a resync's steps follow each other
		// at once, and should not each ask the peer again.
		p.dropLeft(ctx)
	}
	return p.persistDirty()
}

func (p *pod) unready() []*podMember {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []*podMember
	for _, m := range p.members {
		if !m.ready {
			out = append(out, m)
		}
	}
	return out
}

// initMember gets a new member's copy onto the peer: a snapshot shipped as
// a delta from the newest snapshot both sides hold (in full when none),
// while writes made meanwhile are recorded dirty for the resync.
func (p *pod) initMember(ctx context.Context, m *podMember) error {
	e := p.e
	e.mu.Lock()
	r := e.replicas[p.name]
	if r == nil {
		e.mu.Unlock()
		return errdefs.NotFound("replica %q is gone", p.name)
	}
	r.rec.Seq++
	name := fmt.Sprintf("%s.sync.%d", p.name, r.rec.Seq)
	spec := r.rec.Spec
	e.mu.Unlock()
	snap, err := e.s.CreateSnapshot(ctx, m.local, name, map[string]string{LabelReplica: p.name})
	if errdefs.IsNotFound(err) {
		return nil // deleted meanwhile; refresh drops it
	}
	if err != nil {
		return err
	}
	base, err := e.commonBase(ctx, p.l, m.local, m.remote, snap)
	if err != nil {
		return err
	}
	job, err := e.Job(ctx, m.local, base, snap, transfer.Target{Volume: m.remote, Pool: spec.RemotePool,
		TransferID: transferID(p.name, m.local, snap.GUID),
		Labels:     map[string]string{LabelReplica: p.name, LabelSourceVolume: m.local, LabelSourceArray: e.id}})
	if err != nil {
		return err
	}
	res, err := transfer.Send(ctx, p.l.xfer, job, transfer.Options{Compress: p.l.rec.Compression, Limiter: p.l.limiter})
	if err != nil {
		return err
	}
	p.mu.Lock()
	m.ready = true
	p.mu.Unlock()
	e.setSynced(ctx, p.name, m.local, true)
	// Keep only this snapshot of the pod's: it is the base a later change
	// to async, or a re-initialisation, sends its delta from.
	if snaps, err := e.s.ListSnapshots(ctx, m.local); err == nil {
		for _, s := range snaps {
			if s.Labels[LabelReplica] == p.name && s.Name != name {
				_ = e.s.DeleteSnapshot(ctx, m.local, s.Name)
			}
		}
	}
	e.log.Info("pod member copied to the peer", "pod", p.name, "volume", m.local, "bytes", res.WireBytes, "incremental", base != nil)
	return nil
}

// resync sends every dirty block, read under the blocks' locks so it
// queues in order with writes to the same blocks, and returns the bytes sent.
func (p *pod) resync(ctx context.Context, st *mirrorStream) (int64, error) {
	var sent int64
	for _, m := range p.readyMembers() {
		p.mu.Lock()
		d := m.dirty
		m.dirty = bitmap.New()
		m.resyncing = d
		m.dirtyChanged = true
		p.mu.Unlock()
		if d.Empty() {
			continue
		}
		type waiter struct {
			done    <-chan error
			off, ln int64
		}
		var waits []waiter
		var err error
		// settle waits for the oldest pieces until at most keep are in
		// flight, which bounds the memory a large resync queues.
		settle := func(keep int) {
			for len(waits) > keep {
				w := waits[0]
				waits = waits[1:]
				if err == nil && !p.awaitFor(context.Background(), st, w.done, m, w.off, w.ln) {
					err = errdefs.Unavailable("the peer dropped out during the resync")
				}
				if err == nil {
					sent += w.ln
				}
			}
		}
		d.Runs(0, ^uint64(0), func(lo, hi uint64) bool {
			for b := lo; b < hi && err == nil; b += 256 {
				settle(resyncWindow - 1)
				n := min(hi-b, 256)
				off, buf := int64(b)*bs, make([]byte, int64(n)*bs)
				err = p.e.s.ReadLocked(ctx, m.local, off, buf, func(data []byte) {
					p.mu.Lock()
					defer p.mu.Unlock()
					done, qerr := st.enqueue(m, off, int64(len(data)), func(seq uint64) *arrayv1.MirrorRequest {
						return &arrayv1.MirrorRequest{Msg: &arrayv1.MirrorRequest_Write{Write: &arrayv1.MirrorWrite{Seq: seq, Volume: m.remote, Offset: off, Data: data}}}
					})
					if qerr != nil {
						err = qerr
						return
					}
					waits = append(waits, waiter{done, off, int64(len(data))})
				})
			}
			return err == nil
		})
		settle(0)
		p.mu.Lock()
		m.resyncing = bitmap.New()
		if err != nil && !errdefs.IsNotFound(err) {
			m.dirty.Or(d)
		}
		p.mu.Unlock()
		if errdefs.IsNotFound(err) {
			continue // the volume went away
		}
		if err != nil {
			return sent, err
		}
	}
	return sent, nil
}

func (p *pod) readyMembers() []*podMember {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []*podMember
	for _, m := range p.members {
		if m.ready {
			out = append(out, m)
		}
	}
	return out
}

// compare marks dirty every block whose checksum differs between the two
// copies. It runs once after this array crashed, when writes may have
// reached its disk without reaching the peer or the dirty bitmap.
func (p *pod) compare(ctx context.Context) error {
	for _, m := range p.readyMembers() {
		v, err := p.e.s.GetVolume(ctx, m.local)
		if err != nil {
			continue
		}
		// Checksums work on snapshots: compare a fresh one of each side's
		// current content, taken while the pod mirrors (or records) writes.
		tmp := p.name + ".verify"
		if _, err := p.e.s.CreateSnapshot(ctx, m.local, tmp, map[string]string{LabelReplica: p.name}); err != nil {
			return err
		}
		defer p.e.s.DeleteSnapshot(context.WithoutCancel(ctx), m.local, tmp)
		remote, err := p.l.peer.GetVolume(ctx, m.remote)
		if err != nil {
			return err
		}
		_ = remote
		n := 0
		for off := int64(0); off < v.SizeBytes; off += 64 << 20 {
			ln := min(int64(64<<20), v.SizeBytes-off)
			local, err := p.e.s.Checksums(ctx, m.local, tmp, off, ln)
			if err != nil {
				return err
			}
			peer, err := p.peerChecksums(ctx, m.remote, off, ln)
			if err != nil {
				return err
			}
			p.mu.Lock()
			for i := range local {
				if i >= len(peer) || local[i] != peer[i] {
					m.markDirty(off+int64(i)*bs, bs)
					n++
				}
			}
			p.mu.Unlock()
		}
		p.e.log.Info("compared pod copies after an unclean restart", "pod", p.name, "volume", m.local, "differing_blocks", n)
	}
	return nil
}

// peerChecksums checksums the peer's current copy through a throwaway
// snapshot there (the peer's copy changes only through this pod).
func (p *pod) peerChecksums(ctx context.Context, vol string, off, ln int64) ([]uint32, error) {
	tmp := p.name + ".verify"
	if _, err := p.l.peer.CreateSnapshot(ctx, vol, tmp, nil); err != nil && !errdefs.IsAlreadyExists(err) {
		return nil, err
	}
	defer p.l.peer.DeleteSnapshot(context.WithoutCancel(ctx), vol, tmp)
	return p.l.peer.Checksums(ctx, vol, tmp, off, ln)
}

func (p *pod) open(ctx context.Context) (*mirrorStream, error) {
	sctx, cancel := context.WithCancel(ctx)
	cs, err := openPodStream(sctx, p.l, p.e.log, arrayv1.TransferService_Mirror_FullMethodName, "", p.timeout,
		func(ctx context.Context) (arrayv1.TransferService_MirrorClient, error) { return p.l.xfer.Mirror(ctx) })
	if err != nil {
		cancel()
		return nil, err
	}
	if err := cs.Send(&arrayv1.MirrorRequest{Msg: &arrayv1.MirrorRequest_Open{Open: &arrayv1.MirrorOpen{Pod: p.name, SourceArrayId: p.e.id}}}); err != nil {
		cancel()
		return nil, err
	}
	st := newMirrorStream(cs, cancel)
	// Prove the peer answers before client writes wait on it: a stream
	// over a connection that a partition silently cut would take them and
	// stall each for the timeout.
	hello, err := st.enqueue(nil, 0, 0, func(seq uint64) *arrayv1.MirrorRequest {
		return &arrayv1.MirrorRequest{Msg: &arrayv1.MirrorRequest_Flush{Flush: &arrayv1.MirrorFlush{Seq: seq}}}
	})
	if err == nil {
		err = st.wait(ctx, hello, p.timeout)
	}
	if err != nil {
		st.close(err)
		return nil, err
	}
	// From now on a stream that dies drops out of the pod, even between writes.
	st.setOnDead(func(err error) { p.fail(st, err, nil, 0, 0) })
	return st, nil
}

// view fills in a sync replica's state from its pod.
func (p *pod) view(v *array.Replica) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var dirty int64
	ready := true
	for _, m := range p.members {
		dirty += int64(m.dirty.Count()+m.resyncing.Count()) * bs
		ready = ready && m.ready
	}
	v.DirtyBytes, v.LastResyncBytes, v.MirroredBytes = dirty, p.lastResync, p.mirrored.Load()
	v.PodState = p.stateLocked()
	v.Writes, v.PeerWrites = array.WritesOnline, array.WritesStopped
	if v.PodState == array.PodStoppedByMediator {
		v.Writes = array.WritesStopped
	}
	if p.peerWritesLocked() {
		v.PeerWrites = array.WritesOnline
	}
	if p.claim != nil {
		v.MediatorName = p.claim.Pod()
		ms := p.claim.Status()
		v.MediatorHeld, v.MediatorState = ms.Held, array.MediatorHealthy
		switch {
		case !ms.Reachable:
			v.MediatorState = array.MediatorUnreachable
			if ms.Err != nil {
				v.MediatorMessage = ms.Err.Error()
			}
		case ms.Holder != "" && p.stream == nil:
			// Cut off from the peer, with the peer holding the key: the
			// peer carries the pod, and takes its writes.
			v.PeerWrites = array.WritesOnline
			v.MediatorMessage = fmt.Sprintf("the pod's key is held by %q, which carries the pod alone; this array takes it back when it reaches it", ms.Holder)
		case ms.Holder != "":
			v.MediatorMessage = fmt.Sprintf("the pod's key is held by %q", ms.Holder)
		case ms.Yielding:
			v.MediatorMessage = "this array gave the pod's key up for its peer, which carries the pod on at a partition (volrep_preferred_array)"
		}
	}
	switch {
	case p.synced:
		v.PeerState, v.SyncState = array.PeerOnline, array.SyncInSync
	case p.stream != nil:
		v.PeerState, v.SyncState = array.PeerResyncing, array.SyncInProgress
	default:
		v.PeerState, v.SyncState = array.PeerOffline, array.SyncOutOfSync
	}
	switch {
	case v.State == array.StateSuspended:
	case !ready && p.stream != nil:
		v.State = array.StateInitializing
	case v.PodState == array.PodStoppedByMediator:
		v.State, v.Message = array.StateDegraded, p.errStopped().Error()
	case !p.synced && p.lastErr != nil:
		v.State, v.Message = array.StateDegraded, p.lastErr.Error()
	case !p.synced:
		v.State = array.StateDegraded
		v.Message = "resyncing the peer"
	default:
		v.State, v.Message = array.StateActive, ""
		if r := cmp.Or(p.peerRefusal, p.fwdRefused); r != "" && !p.peerWritesLocked() {
			v.Message = "the peer's copies take no client writes: " + r
		}
	}
}

// setRefusal sets one of the refusals step keeps (fwdRefused,
// peerRefusal), under mu for the replica's view.
func (p *pod) setRefusal(field *string, reason string) {
	p.mu.Lock()
	*field = reason
	p.mu.Unlock()
}

var (
	_ store.Mirror = (*podMember)(nil)
	_ store.Tagger = (*podMember)(nil)
)
