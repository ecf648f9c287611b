package transfer

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/volrep/volrep/array"
	"github.com/volrep/volrep/array/mediator"
	"github.com/volrep/volrep/array/store"
	"github.com/volrep/volrep/errdefs"
	arrayv1 "github.com/volrep/volrep/proto/volrep/array/v1"
)

// forwardChunk bounds the data of one forwarded message, as mirrorChunk
// does on the Mirror stream.
const forwardChunk = 4 << 20

// forwards are the pods whose copies here take client writes through
// their preferred array; they outlive one Forward stream, so a copy whose
// preferred array went away fails its writes (UNAVAILABLE) instead of
// turning read-only.
type forwards struct {
	mu   sync.Mutex
	pods map[string]*podForward
}

func (f *forwards) pod(name string) *podForward {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.pods == nil {
		f.pods = map[string]*podForward{}
	}
	p := f.pods[name]
	if p == nil {
		p = &podForward{name: name, volumes: map[string]bool{}}
		f.pods[name] = p
	}
	return p
}

// lookup returns the pod name names, or nil when no stream from its
// preferred array has reached this array since it started.
func (f *forwards) lookup(name string) *podForward {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.pods[name]
}

// podForward is one pod at its non-preferred array.
type podForward struct {
	name string

	// recMu keeps one write of the pod's copies record at a time.
	recMu sync.Mutex
	// opening keeps one Forward stream's admission at a time (admit).
	opening sync.Mutex

	mu      sync.Mutex
	sess    *forwardSession // nil: no stream from the preferred array
	inSync  bool
	volumes map[string]bool
	// source is the preferred array (its ID) whose pod this is while it
	// names copies here or has a stream open; "" when unknown (a record
	// from an older volrep). Pod names are unique per array: another
	// array's pod of the same name is refused, not let in to take the
	// copies over, stream by stream.
	source string
	// mediated: the preferred array holds the pod's key at a mediator
	// (its last open said so); preferred: this array carries the pod on
	// when the two lose each other (its last state said so); unmarking:
	// this array handed the pod back while the mediator did not answer,
	// and its mark there is still to be cleared (unmarkLater), so it does
	// not ask for the pod meanwhile.
	mediated, preferred, unmarking bool
	// medName is the pod's name at the mediator, as the preferred array's
	// last open named it; empty from an older one, which asks under the
	// pod's name alone (mediatorNameLocked).
	medName string
	// claim asks the mediator for the pod, or holds it while carry is
	// set (carry.go); mirrors are the open mirror streams, stopped when
	// carrying starts or a later stream is admitted (mirror.go).
	claim   *mediator.Claim
	carry   *carrying
	mirrors map[*mirrorAdmission]bool
	// applyMu is held around each change a mirror stream applies, so
	// that stopping a stream is a barrier: once stopMirrors returns, none
	// of its changes is being applied or will be.
	applyMu sync.Mutex

	// acked counts forwarded changes answered; flushed is acked as of the
	// last forwarded flush, so a flush with nothing new needs no network.
	acked, flushed atomic.Uint64
}

// mediatorNameLocked is the pod's name at the mediator. Called with p.mu
// held.
func (p *podForward) mediatorNameLocked() string { return cmp.Or(p.medName, p.name) }

func (p *podForward) current() (*forwardSession, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case p.sess == nil:
		return nil, &array.PodStoppedError{Err: errdefs.Unavailable("pod %s: this array cannot reach the pod's preferred array, which sequences every write; "+
			"writes fail here until the link is back (reads are served here)", p.name)}
	case !p.inSync:
		return nil, &array.PodStoppedError{Err: errdefs.Unavailable("pod %s is not in sync: writes go to the preferred array until it is back in sync (reads are served here)", p.name)}
	}
	return p.sess, nil
}

// send forwards changes and returns the wait for their results.
// compare says they carry a COMPARE AND WRITE's bytes, which only a
// stream whose preferred array compares may carry.
func (p *podForward) send(msgs []func(seq uint64) *arrayv1.ForwardResponse, write, compare bool) store.Wait {
	sess, err := p.current()
	if err == nil && compare && !sess.compares {
		err = errdefs.FailedPrecondition("pod %s: its preferred array runs a volrep too old to take COMPARE AND WRITE forwarded from this array; send it there, or upgrade that array", p.name)
	}
	if err != nil {
		return func(context.Context) error { return err }
	}
	dones := make([]<-chan error, 0, len(msgs))
	for _, b := range msgs {
		done, err := sess.enqueue(b)
		if err != nil {
			return func(context.Context) error { return err }
		}
		dones = append(dones, done)
	}
	return func(ctx context.Context) error {
		t := time.NewTimer(sess.timeout)
		defer t.Stop()
		for _, done := range dones {
			if err := sess.wait(ctx, done, t.C, p.name); err != nil {
				return err
			}
		}
		if write {
			p.acked.Add(1)
		}
		return nil
	}
}

// wait waits for one change's result until deadline fires, or until ctx
// ends: the change may then still be done at the preferred array, but it
// is not acknowledged.
func (s *forwardSession) wait(ctx context.Context, done <-chan error, deadline <-chan time.Time, pod string) error {
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	case <-s.dead:
		return s.deathErr(pod)
	case <-deadline:
		// Later changes fail at once, until the preferred array opens a
		// new stream.
		s.kill(errdefs.Unavailable("no answer within %s", s.timeout))
		return s.deathErr(pod)
	}
}

func (p *podForward) flush(ctx context.Context, volume string) error {
	n := p.acked.Load()
	if p.flushed.Load() >= n {
		return nil
	}
	err := p.send([]func(uint64) *arrayv1.ForwardResponse{func(seq uint64) *arrayv1.ForwardResponse {
		return &arrayv1.ForwardResponse{Msg: &arrayv1.ForwardResponse_Flush{Flush: &arrayv1.MirrorFlush{Seq: seq, Volumes: []string{volume}}}}
	}}, false, false)(ctx)
	if err != nil {
		return err
	}
	for {
		f := p.flushed.Load()
		if f >= n || p.flushed.CompareAndSwap(f, n) {
			return nil
		}
	}
}

// volumeForward is one copy's store.Forwarder.
type volumeForward struct {
	p      *podForward
	volume string
}

func (v *volumeForward) Write(off int64, p []byte) store.Wait {
	var msgs []func(uint64) *arrayv1.ForwardResponse
	for at := int64(0); at < int64(len(p)); at += forwardChunk {
		data := bytes.Clone(p[at:min(at+forwardChunk, int64(len(p)))])
		o := off + at
		msgs = append(msgs, func(seq uint64) *arrayv1.ForwardResponse {
			return &arrayv1.ForwardResponse{Msg: &arrayv1.ForwardResponse_Write{Write: &arrayv1.MirrorWrite{Seq: seq, Volume: v.volume, Offset: o, Data: data}}}
		})
	}
	return v.p.send(msgs, true, false)
}

// CompareAndWrite forwards a COMPARE AND WRITE (store.CompareForwarder):
// the preferred array compares and writes under the locks that order
// every write to the pod. SCSI bounds one to a few hundred KiB, well
// within one message.
func (v *volumeForward) CompareAndWrite(off int64, cmp, p []byte) store.Wait {
	if len(p) > forwardChunk {
		return func(context.Context) error {
			return errdefs.InvalidArgument("data", "a COMPARE AND WRITE of %d bytes is over the %d a forwarded one may carry", len(p), forwardChunk)
		}
	}
	cmp, data := bytes.Clone(cmp), bytes.Clone(p)
	return v.p.send([]func(uint64) *arrayv1.ForwardResponse{func(seq uint64) *arrayv1.ForwardResponse {
		return &arrayv1.ForwardResponse{Msg: &arrayv1.ForwardResponse_Write{Write: &arrayv1.MirrorWrite{Seq: seq, Volume: v.volume, Offset: off, Data: data, Compare: cmp}}}
	}}, true, true)
}

func (v *volumeForward) Zero(off, length int64) store.Wait {
	return v.p.send([]func(uint64) *arrayv1.ForwardResponse{func(seq uint64) *arrayv1.ForwardResponse {
		return &arrayv1.ForwardResponse{Msg: &arrayv1.ForwardResponse_Zero{Zero: &arrayv1.MirrorZero{Seq: seq, Volume: v.volume, Offset: off, Length: length}}}
	}}, true, false)
}

func (v *volumeForward) Flush(ctx context.Context) error { return v.p.flush(ctx, v.volume) }

// ShareReset tells the preferred array of a LOGICAL UNIT RESET of this
// copy (store.ResetSharer), and waits (up to the pod's sync timeout) until
// it has recorded it, so its hosts' paths see the unit attention by the
// time the reset is answered here, or until ctx ends. With no stream in
// sync, or one from an older preferred array, nobody there is told.
func (v *volumeForward) ShareReset(ctx context.Context) {
	v.p.mu.Lock()
	sess := v.p.sess
	v.p.mu.Unlock()
	if sess == nil || !sess.resets {
		return
	}
	_ = v.p.send([]func(uint64) *arrayv1.ForwardResponse{func(seq uint64) *arrayv1.ForwardResponse {
		return &arrayv1.ForwardResponse{Msg: &arrayv1.ForwardResponse_LuReset{LuReset: &arrayv1.ForwardReset{Seq: seq, Volume: v.volume}}}
	}}, false, false)(ctx)
}

// SharesReservations: the preferred array decides this copy's PERSISTENT
// RESERVE OUT commands (store.ReservationForwarder). Without a stream the
// copy serves no commands (its path is unavailable).
func (v *volumeForward) SharesReservations() bool {
	v.p.mu.Lock()
	defer v.p.mu.Unlock()
	return v.p.sess != nil && v.p.sess.reservations
}

// ForwardReservation runs a PERSISTENT RESERVE OUT taken here at the
// preferred array, which decides the pod's reservations and gives this
// array the new state before it answers, and returns its answer for the
// host.
func (v *volumeForward) ForwardReservation(ctx context.Context, req []byte) ([]byte, error) {
	sess, err := v.p.current()
	if err != nil {
		return nil, err
	}
	if !sess.reservations {
		return nil, store.ErrReservationsUnshared
	}
	req = bytes.Clone(req)
	f, err := sess.enqueueForwarded(func(seq uint64) *arrayv1.ForwardResponse {
		return &arrayv1.ForwardResponse{Msg: &arrayv1.ForwardResponse_Reservation{Reservation: &arrayv1.ForwardReservation{Seq: seq, Volume: v.volume, Request: req}}}
	})
	if err != nil {
		return nil, err
	}
	t := time.NewTimer(sess.timeout)
	defer t.Stop()
	// Not the request's context: the preferred array decides the change
	// and gives it to this copy before it answers, and an answer not
	// waited for could leave this copy without a state the pod holds.
	if err := sess.wait(context.Background(), f.done, t.C, v.p.name); err != nil {
		return nil, err
	}
	return f.reply, nil
}

// Path reports this copy's ALUA state (store.PathReporter): while the
// pod is in sync and the preferred array's stream is up, writes here work
// but cost a round trip to it, so the path is active/non-optimized; else
// writes here fail, and the path is unavailable so a host's multipath
// moves to the preferred array at once instead of retrying here.
func (v *volumeForward) Path() array.Path {
	v.p.mu.Lock()
	up := v.p.sess != nil && v.p.inSync
	v.p.mu.Unlock()
	if !up {
		return array.Path{State: array.PathUnavailable}
	}
	return array.Path{State: array.PathNonOptimized}
}

var (
	_ store.Forwarder            = (*volumeForward)(nil)
	_ store.CompareForwarder     = (*volumeForward)(nil)
	_ store.PathReporter         = (*volumeForward)(nil)
	_ store.ResetSharer          = (*volumeForward)(nil)
	_ store.ReservationForwarder = (*volumeForward)(nil)
)

// forwardSession is one Forward stream: changes are queued by the
// writers and sent by one goroutine; results are matched by sequence.
type forwardSession struct {
	stream  arrayv1.TransferService_ForwardServer
	timeout time.Duration
	id      uint64 // ForwardOpen.session: the tag on mirrored copies
	// compares: the preferred array compares a forwarded write's compare
	// bytes (ForwardOpen.compare_and_write); resets: it takes a LOGICAL
	// UNIT RESET taken here (ForwardOpen.lu_reset); reservations: it
	// decides the PERSISTENT RESERVE OUT commands taken here
	// (ForwardOpen.reservations).
	compares, resets, reservations bool

	mu      sync.Mutex
	seq     uint64
	queue   []*arrayv1.ForwardResponse
	pending map[uint64]*forwarded
	work    chan struct{}

	dead     chan struct{}
	deadOnce sync.Once
	err      error
}

func (s *forwardSession) enqueue(build func(uint64) *arrayv1.ForwardResponse) (<-chan error, error) {
	f, err := s.enqueueForwarded(build)
	if err != nil {
		return nil, err
	}
	return f.done, nil
}

// enqueueForwarded queues a change and returns it, for the answer its
// result carries.
func (s *forwardSession) enqueueForwarded(build func(uint64) *arrayv1.ForwardResponse) (*forwarded, error) {
	s.mu.Lock()
	select {
	case <-s.dead:
		s.mu.Unlock()
		return nil, errdefs.Unavailable("forward stream closed")
	default:
	}
	s.seq++
	f := &forwarded{done: make(chan error, 1)}
	s.pending[s.seq] = f
	s.queue = append(s.queue, build(s.seq))
	s.mu.Unlock()
	select {
	case s.work <- struct{}{}:
	default:
	}
	return f, nil
}

func (s *forwardSession) sendLoop() {
	for {
		select {
		case <-s.dead:
			return
		case <-s.work:
		}
		s.mu.Lock()
		batch := s.queue
		s.queue = nil
		s.mu.Unlock()
		for _, m := range batch {
			if err := s.stream.Send(m); err != nil {
				s.kill(err)
				return
			}
		}
	}
}

// forwarded is a change sent to the preferred array and not answered yet.
type forwarded struct {
	done chan error
	// applied: the preferred array applied the write and mirrors it
	// (mirror_pending); mirrored: its mirrored copy is applied here. The
	// write is done when both are.
	applied, mirrored bool
	// reply is a PERSISTENT RESERVE OUT's answer, set before done.
	reply []byte
}

func (s *forwardSession) result(r *arrayv1.ForwardResult) {
	s.mu.Lock()
	f, ok := s.pending[r.GetSeq()]
	if !ok {
		s.mu.Unlock()
		return
	}
	if r.GetError() == "" && r.GetMirrorPending() {
		f.applied = true
		if !f.mirrored {
			s.mu.Unlock()
			return
		}
	}
	delete(s.pending, r.GetSeq())
	f.reply = r.GetReservationReply()
	s.mu.Unlock()
	if r.GetError() == "" {
		f.done <- nil
		return
	}
	if r.GetMiscompare() {
		f.done <- &store.MiscompareError{Offset: int(r.GetMiscompareOffset())}
		return
	}
	err := errdefs.New(errdefs.ParseKind(r.GetKind()), "the pod's preferred array: %s", r.GetError())
	if errdefs.IsUnavailable(err) {
		err = &array.PodStoppedError{Err: err}
	}
	f.done <- err
}

// mirrored notes that the mirrored copy of forwarded write seq is applied
// here (and every change mirrored before it, the stream being in order).
func (s *forwardSession) mirrored(seq uint64) {
	s.mu.Lock()
	f, ok := s.pending[seq]
	if !ok {
		s.mu.Unlock()
		return
	}
	f.mirrored = true
	if !f.applied {
		s.mu.Unlock()
		return
	}
	delete(s.pending, seq)
	s.mu.Unlock()
	f.done <- nil
}

// mirrored passes a tagged mirrored copy's arrival to the stream it names.
func (p *podForward) mirrored(session, seq uint64) {
	p.mu.Lock()
	sess := p.sess
	p.mu.Unlock()
	if sess != nil && sess.id == session {
		sess.mirrored(seq)
	}
}

func (s *forwardSession) kill(err error) {
	s.deadOnce.Do(func() {
		s.mu.Lock()
		s.err = err
		s.mu.Unlock()
		close(s.dead)
	})
}

func (s *forwardSession) deathErr(pod string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return &array.PodStoppedError{Err: errdefs.Unavailable("pod %s: the preferred array, which sequences every write, did not answer (%v); "+
		"the write may or may not have been applied at both copies, and writes fail here until the link is back", pod, s.err)}
}

// Forward serves one pod's Forward stream from its preferred array:
// while it is open and the pod is in sync, the pod's copies here take
// client writes, each sent to the preferred array and answered only once
// it is on both copies. The stream also ends when the preferred array
// sends nothing (results or its state, a heartbeat) for the timeout.
func (t *Service) Forward(stream arrayv1.TransferService_ForwardServer) error {
	open, err := recvOpen(stream.Recv, (*arrayv1.ForwardRequest).GetOpen)
	if err != nil {
		return err
	}
	if ms := open.GetTimeoutMs(); ms <= 0 || ms > 3600_000 {
		return errdefs.InvalidArgument("open.timeout_ms", "is %d; give the pod's sync timeout in milliseconds (1 to 3600000)", ms)
	}
	timeout := time.Duration(open.GetTimeoutMs()) * time.Millisecond
	log := t.log.With("pod", open.GetPod())
	sess := &forwardSession{stream: stream, timeout: timeout, id: open.GetSession(), compares: open.GetCompareAndWrite(), resets: open.GetLuReset(), reservations: open.GetReservations(), pending: map[uint64]*forwarded{},
		work: make(chan struct{}, 1), dead: make(chan struct{})}
	p := t.fwd.pod(open.GetPod())
	if err := t.admit(stream.Context(), p, open, sess); err != nil {
		return err
	}
	t.stopAsking(p)
	log.Info("forward stream open", "source_array", open.GetSourceArrayId())
	defer func() {
		p.mu.Lock()
		wasInSync := false
		if p.sess == sess {
			wasInSync = p.inSync
			p.sess, p.inSync = nil, false
		}
		p.mu.Unlock()
		sess.kill(errors.New("the stream ended"))
		log.Info("forward stream closed", "err", sess.err)
		t.lost(p, wasInSync)
	}()
	var wg sync.WaitGroup
	defer awaitSender(stream, &wg, timeout)
	wg.Add(1)
	go func() {
		defer wg.Done()
		sess.sendLoop()
	}()
	// Recv cannot be interrupted but by the handler's return: it runs on
	// its own goroutine, which ends with the stream's context right after.
	// It completes results itself, since a client write waits on each one,
	// and tells the loop below it heard from the preferred array.
	msgs := make(chan *arrayv1.ForwardRequest)
	heard := make(chan struct{}, 1)
	go func() {
		for {
			m, err := stream.Recv()
			if err != nil {
				sess.kill(err)
				return
			}
			if r := m.GetResult(); r != nil {
				sess.result(r)
				select {
				case heard <- struct{}{}:
				default:
				}
				continue
			}
			select {
			case msgs <- m:
			case <-sess.dead:
				return
			}
		}
	}()
	watchdog := time.NewTimer(timeout)
	defer watchdog.Stop()
	for {
		select {
		case <-sess.dead:
			return nil
		case <-watchdog.C:
			sess.kill(errdefs.Unavailable("no message from the preferred array within %s", timeout))
			return nil
		case <-heard:
			watchdog.Reset(timeout)
		case m := <-msgs:
			watchdog.Reset(timeout)
			switch m := m.Msg.(type) {
			case *arrayv1.ForwardRequest_State:
				if err := t.forwardState(stream.Context(), p, sess, m.State); err != nil {
					sess.kill(err)
					return err
				}
			default:
				err := errdefs.InvalidArgument("msg", "unexpected %T on a forward stream", m)
				sess.kill(err)
				return err
			}
		}
	}
}

// admit makes sess pod p's stream from the array that opened it, unless
// checkSource refuses it or the pod is carried here. Two arrays opening
// streams for pods of one name at once are admitted one after the other,
// so both cannot pass the check.
func (t *Service) admit(ctx context.Context, p *podForward, open *arrayv1.ForwardOpen, sess *forwardSession) error {
	p.opening.Lock()
	defer p.opening.Unlock()
	if err := t.checkSource(ctx, p, open.GetSourceArrayId()); err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.carry != nil {
		return errdefs.FailedPrecondition("pod %s is carried by this array; the preferred array takes its writes back first (Reclaim)", open.GetPod())
	}
	if src := open.GetSourceArrayId(); src != "" {
		p.source = src
	}
	if old := p.sess; old != nil {
		old.kill(errors.New("replaced by a new stream"))
	}
	p.sess, p.inSync, p.mediated, p.medName = sess, false, open.GetMediated(), open.GetMediatorName()
	return nil
}

// checkSource refuses a stream for pod p from array src while p is
// another array's pod here: that array's stream is open, or a copy it
// named is still a pod copy (not deleted, and not promoted by a failover,
// which frees the name for a rebuilt array's pod).
func (t *Service) checkSource(ctx context.Context, p *podForward, src string) error {
	p.mu.Lock()
	owner, live, vols := p.source, p.sess != nil, slices.Collect(maps.Keys(p.volumes))
	p.mu.Unlock()
	if owner == "" || src == "" || src == owner {
		return nil
	}
	for _, v := range vols {
		if live {
			break
		}
		vol, err := t.s.GetVolume(ctx, v)
		if err != nil && !errdefs.IsNotFound(err) {
			return err
		}
		live = err == nil && vol.ReadOnly
	}
	if !live {
		return nil
	}
	return errdefs.FailedPrecondition("pod %s on this array is the pod of array %s; array %s cannot stretch a pod of the same name here: "+
		"pod names are unique per array, so give one of the two backends another pure_replication_pod_name", p.name, owner, src)
}

// awaitSender waits for a stream's sending goroutine to end. One blocked
// in Send on a preferred array that stopped reading (a partition, once
// the socket's buffer is full, as a large forwarded write fills it) is
// freed by closing the stream's transport after timeout; without that
// this array would learn of the partition, and ask the mediator for the
// pod, only when TCP gives the connection up, many minutes later. A gRPC
// stream cannot be closed so: its Send returns when the transport's
// keepalive finds the connection dead.
func awaitSender(stream arrayv1.TransferService_ForwardServer, wg *sync.WaitGroup, timeout time.Duration) {
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-done:
		return
	case <-t.C:
	}
	if a, ok := stream.(interface{ Abort() }); ok {
		a.Abort()
	}
	<-done
}

// forwardState installs the pod's forwarders on the copies it names and
// removes them from the copies it no longer names.
func (t *Service) forwardState(ctx context.Context, p *podForward, sess *forwardSession, st *arrayv1.ForwardState) error {
	want := map[string]bool{}
	for _, v := range st.GetVolumes() {
		if err := array.CheckName("state.volumes", v); err != nil {
			return err
		}
		want[v] = true
	}
	p.mu.Lock()
	if p.sess != sess {
		p.mu.Unlock()
		return nil
	}
	var add, drop []string
	for v := range want {
		if !p.volumes[v] {
			add = append(add, v)
		}
	}
	for v := range p.volumes {
		if !want[v] {
			drop = append(drop, v)
		}
	}
	p.volumes = want
	p.mu.Unlock()
	for _, v := range add {
		if err := t.s.SetForwarder(ctx, v, &volumeForward{p: p, volume: v}); err != nil && !errdefs.IsNotFound(err) {
			return err
		}
	}
	for _, v := range drop {
		if err := t.s.SetForwarder(ctx, v, nil); err != nil && !errdefs.IsNotFound(err) {
			return err
		}
	}
	if len(add)+len(drop) > 0 {
		if err := t.recordPodCopies(ctx, p); err != nil {
			return err
		}
	}
	p.mu.Lock()
	if p.sess == sess {
		p.inSync, p.preferred = st.GetInSync(), st.GetReceiverPreferred()
	}
	p.mu.Unlock()
	return nil
}

// recPodCopies names, per pod, the copies here that the preferred array's
// last forward stream named, so that after a restart they answer as the
// pod's copies (unavailable, writes refused as the pod's) until the
// preferred array is back, not as plain read-only replicas: a host's
// multipath then keeps writing through the preferred array rather than
// getting write-protected errors on an optimized path here.
const recPodCopies = "pod-copies"

type podCopiesRec struct {
	Volumes []string `json:"volumes"`
	Source  string   `json:"source,omitempty"`
}

// recordPodCopies stores p's copies as they are now. One record is
// written at a time, so the last written holds the newest set even when
// an ending stream's state races a new stream's.
func (t *Service) recordPodCopies(ctx context.Context, p *podForward) error {
	p.recMu.Lock()
	defer p.recMu.Unlock()
	p.mu.Lock()
	volumes := slices.Sorted(maps.Keys(p.volumes))
	source := p.source
	p.mu.Unlock()
	if len(volumes) == 0 {
		return t.s.DeleteRecord(ctx, recPodCopies, p.name)
	}
	data, err := json.Marshal(podCopiesRec{Volumes: volumes, Source: source})
	if err != nil {
		return err
	}
	return t.s.PutRecord(ctx, recPodCopies, p.name, data)
}

// restorePodCopies gives the copies of each recorded pod (one not carried
// here: restoreCarried has those) a forwarder with no stream, as a running
// array leaves them when the preferred array goes away.
func (t *Service) restorePodCopies(ctx context.Context) error {
	recs := map[string]podCopiesRec{}
	err := t.s.Records(ctx, recPodCopies, "", func(k string, data []byte) error {
		var rec podCopiesRec
		if err := json.Unmarshal(data, &rec); err != nil {
			return fmt.Errorf("record of pod %s's copies: %w", k, err)
		}
		recs[k] = rec
		return nil
	})
	if err != nil {
		return err
	}
	for name, rec := range recs {
		carried := t.fwd.lookup(name) != nil
		p := t.fwd.pod(name)
		p.mu.Lock()
		p.source = rec.Source
		p.mu.Unlock()
		if carried {
			continue
		}
		for _, v := range rec.Volumes {
			vol, err := t.s.GetVolume(ctx, v)
			if errdefs.IsNotFound(err) || (err == nil && !vol.ReadOnly) {
				continue // gone, or promoted by a failover
			}
			if err != nil {
				return err
			}
			if err := t.restoreCopy(ctx, p, v); err != nil {
				return err
			}
		}
	}
	return nil
}

// restoreCopy makes volume v one of p's copies again at startup, with a
// forwarder that has no stream until the preferred array opens one.
func (t *Service) restoreCopy(ctx context.Context, p *podForward, v string) error {
	p.mu.Lock()
	p.volumes[v] = true
	p.mu.Unlock()
	return t.s.SetForwarder(ctx, v, &volumeForward{p: p, volume: v})
}
