package iscsi

import (
	"encoding/binary"
	"errors"
)

// The messages between two targets. They are versioned by their first
// byte, and decoded with every length checked: they come off the network.
const (
	stateAborts   = 1 << 0 // a PREEMPT AND ABORT: drain the unit before answering
	stateCatchUp  = 1 << 1 // a whole state, for two targets that met again
	keptAPTPL     = 1 << 0 // the state's own flags: the last REGISTER's APTPL
	stateFormat   = 1
	prParamsLen   = 24
	prOutCDBLen   = 10
	maxNameLength = 223 // an iSCSI name (RFC 7143 4.2.7.1)
)

var errBadMessage = errors.New("iscsi: malformed reservation message from the other target")

func appendName(b []byte, s string) []byte {
	b = binary.BigEndian.AppendUint16(b, uint16(len(s)))
	return append(b, s...)
}

func appendNexus(b []byte, n nexus) []byte {
	b = appendName(b, n.initiator)
	b = append(b, n.isid[:]...)
	b = appendName(b, n.target)
	return binary.BigEndian.AppendUint16(b, n.port)
}

// encodeState encodes a state with the attentions it owes and its flags
// (stateAborts, stateCatchUp).
func encodeState(st *prState, owe map[nexus]uint16, flags byte) []byte {
	b := []byte{stateFormat}
	b = binary.BigEndian.AppendUint64(b, st.version)
	b = binary.BigEndian.AppendUint32(b, st.generation)
	var kept byte
	if st.aptpl {
		kept = keptAPTPL
	}
	b = append(b, byte(st.typ), flags, kept)
	holder := -1
	if st.typ != 0 && !st.typ.allRegistrants() {
		holder = st.find(st.holder)
	}
	b = binary.BigEndian.AppendUint16(b, uint16(int16(holder)))
	b = binary.BigEndian.AppendUint16(b, uint16(len(st.regs)))
	for _, r := range st.regs {
		b = appendNexus(b, r.n)
		b = binary.BigEndian.AppendUint64(b, r.key)
	}
	b = binary.BigEndian.AppendUint16(b, uint16(len(owe)))
	for n, asc := range owe {
		b = appendNexus(b, n)
		b = binary.BigEndian.AppendUint16(b, asc)
	}
	return b
}

// reader decodes a message, remembering the first overrun.
type reader struct {
	b   []byte
	bad bool
}

func (r *reader) take(n int) []byte {
	if r.bad || n > len(r.b) {
		r.bad = true
		return make([]byte, n)
	}
	p := r.b[:n]
	r.b = r.b[n:]
	return p
}

func (r *reader) u8() byte    { return r.take(1)[0] }
func (r *reader) u16() uint16 { return binary.BigEndian.Uint16(r.take(2)) }
func (r *reader) u32() uint32 { return binary.BigEndian.Uint32(r.take(4)) }
func (r *reader) u64() uint64 { return binary.BigEndian.Uint64(r.take(8)) }

func (r *reader) name() string {
	n := int(r.u16())
	if n > maxNameLength {
		r.bad = true
		return ""
	}
	return string(r.take(n))
}

func (r *reader) nexus() nexus {
	var n nexus
	n.initiator = r.name()
	copy(n.isid[:], r.take(6))
	n.target = r.name()
	n.port = r.u16()
	return n
}

func decodeState(b []byte) (st *prState, owe map[nexus]uint16, flags byte, err error) {
	r := &reader{b: b}
	if r.u8() != stateFormat {
		return nil, nil, 0, errBadMessage
	}
	st = &prState{version: r.u64(), generation: r.u32(), typ: prType(r.u8())}
	flags = r.u8()
	st.aptpl = r.u8()&keptAPTPL != 0
	holder := int(int16(r.u16()))
	nregs := int(r.u16())
	for i := 0; i < nregs && !r.bad; i++ {
		st.regs = append(st.regs, registration{n: r.nexus(), key: r.u64()})
	}
	nowe := int(r.u16())
	owe = map[nexus]uint16{}
	for i := 0; i < nowe && !r.bad; i++ {
		owe[r.nexus()] = r.u16()
	}
	switch {
	case r.bad, len(r.b) != 0, st.typ != 0 && !st.typ.valid(), holder >= len(st.regs):
		return nil, nil, 0, errBadMessage
	case st.typ != 0 && !st.typ.allRegistrants():
		if holder < 0 {
			return nil, nil, 0, errBadMessage
		}
		st.holder = st.regs[holder].n
	}
	return st, owe, flags, nil
}

func encodeReservationOut(n nexus, cdb, params []byte) []byte {
	b := appendNexus([]byte{stateFormat}, n)
	b = append(b, cdb[:prOutCDBLen]...)
	return append(b, params[:prParamsLen]...)
}

func decodeReservationOut(b []byte) (n nexus, cdb, params []byte, err error) {
	r := &reader{b: b}
	if r.u8() != stateFormat {
		return n, nil, nil, errBadMessage
	}
	n = r.nexus()
	// decodePROut reads a 16-byte CDB, as exec pads every CDB to.
	cdb = append(append(make([]byte, 0, 16), r.take(prOutCDBLen)...), make([]byte, 16-prOutCDBLen)...)
	params = r.take(prParamsLen)
	if r.bad || len(r.b) != 0 || cdb[0] != 0x5f {
		return n, nil, nil, errBadMessage
	}
	return n, cdb, params, nil
}

func encodeReservationReply(res scsiResult) []byte {
	return append([]byte{stateFormat, res.status}, res.sense...)
}

func decodeReservationReply(b []byte) (scsiResult, error) {
	if len(b) < 2 || b[0] != stateFormat || len(b) > 2+252 {
		return scsiResult{}, errBadMessage
	}
	r := scsiResult{status: b[1]}
	if len(b) > 2 {
		r.sense = b[2:]
	}
	return r, nil
}
