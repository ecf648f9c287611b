package iscsi

import (
	"context"
	"errors"
	"strconv"
)

// Device is the logical unit behind one LUN of a session. The server calls
// its methods concurrently (from every session that sees the same volume).
// Offsets and lengths are in bytes, always multiples of BlockSize and
// within [0, Size()); the server checks them first.
//
// Errors map to SCSI sense data (see the Err* values below); any other
// error is MEDIUM ERROR / UNRECOVERED READ ERROR for reads and HARDWARE
// ERROR / INTERNAL TARGET FAILURE otherwise. Errors never end the session.
type Device interface {
	// Size is the capacity in bytes. It may grow while the device is open
	// (online extend); the server then reports CAPACITY DATA HAS CHANGED
	// once to every session that sees the LUN.
	Size() int64
	// ReadOnly reports a write-protected LUN (a snapshot, a replica target
	// copy): writes, UNMAP and WRITE SAME get DATA PROTECT / WRITE
	// PROTECTED without calling the device.
	ReadOnly() bool
	// ReadAt fills p with the bytes at off; unwritten ranges read as zeros.
	ReadAt(ctx context.Context, p []byte, off int64) error
	// WriteAt writes p at off. With fua the data is durable before it
	// returns. p is only valid during the call.
	WriteAt(ctx context.Context, p []byte, off int64, fua bool) error
	// Flush makes every write acknowledged before it durable, on every
	// session to the same volume (SYNCHRONIZE CACHE).
	Flush(ctx context.Context) error
	// Zero makes [off, off+length) read as zeros, deallocating what it can
	// (UNMAP, WRITE SAME with zero data).
	Zero(ctx context.Context, off, length int64, fua bool) error
	// Identity is the LUN's SCSI identity, stable for the volume's life
	// and the same on every array that serves it (INQUIRY VPD 0x80, 0x83).
	Identity() Identity
	// Close releases the device; the session calls it when the LUN leaves
	// its map or the session ends.
	Close()
}

// Identity names a logical unit.
type Identity struct {
	// NAA is the 16-byte NAA IEEE Registered Extended designator (NAA 6)
	// reported in VPD page 0x83; it is the WWN multipath and Cinder key on.
	NAA [16]byte
	// Serial is VPD page 0x80's unit serial number (printable ASCII).
	Serial string
	// Product is INQUIRY's product identification (at most 16 bytes).
	Product string
}

// AccessState is an ALUA asymmetric access state (SPC-4 5.15.2): what a
// host's multipath may do through this array's target port group.
type AccessState byte

const (
	// ActiveOptimized: every command, and the path a host should prefer.
	ActiveOptimized AccessState = 0x0
	// ActiveNonOptimized: every command, slower than an optimized path
	// (a pod's copy at the array that forwards its writes to the other).
	ActiveNonOptimized AccessState = 0x1
	// Standby: only INQUIRY, REPORT LUNS, REPORT TARGET PORT GROUPS,
	// MODE SENSE and REQUEST SENSE; media access gets NOT READY / TARGET
	// PORT IN STANDBY STATE (04h/0Bh).
	Standby AccessState = 0x2
	// Unavailable: as Standby without MODE SENSE; media access gets NOT
	// READY / TARGET PORT IN UNAVAILABLE STATE (04h/0Ch). A pod its
	// mediator stopped.
	Unavailable AccessState = 0x3
	// Transitioning: NOT READY / ASYMMETRIC ACCESS STATE TRANSITION
	// (04h/0Ah), which a host retries.
	Transitioning AccessState = 0xf
)

func (s AccessState) String() string {
	switch s {
	case ActiveOptimized:
		return "active/optimized"
	case ActiveNonOptimized:
		return "active/non-optimized"
	case Standby:
		return "standby"
	case Unavailable:
		return "unavailable"
	case Transitioning:
		return "transitioning"
	}
	return "AccessState(" + strconv.Itoa(int(s)) + ")"
}

// Access is what this server's target port group reports for a LUN.
type Access struct {
	State AccessState
	// Preferred sets the PREF bit: the host's preferred array for the
	// volume (volrep_preferred_array of its pod).
	Preferred bool
}

// AccessReporter may be implemented by a Device whose volume is served by
// more than one array (a pod stretched over two), so that a host's
// multipath learns which array's paths to use. The server asks it on
// every command, so it must be cheap and never wait. A Device without it
// is active/optimized.
type AccessReporter interface {
	Access() Access
}

// Errors a Device (or Targets.Open) returns to get a specific sense.
var (
	// ErrWriteProtected: DATA PROTECT / WRITE PROTECTED (27h/00h).
	ErrWriteProtected = errors.New("iscsi: the logical unit is write protected")
	// ErrNotMapped: the LUN was unmapped from this initiator (revoked).
	// ILLEGAL REQUEST / LOGICAL UNIT NOT SUPPORTED (25h/00h).
	ErrNotMapped = errors.New("iscsi: the logical unit is not mapped to this initiator")
	// ErrNoSpace: DATA PROTECT / SPACE ALLOCATION FAILED WRITE PROTECT
	// (27h/07h), as thin-provisioned arrays report a full pool.
	ErrNoSpace = errors.New("iscsi: no space left for the write")
	// ErrUnavailable: the LUN cannot serve I/O now (its pod stopped, the
	// array is shutting down). NOT READY / LOGICAL UNIT NOT ACCESSIBLE,
	// TARGET PORT IN UNAVAILABLE STATE (04h/0Ch), the ALUA state a host's
	// multipath fails the path over on.
	ErrUnavailable = errors.New("iscsi: the logical unit is unavailable")
)

// ResetSharer may be implemented by a Device whose logical unit another
// target serves too (a pod's copy at its other array, with the same
// identity): a LOGICAL UNIT RESET at either acts at both, as SAM has it
// for every I_T nexus of the logical unit. The other target hears of it
// through Server.SharedReset.
type ResetSharer interface {
	// ShareReset tells the other target of a LOGICAL UNIT RESET here, and
	// returns once that target has applied it (Server.SharedReset, its
	// drain included), gave up, or ctx ended, so the reset is answered
	// only when the unit is reset at both.
	ShareReset(ctx context.Context)
}

// CompareWriter may be implemented by a Device that compares and writes
// atomically against every writer of the volume, not only this server's
// sessions (an NBD client of the same volume, a sync peer, the hosts of a
// pod's other array). The server then
// serves COMPARE AND WRITE through it and takes no lock of its own around
// writes, so no write waits behind another's round trip to a sync peer.
// Without it the server serialises COMPARE AND WRITE against the writes
// of its own sessions only.
type CompareWriter interface {
	// CompareAndWrite writes data at off if the bytes there equal cmp
	// (as long as data); otherwise it changes nothing and returns a
	// *MiscompareError.
	CompareAndWrite(ctx context.Context, cmp, data []byte, off int64, fua bool) error
}

// MiscompareError reports the first byte, counted from the start of the
// compared range, at which a CompareWriter found different data.
type MiscompareError struct{ Offset int }

func (e *MiscompareError) Error() string {
	return "iscsi: miscompare at byte " + strconv.Itoa(e.Offset)
}
