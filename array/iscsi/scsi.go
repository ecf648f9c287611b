package iscsi

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sync"
)

// SCSI status codes.
const (
	statusGood                = 0x00
	statusCheckCondition      = 0x02
	statusReservationConflict = 0x18
)

// Sense keys.
const (
	senseNoSense        = 0x0
	senseNotReady       = 0x2
	senseMediumError    = 0x3
	senseHardwareError  = 0x4
	senseIllegalRequest = 0x5
	senseUnitAttention  = 0x6
	senseDataProtect    = 0x7
	senseAbortedCommand = 0xb
	senseMiscompare     = 0xe
)

// Additional sense codes and qualifiers (ASC<<8 | ASCQ).
const (
	ascNone                   = 0x0000
	ascALUATransition         = 0x040a
	ascPortStandby            = 0x040b
	ascPortUnavailable        = 0x040c
	ascAccessStateChanged     = 0x2a06
	ascUnrecoveredReadError   = 0x1100
	ascParamListLengthError   = 0x1a00
	ascMiscompareDuringVerify = 0x1d00
	ascInvalidOpcode          = 0x2000
	ascLBAOutOfRange          = 0x2100
	ascInvalidFieldInCDB      = 0x2400
	ascLUNotSupported         = 0x2500
	ascInvalidFieldInParams   = 0x2600
	ascWriteProtected         = 0x2700
	ascSpaceAllocFailed       = 0x2707
	ascCapacityChanged        = 0x2a09
	ascSavingNotSupported     = 0x3900
	ascReportedLUNsChanged    = 0x3f0e
	ascInternalTargetFailure  = 0x4400
	ascInvalidFieldInIU       = 0x0e03
	ascCommandsCleared        = 0x2f00
	ascResetOccurred          = 0x2900
)

// Limits advertised in the Block Limits VPD page (in logical blocks).
const (
	maxCompareAndWriteBlocks = 128
	maxUnmapBlocks           = 1 << 20
	maxUnmapDescriptors      = 256
	maxWriteSameBlocks       = MaxTransferBlocks
	optimalTransferBlocks    = 2048
	physicalBlockExponent    = 3 // 4096-byte physical blocks
	vendorID                 = "VOLREP  "
	productRevision          = "0001"
)

// scsiResult is a command's outcome.
type scsiResult struct {
	status  byte
	sense   []byte
	data    []byte // Data-In
	spdtl   int    // Data-Out length the command wanted (for residuals)
	release func() // returns data's buffer
}

func checkCondition(key byte, asc uint16) scsiResult {
	return scsiResult{status: statusCheckCondition, sense: senseData(key, asc, 0, false)}
}

// senseData builds fixed-format sense data (SPC-4 4.5.3).
func senseData(key byte, asc uint16, info uint32, infoValid bool) []byte {
	s := make([]byte, 18)
	s[0] = 0x70
	if infoValid {
		s[0] |= 0x80
		binary.BigEndian.PutUint32(s[3:], info)
	}
	s[2] = key
	s[7] = 10
	s[12] = byte(asc >> 8)
	s[13] = byte(asc)
	return s
}

// lunState is one LUN a session has opened.
type lunState struct {
	dev      Device
	id       Identity
	unit     *unit // the server's, shared by every session that sees the volume
	mu       sync.Mutex
	size     int64  // the capacity last reported to this session
	resets   uint64 // the volume's LOGICAL UNIT RESETs this session has been told of
	access   Access // the ALUA state last reported to this session
	refs     int
	released bool // removed from the session; Close when refs drop to 0
}

// scsiSession is the SCSI side of a session: the LUNs it has opened, its
// unit attentions, and the command set.
type scsiSession struct {
	s                 *Server
	initiator, target string
	nexus             nexus

	mu     sync.Mutex
	luns   map[uint64]*lunState
	closed bool
}

func newSCSISession(s *Server, n nexus) *scsiSession {
	return &scsiSession{s: s, initiator: n.initiator, target: n.target, nexus: n, luns: make(map[uint64]*lunState)}
}

// acquire returns the open LUN, opening it through Targets.Open first.
func (ss *scsiSession) acquire(ctx context.Context, lun uint64) (*lunState, error) {
	ss.mu.Lock()
	if l := ss.luns[lun]; l != nil {
		l.refs++
		ss.mu.Unlock()
		return l, nil
	}
	ss.mu.Unlock()
	dev, err := ss.s.targets.Open(ctx, ss.initiator, ss.target, lun)
	if err != nil {
		return nil, err
	}
	if dev == nil {
		return nil, ErrNotMapped
	}
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.closed {
		dev.Close()
		return nil, ErrUnavailable
	}
	if l := ss.luns[lun]; l != nil { // opened meanwhile
		dev.Close()
		l.refs++
		return l, nil
	}
	id := dev.Identity()
	u := ss.s.unitOf(id.NAA)
	l := &lunState{dev: dev, id: id, unit: u, size: dev.Size(), refs: 1, resets: u.resets.Load(), access: accessOf(dev)}
	ss.luns[lun] = l
	return l, nil
}

func (ss *scsiSession) releaseLUN(l *lunState) {
	ss.mu.Lock()
	l.refs--
	closeIt := l.refs == 0 && l.released
	ss.mu.Unlock()
	if closeIt {
		l.dev.Close()
	}
}

// forget drops a LUN from the session (unmapped); it is closed once no
// command uses it.
func (ss *scsiSession) forget(lun uint64, l *lunState) {
	ss.mu.Lock()
	if ss.luns[lun] == l {
		delete(ss.luns, lun)
		l.released = true
	}
	ss.mu.Unlock()
}

// close releases every LUN; the connection's commands have ended.
func (ss *scsiSession) close() {
	ss.mu.Lock()
	ss.closed = true
	luns := ss.luns
	ss.luns = map[uint64]*lunState{}
	var toClose []Device
	for _, l := range luns {
		l.released = true
		if l.refs == 0 {
			toClose = append(toClose, l.dev)
		}
	}
	ss.mu.Unlock()
	for _, d := range toClose {
		d.Close()
	}
}

// lunExists reports whether the LUN is in the initiator's map.
func (ss *scsiSession) lunExists(ctx context.Context, raw uint64) bool {
	lun, ok := decodeLUN(raw)
	if !ok {
		return false
	}
	luns, err := ss.s.targets.LUNs(ctx, ss.initiator, ss.target)
	if err != nil {
		return false
	}
	for _, l := range luns {
		if l == lun {
			return true
		}
	}
	return false
}

// reset is a LOGICAL UNIT RESET: every session that sees the volume gets
// a unit attention (29h/00h), and a command that came before it but has
// not begun is not run. It returns what is to be done before the reset
// is answered: waiting for the commands running on the volume from every
// session, then, for a ResetSharer, telling the other target. Both may
// wait, so the caller runs it off the connection's reader.
func (ss *scsiSession) reset(raw uint64) (finish func(context.Context)) {
	lun, ok := decodeLUN(raw)
	if !ok {
		return nil
	}
	return ss.resetLUN(lun)
}

// targetReset is a TARGET WARM RESET: a LOGICAL UNIT RESET of every
// logical unit the session's initiator sees through the target (the
// target as this I_T nexus knows it: other initiators' LUN maps name
// other volumes). finish waits for every unit's reset.
func (ss *scsiSession) targetReset(ctx context.Context) (finish func(context.Context)) {
	luns, err := ss.s.targets.LUNs(ctx, ss.initiator, ss.target)
	if err != nil {
		return nil
	}
	var finishes []func(context.Context)
	for _, lun := range luns {
		if f := ss.resetLUN(lun); f != nil {
			finishes = append(finishes, f)
		}
	}
	return func(ctx context.Context) {
		var wg sync.WaitGroup
		for _, f := range finishes {
			wg.Add(1)
			go func() {
				defer wg.Done()
				f(ctx)
			}()
		}
		wg.Wait()
	}
}

func (ss *scsiSession) resetLUN(lun uint64) (finish func(context.Context)) {
	l, err := ss.acquire(ss.s.ctx, lun)
	if err != nil {
		return nil
	}
	defer ss.releaseLUN(l)
	ss.s.resets.Add(1)
	drain := l.unit.reset(ss.s.resetClock.Add(1))
	rs, _ := l.dev.(ResetSharer)
	return func(ctx context.Context) {
		if drain(ctx) == nil && rs != nil {
			rs.ShareReset(ctx)
		}
	}
}

// decodeLUN decodes a single-level LUN (peripheral or flat addressing).
func decodeLUN(raw uint64) (uint64, bool) {
	b0, b1 := byte(raw>>56), byte(raw>>48)
	if raw&0xffffffffffff != 0 {
		return 0, false
	}
	switch b0 >> 6 {
	case 0:
		if b0 != 0 {
			return 0, false
		}
		return uint64(b1), true
	case 1:
		return uint64(b0&0x3f)<<8 | uint64(b1), true
	}
	return 0, false
}

// encodeLUN is decodeLUN's inverse for LUNs below 16384.
func encodeLUN(lun uint64) ([8]byte, bool) {
	var b [8]byte
	switch {
	case lun < 256:
		b[1] = byte(lun)
	case lun < 16384:
		b[0] = 0x40 | byte(lun>>8)
		b[1] = byte(lun)
	default:
		return b, false
	}
	return b, true
}

// exec runs one CDB that arrived at reset clock tick arrived. It always
// returns a status; it never panics on any CDB or data.
func (ss *scsiSession) exec(ctx context.Context, rawLUN uint64, cdb, dataOut []byte, edtl int, budget *byteBudget, arrived uint64) scsiResult {
	if len(cdb) < 16 {
		cdb = append(append(make([]byte, 0, 16), cdb...), make([]byte, 16-len(cdb))...)
	}
	op := cdb[0]
	lun, lunOK := decodeLUN(rawLUN)
	switch op {
	case 0xa0:
		return ss.reportLUNs(ctx, cdb)
	case 0x12, 0x03:
		l, err := ss.lunFor(ctx, lun, lunOK)
		if err != nil {
			if op == 0x12 {
				return inquiryNoLUN(cdb)
			}
			return requestSense(cdb, senseIllegalRequest, ascLUNotSupported)
		}
		defer ss.releaseLUN(l)
		if op == 0x12 {
			return ss.inquiry(l, cdb)
		}
		return requestSense(cdb, senseNoSense, ascNone)
	}
	l, err := ss.lunFor(ctx, lun, lunOK)
	if err != nil {
		return ss.deviceError(lun, nil, err, false)
	}
	defer ss.releaseLUN(l)
	// Counted as running before it looks for a reset: a reset's drain
	// either waits for it or was recorded before it looks. Persistent
	// reservation commands touch no data, and PREEMPT AND ABORT drains the
	// unit itself, so they are not counted.
	if op != 0x5e && op != 0x5f {
		defer l.unit.running.begin(ss.nexus)()
	}
	// A LOGICAL UNIT RESET (from any session), a capacity change and a
	// change of ALUA state are unit attentions, each reported once. The
	// last is what makes a host's multipath ask REPORT TARGET PORT GROUPS
	// again and move its I/O to the other array's paths. A command that
	// arrived before a reset of its unit gets the reset's attention even
	// once its session was told of the reset: it did not run before the
	// reset was answered, so it must not run after.
	resets := l.unit.resets.Load()
	size := l.dev.Size()
	access := accessOf(l.dev)
	l.mu.Lock()
	reset := resets != l.resets || l.unit.endedByReset(arrived)
	l.resets = resets
	changed := !reset && size != l.size
	if changed {
		l.size = size
	}
	// REPORT TARGET PORT GROUPS is how a host learns the new state, so it
	// is answered rather than held up, and leaves the attention pending.
	moved := !reset && !changed && access != l.access && op != 0xa3
	if moved {
		l.access = access
	}
	l.mu.Unlock()
	switch {
	case reset:
		return checkCondition(senseUnitAttention, ascResetOccurred)
	case changed:
		return checkCondition(senseUnitAttention, ascCapacityChanged)
	case moved:
		return checkCondition(senseUnitAttention, ascAccessStateChanged)
	}
	if asc, owed := l.unit.pr.takeOwed(ss.nexus); owed {
		return checkCondition(senseUnitAttention, asc)
	}
	if r, refused := refuseInState(access.State, op); refused {
		return r
	}
	if l.unit.pr.conflicts(ss.nexus, cdb) {
		ss.s.conflicts.Add(1)
		return scsiResult{status: statusReservationConflict}
	}
	c := cmd{ss: ss, l: l, lun: lun, cdb: cdb, out: dataOut, edtl: edtl, budget: budget,
		blocks: uint64(size) / BlockSize}
	return c.run(ctx)
}

func (ss *scsiSession) lunFor(ctx context.Context, lun uint64, ok bool) (*lunState, error) {
	if !ok {
		return nil, ErrNotMapped
	}
	return ss.acquire(ctx, lun)
}

// deviceError maps a Device (or Targets.Open) error to sense data.
func (ss *scsiSession) deviceError(lun uint64, l *lunState, err error, read bool) scsiResult {
	switch {
	case errors.Is(err, ErrNotMapped):
		if l != nil {
			ss.forget(lun, l)
		}
		return checkCondition(senseIllegalRequest, ascLUNotSupported)
	case errors.Is(err, ErrWriteProtected):
		return checkCondition(senseDataProtect, ascWriteProtected)
	case errors.Is(err, ErrNoSpace):
		return checkCondition(senseDataProtect, ascSpaceAllocFailed)
	case errors.Is(err, ErrUnavailable):
		return checkCondition(senseNotReady, ascPortUnavailable)
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return checkCondition(senseAbortedCommand, ascCommandsCleared)
	case read:
		ss.s.log.Warn("iscsi: read failed", "initiator", ss.initiator, "target", ss.target, "lun", lun, "err", err)
		return checkCondition(senseMediumError, ascUnrecoveredReadError)
	default:
		ss.s.log.Warn("iscsi: command failed", "initiator", ss.initiator, "target", ss.target, "lun", lun, "err", err)
		return checkCondition(senseHardwareError, ascInternalTargetFailure)
	}
}

// reportLUNs answers REPORT LUNS from Targets.LUNs, read anew each time.
func (ss *scsiSession) reportLUNs(ctx context.Context, cdb []byte) scsiResult {
	alloc := binary.BigEndian.Uint32(cdb[6:])
	if sel := cdb[2]; (sel > 2 && sel < 0x10) || sel > 0x12 || alloc < 16 {
		return checkCondition(senseIllegalRequest, ascInvalidFieldInCDB)
	}
	luns, err := ss.s.targets.LUNs(ctx, ss.initiator, ss.target)
	if err != nil {
		return ss.deviceError(0, nil, err, false)
	}
	if sel := cdb[2]; sel == 0x01 || sel == 0x11 {
		luns = nil // no well-known LUNs
	}
	data := make([]byte, 8, 8+8*len(luns))
	for _, lun := range luns {
		if b, ok := encodeLUN(lun); ok {
			data = append(data, b[:]...)
		}
	}
	binary.BigEndian.PutUint32(data, uint32(len(data)-8))
	// Forget LUNs no longer mapped.
	ss.mu.Lock()
	for lun, l := range ss.luns {
		mapped := false
		for _, m := range luns {
			mapped = mapped || m == lun
		}
		if !mapped {
			delete(ss.luns, lun)
			l.released = true
			if l.refs == 0 {
				defer l.dev.Close()
			}
		}
	}
	ss.mu.Unlock()
	return scsiResult{data: truncateAlloc(data, int(alloc))}
}

func truncateAlloc(data []byte, alloc int) []byte {
	if len(data) > alloc {
		return data[:alloc]
	}
	return data
}

// requestSense returns sense data (REQUEST SENSE), fixed or descriptor.
func requestSense(cdb []byte, key byte, asc uint16) scsiResult {
	if cdb[1]&1 != 0 { // DESC
		d := make([]byte, 8)
		d[0] = 0x72
		d[1] = key
		d[2] = byte(asc >> 8)
		d[3] = byte(asc)
		return scsiResult{data: truncateAlloc(d, int(cdb[4]))}
	}
	return scsiResult{data: truncateAlloc(senseData(key, asc, 0, false), int(cdb[4]))}
}

// inquiryNoLUN answers INQUIRY for a LUN not mapped: peripheral
// qualifier 011b, no device.
func inquiryNoLUN(cdb []byte) scsiResult {
	if cdb[1]&1 != 0 || cdb[2] != 0 {
		return checkCondition(senseIllegalRequest, ascLUNotSupported)
	}
	d := make([]byte, 36)
	d[0] = 0x7f
	d[2] = 0x06
	d[3] = 0x02
	d[4] = 31
	copy(d[8:], vendorID)
	return scsiResult{data: truncateAlloc(d, int(binary.BigEndian.Uint16(cdb[3:])))}
}

// cmd is one command against an open LUN.
type cmd struct {
	ss     *scsiSession
	l      *lunState
	lun    uint64
	cdb    []byte
	out    []byte // Data-Out
	edtl   int
	budget *byteBudget
	blocks uint64 // capacity in logical blocks
}

func (c *cmd) invalidCDB() scsiResult {
	return checkCondition(senseIllegalRequest, ascInvalidFieldInCDB)
}

func (c *cmd) fail(err error, read bool) scsiResult {
	return c.ss.deviceError(c.lun, c.l, err, read)
}

// rwArgs decodes LBA, block count and the flags byte of the READ, WRITE,
// VERIFY, WRITE SAME, SYNCHRONIZE CACHE and PRE-FETCH families.
func rwArgs(cdb []byte) (lba, n uint64, ok bool) {
	switch cdb[0] >> 5 {
	case 0: // 6-byte
		lba = uint64(cdb[1]&0x1f)<<16 | uint64(cdb[2])<<8 | uint64(cdb[3])
		n = uint64(cdb[4])
		if n == 0 && (cdb[0] == 0x08 || cdb[0] == 0x0a) {
			n = 256
		}
	case 1, 2: // 10-byte
		lba = uint64(binary.BigEndian.Uint32(cdb[2:]))
		n = uint64(binary.BigEndian.Uint16(cdb[7:]))
	case 5: // 12-byte
		lba = uint64(binary.BigEndian.Uint32(cdb[2:]))
		n = uint64(binary.BigEndian.Uint32(cdb[6:]))
	case 4: // 16-byte
		lba = binary.BigEndian.Uint64(cdb[2:])
		n = uint64(binary.BigEndian.Uint32(cdb[10:]))
	default:
		return 0, 0, false
	}
	return lba, n, true
}

// inRange checks [lba, lba+n) against the capacity.
func (c *cmd) inRange(lba, n uint64) bool {
	return lba <= c.blocks && n <= c.blocks-lba
}

func (c *cmd) run(ctx context.Context) scsiResult {
	cdb := c.cdb
	switch op := cdb[0]; op {
	case 0x00: // TEST UNIT READY
		return scsiResult{}
	case 0x1b: // START STOP UNIT: nothing to spin
		return scsiResult{}
	case 0x25:
		return c.readCapacity10()
	case 0x9e:
		switch cdb[1] & 0x1f {
		case 0x10:
			return c.readCapacity16()
		case 0x12:
			return c.getLBAStatus(ctx)
		}
		return c.invalidCDB()
	case 0x1a, 0x5a:
		return c.modeSense()
	case 0x08, 0x28, 0xa8, 0x88:
		return c.read(ctx)
	case 0x0a, 0x2a, 0xaa, 0x8a, 0x2e, 0xae, 0x8e:
		return c.write(ctx)
	case 0x2f, 0xaf, 0x8f:
		return c.verify(ctx)
	case 0x35, 0x91:
		return c.synchronizeCache(ctx)
	case 0x34, 0x90:
		return c.prefetch()
	case 0x42:
		return c.unmap(ctx)
	case 0x41, 0x93:
		return c.writeSame(ctx)
	case 0x89:
		return c.compareAndWrite(ctx)
	case 0x5e:
		return c.persistentReserveIn()
	case 0x5f:
		return c.persistentReserveOut(ctx)
	case 0xa3:
		switch cdb[1] & 0x1f {
		case 0x0a:
			return c.reportTargetPortGroups()
		case 0x0c:
			return c.reportSupportedOpcodes()
		}
		return checkCondition(senseIllegalRequest, ascInvalidFieldInCDB)
	}
	return checkCondition(senseIllegalRequest, ascInvalidOpcode)
}

func (c *cmd) readCapacity10() scsiResult {
	if c.cdb[8]&1 == 0 && binary.BigEndian.Uint32(c.cdb[2:]) != 0 {
		return c.invalidCDB()
	}
	d := make([]byte, 8)
	last := c.blocks - 1
	if c.blocks == 0 {
		last = 0
	}
	binary.BigEndian.PutUint32(d, uint32(min(last, 0xffffffff)))
	binary.BigEndian.PutUint32(d[4:], BlockSize)
	return scsiResult{data: d}
}

func (c *cmd) readCapacity16() scsiResult {
	d := make([]byte, 32)
	last := c.blocks - 1
	if c.blocks == 0 {
		last = 0
	}
	binary.BigEndian.PutUint64(d, last)
	binary.BigEndian.PutUint32(d[8:], BlockSize)
	d[13] = physicalBlockExponent
	d[14] = 0x80 | 0x40 // LBPME, LBPRZ
	return scsiResult{data: truncateAlloc(d, int(binary.BigEndian.Uint32(c.cdb[10:])))}
}

func (c *cmd) read(ctx context.Context) scsiResult {
	cdb := c.cdb
	lba, n, _ := rwArgs(cdb)
	if cdb[0] != 0x08 && cdb[1]&0xe0 != 0 { // RDPROTECT: no protection information
		return c.invalidCDB()
	}
	if !c.inRange(lba, n) {
		return checkCondition(senseIllegalRequest, ascLBAOutOfRange)
	}
	if n == 0 {
		return scsiResult{}
	}
	if n > MaxTransferBlocks {
		return c.invalidCDB()
	}
	size := int(n) * BlockSize
	buf, release, err := c.budget.allocate(ctx, size)
	if err != nil {
		return c.fail(err, true)
	}
	if err := c.l.dev.ReadAt(ctx, buf, int64(lba)*BlockSize); err != nil {
		release()
		return c.fail(err, true)
	}
	return scsiResult{data: buf, release: release}
}

// writable checks a write's protection; nil means go ahead.
func (c *cmd) readOnly() bool { return c.l.dev.ReadOnly() }

func (c *cmd) write(ctx context.Context) scsiResult {
	cdb := c.cdb
	lba, n, _ := rwArgs(cdb)
	res := scsiResult{spdtl: int(n) * BlockSize}
	if cdb[0] != 0x0a && cdb[1]&0xe0 != 0 { // WRPROTECT
		return withSPDTL(c.invalidCDB(), res.spdtl)
	}
	if !c.inRange(lba, n) {
		return withSPDTL(checkCondition(senseIllegalRequest, ascLBAOutOfRange), res.spdtl)
	}
	if n > MaxTransferBlocks {
		return withSPDTL(c.invalidCDB(), res.spdtl)
	}
	if c.readOnly() {
		return withSPDTL(checkCondition(senseDataProtect, ascWriteProtected), res.spdtl)
	}
	// With an iSCSI expected length short of the CDB's, only the data
	// sent is written (FCP-4's rule, which libiscsi's suite checks); a
	// longer one has its excess ignored. Residuals report either.
	data := c.out[:min(len(c.out), res.spdtl)]
	if len(data) == 0 {
		return res
	}
	fua := cdb[0] != 0x0a && cdb[1]&0x08 != 0
	if cdb[0] == 0x2e || cdb[0] == 0xae || cdb[0] == 0x8e {
		fua = true // WRITE AND VERIFY: the medium must hold the data
	}
	off := int64(lba) * BlockSize
	defer c.writeLock()()
	whole := len(data) / BlockSize * BlockSize
	if whole > 0 {
		if err := c.l.dev.WriteAt(ctx, data[:whole], off, fua); err != nil {
			return withSPDTL(c.fail(err, false), res.spdtl)
		}
	}
	if tail := data[whole:]; len(tail) > 0 {
		// A partial block: read, modify, write.
		blk := make([]byte, BlockSize)
		if err := c.l.dev.ReadAt(ctx, blk, off+int64(whole)); err != nil {
			return withSPDTL(c.fail(err, true), res.spdtl)
		}
		copy(blk, tail)
		if err := c.l.dev.WriteAt(ctx, blk, off+int64(whole), fua); err != nil {
			return withSPDTL(c.fail(err, false), res.spdtl)
		}
	}
	return res
}

func withSPDTL(r scsiResult, spdtl int) scsiResult {
	r.spdtl = spdtl
	return r
}

func (c *cmd) verify(ctx context.Context) scsiResult {
	cdb := c.cdb
	lba, n, _ := rwArgs(cdb)
	if cdb[1]&0xe0 != 0 { // VRPROTECT
		return c.invalidCDB()
	}
	bytchk := cdb[1] >> 1 & 3
	var spdtl int
	switch bytchk {
	case 0:
	case 1:
		spdtl = int(n) * BlockSize
	case 3:
		spdtl = BlockSize
	default:
		return c.invalidCDB()
	}
	if !c.inRange(lba, n) {
		return withSPDTL(checkCondition(senseIllegalRequest, ascLBAOutOfRange), spdtl)
	}
	if n > MaxTransferBlocks {
		return withSPDTL(c.invalidCDB(), spdtl)
	}
	if bytchk == 0 || n == 0 {
		return scsiResult{spdtl: spdtl}
	}
	if c.edtl != spdtl || len(c.out) != spdtl {
		return withSPDTL(checkCondition(senseIllegalRequest, ascInvalidFieldInIU), spdtl)
	}
	size := int(n) * BlockSize
	buf, release, err := c.budget.allocate(ctx, size)
	if err != nil {
		return withSPDTL(c.fail(err, true), spdtl)
	}
	defer release()
	if err := c.l.dev.ReadAt(ctx, buf, int64(lba)*BlockSize); err != nil {
		return withSPDTL(c.fail(err, true), spdtl)
	}
	for i := 0; i < size; i++ {
		want := c.out[i%len(c.out)]
		if buf[i] != want {
			return scsiResult{status: statusCheckCondition, spdtl: spdtl,
				sense: senseData(senseMiscompare, ascMiscompareDuringVerify, uint32(i), true)}
		}
	}
	return scsiResult{spdtl: spdtl}
}

func (c *cmd) synchronizeCache(ctx context.Context) scsiResult {
	lba, n, _ := rwArgs(c.cdb)
	if !c.inRange(lba, n) {
		return checkCondition(senseIllegalRequest, ascLBAOutOfRange)
	}
	if err := c.l.dev.Flush(ctx); err != nil {
		return c.fail(err, false)
	}
	return scsiResult{}
}

func (c *cmd) prefetch() scsiResult {
	lba, n, _ := rwArgs(c.cdb)
	if !c.inRange(lba, n) {
		return checkCondition(senseIllegalRequest, ascLBAOutOfRange)
	}
	return scsiResult{}
}

// unmap deallocates the parameter list's ranges through Device.Zero.
func (c *cmd) unmap(ctx context.Context) scsiResult {
	cdb := c.cdb
	plen := int(binary.BigEndian.Uint16(cdb[7:]))
	res := scsiResult{spdtl: plen}
	if cdb[1]&1 != 0 { // ANCHOR
		return withSPDTL(c.invalidCDB(), plen)
	}
	if c.readOnly() {
		return withSPDTL(checkCondition(senseDataProtect, ascWriteProtected), plen)
	}
	if plen == 0 {
		return res
	}
	if plen < 8 || len(c.out) < plen {
		return withSPDTL(checkCondition(senseIllegalRequest, ascParamListLengthError), plen)
	}
	p := c.out[:plen]
	descLen := int(binary.BigEndian.Uint16(p[2:]))
	if descLen%16 != 0 || 8+descLen > plen {
		return withSPDTL(checkCondition(senseIllegalRequest, ascParamListLengthError), plen)
	}
	if descLen/16 > maxUnmapDescriptors {
		return withSPDTL(checkCondition(senseIllegalRequest, ascInvalidFieldInParams), plen)
	}
	type rng struct{ lba, n uint64 }
	var ranges []rng
	for off := 8; off < 8+descLen; off += 16 {
		lba := binary.BigEndian.Uint64(p[off:])
		n := uint64(binary.BigEndian.Uint32(p[off+8:]))
		if !c.inRange(lba, n) {
			return withSPDTL(checkCondition(senseIllegalRequest, ascLBAOutOfRange), plen)
		}
		if n > maxUnmapBlocks {
			return withSPDTL(checkCondition(senseIllegalRequest, ascInvalidFieldInParams), plen)
		}
		if n > 0 {
			ranges = append(ranges, rng{lba, n})
		}
	}
	defer c.writeLock()()
	for _, r := range ranges {
		if err := c.l.dev.Zero(ctx, int64(r.lba)*BlockSize, int64(r.n)*BlockSize, false); err != nil {
			return withSPDTL(c.fail(err, false), plen)
		}
	}
	return res
}

// writeSame writes one block's data over a range: zero data (or the UNMAP
// or NDOB bit) through Device.Zero, anything else by repeated writes.
func (c *cmd) writeSame(ctx context.Context) scsiResult {
	cdb := c.cdb
	lba, n, _ := rwArgs(cdb)
	ndob := cdb[0] == 0x93 && cdb[1]&1 != 0
	spdtl := BlockSize
	if ndob {
		spdtl = 0
	}
	if cdb[1]&0xe0 != 0 || cdb[1]&0x10 != 0 { // WRPROTECT, ANCHOR
		return withSPDTL(c.invalidCDB(), spdtl)
	}
	if n == 0 || n > maxWriteSameBlocks { // WSNZ=1
		return withSPDTL(c.invalidCDB(), spdtl)
	}
	if !c.inRange(lba, n) {
		return withSPDTL(checkCondition(senseIllegalRequest, ascLBAOutOfRange), spdtl)
	}
	if c.readOnly() {
		return withSPDTL(checkCondition(senseDataProtect, ascWriteProtected), spdtl)
	}
	if c.edtl != spdtl || len(c.out) != spdtl {
		return withSPDTL(checkCondition(senseIllegalRequest, ascInvalidFieldInIU), spdtl)
	}
	fua := false
	off, length := int64(lba)*BlockSize, int64(n)*BlockSize
	defer c.writeLock()()
	if ndob || cdb[1]&0x08 != 0 || isZero(c.out) {
		if err := c.l.dev.Zero(ctx, off, length, fua); err != nil {
			return withSPDTL(c.fail(err, false), spdtl)
		}
		return scsiResult{spdtl: spdtl}
	}
	chunk := min(length, 1<<20)
	buf, release, err := c.budget.allocate(ctx, int(chunk))
	if err != nil {
		return withSPDTL(c.fail(err, false), spdtl)
	}
	defer release()
	for i := 0; i < len(buf); i += BlockSize {
		copy(buf[i:], c.out)
	}
	for length > 0 {
		w := min(length, chunk)
		if err := c.l.dev.WriteAt(ctx, buf[:w], off, fua); err != nil {
			return withSPDTL(c.fail(err, false), spdtl)
		}
		off += w
		length -= w
	}
	return scsiResult{spdtl: spdtl}
}

func isZero(b []byte) bool {
	for _, x := range b {
		if x != 0 {
			return false
		}
	}
	return true
}

// writeLock holds the volume's COMPARE AND WRITE lock shared for a write,
// unless the device compares and writes atomically itself (CompareWriter),
// in which case no lock is needed: a sync volume's writes then never wait
// behind one another's peer round trips here.
func (c *cmd) writeLock() (unlock func()) {
	if _, ok := c.l.dev.(CompareWriter); ok {
		return func() {}
	}
	lock := c.ss.s.cawLock(&c.l.id)
	lock.RLock()
	return lock.RUnlock
}

// compareAndWrite compares the first half of the Data-Out with the
// medium and writes the second half if they match: through the device's
// own atomic CompareAndWrite when it has one, else holding the volume's
// lock exclusively so that no other write through this server interleaves.
func (c *cmd) compareAndWrite(ctx context.Context) scsiResult {
	cdb := c.cdb
	lba := binary.BigEndian.Uint64(cdb[2:])
	n := uint64(cdb[13])
	spdtl := 2 * int(n) * BlockSize
	if cdb[1]&0xe0 != 0 {
		return withSPDTL(c.invalidCDB(), spdtl)
	}
	// A count of 0 with data (libiscsi's 256 blocks wrapped to 0) is
	// a malformed request rather than a no-op.
	if n > maxCompareAndWriteBlocks || (n == 0 && c.edtl != 0) {
		return withSPDTL(c.invalidCDB(), spdtl)
	}
	if !c.inRange(lba, n) {
		return withSPDTL(checkCondition(senseIllegalRequest, ascLBAOutOfRange), spdtl)
	}
	if c.readOnly() {
		return withSPDTL(checkCondition(senseDataProtect, ascWriteProtected), spdtl)
	}
	if n == 0 {
		return scsiResult{spdtl: spdtl}
	}
	if c.edtl != spdtl || len(c.out) != spdtl {
		return withSPDTL(checkCondition(senseIllegalRequest, ascInvalidFieldInIU), spdtl)
	}
	size := int(n) * BlockSize
	off := int64(lba) * BlockSize
	if cw, ok := c.l.dev.(CompareWriter); ok {
		err := cw.CompareAndWrite(ctx, c.out[:size], c.out[size:], off, cdb[1]&0x08 != 0)
		if me := (*MiscompareError)(nil); errors.As(err, &me) {
			return scsiResult{status: statusCheckCondition, spdtl: spdtl,
				sense: senseData(senseMiscompare, ascMiscompareDuringVerify, uint32(me.Offset), true)}
		}
		if err != nil {
			return withSPDTL(c.fail(err, false), spdtl)
		}
		return scsiResult{spdtl: spdtl}
	}
	buf, release, err := c.budget.allocate(ctx, size)
	if err != nil {
		return withSPDTL(c.fail(err, false), spdtl)
	}
	defer release()
	lock := c.ss.s.cawLock(&c.l.id)
	lock.Lock()
	defer lock.Unlock()
	if err := c.l.dev.ReadAt(ctx, buf, off); err != nil {
		return withSPDTL(c.fail(err, true), spdtl)
	}
	if !bytes.Equal(buf, c.out[:size]) {
		i := 0
		for buf[i] == c.out[i] {
			i++
		}
		return scsiResult{status: statusCheckCondition, spdtl: spdtl,
			sense: senseData(senseMiscompare, ascMiscompareDuringVerify, uint32(i), true)}
	}
	if err := c.l.dev.WriteAt(ctx, c.out[size:], off, cdb[1]&0x08 != 0); err != nil {
		return withSPDTL(c.fail(err, false), spdtl)
	}
	return scsiResult{spdtl: spdtl}
}

// inquiry answers standard INQUIRY and the VPD pages.
func (ss *scsiSession) inquiry(l *lunState, cdb []byte) scsiResult {
	alloc := int(binary.BigEndian.Uint16(cdb[3:]))
	if cdb[1]&0x02 != 0 { // CmdDt
		return checkCondition(senseIllegalRequest, ascInvalidFieldInCDB)
	}
	if cdb[1]&1 == 0 {
		if cdb[2] != 0 {
			return checkCondition(senseIllegalRequest, ascInvalidFieldInCDB)
		}
		d := make([]byte, 96)
		d[0] = 0x00 // direct access block device
		d[2] = 0x06 // SPC-4
		d[3] = 0x02 | 0x10
		d[4] = byte(len(d) - 5)
		d[5] = 0x10 // TPGS 01b: implicit ALUA (the array changes states; SET TARGET PORT GROUPS is not supported)
		d[7] = 0x02 // CMDQUE
		copy(d[8:16], vendorID)
		product := l.id.Product
		if product == "" {
			product = "volrep"
		}
		copy(d[16:32], fmt.Sprintf("%-16.16s", product))
		copy(d[32:36], productRevision)
		for i, v := range []uint16{0x00a0, 0x0960, 0x0460, 0x04c0} { // SAM-5, iSCSI, SPC-4, SBC-3
			binary.BigEndian.PutUint16(d[58+2*i:], v)
		}
		return scsiResult{data: truncateAlloc(d, alloc)}
	}
	var page []byte
	switch cdb[2] {
	case 0x00:
		page = []byte{0x00, 0x80, 0x83, 0xb0, 0xb1, 0xb2}
	case 0x80:
		page = []byte(l.id.Serial)
		if len(page) == 0 {
			page = []byte(fmt.Sprintf("%x", l.id.NAA[:]))
		}
	case 0x83:
		page = ss.deviceIdentification(l)
	case 0xb0:
		page = make([]byte, 0x3c)
		page[0] = 0x01 // WSNZ
		page[1] = maxCompareAndWriteBlocks
		binary.BigEndian.PutUint16(page[2:], 1<<physicalBlockExponent)
		binary.BigEndian.PutUint32(page[4:], MaxTransferBlocks)
		binary.BigEndian.PutUint32(page[8:], optimalTransferBlocks)
		binary.BigEndian.PutUint32(page[16:], maxUnmapBlocks)
		binary.BigEndian.PutUint32(page[20:], maxUnmapDescriptors)
		binary.BigEndian.PutUint32(page[24:], 1<<physicalBlockExponent)
		page[28] = 0x80 // UGAVALID, alignment 0
		binary.BigEndian.PutUint64(page[32:], maxWriteSameBlocks)
	case 0xb1:
		page = make([]byte, 0x3c)
		binary.BigEndian.PutUint16(page[0:], 1) // non-rotating
	case 0xb2:
		page = make([]byte, 4)
		page[1] = 0x80 | 0x40 | 0x20 | 0x04 // LBPU, LBPWS, LBPWS10, LBPRZ
		page[2] = 0x02                      // thin provisioned
	default:
		return checkCondition(senseIllegalRequest, ascInvalidFieldInCDB)
	}
	d := make([]byte, 4, 4+len(page))
	d[1] = cdb[2]
	binary.BigEndian.PutUint16(d[2:], uint16(len(page)))
	d = append(d, page...)
	return scsiResult{data: truncateAlloc(d, alloc)}
}

// deviceIdentification is VPD page 0x83's designators: the LU's NAA,
// the relative target port, the target port group and the target port's
// SCSI name.
func (ss *scsiSession) deviceIdentification(l *lunState) []byte {
	var p []byte
	p = append(p, 0x01, 0x03, 0x00, 16) // binary, LU, NAA
	p = append(p, l.id.NAA[:]...)
	// One target port per array, numbered as its ALUA group, so the two
	// arrays of a pod never report the same relative port for the LU.
	pg := ss.s.opts.PortGroup
	p = append(p, 0x51, 0x94, 0x00, 4, 0, 0, byte(pg>>8), byte(pg)) // iSCSI, PIV, target port, relative port
	p = append(p, 0x51, 0x95, 0x00, 4, 0, 0, byte(pg>>8), byte(pg)) // target port group
	tpg := ss.s.opts.TargetPortalGroupTag
	name := fmt.Sprintf("%s,t,0x%04x", ss.target, tpg)
	n := len(name) + 1
	n += pad4(n)
	if n <= 252 {
		p = append(p, 0x53, 0x98, 0x00, byte(n)) // UTF-8, PIV, target port, SCSI name string
		p = append(p, name...)
		p = append(p, make([]byte, n-len(name))...)
	}
	return p
}

// modeSense answers MODE SENSE (6) and (10): the caching page (WCE=1) and
// the control page.
func (c *cmd) modeSense() scsiResult {
	cdb := c.cdb
	ten := cdb[0] == 0x5a
	dbd := cdb[1]&0x08 != 0
	pc := cdb[2] >> 6
	page := cdb[2] & 0x3f
	sub := cdb[3]
	var alloc int
	if ten {
		alloc = int(binary.BigEndian.Uint16(cdb[7:]))
	} else {
		alloc = int(cdb[4])
	}
	if pc == 3 {
		return checkCondition(senseIllegalRequest, ascSavingNotSupported)
	}
	caching := make([]byte, 20)
	caching[0], caching[1] = 0x08, 0x12
	control := make([]byte, 12)
	control[0], control[1] = 0x0a, 0x0a
	if pc != 1 { // current or default values; changeable (1) are all zero
		caching[2] = 0x04 // WCE
		control[3] = 0x10 // unrestricted reordering
		binary.BigEndian.PutUint16(control[8:], 0xffff)
	}
	var pages []byte
	switch {
	case page == 0x08 && sub == 0:
		pages = caching
	case page == 0x0a && sub == 0:
		pages = control
	case page == 0x3f && (sub == 0 || sub == 0xff):
		pages = append(caching, control...)
	default:
		return c.invalidCDB()
	}
	var bd []byte
	if !dbd {
		bd = make([]byte, 8)
		binary.BigEndian.PutUint32(bd, uint32(min(c.blocks, 0xffffffff)))
		binary.BigEndian.PutUint32(bd[4:], BlockSize)
	}
	var devSpecific byte = 0x10 // DPOFUA
	if c.readOnly() {
		devSpecific |= 0x80 // WP
	}
	var d []byte
	if ten {
		d = make([]byte, 8)
		d[3] = devSpecific
		binary.BigEndian.PutUint16(d[6:], uint16(len(bd)))
		d = append(append(d, bd...), pages...)
		binary.BigEndian.PutUint16(d, uint16(len(d)-2))
	} else {
		d = make([]byte, 4)
		d[2] = devSpecific
		d[3] = byte(len(bd))
		d = append(append(d, bd...), pages...)
		d[0] = byte(len(d) - 1)
	}
	return scsiResult{data: truncateAlloc(d, alloc)}
}

// opInfo describes a supported command for REPORT SUPPORTED OPERATION
// CODES.
type opInfo struct {
	op     byte
	sa     uint16
	hasSA  bool
	cdbLen int
}

var supportedOps = []opInfo{
	{op: 0x00, cdbLen: 6}, {op: 0x03, cdbLen: 6}, {op: 0x08, cdbLen: 6}, {op: 0x0a, cdbLen: 6},
	{op: 0x12, cdbLen: 6}, {op: 0x1a, cdbLen: 6}, {op: 0x1b, cdbLen: 6},
	{op: 0x25, cdbLen: 10}, {op: 0x28, cdbLen: 10}, {op: 0x2a, cdbLen: 10}, {op: 0x2e, cdbLen: 10},
	{op: 0x2f, cdbLen: 10}, {op: 0x34, cdbLen: 10}, {op: 0x35, cdbLen: 10}, {op: 0x41, cdbLen: 10},
	{op: 0x42, cdbLen: 10}, {op: 0x5a, cdbLen: 10},
	{op: 0x88, cdbLen: 16}, {op: 0x89, cdbLen: 16}, {op: 0x8a, cdbLen: 16}, {op: 0x8e, cdbLen: 16},
	{op: 0x8f, cdbLen: 16}, {op: 0x90, cdbLen: 16}, {op: 0x91, cdbLen: 16}, {op: 0x93, cdbLen: 16},
	{op: 0x9e, sa: 0x10, hasSA: true, cdbLen: 16}, {op: 0x9e, sa: 0x12, hasSA: true, cdbLen: 16},
	{op: 0xa0, cdbLen: 12}, {op: 0xa3, sa: 0x0a, hasSA: true, cdbLen: 12}, {op: 0xa3, sa: 0x0c, hasSA: true, cdbLen: 12},
	{op: 0xa8, cdbLen: 12}, {op: 0xaa, cdbLen: 12}, {op: 0xae, cdbLen: 12}, {op: 0xaf, cdbLen: 12},
}

// reservationOps are PERSISTENT RESERVE IN (READ KEYS, READ RESERVATION,
// REPORT CAPABILITIES, READ FULL STATUS) and OUT (REGISTER to REGISTER
// AND IGNORE EXISTING KEY), served for a unit no other target serves.
var reservationOps = []opInfo{
	{op: 0x5e, sa: 0, hasSA: true, cdbLen: 10}, {op: 0x5e, sa: 1, hasSA: true, cdbLen: 10},
	{op: 0x5e, sa: 2, hasSA: true, cdbLen: 10}, {op: 0x5e, sa: 3, hasSA: true, cdbLen: 10},
	{op: 0x5f, sa: 0, hasSA: true, cdbLen: 10}, {op: 0x5f, sa: 1, hasSA: true, cdbLen: 10},
	{op: 0x5f, sa: 2, hasSA: true, cdbLen: 10}, {op: 0x5f, sa: 3, hasSA: true, cdbLen: 10},
	{op: 0x5f, sa: 4, hasSA: true, cdbLen: 10}, {op: 0x5f, sa: 5, hasSA: true, cdbLen: 10},
	{op: 0x5f, sa: 6, hasSA: true, cdbLen: 10},
}

var opsWithReservations = append(slices.Clone(supportedOps), reservationOps...)

// timeoutsDescriptor is an empty command timeouts descriptor (no
// timeouts reported).
var timeoutsDescriptor = []byte{0x00, 0x0a, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}

func (c *cmd) reportSupportedOpcodes() scsiResult {
	cdb := c.cdb
	rctd := cdb[2]&0x80 != 0
	opts := cdb[2] & 7
	reqOp := cdb[3]
	reqSA := binary.BigEndian.Uint16(cdb[4:])
	alloc := int(binary.BigEndian.Uint32(cdb[6:]))
	ops := opsWithReservations
	if refusesReservations(c.l.dev) {
		ops = supportedOps
	}
	if opts == 0 {
		d := make([]byte, 4)
		for _, o := range ops {
			desc := make([]byte, 8)
			desc[0] = o.op
			binary.BigEndian.PutUint16(desc[2:], o.sa)
			if o.hasSA {
				desc[5] |= 0x01
			}
			binary.BigEndian.PutUint16(desc[6:], uint16(o.cdbLen))
			if rctd {
				desc[5] |= 0x02
				desc = append(desc, timeoutsDescriptor...)
			}
			d = append(d, desc...)
		}
		binary.BigEndian.PutUint32(d, uint32(len(d)-4))
		return scsiResult{data: truncateAlloc(d, alloc)}
	}
	if opts > 3 {
		return c.invalidCDB()
	}
	var found *opInfo
	for i := range ops {
		o := &ops[i]
		if o.op != reqOp {
			continue
		}
		if opts == 1 && o.hasSA {
			return c.invalidCDB()
		}
		if (opts == 2 || opts == 3) && (!o.hasSA || o.sa != reqSA) {
			if !o.hasSA && opts == 2 {
				return c.invalidCDB()
			}
			continue
		}
		found = o
		break
	}
	d := make([]byte, 4)
	if found == nil {
		d[1] = 0x01 // not supported
		return scsiResult{data: truncateAlloc(d, alloc)}
	}
	d[1] = 0x03 // supported as in the standard
	if rctd {
		d[1] |= 0x80
	}
	binary.BigEndian.PutUint16(d[2:], uint16(found.cdbLen))
	usage := make([]byte, found.cdbLen)
	usage[0] = found.op
	for i := 1; i < found.cdbLen-1; i++ {
		usage[i] = 0xff
	}
	usage[found.cdbLen-1] = 0x07 // control byte: NACA, LINK, vendor bits excluded
	if found.hasSA {
		usage[1] = 0x1f
	}
	d = append(d, usage...)
	if rctd {
		d = append(d, timeoutsDescriptor...)
	}
	return scsiResult{data: truncateAlloc(d, alloc)}
}

// getLBAStatus answers GET LBA STATUS. A Device does not report its
// allocation, so the server reads: with LBPRZ, a deallocated block reads
// as zeros, and a range of zeros is reported deallocated (which it may as
// well be). One call scans at most MaxTransferBlocks.
func (c *cmd) getLBAStatus(ctx context.Context) scsiResult {
	lba := binary.BigEndian.Uint64(c.cdb[2:])
	alloc := int(binary.BigEndian.Uint32(c.cdb[10:]))
	if lba >= c.blocks {
		return checkCondition(senseIllegalRequest, ascLBAOutOfRange)
	}
	if alloc < 24 {
		return scsiResult{data: make([]byte, min(alloc, 8))}
	}
	maxDesc := (alloc - 8) / 16
	n := min(c.blocks-lba, MaxTransferBlocks)
	buf, release, err := c.budget.allocate(ctx, int(n)*BlockSize)
	if err != nil {
		return c.fail(err, true)
	}
	defer release()
	if err := c.l.dev.ReadAt(ctx, buf, int64(lba)*BlockSize); err != nil {
		return c.fail(err, true)
	}
	type run struct {
		lba, n uint64
		zero   bool
	}
	var runs []run
	const unit = 1 << physicalBlockExponent
	for b := uint64(0); b < n; {
		// Align units to physical blocks.
		end := min((lba+b)/unit*unit+unit-lba, n)
		zero := isZero(buf[b*BlockSize : end*BlockSize])
		if k := len(runs) - 1; k >= 0 && runs[k].zero == zero {
			runs[k].n += end - b
		} else {
			if len(runs) == maxDesc {
				break
			}
			runs = append(runs, run{lba: lba + b, n: end - b, zero: zero})
		}
		b = end
	}
	d := make([]byte, 8, 8+16*len(runs))
	for _, r := range runs {
		desc := make([]byte, 16)
		binary.BigEndian.PutUint64(desc, r.lba)
		binary.BigEndian.PutUint32(desc[8:], uint32(r.n))
		if r.zero {
			desc[12] = 0x01 // deallocated
		}
		d = append(d, desc...)
	}
	binary.BigEndian.PutUint32(d, uint32(len(d)-4))
	return scsiResult{data: d}
}

// accessOf is the ALUA state a device reports; one that does not is
// active/optimized.
func accessOf(d Device) Access {
	if r, ok := d.(AccessReporter); ok {
		return r.Access()
	}
	return Access{State: ActiveOptimized}
}

// refuseInState answers a media-access command that the LUN's ALUA state
// does not allow (SPC-4 5.15.2.4). INQUIRY, REPORT LUNS and REQUEST SENSE
// never reach here; REPORT TARGET PORT GROUPS and REPORT SUPPORTED
// OPERATION CODES (MAINTENANCE IN) are allowed in every state, MODE SENSE
// in standby.
func refuseInState(st AccessState, op byte) (scsiResult, bool) {
	switch st {
	case ActiveOptimized, ActiveNonOptimized:
		return scsiResult{}, false
	case Standby:
		if op == 0xa3 || op == 0x1a || op == 0x5a {
			return scsiResult{}, false
		}
		return checkCondition(senseNotReady, ascPortStandby), true
	case Unavailable:
		if op == 0xa3 {
			return scsiResult{}, false
		}
		return checkCondition(senseNotReady, ascPortUnavailable), true
	}
	if op == 0xa3 {
		return scsiResult{}, false
	}
	return checkCondition(senseNotReady, ascALUATransition), true
}

// reportTargetPortGroups answers REPORT TARGET PORT GROUPS (MAINTENANCE
// IN, service action 0Ah) with this array's group: one target port, the
// LUN's state now, the PREF bit, and the states it can take. The other
// array of a pod reports its own group on its own paths; a host's ALUA
// handler (Linux scsi_dh_alua) looks up the group VPD page 0x83 names.
func (c *cmd) reportTargetPortGroups() scsiResult {
	cdb := c.cdb
	format := cdb[1] >> 5
	if format > 1 {
		return c.invalidCDB()
	}
	alloc := int(binary.BigEndian.Uint32(cdb[6:]))
	acc := accessOf(c.l.dev)
	pg := c.ss.s.opts.PortGroup
	desc := make([]byte, 12)
	desc[0] = byte(acc.State) & 0x0f
	if acc.Preferred {
		desc[0] |= 0x80
	}
	desc[1] = 0x80 | 0x08 | 0x04 | 0x02 | 0x01 // T_SUP, U_SUP, S_SUP, AN_SUP, AO_SUP
	binary.BigEndian.PutUint16(desc[2:], pg)
	desc[5] = 0x02 // status: altered by implicit asymmetric access behaviour
	desc[7] = 1    // one target port
	binary.BigEndian.PutUint16(desc[10:], pg)
	var d []byte
	if format == 1 {
		d = make([]byte, 8, 8+len(desc))
		d[4] = 0x10 // extended header
		d[5] = 10   // implicit transition time, seconds
	} else {
		d = make([]byte, 4, 4+len(desc))
	}
	d = append(d, desc...)
	binary.BigEndian.PutUint32(d, uint32(len(d)-4))
	return scsiResult{data: truncateAlloc(d, alloc)}
}
