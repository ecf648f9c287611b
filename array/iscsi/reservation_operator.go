package iscsi

import (
	"context"
	"errors"
	"fmt"
)

// The array's operator reads a unit's reservations and clears them. A
// cluster whose nodes all died holding a reservation keeps every other
// host from writing, and no registrant is left to send the CLEAR; an
// operator clears it from the array, as NetApp's `lun
// persistent-reservation clear` does.

// operator is the I_T nexus of the array's operator. No session has it,
// since every login names its initiator. Its one PERSISTENT RESERVE OUT
// is CLEAR, which needs no registration from it (prOut.apply), so the
// other target of a shared unit decides it like a host's.
var operator nexus

// ErrOldDecider: the other target of a shared unit decides its
// reservations and does not know the operator's CLEAR.
var ErrOldDecider = errors.New("iscsi: the other target of this logical unit decides its reservations and is too old to clear them for the operator")

// ReservationStatus is a unit's persistent reservations, for the array's
// operator.
type ReservationStatus struct {
	Generation    uint32
	Type          byte // SPC-4's code; 0: not reserved
	APTPL         bool
	Registrations []Registrant
}

// Registrant is one registered I_T nexus.
type Registrant struct {
	InitiatorPort string // "iqn…,i,0x<ISID>"
	Target        string
	RelativePort  uint16
	Key           uint64
	Holder        bool
}

// ReservationStatus is the state of the unit whose NAA is naa. Both
// targets of a shared unit hold the same one. A unit no session has
// opened is read from the Keeper, and not kept in memory for it.
func (s *Server) ReservationStatus(naa [16]byte) ReservationStatus {
	var st *prState
	if v, ok := s.units.Load(naa); ok {
		st = v.(*unit).pr.current()
	} else if st = s.loadReservations(naa); st == nil {
		st = &prState{}
	}
	out := ReservationStatus{Generation: st.generation, Type: byte(st.typ), APTPL: st.aptpl}
	for _, r := range st.regs {
		out.Registrations = append(out.Registrations, Registrant{InitiatorPort: r.n.initiatorPort(), Target: r.n.target,
			RelativePort: r.n.port, Key: r.key, Holder: st.holds(r.n)})
	}
	return out
}

// ClearReservations drops every registration and the reservation of the
// unit whose NAA is naa, for the array's operator, and owes each nexus
// that was registered RESERVATIONS PREEMPTED, as a registrant's CLEAR
// would. forward runs it at the other target of a shared unit when that
// one decides (forwarded false: this target decides), and share gives the
// other target the new state, both as for a host's (ReservationSharer).
func (s *Server) ClearReservations(ctx context.Context, naa [16]byte,
	forward func(ctx context.Context, req []byte) (reply []byte, forwarded bool, err error),
	share func(ctx context.Context, state []byte) (newer []byte, err error)) error {
	cdb := []byte{0x5f, prClear, 0, 0, 0, 0, 0, 0, prParamsLen, 0}
	var (
		res       scsiResult
		forwarded bool
		err       error
	)
	if forward != nil {
		var reply []byte
		if reply, forwarded, err = forward(ctx, encodeReservationOut(operator, cdb, make([]byte, prParamsLen))); err != nil {
			return err
		}
		if forwarded {
			if res, err = decodeReservationReply(reply); err != nil {
				return err
			}
		}
	}
	if !forwarded {
		if res, err = s.reserve(ctx, naa, s.unitOf(naa), operator, prOut{action: prClear}, share); err != nil {
			return err
		}
	}
	if res.status != statusGood {
		return fmt.Errorf("%w (status %#x)", ErrOldDecider, res.status)
	}
	return nil
}

// ForgetReservations drops the state of the unit whose NAA is naa, whose
// volume is gone with what was kept of it: a unit made later with the
// same NAA (a replica takes its source's identity) starts with none
// rather than the old one's, which a restart would not have kept either.
func (s *Server) ForgetReservations(naa [16]byte) {
	if v, ok := s.units.Load(naa); ok {
		v.(*unit).pr.forget()
	}
}
