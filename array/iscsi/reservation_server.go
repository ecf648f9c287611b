package iscsi

import (
	"context"
	"encoding/hex"
	"errors"
)

// ReservationRefuser may be implemented by a Device whose logical unit
// another target serves too and cannot share persistent reservations with
// now (a pod's copy whose other array is too old, say). A reservation kept
// here would not fence a host's paths to the other target, so while
// RefusesReservations says so the server does not serve PERSISTENT
// RESERVE IN and OUT for the unit (INVALID COMMAND OPERATION CODE), and a
// cluster learns that it cannot fence through it.
type ReservationRefuser interface {
	RefusesReservations() bool
}

func refusesReservations(d Device) bool {
	r, ok := d.(ReservationRefuser)
	return ok && r.RefusesReservations()
}

// ReservationSharer may be implemented by a Device whose logical unit
// another target serves too (a pod's copy), so that the unit has one set
// of reservations at both. The messages are opaque: the other target's
// Server reads them.
type ReservationSharer interface {
	// ForwardReservation runs a PERSISTENT RESERVE OUT at the other
	// target when that one decides the unit's reservations
	// (Server.DecideReservation there), and returns its answer;
	// forwarded is false when this target decides.
	ForwardReservation(ctx context.Context, req []byte) (reply []byte, forwarded bool, err error)
	// ShareReservations gives the other target the unit's next state
	// (Server.InstallReservations there) and returns once it holds it,
	// or at once when there is no other target to tell now (its state
	// catches up when the two meet again). newer is the other target's
	// state when it holds a newer one; nothing changed there then.
	ShareReservations(ctx context.Context, state []byte) (newer []byte, err error)
}

// ErrNoReservations from a ReservationSharer: the unit's reservations
// cannot be kept at both targets now. INVALID COMMAND OPERATION CODE.
var ErrNoReservations = errors.New("iscsi: persistent reservations are not shared with the other target of this logical unit")

// shareFunc is ReservationSharer.ShareReservations, or nil for a unit
// that is this target's alone.
type shareFunc func(ctx context.Context, state []byte) (newer []byte, err error)

func (c *cmd) persistentReserveIn() scsiResult {
	if refusesReservations(c.l.dev) {
		return checkCondition(senseIllegalRequest, ascInvalidOpcode)
	}
	return prIn(c.l.unit.pr.current(), c.cdb, c.ss.s.opts.Keeper != nil)
}

func (c *cmd) persistentReserveOut(ctx context.Context) scsiResult {
	o, res, ok := decodePROut(c.cdb, c.out, c.ss.s.opts.Keeper != nil)
	if !ok {
		return res
	}
	plen := res.spdtl
	if refusesReservations(c.l.dev) {
		return withSPDTL(checkCondition(senseIllegalRequest, ascInvalidOpcode), plen)
	}
	var share shareFunc
	if rs, ok := c.l.dev.(ReservationSharer); ok {
		reply, forwarded, err := rs.ForwardReservation(ctx, encodeReservationOut(c.ss.nexus, c.cdb[:prOutCDBLen], c.out[:prParamsLen]))
		if err != nil {
			return withSPDTL(c.reservationFailed(err), plen)
		}
		if forwarded {
			r, err := decodeReservationReply(reply)
			if err != nil {
				return withSPDTL(c.reservationFailed(err), plen)
			}
			return withSPDTL(r, plen)
		}
		share = rs.ShareReservations
	}
	r, err := c.ss.s.reserve(ctx, c.l.id.NAA, c.l.unit, c.ss.nexus, o, share)
	if err != nil {
		return withSPDTL(c.reservationFailed(err), plen)
	}
	return withSPDTL(r, plen)
}

func (c *cmd) reservationFailed(err error) scsiResult {
	if errors.Is(err, ErrNoReservations) {
		return checkCondition(senseIllegalRequest, ascInvalidOpcode)
	}
	return c.fail(err, false)
}

// reserve is the deciding target's PERSISTENT RESERVE OUT: o from n
// against the unit naa names. share, for a shared unit, gives the other
// target the new state before this one takes it and before the answer.
func (s *Server) reserve(ctx context.Context, naa [16]byte, u *unit, n nexus, o prOut, share shareFunc) (scsiResult, error) {
	// The turn lasts until the other target holds the new state; one
	// waiting for it gives up with its context (its connection closes,
	// the operator's RPC times out) rather than wait out the peer.
	if err := u.pr.order.Acquire(ctx, 1); err != nil {
		return scsiResult{}, err
	}
	defer u.pr.order.Release(1)
	for tries := 0; ; tries++ {
		cur := u.pr.current()
		out := o.apply(cur, n)
		if out.next == nil {
			return out.res, nil
		}
		out.next.version = cur.version + 1
		if share != nil {
			var flags byte
			if out.aborts {
				flags = stateAborts
			}
			newer, err := share(ctx, encodeState(out.next, out.owe, flags))
			if err != nil {
				return scsiResult{}, err
			}
			if newer != nil {
				// The other target moved on while the two were apart (it
				// carried the pod): decide against its state.
				if tries == 3 {
					return scsiResult{}, ErrUnavailable
				}
				if _, _, err := s.install(ctx, u, naa, newer); err != nil {
					return scsiResult{}, err
				}
				continue
			}
		}
		if ok, err := s.commit(ctx, u, naa, out.next, cur.version, out.owe); err != nil {
			return scsiResult{}, err
		} else if !ok {
			continue // a newer state was installed meanwhile
		}
		by := n.initiatorPort()
		if n == operator {
			by = "" // the summary says who
		}
		s.log.Info("iscsi: persistent reservation", "change", out.summary, "initiator_port", by, "target", n.target,
			"wwn", hex.EncodeToString(naa[:]), "type", byte(o.typ), "generation", out.next.generation, "preempted", len(out.owe))
		// PREEMPT AND ABORT ends the preempted nexuses' commands. Those
		// that have not begun meet the new state and its conflicts;
		// those running began before it and are waited for, so none of
		// them lands after the fenced host's keys are gone. Other
		// nexuses' commands go on (SAM aborts only the preempted ones').
		if out.aborts {
			if err := u.running.drain(ctx, preempted(out.owe)); err != nil {
				return scsiResult{}, err
			}
		}
		return out.res, nil
	}
}

// preempted matches the nexuses whose registrations a PREEMPT took
// away (those owed REGISTRATIONS PREEMPTED), whose commands a PREEMPT AND
// ABORT ends.
func preempted(owe map[nexus]uint16) func(nexus) bool {
	return func(n nexus) bool { return owe[n] == ascRegistrationsPreempted }
}

// commit makes next the unit's state if it still is at version base:
// kept on disk first (Keeper), then published with the attentions it
// owes to this target's nexuses (those of port: the other target of a
// shared unit raises its own). Commits of a unit are serialised, so the
// states reach the disk in the order they take effect.
func (s *Server) commit(ctx context.Context, u *unit, naa [16]byte, next *prState, base uint64, owe map[nexus]uint16) (bool, error) {
	u.pr.commitMu.Lock()
	defer u.pr.commitMu.Unlock()
	if u.pr.current().version != base {
		return false, nil
	}
	if err := s.keep(ctx, naa, next); err != nil {
		return false, err
	}
	u.pr.publish(next, owe, s.opts.PortGroup)
	return true, nil
}

// forget drops the state and the attentions owed: the unit's volume is
// gone.
func (r *reservations) forget() {
	r.commitMu.Lock()
	defer r.commitMu.Unlock()
	r.mu.Lock()
	defer r.mu.Unlock()
	r.state.Store(nil)
	r.owed = nil
	r.owedAny.Store(false)
}

func (r *reservations) publish(next *prState, owe map[nexus]uint16, port uint16) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.state.Store(next)
	for n, asc := range owe {
		if n.port != port {
			continue
		}
		if r.owed == nil {
			r.owed = map[nexus]uint16{}
		}
		r.owed[n] = asc
	}
	r.owedAny.Store(len(r.owed) > 0)
}

// DecideReservation runs a PERSISTENT RESERVE OUT that the other target
// of a shared unit forwarded (ReservationSharer.ForwardReservation there)
// against the unit whose NAA is naa, and returns its answer. share gives
// the other target the new state first.
func (s *Server) DecideReservation(ctx context.Context, naa [16]byte, req []byte, share func(ctx context.Context, state []byte) (newer []byte, err error)) ([]byte, error) {
	n, cdb, params, err := decodeReservationOut(req)
	if err != nil {
		return nil, err
	}
	o, res, ok := decodePROut(cdb, params, s.opts.Keeper != nil)
	if ok {
		res, err = s.reserve(ctx, naa, s.unitOf(naa), n, o, share)
		if err != nil {
			return nil, err
		}
	}
	return encodeReservationReply(res), nil
}

// InstallReservations takes the state the other target of a shared unit
// decided (ReservationSharer.ShareReservations there) for the unit whose
// NAA is naa, if it is newer than the one here; else it returns this
// target's, when newer, for the other to take. The drain, only for a
// PREEMPT AND ABORT (nil otherwise), waits for the unit's commands that
// were running here; the other target answers only after it.
func (s *Server) InstallReservations(naa [16]byte, state []byte) (newer []byte, drain func(context.Context) error, err error) {
	return s.install(s.ctx, s.unitOf(naa), naa, state)
}

func (s *Server) install(ctx context.Context, u *unit, naa [16]byte, state []byte) (newer []byte, drain func(context.Context) error, err error) {
	st, owe, flags, err := decodeState(state)
	if err != nil {
		return nil, nil, err
	}
	cur := u.pr.current()
	switch {
	case st.version > cur.version:
		if flags&stateCatchUp != 0 {
			owe = catchUpOwed(cur, st, s.opts.PortGroup)
		}
		if ok, err := s.commit(ctx, u, naa, st, cur.version, owe); err != nil {
			return nil, nil, err
		} else if !ok {
			return s.install(ctx, u, naa, state) // installed meanwhile: compare again
		}
		if flags&stateAborts != 0 {
			drain = u.running.drainer(preempted(owe))
		}
		return nil, drain, nil
	case st.version < cur.version:
		return encodeState(cur, nil, stateCatchUp), nil, nil
	}
	return nil, nil, nil
}

// ReservationKeeper keeps the units' persistent reservations on disk
// (Options.Keeper), by NAA. SaveReservations is durable before it returns:
// a change is answered only once kept.
type ReservationKeeper interface {
	LoadReservations(ctx context.Context, naa [16]byte) ([]byte, error)
	SaveReservations(ctx context.Context, naa [16]byte, state []byte) error
}

// keep saves a unit's next state before it takes effect.
func (s *Server) keep(ctx context.Context, naa [16]byte, st *prState) error {
	if s.opts.Keeper == nil {
		return nil
	}
	return s.opts.Keeper.SaveReservations(ctx, naa, encodeState(st, nil, 0))
}

// loadReservations is the state kept for a unit, nil if none (or none
// that could be read: the unit then starts with none, as after a power
// loss, and says so).
func (s *Server) loadReservations(naa [16]byte) *prState {
	if s.opts.Keeper == nil {
		return nil
	}
	b, err := s.opts.Keeper.LoadReservations(s.ctx, naa)
	if err == nil && b == nil {
		return nil
	}
	var st *prState
	if err == nil {
		st, _, _, err = decodeState(b)
	}
	if err != nil {
		s.log.Warn("iscsi: the persistent reservations kept for a logical unit cannot be read; it starts with none", "wwn", hex.EncodeToString(naa[:]), "err", err)
		return nil
	}
	return st
}

// Reservations is the state of the unit whose NAA is naa, for the other
// target of a shared unit when the two meet again (InstallReservations
// there keeps the newer).
func (s *Server) Reservations(naa [16]byte) []byte {
	return encodeState(s.unitOf(naa).pr.current(), nil, stateCatchUp)
}

// catchUpOwed is what this target's nexuses (of port) are owed when it
// takes the state the other target reached while the two were apart:
// each changes it missed came with attentions only there. A nexus whose
// registration went is told its registration was preempted (or, when
// none is left, that a CLEAR preempted the reservations); one still
// registered whose reservation changed is told it was released.
func catchUpOwed(cur, next *prState, port uint16) map[nexus]uint16 {
	owe := map[nexus]uint16{}
	for _, r := range cur.regs {
		switch {
		case r.n.port != port:
		case next.find(r.n) < 0 && len(next.regs) == 0:
			owe[r.n] = ascReservationsPreempted
		case next.find(r.n) < 0:
			owe[r.n] = ascRegistrationsPreempted
		case cur.typ != 0 && (next.typ != cur.typ || next.holder != cur.holder):
			owe[r.n] = ascReservationsReleased
		}
	}
	return owe
}

// Outsider is what a unit's persistent reservation leaves a client of the
// same volume that is no SCSI initiator and so can hold no registration
// (an NBD client): what SPC-4 leaves an I_T nexus that is not registered.
type Outsider struct {
	// Reserved is the reservation's type (SPC-4's code); 0: none.
	Reserved byte
	// Write and Read say whether such a client may write and read: under
	// every reservation type it may not write, and under the three
	// exclusive-access types it may not read either.
	Write, Read bool
}

// Outsiders returns a check, cheap enough for every I/O, of what the
// reservation of the unit whose NAA is naa leaves a client with no
// registration at that moment. It follows the unit through every change,
// this target's and those the other target of a shared unit gives it.
func (s *Server) Outsiders(naa [16]byte) func() Outsider {
	u := s.unitOf(naa)
	return func() Outsider {
		st := u.pr.state.Load()
		if st == nil || st.typ == 0 {
			return Outsider{Write: true, Read: true}
		}
		return Outsider{Reserved: byte(st.typ), Read: !st.typ.exclusiveAccess()}
	}
}
