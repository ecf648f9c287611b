package replication

import (
	"context"
	"time"

	"github.com/volrep/volrep/array"
	"github.com/volrep/volrep/array/store"
	"github.com/volrep/volrep/errdefs"
	arrayv1 "github.com/volrep/volrep/proto/volrep/array/v1"
)

// A pod's volume is one logical unit at both arrays, with one set of SCSI
// persistent reservations, which the preferred array decides: its own
// hosts' PERSISTENT RESERVE OUT and those the peer forwards. Each new
// state goes to the peer on the mirror stream, in order with the writes,
// before the host is answered. A new stream first carries every member's
// state, and each array keeps the newer, so the two agree again after a
// partition (the side that carried the pod alone may have moved on).

var _ store.ReservationSharer = (*podMember)(nil)

// SharesReservations: the peer keeps the reservations this array decides.
func (m *podMember) SharesReservations() bool { return m.p.l.has(array.FeatureReservations) }

// ShareReservations gives the peer the member's new reservations
// (store.ReservationSharer) and waits, up to the sync timeout, until it
// holds them. With the peer gone the change stands here, as a write
// would: the pod is marked at its mediator, and the next stream carries
// the state. A pod its mediator stopped takes no change.
func (m *podMember) ShareReservations(ctx context.Context, state []byte) ([]byte, error) {
	p := m.p
	if !m.SharesReservations() {
		return nil, store.ErrReservationsUnshared
	}
	p.mu.Lock()
	st, stopped := p.stream, p.stoppedLocked()
	p.mu.Unlock()
	if stopped {
		return nil, p.errStopped()
	}
	if st == nil {
		return nil, p.ensureMarked(ctx)
	}
	return p.pushReservations(st, m, state)
}

// pushReservations sends a member's state on st and returns the peer's
// newer one, if it holds a newer one.
func (p *pod) pushReservations(st *mirrorStream, m *podMember, state []byte) ([]byte, error) {
	t := time.NewTimer(p.timeout)
	defer t.Stop()
	return p.awaitReservations(st, p.sendReservations(st, m, state), t.C)
}

// reservationPush is a member's state on its way to the peer.
type reservationPush struct {
	m    *podMember
	done <-chan error // nil: it could not be queued (the stream died)
	resp chan *arrayv1.MirrorResponse
}

func (p *pod) sendReservations(st *mirrorStream, m *podMember, state []byte) reservationPush {
	push := reservationPush{m: m, resp: make(chan *arrayv1.MirrorResponse, 1)}
	done, err := st.enqueueFor(nil, 0, 0, func(seq uint64) *arrayv1.MirrorRequest {
		return &arrayv1.MirrorRequest{Msg: &arrayv1.MirrorRequest_Reservations{Reservations: &arrayv1.MirrorReservations{Seq: seq, Volume: m.remote, State: state}}}
	}, push.resp)
	if err != nil {
		p.fail(st, err, nil, 0, 0)
		return push
	}
	push.done = done
	return push
}

// awaitReservations waits, until deadline, for the peer to take a state
// (its newer one, if it holds one). A peer that does not is dropped from
// the pod as for a write, and the change stands here (marked at the
// mediator); a pod its mediator stopped takes none.
func (p *pod) awaitReservations(st *mirrorStream, push reservationPush, deadline <-chan time.Time) ([]byte, error) {
	if push.done != nil {
		// Not the caller's context: a change the peer may have taken must
		// be seen through, or the peer dropped from the pod, as for a write.
		acked, err := p.await(context.Background(), st, push.done, deadline, nil, 0, 0)
		if err != nil {
			return nil, err
		}
		if acked {
			return (<-push.resp).GetReservations(), nil
		}
	}
	if p.stopped() {
		return nil, p.errStopped()
	}
	return nil, p.ensureMarked(context.Background())
}

// shareAllReservations sends, once per stream, each ready member's
// reservations, and takes the peer's where they are newer. It runs
// before the pod counts as in sync, so the peer's paths come back with
// the state of this side's. The states go out together and are waited
// for after, one round trip for the pod rather than one per member.
func (p *pod) shareAllReservations(ctx context.Context, st *mirrorStream) error {
	if !p.l.has(array.FeatureReservations) {
		return nil
	}
	var pushes []reservationPush
	for _, m := range p.readyMembers() {
		p.mu.Lock()
		done := m.reservationsOn == st
		p.mu.Unlock()
		if done {
			continue
		}
		state, err := p.e.s.Reservations(ctx, m.local)
		if errdefs.IsNotFound(err) {
			continue
		}
		if err != nil || state == nil {
			return err // nil, nil: no iSCSI target here keeps them
		}
		pushes = append(pushes, p.sendReservations(st, m, state))
	}
	t := time.NewTimer(p.timeout)
	defer t.Stop()
	for _, push := range pushes {
		newer, err := p.awaitReservations(st, push, t.C)
		if err != nil {
			return err
		}
		if !p.streamIs(st) {
			return errdefs.Unavailable("pod %s lost its peer while sharing its volumes' reservations", p.name)
		}
		if newer != nil {
			if _, _, err := p.e.s.InstallReservations(ctx, push.m.local, newer); err != nil && !errdefs.IsNotFound(err) {
				return err
			}
			p.e.log.Info("took the peer's newer persistent reservations of a pod volume (it carried the pod)", "pod", p.name, "volume", push.m.local)
		}
		p.mu.Lock()
		push.m.reservationsOn = st
		p.mu.Unlock()
	}
	return nil
}

// decideReservation runs a PERSISTENT RESERVE OUT the peer's host sent to
// the peer's copy remote.
func (p *pod) decideReservation(ctx context.Context, remote string, req []byte) ([]byte, error) {
	m := p.memberByRemote(remote)
	if m == nil {
		return nil, errdefs.NotFound("pod %s has no member whose copy at the peer is %q", p.name, remote)
	}
	if !p.inSync() {
		return nil, errdefs.Unavailable("pod %s is not in sync: the peer's paths take no reservations until it is", p.name)
	}
	return p.e.s.DecideReservation(ctx, m.local, req)
}
