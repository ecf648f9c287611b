package iscsi

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
)

var errEOF = io.EOF

// conn is one connection, and the session it carries (MaxConnections=1).
type conn struct {
	s      *Server
	nc     net.Conn
	ctx    context.Context
	cancel context.CancelFunc
	log    *slog.Logger
	remote string
	pr     pduReader

	// Set by login, read-only afterwards.
	initiator, target string
	discovery         bool
	isid              [6]byte
	tsih, cid         uint16
	headerDigest      bool
	dataDigest        bool
	maxSendData       int // the initiator's MaxRecvDataSegmentLength
	maxBurst          int
	firstBurst        int
	immediateData     bool
	initialR2T        bool

	// statSN is the login's; the writer owns it afterwards.
	statSN uint32

	// mu guards the command window and the tasks.
	mu       sync.Mutex
	expCmdSN uint32
	inflight int              // commands received and not yet answered
	tasks    map[uint32]*task // by ITT
	nextTTT  uint32

	out      chan outItem // to the writer
	workers  sync.WaitGroup
	budget   *byteBudget
	sess     *scsiSession
	textCont *textContinuation
}

func newConn(s *Server, nc net.Conn, ctx context.Context, cancel context.CancelFunc) *conn {
	remote := nc.RemoteAddr().String()
	return &conn{
		s:      s,
		nc:     nc,
		ctx:    ctx,
		cancel: cancel,
		log:    s.log,
		remote: remote,
		pr: pduReader{
			r:       bufio.NewReaderSize(nc, 64<<10),
			maxData: s.opts.MaxRecvDataSegmentLength,
		},
		maxSendData:   8192,
		maxBurst:      min(262144, s.opts.MaxBurstLength),
		firstBurst:    min(65536, s.opts.FirstBurstLength),
		immediateData: true,
		initialR2T:    true,
		tasks:         make(map[uint32]*task),
	}
}

// protocolError logs a violation and counts it.
func (c *conn) protocolError(what string, err error) {
	c.s.protoErrors.Add(1)
	c.log.Warn("iscsi: protocol violation; closing the connection", "remote", c.remote,
		"initiator", c.initiator, "what", what, "err", err)
}

// task is one SCSI command.
type task struct {
	itt, cmdSN uint32
	lun        uint64
	cdb        []byte
	edtl       int // expected data transfer length
	read       bool
	write      bool
	attr       byte
	arrived    uint64 // Server.resetClock as the command arrived

	// Data-Out state, owned by the reader.
	data        []byte
	received    int
	unsolEnd    int // end of the unsolicited data (immediate + Data-Out)
	burstEnd    int // end of the current R2T's burst
	ttt         uint32
	r2tSN       uint32
	dataSN      uint32
	waiting     bool // awaiting Data-Out
	dataRelease func()

	done chan struct{} // closed when the response is queued or the task dropped
}

// outPDU is one PDU for the writer. stat says how the writer fills
// StatSN: 0 leaves it zero, 1 carries it, 2 carries and advances it.
type outPDU struct {
	bhs  [bhsLen]byte
	data []byte
	stat int
}

// outItem is what the writer sends in one go. release runs before the
// sequence numbers are filled in, so a response reports the window its
// own completion opens.
type outItem struct {
	pdus    []outPDU
	release func()
	after   func() // runs once the PDUs are written
	last    bool   // close the connection after writing
}

// serve runs the full feature phase: the reader loop here, a writer
// goroutine, and a goroutine per running command.
func (c *conn) serve() {
	c.pr.headerDigest, c.pr.dataDigest = c.headerDigest, c.dataDigest
	c.firstBurst = min(c.firstBurst, c.maxBurst)
	c.out = make(chan outItem, 16)
	c.budget = newByteBudget(c.s.opts.MaxInflightBytes)
	c.sess = newSCSISession(c.s, nexus{initiator: c.initiator, isid: c.isid, target: c.target, port: c.s.opts.PortGroup})
	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		c.writer()
	}()
	defer func() {
		c.cancel()
		c.workers.Wait()
		<-writerDone
		c.mu.Lock()
		for _, t := range c.tasks {
			if t.dataRelease != nil {
				t.dataRelease()
			}
		}
		c.s.inflight.Add(-int64(c.inflight))
		c.inflight = 0
		c.mu.Unlock()
		c.sess.close()
	}()
	var p pdu
	for {
		if err := c.pr.readHeader(&p); err != nil {
			if c.ctx.Err() == nil && !isEOF(err) {
				c.protocolError("reading a PDU header", err)
			}
			return
		}
		if !c.dispatch(&p) {
			return
		}
	}
}

// dispatch handles one PDU whose header has been read; it reads the data
// segment itself. It returns false to close the connection.
func (c *conn) dispatch(p *pdu) bool {
	op := p.opcode()
	if op == opDataOut {
		return c.dataOut(p)
	}
	if err := c.pr.readData(p, nil); err != nil {
		if c.ctx.Err() == nil {
			c.protocolError("reading a data segment", err)
		}
		return false
	}
	if c.discovery && op != opTextReq && op != opNOPOut && op != opLogoutReq {
		return c.reject(p, rejectProtocol)
	}
	switch op {
	case opSCSICmd:
		return c.scsiCommand(p)
	case opNOPOut:
		return c.nopOut(p)
	case opTextReq:
		return c.textRequest(p)
	case opTMFReq:
		return c.taskManagement(p)
	case opLogoutReq:
		return c.logout(p)
	case opSNACKReq:
		return c.reject(p, rejectProtocol)
	default:
		c.log.Warn("iscsi: unsupported opcode; rejected", "remote", c.remote, "initiator", c.initiator, "opcode", fmt.Sprintf("%#x", op))
		return c.reject(p, rejectNotSupported)
	}
}

// checkCmdSN applies the command window to a non-immediate request: it
// returns false for one to ignore silently (RFC 7143 3.2.2.1).
func (c *conn) checkCmdSN(p *pdu) bool {
	if p.immediate() {
		return true
	}
	sn := p.u32(24)
	c.mu.Lock()
	defer c.mu.Unlock()
	if sn != c.expCmdSN {
		c.log.Warn("iscsi: command outside the window; ignored", "remote", c.remote,
			"initiator", c.initiator, "cmdsn", sn, "expcmdsn", c.expCmdSN)
		return false
	}
	if p.opcode() != opSCSICmd {
		c.expCmdSN++
	}
	return true
}

// window returns ExpCmdSN and MaxCmdSN now.
func (c *conn) window() (uint32, uint32) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.expCmdSN, c.expCmdSN + uint32(c.s.opts.QueueDepth-c.inflight) - 1
}

// send queues an item for the writer; false if the connection ends.
func (c *conn) send(it outItem) bool {
	select {
	case c.out <- it:
		return true
	case <-c.ctx.Done():
		if it.release != nil {
			it.release()
		}
		return false
	}
}

// writer sends queued PDUs, filling in the sequence numbers.
func (c *conn) writer() {
	bw := bufio.NewWriterSize(c.nc, 256<<10)
	var hdr []byte
	for {
		var it outItem
		select {
		case it = <-c.out:
		case <-c.ctx.Done():
			return
		}
		for {
			if it.release != nil {
				it.release()
			}
			exp, maxSN := c.window()
			for i := range it.pdus {
				op := &it.pdus[i]
				if op.stat > 0 {
					binary.BigEndian.PutUint32(op.bhs[24:], c.statSN)
					if op.stat == 2 {
						c.statSN++
					}
				}
				binary.BigEndian.PutUint32(op.bhs[28:], exp)
				binary.BigEndian.PutUint32(op.bhs[32:], maxSN)
				hdr = appendHeader(hdr[:0], &op.bhs, len(op.data), c.headerDigest)
				if _, err := bw.Write(hdr); err != nil {
					c.writeFailed(err)
					return
				}
				if len(op.data) > 0 {
					bw.Write(op.data)
					n := pad4(len(op.data))
					bw.Write(zeroPad[:n])
					if c.dataDigest {
						var d [4]byte
						binary.LittleEndian.PutUint32(d[:], dataDigest(op.data, n))
						bw.Write(d[:])
					}
				}
			}
			if it.after != nil {
				it.after()
			}
			if it.last {
				if err := bw.Flush(); err != nil {
					c.writeFailed(err)
				}
				c.cancel()
				return
			}
			select {
			case it = <-c.out:
				continue
			default:
			}
			break
		}
		if err := bw.Flush(); err != nil {
			c.writeFailed(err)
			return
		}
	}
}

func (c *conn) writeFailed(err error) {
	if c.ctx.Err() == nil {
		c.log.Debug("iscsi: write failed; closing the connection", "remote", c.remote, "err", err)
	}
	c.cancel()
	c.nc.SetReadDeadline(aLongTimeAgo)
}

var zeroPad [4]byte

// reject answers a PDU with a Reject carrying its header. It returns
// true: the connection goes on.
func (c *conn) reject(p *pdu, reason byte) bool {
	c.s.protoErrors.Add(1)
	var o outPDU
	o.bhs[0] = opReject
	o.bhs[1] = flagFinal
	o.bhs[2] = reason
	binary.BigEndian.PutUint32(o.bhs[16:], reservedTag)
	o.data = append([]byte(nil), p.bhs[:]...)
	o.stat = 2
	return c.send(outItem{pdus: []outPDU{o}})
}

// nopOut answers a ping.
func (c *conn) nopOut(p *pdu) bool {
	if !c.checkCmdSN(p) {
		return true
	}
	if p.itt() == reservedTag {
		return true // an answer to a target ping, or a lone CmdSN update
	}
	var o outPDU
	o.bhs[0] = opNOPIn
	o.bhs[1] = flagFinal
	copy(o.bhs[8:16], p.bhs[8:16])
	copy(o.bhs[16:20], p.bhs[16:20])
	binary.BigEndian.PutUint32(o.bhs[20:], reservedTag)
	o.data = append([]byte(nil), p.data[:min(len(p.data), c.maxSendData)]...)
	o.stat = 2
	return c.send(outItem{pdus: []outPDU{o}})
}

// logout ends the session after the running commands are answered.
func (c *conn) logout(p *pdu) bool {
	if !c.checkCmdSN(p) {
		return true
	}
	reason := p.flags() & 0x7f
	c.mu.Lock()
	var waits []chan struct{}
	for itt, t := range c.tasks {
		if t.waiting {
			c.dropTaskLocked(itt, t)
		} else {
			waits = append(waits, t.done)
		}
	}
	c.mu.Unlock()
	for _, w := range waits {
		select {
		case <-w:
		case <-c.ctx.Done():
			return false
		}
	}
	var o outPDU
	o.bhs[0] = opLogoutResp
	o.bhs[1] = flagFinal
	if reason == 2 {
		o.bhs[2] = 2 // connection recovery is not supported
	}
	copy(o.bhs[16:20], p.bhs[16:20])
	o.stat = 2
	c.log.Info("iscsi: logout", "remote", c.remote, "initiator", c.initiator, "target", c.target, "reason", reason)
	c.send(outItem{pdus: []outPDU{o}, last: true})
	// Wait for the writer to send it and close.
	<-c.ctx.Done()
	return false
}

// dropTaskLocked forgets a task that never ran (awaiting Data-Out).
func (c *conn) dropTaskLocked(itt uint32, t *task) {
	delete(c.tasks, itt)
	if t.dataRelease != nil {
		t.dataRelease()
		t.dataRelease = nil
	}
	c.inflight--
	c.s.inflight.Add(-1)
	close(t.done)
}

// byteBudget is a weighted semaphore over bytes held for commands' data.
type byteBudget struct {
	mu    sync.Mutex
	free  int64
	total int64
	wait  chan struct{} // closed and replaced whenever bytes are released
}

func newByteBudget(n int64) *byteBudget {
	return &byteBudget{free: n, total: n, wait: make(chan struct{})}
}

// acquire takes n bytes (at most the total), waiting for them.
func (b *byteBudget) acquire(ctx context.Context, n int64) error {
	n = min(n, b.total)
	for {
		b.mu.Lock()
		if b.free >= n {
			b.free -= n
			b.mu.Unlock()
			return nil
		}
		w := b.wait
		b.mu.Unlock()
		select {
		case <-w:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (b *byteBudget) release(n int64) {
	n = min(n, b.total)
	b.mu.Lock()
	b.free += n
	close(b.wait)
	b.wait = make(chan struct{})
	b.mu.Unlock()
}

// allocate returns a buffer of n bytes charged to the budget, and the
// function that returns it.
func (b *byteBudget) allocate(ctx context.Context, n int) ([]byte, func(), error) {
	if err := b.acquire(ctx, int64(n)); err != nil {
		return nil, nil, err
	}
	buf := getBuffer(n)
	var once sync.Once
	return buf, func() {
		once.Do(func() {
			putBuffer(buf)
			b.release(int64(n))
		})
	}, nil
}

// force takes n bytes without waiting (the budget may go negative).
func (b *byteBudget) force(n int64) {
	n = min(n, b.total)
	b.mu.Lock()
	b.free -= n
	b.mu.Unlock()
}
