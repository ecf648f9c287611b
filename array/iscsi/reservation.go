package iscsi

import (
	"encoding/binary"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"

	"golang.org/x/sync/semaphore"
)

// Persistent reservations (SPC-4 5.13): a cluster of hosts registers a
// key per I_T nexus and one of them reserves the logical unit, so that a
// host the cluster has fenced (its registration preempted) can no longer
// write. The state is the unit's, shared by every session that sees the
// volume. With a Keeper every state is on disk before it takes effect, so
// a restart of the array keeps them all (REPORT CAPABILITIES says
// PTPL_C=1); without one they are in memory only and APTPL is refused.
//
// A unit that another target serves too (a pod's volume, at both of its
// arrays) has one state for both: one target decides every PERSISTENT
// RESERVE OUT (the other forwards them, ReservationSharer), and gives the
// other each new state before it answers, so either target's sessions
// meet the same reservation. Each state carries a version, so that two
// targets that met again keep the newer (InstallReservations).

// nexus is an I_T nexus: an initiator port (the iSCSI name and the
// session's ISID) and a target port (the target name, and the relative
// port VPD page 0x83 reports, which is the array's port group; the two
// arrays of a pod differ in both).
type nexus struct {
	initiator string
	isid      [6]byte
	target    string
	port      uint16
}

// initiatorPort is the iSCSI initiator port name (RFC 7143 4.2.7.1), as
// a TransportID carries it.
func (n nexus) initiatorPort() string {
	return fmt.Sprintf("%s,i,0x%x", n.initiator, n.isid[:])
}

// prType is a persistent reservation type (SPC-4 table 176).
type prType byte

const (
	prWriteExclusive     prType = 0x1
	prExclusiveAccess    prType = 0x3
	prWriteExclusiveRO   prType = 0x5 // registrants only
	prExclusiveAccessRO  prType = 0x6
	prWriteExclusiveAll  prType = 0x7 // all registrants
	prExclusiveAccessAll prType = 0x8
)

// REPORT CAPABILITIES' type mask: every type above.
const (
	prTypeMaskByte4 = 0x80 | 0x40 | 0x20 | 0x08 | 0x02 // WR_EX_AR, EX_AC_RO, WR_EX_RO, EX_AC, WR_EX
	prTypeMaskByte5 = 0x01                             // EX_AC_AR
)

func (t prType) valid() bool {
	switch t {
	case prWriteExclusive, prExclusiveAccess, prWriteExclusiveRO, prExclusiveAccessRO, prWriteExclusiveAll, prExclusiveAccessAll:
		return true
	}
	return false
}

// allRegistrants: every registered nexus holds the reservation.
func (t prType) allRegistrants() bool { return t == prWriteExclusiveAll || t == prExclusiveAccessAll }

// registrantsAccess: every registered nexus may read and write.
func (t prType) registrantsAccess() bool { return t >= prWriteExclusiveRO }

// exclusiveAccess: a nexus without access may not even read.
func (t prType) exclusiveAccess() bool {
	return t == prExclusiveAccess || t == prExclusiveAccessRO || t == prExclusiveAccessAll
}

type registration struct {
	n   nexus
	key uint64
}

// prState is one version of a unit's reservations. It is never changed
// once published: PERSISTENT RESERVE OUT builds the next one, so that
// every command can check it without a lock.
type prState struct {
	version    uint64 // every change counts, RESERVE and RELEASE too
	generation uint32
	regs       []registration // in the order they registered
	typ        prType         // 0: not reserved
	holder     nexus          // when typ is not an all-registrants type
	// aptpl is the APTPL bit of the last REGISTER, reported as PTPL_A. A
	// server with a Keeper keeps every state through a restart, APTPL or
	// not: a restart of the array is not a power loss of the logical unit
	// (a pod's other array may have served it throughout).
	aptpl bool
}

func (st *prState) find(n nexus) int {
	return slices.IndexFunc(st.regs, func(r registration) bool { return r.n == n })
}

// holds reports whether n is (one of) the reservation's holders.
func (st *prState) holds(n nexus) bool {
	if st.typ == 0 {
		return false
	}
	if st.typ.allRegistrants() {
		return st.find(n) >= 0
	}
	return st.holder == n
}

func (st *prState) clone() *prState {
	c := *st
	c.regs = slices.Clone(st.regs)
	return &c
}

// reservations is a unit's persistent reservation state and the unit
// attentions it owes to nexuses (RESERVATIONS PREEMPTED, RELEASED and
// REGISTRATIONS PREEMPTED). A unit without either costs a command two
// atomic loads.
type reservations struct {
	// order serialises PERSISTENT RESERVE OUT, across the wait for the
	// other target of a shared unit; no command on the data path takes it.
	order    *semaphore.Weighted
	commitMu sync.Mutex // orders keeping and publishing states (Server.commit)
	mu       sync.Mutex // guards owed, and publishing state with it
	state    atomic.Pointer[prState]
	owed     map[nexus]uint16 // under mu
	owedAny  atomic.Bool
}

func (r *reservations) current() *prState {
	if st := r.state.Load(); st != nil {
		return st
	}
	return &prState{}
}

// commandAccess is how a command touches the medium, for conflicts.
type commandAccess int

const (
	accessNone  commandAccess = iota // allowed under every reservation
	accessRead                       // conflicts under exclusive access
	accessWrite                      // conflicts under both
)

// accessOfCommand follows SPC-4 table 66 and SBC-4 table 13 for the
// commands this server serves. INQUIRY, REPORT LUNS and REQUEST SENSE
// never reach here.
func accessOfCommand(cdb []byte) commandAccess {
	switch cdb[0] {
	case 0x00, 0x25, 0xa3, 0x5e, 0x5f: // TEST UNIT READY, READ CAPACITY(10), MAINTENANCE IN, PR IN/OUT
		return accessNone
	case 0x9e:
		if cdb[1]&0x1f == 0x10 { // READ CAPACITY(16)
			return accessNone
		}
		return accessRead // GET LBA STATUS
	case 0x08, 0x28, 0xa8, 0x88, // READ
		0x2f, 0xaf, 0x8f, // VERIFY
		0x1a, 0x5a, // MODE SENSE
		0x34, 0x90: // PRE-FETCH
		return accessRead
	}
	return accessWrite
}

// conflicts reports whether n may not run cdb under the reservation now.
func (r *reservations) conflicts(n nexus, cdb []byte) bool {
	st := r.state.Load()
	if st == nil || st.typ == 0 {
		return false
	}
	acc := accessOfCommand(cdb)
	if acc == accessNone || st.holds(n) {
		return false
	}
	if st.typ.registrantsAccess() && st.find(n) >= 0 {
		return false
	}
	return st.typ.exclusiveAccess() || acc == accessWrite
}

// takeOwed returns and clears the unit attention owed to n, if any.
func (r *reservations) takeOwed(n nexus) (uint16, bool) {
	if !r.owedAny.Load() {
		return 0, false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	asc, ok := r.owed[n]
	if ok {
		delete(r.owed, n)
		r.owedAny.Store(len(r.owed) > 0)
	}
	return asc, ok
}

// Unit attentions of persistent reservations.
const (
	ascReservationsPreempted  = 0x2a03
	ascReservationsReleased   = 0x2a04
	ascRegistrationsPreempted = 0x2a05
	ascInvalidRelease         = 0x2604
)

// prOut is a decoded PERSISTENT RESERVE OUT.
type prOut struct {
	action byte // service action
	scope  byte
	typ    prType
	key    uint64 // RESERVATION KEY
	sark   uint64 // SERVICE ACTION RESERVATION KEY
	aptpl  bool
}

// prOutcome is what applying a PERSISTENT RESERVE OUT gives: the next
// state (nil: unchanged), the answer, the unit attentions it owes, and
// whether it preempted nexuses whose running commands must end first.
type prOutcome struct {
	next    *prState
	res     scsiResult
	owe     map[nexus]uint16
	aborts  bool
	summary string
}

func conflict() scsiResult { return scsiResult{status: statusReservationConflict} }

// PERSISTENT RESERVE OUT's CLEAR service action.
const prClear = 0x3

// apply is PERSISTENT RESERVE OUT from n against st (SPC-4 5.13.5-5.13.11).
func (o prOut) apply(st *prState, n nexus) prOutcome {
	if n == operator {
		return o.applyOperator(st)
	}
	me := st.find(n)
	registered := me >= 0
	switch o.action {
	case 0x0, 0x6: // REGISTER, REGISTER AND IGNORE EXISTING KEY
		if o.action == 0x0 && (registered && st.regs[me].key != o.key || !registered && o.key != 0) {
			return prOutcome{res: conflict()}
		}
		if !registered && o.sark == 0 {
			return prOutcome{}
		}
		next := st.clone()
		next.generation++
		next.aptpl = o.aptpl
		switch {
		case !registered:
			next.regs = append(next.regs, registration{n: n, key: o.sark})
			return prOutcome{next: next, summary: "registered"}
		case o.sark != 0:
			next.regs[me].key = o.sark
			return prOutcome{next: next, summary: "key changed"}
		}
		next.regs = slices.Delete(next.regs, me, me+1)
		out := prOutcome{next: next, summary: "unregistered"}
		// The holder unregistering releases the reservation; an
		// all-registrants one lasts while any registrant does.
		if st.holds(n) && (!st.typ.allRegistrants() || len(next.regs) == 0) {
			next.typ, next.holder = 0, nexus{}
			if st.typ.registrantsAccess() {
				out.owe = oweAll(next.regs, n, ascReservationsReleased)
			}
		}
		return out
	}
	if !registered || st.regs[me].key != o.key {
		return prOutcome{res: conflict()}
	}
	switch o.action {
	case 0x1: // RESERVE
		if o.scope != 0 || !o.typ.valid() {
			return prOutcome{res: checkCondition(senseIllegalRequest, ascInvalidFieldInCDB)}
		}
		if st.typ != 0 {
			if st.holds(n) && st.typ == o.typ {
				return prOutcome{}
			}
			return prOutcome{res: conflict()}
		}
		next := st.clone()
		next.typ, next.holder = o.typ, n
		return prOutcome{next: next, summary: "reserved"}
	case 0x2: // RELEASE
		if st.typ == 0 || !st.holds(n) {
			return prOutcome{}
		}
		if o.scope != 0 || o.typ != st.typ {
			return prOutcome{res: checkCondition(senseIllegalRequest, ascInvalidRelease)}
		}
		next := st.clone()
		next.typ, next.holder = 0, nexus{}
		out := prOutcome{next: next, summary: "released"}
		if st.typ.registrantsAccess() {
			out.owe = oweAll(next.regs, n, ascReservationsReleased)
		}
		return out
	case prClear:
		return clearAll(st, n, "cleared")
	case 0x4, 0x5: // PREEMPT, PREEMPT AND ABORT
		return o.preempt(st, n)
	}
	return prOutcome{res: checkCondition(senseIllegalRequest, ascInvalidFieldInCDB)}
}

// applyOperator is the array operator's PERSISTENT RESERVE OUT: CLEAR
// alone, with no key, and nothing to do on a unit without reservations.
func (o prOut) applyOperator(st *prState) prOutcome {
	switch {
	case o.action != prClear:
		return prOutcome{res: checkCondition(senseIllegalRequest, ascInvalidFieldInCDB)}
	case len(st.regs) == 0 && st.typ == 0:
		return prOutcome{}
	}
	return clearAll(st, operator, "cleared by the array's operator")
}

// clearAll drops every registration and the reservation; each registered
// nexus but n is owed RESERVATIONS PREEMPTED.
func clearAll(st *prState, n nexus, summary string) prOutcome {
	next := &prState{generation: st.generation + 1}
	return prOutcome{next: next, owe: oweAll(st.regs, n, ascReservationsPreempted), summary: summary}
}

// preempt removes the registrations of the key SERVICE ACTION
// RESERVATION KEY names and, if that key holds the reservation, takes it
// for n with the new type (SPC-4 5.13.11).
func (o prOut) preempt(st *prState, n nexus) prOutcome {
	if o.scope != 0 || !o.typ.valid() {
		return prOutcome{res: checkCondition(senseIllegalRequest, ascInvalidFieldInCDB)}
	}
	next := st.clone()
	next.generation++
	out := prOutcome{next: next, owe: map[nexus]uint16{}, aborts: o.action == 0x5}
	// remove drops the registrations that match, but never n's own.
	remove := func(match func(registration) bool) int {
		removed := 0
		next.regs = slices.DeleteFunc(next.regs, func(r registration) bool {
			if r.n == n || !match(r) {
				return false
			}
			out.owe[r.n] = ascRegistrationsPreempted
			removed++
			return true
		})
		return removed
	}
	switch {
	case st.typ.allRegistrants() && o.sark == 0:
		// Zero preempts an all-registrants reservation: every other
		// registrant goes and n alone holds the new one.
		remove(func(registration) bool { return true })
		next.typ, next.holder = o.typ, n
		out.summary = "preempted the reservation"
	case st.typ != 0 && !st.typ.allRegistrants() && st.regs[st.find(st.holder)].key == o.sark:
		remove(func(r registration) bool { return r.key == o.sark })
		next.typ, next.holder = o.typ, n
		out.summary = "preempted the reservation"
	case o.sark == 0:
		return prOutcome{res: checkCondition(senseIllegalRequest, ascInvalidFieldInParams)}
	default:
		if remove(func(r registration) bool { return r.key == o.sark }) == 0 {
			return prOutcome{res: conflict()}
		}
		out.summary = "preempted registrations"
	}
	return out
}

// oweAll owes asc to every registered nexus but n.
func oweAll(regs []registration, n nexus, asc uint16) map[nexus]uint16 {
	owe := map[nexus]uint16{}
	for _, r := range regs {
		if r.n != n {
			owe[r.n] = asc
		}
	}
	return owe
}

// decodePROut reads PERSISTENT RESERVE OUT's CDB and parameter list;
// ptpl says the server keeps reservations through a restart (PTPL_C).
func decodePROut(cdb, params []byte, ptpl bool) (prOut, scsiResult, bool) {
	o := prOut{action: cdb[1] & 0x1f, scope: cdb[2] >> 4, typ: prType(cdb[2] & 0x0f)}
	plen := int(binary.BigEndian.Uint32(cdb[5:]))
	if o.action > 0x6 { // REGISTER AND MOVE and beyond are not served
		return o, withSPDTL(checkCondition(senseIllegalRequest, ascInvalidFieldInCDB), plen), false
	}
	if plen != prParamsLen || len(params) < plen {
		return o, withSPDTL(checkCondition(senseIllegalRequest, ascParamListLengthError), plen), false
	}
	o.key = binary.BigEndian.Uint64(params)
	o.sark = binary.BigEndian.Uint64(params[8:])
	o.aptpl = params[20]&0x01 != 0
	// SPEC_I_PT and ALL_TG_PT ask for what REPORT CAPABILITIES says is
	// not supported (SIP_C and ATP_C are zero), and APTPL too without a
	// Keeper (PTPL_C zero).
	if params[20]&(0x08|0x04) != 0 || o.aptpl && !ptpl {
		return o, withSPDTL(checkCondition(senseIllegalRequest, ascInvalidFieldInParams), plen), false
	}
	return o, scsiResult{spdtl: plen}, true
}

// prIn answers PERSISTENT RESERVE IN from n against st.
func prIn(st *prState, cdb []byte, ptpl bool) scsiResult {
	alloc := int(binary.BigEndian.Uint16(cdb[7:]))
	var d []byte
	switch cdb[1] & 0x1f {
	case 0x0: // READ KEYS
		d = make([]byte, 8, 8+8*len(st.regs))
		for _, r := range st.regs {
			d = binary.BigEndian.AppendUint64(d, r.key)
		}
	case 0x1: // READ RESERVATION
		d = make([]byte, 8, 24)
		if st.typ != 0 {
			var key uint64
			if !st.typ.allRegistrants() {
				key = st.regs[st.find(st.holder)].key
			}
			d = binary.BigEndian.AppendUint64(d, key)
			d = append(d, 0, 0, 0, 0, 0, byte(st.typ), 0, 0)
		}
	case 0x2: // REPORT CAPABILITIES
		d = []byte{0, 8, 0, 0x80, prTypeMaskByte4, prTypeMaskByte5, 0, 0} // TMV; ALLOW COMMANDS 0
		if ptpl {
			d[2] |= 0x01 // PTPL_C
			if st.aptpl {
				d[3] |= 0x01 // PTPL_A
			}
		}
		return scsiResult{data: truncateAlloc(d, alloc)}
	case 0x3: // READ FULL STATUS
		d = make([]byte, 8)
		for _, r := range st.regs {
			d = appendFullStatus(d, st, r)
		}
	default:
		return checkCondition(senseIllegalRequest, ascInvalidFieldInCDB)
	}
	binary.BigEndian.PutUint32(d, st.generation)
	binary.BigEndian.PutUint32(d[4:], uint32(len(d)-8))
	return scsiResult{data: truncateAlloc(d, alloc)}
}

// appendFullStatus appends r's READ FULL STATUS descriptor, whose
// TransportID is iSCSI's with the ISID (format 01b).
func appendFullStatus(d []byte, st *prState, r registration) []byte {
	name := r.n.initiatorPort()
	n := len(name) + 1
	n += pad4(n)
	tid := make([]byte, 4+n)
	tid[0] = 0x40 | 0x05 // format 01b, iSCSI
	binary.BigEndian.PutUint16(tid[2:], uint16(n))
	copy(tid[4:], name)
	desc := binary.BigEndian.AppendUint64(nil, r.key)
	desc = append(desc, 0, 0, 0, 0, 0, 0)
	if st.holds(r.n) {
		desc[12] = 0x01 // R_HOLDER
		desc[13] = byte(st.typ)
	}
	desc = append(desc, 0, 0, 0, 0)
	desc = binary.BigEndian.AppendUint16(desc, r.n.port)
	desc = binary.BigEndian.AppendUint32(desc, uint32(len(tid)))
	return append(append(d, desc...), tid...)
}
