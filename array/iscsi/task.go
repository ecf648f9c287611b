package iscsi

import (
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/volrep/volrep/internal/latency"
)

// maxCommandData is the largest data transfer one command may carry.
const maxCommandData = MaxTransferBlocks * BlockSize

// scsiCommand starts a SCSI Command: it admits it into the window,
// collects its Data-Out and hands it to a worker.
func (c *conn) scsiCommand(p *pdu) bool {
	flags := p.flags()
	t := &task{
		itt:     p.itt(),
		cmdSN:   p.u32(24),
		lun:     p.lun(),
		edtl:    int(p.u32(20)),
		read:    flags&0x40 != 0,
		write:   flags&0x20 != 0,
		attr:    flags & 7,
		arrived: c.s.resetClock.Load(),
		ttt:     reservedTag,
		done:    make(chan struct{}),
	}
	t.cdb = append(make([]byte, 0, 16), p.bhs[32:48]...)
	if ext := extendedCDB(p.ahs); ext != nil {
		t.cdb = append(t.cdb, ext...)
	}
	c.mu.Lock()
	if !p.immediate() && t.cmdSN != c.expCmdSN {
		exp := c.expCmdSN
		c.mu.Unlock()
		c.log.Warn("iscsi: command outside the window; ignored", "remote", c.remote,
			"initiator", c.initiator, "cmdsn", t.cmdSN, "expcmdsn", exp)
		return true
	}
	if c.inflight >= c.s.opts.QueueDepth {
		c.mu.Unlock()
		if p.immediate() {
			return c.reject(p, 0x06)
		}
		// CmdSN is past MaxCmdSN: the initiator ignored the window.
		c.s.protoErrors.Add(1)
		c.log.Debug("iscsi: command past MaxCmdSN; ignored", "remote", c.remote, "cmdsn", t.cmdSN)
		return true
	}
	if _, dup := c.tasks[t.itt]; dup {
		if !p.immediate() {
			c.expCmdSN++
		}
		c.mu.Unlock()
		return c.reject(p, 0x07) // task in progress
	}
	if !p.immediate() {
		c.expCmdSN++
	}
	c.inflight++
	c.tasks[t.itt] = t
	c.mu.Unlock()
	c.s.inflight.Add(1)
	c.s.commands.Add(1)

	if !t.write || t.edtl == 0 {
		c.start(t)
		return true
	}
	imm := len(p.data)
	if imm > 0 && (!c.immediateData || imm > c.firstBurst || imm > t.edtl) {
		c.protocolError("immediate data", fmt.Errorf("%d bytes, FirstBurstLength %d, EDTL %d, ImmediateData %v",
			imm, c.firstBurst, t.edtl, c.immediateData))
		return false
	}
	if t.edtl > maxCommandData+BlockSize {
		// Too large to buffer: answer at once; its Data-Out is discarded.
		c.start(t)
		return true
	}
	// Write data is charged to the budget without waiting: waiting here
	// could deadlock against commands that need this reader to finish.
	c.budget.force(int64(t.edtl))
	t.data = getBuffer(t.edtl)
	edtl := t.edtl
	data := t.data
	t.dataRelease = func() {
		putBuffer(data)
		c.budget.release(int64(edtl))
	}
	copy(t.data, p.data)
	t.received = imm
	t.unsolEnd = imm
	if !p.final() && !c.initialR2T {
		t.unsolEnd = min(t.edtl, c.firstBurst)
	}
	t.burstEnd = t.unsolEnd
	return c.advanceWrite(t)
}

// extendedCDB returns the bytes of an Extended CDB AHS (type 1).
func extendedCDB(ahs []byte) []byte {
	for len(ahs) >= 4 {
		n := int(binary.BigEndian.Uint16(ahs))
		typ := ahs[2]
		total := 3 + n
		total += pad4(total)
		if n < 1 || total > len(ahs) {
			return nil
		}
		if typ == 1 {
			return ahs[4 : 3+n]
		}
		ahs = ahs[total:]
	}
	return nil
}

// advanceWrite runs a write whose data is in, or asks for more.
func (c *conn) advanceWrite(t *task) bool {
	switch {
	case t.received >= t.edtl:
		c.mu.Lock()
		t.waiting = false
		c.mu.Unlock()
		c.start(t)
		return true
	case t.received < t.unsolEnd:
		c.mu.Lock()
		t.waiting = true
		c.mu.Unlock()
		return true
	}
	c.mu.Lock()
	t.waiting = true
	c.nextTTT++
	if c.nextTTT == reservedTag {
		c.nextTTT = 0
	}
	t.ttt = c.nextTTT
	c.mu.Unlock()
	n := min(c.maxBurst, t.edtl-t.received)
	t.burstEnd = t.received + n
	t.dataSN = 0
	var o outPDU
	o.bhs[0] = opR2T
	o.bhs[1] = flagFinal
	binary.BigEndian.PutUint64(o.bhs[8:], t.lun)
	binary.BigEndian.PutUint32(o.bhs[16:], t.itt)
	binary.BigEndian.PutUint32(o.bhs[20:], t.ttt)
	binary.BigEndian.PutUint32(o.bhs[36:], t.r2tSN)
	binary.BigEndian.PutUint32(o.bhs[40:], uint32(t.received))
	binary.BigEndian.PutUint32(o.bhs[44:], uint32(n))
	o.stat = 1
	t.r2tSN++
	return c.send(outItem{pdus: []outPDU{o}})
}

// dataOut takes a Data-Out PDU into its command's buffer.
func (c *conn) dataOut(p *pdu) bool {
	itt, ttt := p.itt(), p.u32(20)
	off, n := int(p.u32(40)), dataLength(&p.bhs)
	c.mu.Lock()
	t := c.tasks[itt]
	ok := t != nil && t.waiting
	c.mu.Unlock()
	if !ok {
		// For a task aborted or already answered: discard.
		if err := c.pr.readData(p, nil); err != nil {
			c.protocolError("reading a data segment", err)
			return false
		}
		return true
	}
	var err error
	switch {
	case ttt != t.ttt:
		err = fmt.Errorf("target transfer tag %#x, want %#x", ttt, t.ttt)
	case off != t.received:
		err = fmt.Errorf("buffer offset %d, want %d", off, t.received)
	case n > t.burstEnd-off:
		err = fmt.Errorf("%d bytes at %d past the end of the burst at %d", n, off, t.burstEnd)
	case p.u32(36) != t.dataSN:
		err = fmt.Errorf("DataSN %d, want %d", p.u32(36), t.dataSN)
	}
	if err != nil {
		c.protocolError("Data-Out", err)
		return false
	}
	if err := c.pr.readData(p, t.data[off:off+n]); err != nil {
		c.protocolError("reading Data-Out", err)
		return false
	}
	t.received += n
	t.dataSN++
	if !p.final() {
		return true
	}
	if t.received != t.burstEnd {
		c.protocolError("Data-Out", fmt.Errorf("final PDU of a sequence at %d, the sequence ends at %d", t.received, t.burstEnd))
		return false
	}
	// Unsolicited data is done; solicited bursts follow.
	t.unsolEnd = 0
	return c.advanceWrite(t)
}

// start runs a command in its own goroutine (the window bounds how many).
func (c *conn) start(t *task) {
	c.workers.Add(1)
	go func() {
		defer c.workers.Done()
		c.execute(t)
	}()
}

// execute runs a command and queues its response.
func (c *conn) execute(t *task) {
	began := time.Now()
	var res scsiResult
	if t.edtl > maxCommandData+BlockSize && t.write {
		res = checkCondition(senseIllegalRequest, ascInvalidFieldInCDB)
	} else {
		res = c.sess.exec(c.ctx, t.lun, t.cdb, t.data[:t.received], t.edtl, c.budget, t.arrived)
	}
	if res.status == statusCheckCondition {
		c.s.checks.Add(1)
	}
	if t.write && res.status == statusGood {
		c.s.bytesWritten.Add(int64(t.received))
	}
	pdus := c.responsePDUs(t, &res)
	c.s.latency.Observe(opOfCDB(t.cdb), time.Since(began))
	dataRelease := t.dataRelease
	resRelease := res.release
	c.send(outItem{
		pdus: pdus,
		release: func() {
			c.mu.Lock()
			if c.tasks[t.itt] == t {
				delete(c.tasks, t.itt)
			}
			t.dataRelease = nil
			c.inflight--
			c.mu.Unlock()
			c.s.inflight.Add(-1)
			close(t.done)
		},
		after: func() {
			if dataRelease != nil {
				dataRelease()
			}
			if resRelease != nil {
				resRelease()
			}
		},
	})
}

// responsePDUs builds the Data-In and SCSI Response PDUs of a result.
func (c *conn) responsePDUs(t *task, res *scsiResult) []outPDU {
	var resFlags byte
	var residual int
	data := res.data
	if t.write {
		if res.spdtl > t.edtl {
			resFlags, residual = 0x04, res.spdtl-t.edtl
		} else if res.spdtl < t.edtl {
			resFlags, residual = 0x02, t.edtl-res.spdtl
		}
	} else {
		switch {
		case len(data) > t.edtl:
			resFlags, residual = 0x04, len(data)-t.edtl
			data = data[:t.edtl]
		case len(data) < t.edtl:
			resFlags, residual = 0x02, t.edtl-len(data)
		}
	}
	if res.status != statusGood {
		data = nil
	}
	var pdus []outPDU
	if len(data) > 0 {
		c.s.bytesRead.Add(int64(len(data)))
		seg := c.maxSendData
		n := (len(data) + seg - 1) / seg
		pdus = make([]outPDU, 0, n)
		for i := 0; i < n; i++ {
			off := i * seg
			chunk := data[off:min(off+seg, len(data))]
			var o outPDU
			o.bhs[0] = opDataIn
			binary.BigEndian.PutUint64(o.bhs[8:], t.lun)
			binary.BigEndian.PutUint32(o.bhs[16:], t.itt)
			binary.BigEndian.PutUint32(o.bhs[20:], reservedTag)
			binary.BigEndian.PutUint32(o.bhs[36:], uint32(i))
			binary.BigEndian.PutUint32(o.bhs[40:], uint32(off))
			o.data = chunk
			if i == n-1 {
				o.bhs[1] = flagFinal | 0x01 | resFlags
				o.bhs[3] = res.status
				binary.BigEndian.PutUint32(o.bhs[44:], uint32(residual))
				o.stat = 2
			}
			pdus = append(pdus, o)
		}
		return pdus
	}
	var o outPDU
	o.bhs[0] = opSCSIResp
	o.bhs[1] = flagFinal | resFlags
	o.bhs[3] = res.status
	binary.BigEndian.PutUint32(o.bhs[16:], t.itt)
	binary.BigEndian.PutUint32(o.bhs[44:], uint32(residual))
	if len(res.sense) > 0 {
		o.data = make([]byte, 2+len(res.sense))
		binary.BigEndian.PutUint16(o.data, uint16(len(res.sense)))
		copy(o.data[2:], res.sense)
	}
	o.stat = 2
	return append(pdus, o)
}

// textContinuation is the rest of a Text Response longer than one PDU.
type textContinuation struct {
	ttt  uint32
	rest []byte
}

// textRequest answers SendTargets (and NotUnderstood to anything else).
func (c *conn) textRequest(p *pdu) bool {
	if !c.checkCmdSN(p) {
		return true
	}
	if p.flags()&0x40 != 0 {
		return c.reject(p, rejectInvalidField) // multi-PDU text requests are not supported
	}
	var body []byte
	if ttt := p.u32(20); ttt != reservedTag && c.textCont != nil && c.textCont.ttt == ttt {
		body = c.textCont.rest
		c.textCont = nil
	} else {
		c.textCont = nil
		kv, err := parseText(p.data)
		if err != nil {
			return c.reject(p, rejectInvalidField)
		}
		for _, pair := range kv {
			if pair[0] != "SendTargets" {
				body = appendText(body, pair[0], "NotUnderstood")
				continue
			}
			body = append(body, c.sendTargets(pair[1])...)
		}
	}
	var o outPDU
	o.bhs[0] = opTextResp
	copy(o.bhs[8:16], p.bhs[8:16])
	copy(o.bhs[16:20], p.bhs[16:20])
	o.stat = 2
	if len(body) > c.maxSendData {
		c.mu.Lock()
		c.nextTTT++
		if c.nextTTT == reservedTag {
			c.nextTTT = 0
		}
		ttt := c.nextTTT
		c.mu.Unlock()
		c.textCont = &textContinuation{ttt: ttt, rest: body[c.maxSendData:]}
		body = body[:c.maxSendData]
		o.bhs[1] = 0x40 // C
		binary.BigEndian.PutUint32(o.bhs[20:], ttt)
	} else {
		o.bhs[1] = flagFinal
		binary.BigEndian.PutUint32(o.bhs[20:], reservedTag)
	}
	o.data = body
	return c.send(outItem{pdus: []outPDU{o}})
}

// sendTargets lists the targets Targets.Discover returns: all of them
// ("All"), the named one, or (empty, normal sessions) the session's.
func (c *conn) sendTargets(which string) []byte {
	targets, err := c.s.targets.Discover(c.ctx, c.initiator)
	if err != nil {
		c.log.Warn("iscsi: SendTargets: listing targets failed", "remote", c.remote, "initiator", c.initiator, "err", err)
		return nil
	}
	switch {
	case which == "All":
	case which == "" && !c.discovery:
		which = c.target
		fallthrough
	default:
		var keep []Target
		for _, t := range targets {
			if t.Name == which {
				keep = append(keep, t)
			}
		}
		targets = keep
	}
	var out []byte
	for _, t := range targets {
		out = appendText(out, "TargetName", t.Name)
		portals := t.Portals
		if len(portals) == 0 {
			portals = []string{c.localPortal()}
		}
		for _, portal := range portals {
			out = appendText(out, "TargetAddress", portal)
		}
	}
	return out
}

// localPortal is this connection's address as a TargetAddress.
func (c *conn) localPortal() string {
	addr := c.nc.LocalAddr().String()
	if host, port, err := net.SplitHostPort(addr); err == nil && strings.Contains(host, ":") {
		addr = "[" + host + "]:" + port
	}
	return addr + "," + strconv.Itoa(int(c.s.opts.TargetPortalGroupTag))
}

// TMF functions and responses (11.5, 11.6).
const (
	tmfAbortTask       = 1
	tmfAbortTaskSet    = 2
	tmfClearACA        = 3
	tmfClearTaskSet    = 4
	tmfLUReset         = 5
	tmfTargetWarmReset = 6
	tmfTargetColdReset = 7
	tmfTaskReassign    = 8

	tmfComplete     = 0
	tmfNoTask       = 1
	tmfNoLUN        = 2
	tmfNoReassign   = 4
	tmfNotSupported = 5
)

// taskManagement handles a Task Management Function Request. Tasks still
// awaiting Data-Out are dropped; running ones are waited for (their
// responses precede the TMF response).
func (c *conn) taskManagement(p *pdu) bool {
	if !c.checkCmdSN(p) {
		return true
	}
	fn := p.flags() & 0x7f
	lun := p.lun()
	rtt := p.u32(20)
	var waits []chan struct{}
	var finish func(context.Context) // a reset's wait for other sessions' commands, and word to a shared unit's other target
	response := byte(tmfComplete)
	affects := func(t *task) bool { return true }
	switch fn {
	case tmfAbortTask:
		affects = func(t *task) bool { return t.itt == rtt }
		// A task found awaiting Data-Out is dropped (Function complete); one
		// already running completes and is answered, so the abort finds no
		// task (as libiscsi's suite expects: either the write's response or
		// a successful abort, never both).
		c.mu.Lock()
		t, found := c.tasks[rtt]
		if !found || !t.waiting {
			response = tmfNoTask
		}
		c.mu.Unlock()
	case tmfAbortTaskSet, tmfClearTaskSet, tmfLUReset:
		if !c.sess.lunExists(c.ctx, lun) {
			response = tmfNoLUN
			affects = func(*task) bool { return false }
		} else {
			affects = func(t *task) bool { return t.lun == lun }
		}
		if fn == tmfLUReset && response == tmfComplete {
			finish = c.sess.reset(lun)
		}
	case tmfTargetWarmReset:
		finish = c.sess.targetReset(c.ctx)
	case tmfTaskReassign:
		response = tmfNoReassign
		affects = func(*task) bool { return false }
	default: // CLEAR ACA, TARGET COLD RESET and unknown functions
		response = tmfNotSupported
		affects = func(*task) bool { return false }
	}
	c.mu.Lock()
	for itt, t := range c.tasks {
		if !affects(t) {
			continue
		}
		if t.waiting {
			c.dropTaskLocked(itt, t)
		} else {
			waits = append(waits, t.done)
		}
	}
	c.mu.Unlock()
	var o outPDU
	o.bhs[0] = opTMFResp
	o.bhs[1] = flagFinal
	o.bhs[2] = response
	copy(o.bhs[16:20], p.bhs[16:20])
	o.stat = 2
	c.s.tmfs.Add(1)
	start := time.Now()
	// A host sends these when its commands time out: each is worth a
	// line in the journal, with what it waited for.
	answered := func() {
		c.log.Info("iscsi: task management", "initiator", c.initiator, "target", c.target, "function", named(tmfNames, fn),
			"lun", lunOf(lun), "response", named(tmfResponses, response), "waited", time.Since(start).Round(time.Microsecond))
	}
	if len(waits) == 0 && finish == nil {
		answered()
		return c.send(outItem{pdus: []outPDU{o}})
	}
	c.workers.Add(1)
	go func() {
		defer c.workers.Done()
		for _, w := range waits {
			select {
			case <-w:
			case <-c.ctx.Done():
				return
			}
		}
		if finish != nil {
			finish(c.ctx)
		}
		answered()
		c.send(outItem{pdus: []outPDU{o}})
	}()
	return true
}

// tmfNames and tmfResponses name Task Management functions and responses
// as RFC 7143 does, for log lines.
var (
	tmfNames = map[byte]string{tmfAbortTask: "ABORT TASK", tmfAbortTaskSet: "ABORT TASK SET", tmfClearACA: "CLEAR ACA",
		tmfClearTaskSet: "CLEAR TASK SET", tmfLUReset: "LOGICAL UNIT RESET", tmfTargetWarmReset: "TARGET WARM RESET",
		tmfTargetColdReset: "TARGET COLD RESET", tmfTaskReassign: "TASK REASSIGN"}
	tmfResponses = map[byte]string{tmfComplete: "function complete", tmfNoTask: "task does not exist", tmfNoLUN: "LUN does not exist",
		tmfNoReassign: "reassignment not supported", tmfNotSupported: "not supported"}
)

// named is m's name for v, or v's number.
func named(m map[byte]string, v byte) string {
	if n, ok := m[v]; ok {
		return n
	}
	return strconv.Itoa(int(v))
}

// lunOf is a LUN field for a log line: its number, or the raw field when
// it is not one this target decodes.
func lunOf(raw uint64) string {
	if lun, ok := decodeLUN(raw); ok {
		return strconv.FormatUint(lun, 10)
	}
	return fmt.Sprintf("%#016x", raw)
}

// opOfCDB is a command's kind, for its latency.
func opOfCDB(cdb []byte) latency.Op {
	if len(cdb) == 0 {
		return latency.Other
	}
	switch cdb[0] {
	case 0x08, 0x28, 0xa8, 0x88: // READ(6/10/12/16)
		return latency.Read
	case 0x0a, 0x2a, 0xaa, 0x8a, // WRITE(6/10/12/16)
		0x41, 0x93, // WRITE SAME(10/16)
		0x2e, 0x8e, // WRITE AND VERIFY(10/16)
		0x89: // COMPARE AND WRITE
		return latency.Write
	case 0x35, 0x91: // SYNCHRONIZE CACHE(10/16)
		return latency.Flush
	}
	return latency.Other
}
