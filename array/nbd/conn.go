package nbd

import (
	"bufio"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/volrep/volrep/internal/latency"
)

// conn is one client connection. During negotiation only the connection
// goroutine uses it. In the transmission phase it runs:
//
//   - the reader (the connection goroutine): parses requests and reads
//     WRITE payloads straight into pooled buffers. A READ or WRITE that a
//     QuickDevice can serve without waiting it serves itself (tryQuick);
//     the rest it hands to
//   - up to Workers worker goroutines, which call the Device and build
//     replies. They are started as requests need them, so that an idle
//     connection costs one goroutine.
//
// Replies are queued with send: the goroutine that finds nobody writing
// becomes the writer and sends everything queued, in batches with writev
// (header and payload of a READ in one system call, without copying),
// until the queue is empty. An uncontended reply thus goes out from the
// goroutine that made it, without waking another, and replies that pile up
// while one is written go out together. The reader may also hold the small
// replies of requests it served while the next request is buffered in full
// (sendOrHold), and sends them before anything that could wait (kick).
//
// A per-connection budget (MaxInflightBytes) bounds the payload memory held
// by requests between reader and writer, and MaxQueuedRequests their
// number: at either limit the reader stops reading until replies are
// written.
//
// IdleTimeout is enforced with deadlines, not timers: the reader arms a
// read deadline before it waits for the client, the writer a write
// deadline before it writes. Both are re-armed at most every idle/16, so
// that a busy connection pays for a deadline rarely; when a read deadline
// expires, keepWaiting decides whether the connection was really idle.
type conn struct {
	s      *Server
	nc     net.Conn
	remote net.Addr
	log    *slog.Logger
	ctx    context.Context
	cancel context.CancelFunc
	br     *bufio.Reader
	bw     *bufio.Writer // negotiation only

	// Negotiated state.
	fixed, noZeroes, structured bool
	metaSet                     bool   // base:allocation selected ...
	metaExport                  string // ... for this export name

	// The attached export.
	dev        Device
	release    func()
	exportName string
	size       uint64
	readOnly   bool
	meta       bool // BLOCK_STATUS allowed
	fastZero   bool // dev implements FastZeroer
	quick      QuickDevice

	// Transmission phase.
	work     chan *request
	inflight atomic.Int64
	// refusalLogged is set once a Refusal of this connection's requests
	// was logged.
	refusalLogged atomic.Bool
	budget        int64
	freed         chan struct{} // signalled when budget or a queue slot is released
	// queued counts the requests read and not yet released (replies not
	// yet written); the reader keeps it at most maxQueued.
	queued    atomic.Int64
	maxQueued int64
	// Workers: the reader starts them (workers counts them) while every
	// running one is busy; busy = dispatched - finished.
	workers    int
	dispatched int64 // reader only
	finished   atomic.Int64
	workerWG   sync.WaitGroup
	// Idle timeout (see the type's comment). armedAt is the reader's;
	// lastReply (unix nanoseconds) is set by the writer.
	idle      time.Duration
	armedAt   time.Time
	lastReply atomic.Int64
	// exact makes the reader read the next request header alone, without
	// buffering what follows (see readLoop).
	exact bool

	// Replies (see send). wmu guards queue, spare and writing; the
	// goroutine that set writing owns vec, nb and wfailed.
	wmu     sync.Mutex
	queue   []*request
	spare   []*request
	writing bool
	// held counts the replies the reader queued without writing (see
	// readLoop), and heldBytes their payload.
	held, heldBytes int
	wfailed         bool        // a write failed: replies are dropped from now on
	vec             [][]byte    // writer's iovec backing array
	nb              net.Buffers // writer's current writev
	wArmedAt        time.Time   // writer's last write deadline arming
}

// errIdle ends a connection that was idle for IdleTimeout.
var errIdle = errors.New("nbd: connection idle")

// request carries one request from the reader to a worker and its reply
// from the worker to the writer.
type request struct {
	typ, flags uint16
	handle     uint64
	off        uint64
	length     uint32
	preErr     uint32 // error found by the reader
	buf        *[]byte
	budget     int64
	ok         bool // reply reports success
	hdrLen     int
	payload    []byte
	began      time.Time // read in full: its latency counts from here
	// hdr holds the reply header and small reply payloads (error
	// messages, the block status context ID).
	hdr [structReplyHeaderLen + 8 + maxErrMsg]byte
}

const maxErrMsg = 80

var reqPool = sync.Pool{New: func() any { return new(request) }}

// transmit runs the transmission phase until DISC, a protocol violation,
// a connection error or shutdown.
func (c *conn) transmit() {
	c.work = make(chan *request, c.s.opts.Workers)
	c.budget = max(c.s.opts.MaxInflightBytes, 1)
	c.maxQueued = int64(max(c.s.opts.MaxQueuedRequests, 1))
	c.idle = max(c.s.opts.IdleTimeout, 0)
	c.freed = make(chan struct{}, 1)
	c.vec = make([][]byte, 0, 2*maxBatch)
	c.queue = make([]*request, 0, maxBatch)
	c.spare = make([]*request, 0, maxBatch)

	err := c.readLoop()
	c.kick() // replies the reader held
	close(c.work)
	// Every worker has sent its last reply, and a writer empties the queue
	// before it gives up the role, so nothing is left unsent.
	c.workerWG.Wait()
	switch {
	case err == nil:
		c.log.Debug("nbd: client disconnected")
	case errors.Is(err, errIdle):
		c.s.idleClosed.Add(1)
		c.log.Info("nbd: closing idle connection", "export", c.s.opts.LogName(c.exportName),
			"idle_timeout", c.idle)
	case c.ctx.Err() != nil, errors.Is(err, io.EOF), errors.Is(err, net.ErrClosed),
		errors.Is(err, syscall.ECONNRESET):
		c.log.Debug("nbd: connection ended", "err", err)
	default:
		c.log.Warn("nbd: connection dropped", "export", c.s.opts.LogName(c.exportName), "err", err)
	}
}

// dispatch hands r to a worker, starting one if every running worker is
// busy and there are fewer than Workers.
func (c *conn) dispatch(r *request) {
	if c.workers < c.s.opts.Workers && c.dispatched-c.finished.Load() >= int64(c.workers) {
		c.workers++
		c.workerWG.Add(1)
		go c.worker()
	}
	c.dispatched++
	select {
	case c.work <- r:
	default:
		c.kick() // the workers are all busy: don't keep replies waiting
		c.work <- r
	}
}

func (c *conn) worker() {
	defer c.workerWG.Done()
	for r := range c.work {
		c.handle(r)
		c.send(r)
		// Counted only now: a worker that is writing replies to a slow
		// client is busy too.
		c.finished.Add(1)
	}
}

// waitQueue waits until fewer than maxQueued requests are queued. It
// reports false when the connection is shutting down.
func (c *conn) waitQueue() bool {
	for c.queued.Load() >= c.maxQueued {
		c.kick() // held replies count too
		if testHookQueueFull != nil {
			testHookQueueFull(c.queued.Load())
		}
		select {
		case <-c.freed:
		case <-c.ctx.Done():
			return false
		}
	}
	return true
}

// testHookQueueFull, if set (by tests, before the server starts), is called
// each time a reader stops reading because MaxQueuedRequests are queued.
var testHookQueueFull func(queued int64)

// armRead sets the idle read deadline before the reader may wait for the
// client.
func (c *conn) armRead() error {
	if c.idle == 0 {
		return nil
	}
	if now := time.Now(); now.Sub(c.armedAt) >= c.idle/16 {
		c.nc.SetReadDeadline(now.Add(c.idle))
		c.armedAt = now
		// Shutdown sets a deadline in the past after cancelling ctx; one
		// that came before this arming would be overwritten.
		if err := c.ctx.Err(); err != nil {
			return err
		}
	}
	return nil
}

// keepWaiting is called with a read error. It reports true, after moving
// the deadline, when the error is the idle deadline expiring on a
// connection that was not idle: own requests (the one being read) are not
// counted as in flight, so that a client stalling in the middle of a
// request's payload is idle too.
func (c *conn) keepWaiting(err error, own int64) bool {
	var ne net.Error
	if c.idle == 0 || !errors.As(err, &ne) || !ne.Timeout() || c.ctx.Err() != nil {
		return false
	}
	now := time.Now()
	next := now.Add(c.idle)
	if c.queued.Load() <= own {
		since := max(c.armedAt.UnixNano(), c.lastReply.Load())
		if now.UnixNano()-since >= int64(c.idle) {
			return false
		}
		next = time.Unix(0, since).Add(c.idle)
	}
	c.nc.SetReadDeadline(next)
	c.armedAt = next.Add(-c.idle)
	return c.ctx.Err() == nil
}

// readFull reads len(p) bytes from r, through idle deadlines that expire
// on a connection that is not idle.
func (c *conn) readFull(r io.Reader, p []byte, own int64) error {
	n := 0
	for {
		if err := c.armRead(); err != nil {
			return err
		}
		m, err := io.ReadFull(r, p[n:])
		n += m
		if err == nil {
			return nil
		}
		if !c.keepWaiting(err, own) {
			return c.idleErr(err)
		}
	}
}

// discard skips n bytes of c.br, like readFull.
func (c *conn) discard(n int, own int64) error {
	for {
		if err := c.armRead(); err != nil {
			return err
		}
		m, err := c.br.Discard(n)
		n -= m
		if err == nil {
			return nil
		}
		if !c.keepWaiting(err, own) {
			return c.idleErr(err)
		}
	}
}

// idleErr returns errIdle for an expired idle deadline, else err.
func (c *conn) idleErr(err error) error {
	var ne net.Error
	if c.idle != 0 && errors.As(err, &ne) && ne.Timeout() && c.ctx.Err() == nil {
		return errIdle
	}
	return err
}

// readHeader reads the next request header into hdr.
func (c *conn) readHeader(hdr *[requestHeaderLen]byte) error {
	if c.exact && c.br.Buffered() == 0 {
		return c.readFull(c.nc, hdr[:], 0)
	}
	for {
		if c.br.Buffered() < requestHeaderLen {
			if err := c.armRead(); err != nil {
				return err
			}
		}
		p, err := c.br.Peek(requestHeaderLen)
		if err == nil {
			copy(hdr[:], p)
			c.br.Discard(requestHeaderLen)
			return nil
		}
		if !c.keepWaiting(err, 0) {
			return c.idleErr(err)
		}
	}
}

// readLoop reads requests until NBD_CMD_DISC (nil) or an error.
//
// Headers are normally read through c.br, which takes in as much as the
// socket holds, so that a stream of small requests costs few system calls.
// After a WRITE whose payload was at least the buffer's size (read straight
// into its buffer, bypassing c.br), the next header is read alone when c.br
// is empty: a client streaming large writes would otherwise have half of
// each payload pulled into c.br and copied out again.
func (c *conn) readLoop() error {
	var hdr [requestHeaderLen]byte
	for {
		// Stop reading, so that the client's sending blocks, while it
		// leaves too many replies unread.
		if c.queued.Load() >= c.maxQueued && !c.waitQueue() {
			return c.ctx.Err()
		}
		if !c.nextBuffered() {
			// About to wait for the client: first send the replies held
			// for requests served here (see below).
			c.kick()
		}
		if err := c.readHeader(&hdr); err != nil {
			return err
		}
		h := hdr[:]
		if be.Uint32(h) != requestMagic {
			return errors.New("nbd: bad request magic")
		}
		r := reqPool.Get().(*request)
		c.queued.Add(1)
		r.flags = be.Uint16(h[4:])
		r.typ = be.Uint16(h[6:])
		r.handle = be.Uint64(h[8:])
		r.off = be.Uint64(h[16:])
		r.length = be.Uint32(h[24:])
		r.preErr, r.buf, r.budget, r.payload, r.ok = 0, nil, 0, nil, false
		c.exact = r.typ == cmdWrite && r.length >= readBufferSize
		c.s.requests.Add(1)

		switch r.typ {
		case cmdDisc:
			c.releaseReq(r)
			return nil
		case cmdWrite:
			if e := c.checkWrite(r); e != 0 {
				// The payload must be consumed to stay in step.
				r.preErr = e
				if err := c.discard(int(r.length), 1); err != nil {
					c.releaseReq(r)
					return err
				}
				break
			}
			if r.length == 0 {
				break
			}
			if !c.acquire(r) {
				c.releaseReq(r)
				return c.ctx.Err()
			}
			r.buf = getBuf(int(r.length))
			if err := c.readFull(c.br, *r.buf, 1); err != nil {
				c.releaseReq(r)
				return err
			}
		case cmdRead:
			if r.length <= MaxRequestSize && r.length > 0 {
				if !c.acquire(r) {
					c.releaseReq(r)
					return c.ctx.Err()
				}
			}
		}
		r.began = time.Now()
		if c.quick != nil && c.tryQuick(r) {
			// While the next request is already here in full, hold the
			// reply: serving that one cannot wait for the client, and
			// the replies then go out together, in one system call.
			c.sendOrHold(r, c.nextBuffered())
			continue
		}
		c.dispatch(r)
	}
}

// maxHeldBytes bounds the READ payload of the replies the reader holds:
// holding pays for small replies, whose cost is the system call, while
// large ones are better sent at once, overlapping with the client reading.
const maxHeldBytes = 64 << 10

// nextBuffered reports whether c.br holds the next request in full.
func (c *conn) nextBuffered() bool {
	n := c.br.Buffered()
	if n < requestHeaderLen {
		return false
	}
	h, _ := c.br.Peek(requestHeaderLen)
	if be.Uint16(h[6:]) == cmdWrite {
		return n-requestHeaderLen >= int(be.Uint32(h[24:]))
	}
	return true
}

// tryQuick serves a READ, or a WRITE without FUA, on the reader goroutine
// when the device can do it without waiting (QuickDevice), and builds its
// reply. It reports false when r must go to a worker: other commands,
// requests a worker answers with an error, and ErrWouldBlock.
func (c *conn) tryQuick(r *request) bool {
	if r.preErr != 0 || r.flags&cmdFlagFUA != 0 || r.length == 0 {
		return false
	}
	switch r.typ {
	case cmdWrite:
		err := c.quick.WriteAtNoWait(c.ctx, *r.buf, int64(r.off))
		switch {
		case errors.Is(err, ErrWouldBlock):
			return false
		case err != nil:
			c.deviceError(r, err)
		default:
			c.okReply(r)
		}
		return true
	case cmdRead:
		if r.flags&^c.readFlags() != 0 || r.length > MaxRequestSize || !c.inRange(r) {
			return false
		}
		r.buf = getBuf(int(r.length))
		err := c.quick.ReadAtNoWait(c.ctx, *r.buf, int64(r.off))
		switch {
		case errors.Is(err, ErrWouldBlock):
			return false // handle reads into r.buf again
		case err != nil:
			c.deviceError(r, err)
		default:
			c.dataReply(r, *r.buf)
		}
		return true
	}
	return false
}

// readFlags are the command flags a READ may carry.
func (c *conn) readFlags() uint16 {
	if c.structured {
		return cmdFlagFUA | cmdFlagDF
	}
	return cmdFlagFUA
}

// checkWrite validates a WRITE before its payload is read.
func (c *conn) checkWrite(r *request) uint32 {
	switch {
	case r.flags&^cmdFlagFUA != 0:
		return errInval
	case c.readOnly:
		return errPerm
	case r.length > MaxRequestSize:
		return errInval
	case !c.inRange(r):
		return errNoSpc
	}
	return 0
}

func (c *conn) inRange(r *request) bool {
	return r.off <= c.size && uint64(r.length) <= c.size-r.off
}

// acquire takes r.length bytes of the connection's in-flight budget,
// waiting for replies to be written if needed. A request larger than the
// whole budget runs when nothing else is in flight. Only the reader calls
// acquire.
func (c *conn) acquire(r *request) bool {
	n := int64(r.length)
	for {
		cur := c.inflight.Load()
		if cur == 0 || cur+n <= c.budget {
			if c.inflight.CompareAndSwap(cur, cur+n) {
				r.budget = n
				return true
			}
			continue
		}
		c.kick() // held replies hold budget
		select {
		case <-c.freed:
		case <-c.ctx.Done():
			return false
		}
	}
}

// releaseReq returns a finished request's buffer, budget and struct.
func (c *conn) releaseReq(r *request) {
	if r.buf != nil {
		putBuf(r.buf)
		r.buf = nil
	}
	r.payload = nil
	// The reader waits for budget, or for the queue to drop below
	// maxQueued, which it passes one request at a time.
	wake := c.queued.Add(-1) == c.maxQueued-1
	if r.budget != 0 {
		c.inflight.Add(-r.budget)
		r.budget = 0
		wake = true
	}
	if wake {
		select {
		case c.freed <- struct{}{}:
		default:
		}
	}
	reqPool.Put(r)
}

// Error messages sent with structured error replies.
const (
	msgBadFlags    = "command flags not valid for this command"
	msgReadOnly    = "export is read-only"
	msgRange       = "request extends beyond the end of the export"
	msgTooBig      = "request larger than the 32 MiB maximum block size"
	msgDevice      = "device error"
	msgNoMeta      = "no metadata context negotiated"
	msgUnknownCmd  = "unknown command"
	msgNotFast     = "zeroing this range is not faster than writing"
	msgZeroLength  = "zero-length block status request"
	msgShutdown    = "server shutting down"
	msgNoSpace     = "no space left on the device"
	msgInvalid     = "invalid request"
	msgUnsupported = "operation not supported"
)

// handle executes r on the device and builds its reply in r.
func (c *conn) handle(r *request) {
	if r.preErr != 0 {
		c.errorReply(r, r.preErr, preErrMsg(r.preErr))
		return
	}
	ctx := c.ctx
	fua := r.flags&cmdFlagFUA != 0
	switch r.typ {
	case cmdRead:
		switch {
		case r.flags&^c.readFlags() != 0:
			c.errorReply(r, errInval, msgBadFlags)
		case r.length > MaxRequestSize:
			c.errorReply(r, errInval, msgTooBig)
		case !c.inRange(r):
			c.errorReply(r, errInval, msgRange)
		case r.length == 0:
			c.okReply(r)
		default:
			if r.buf == nil { // else tryQuick left it
				r.buf = getBuf(int(r.length))
			}
			if err := c.dev.ReadAt(ctx, *r.buf, int64(r.off)); err != nil {
				c.deviceError(r, err)
				return
			}
			c.dataReply(r, *r.buf)
		}
	case cmdWrite:
		if r.length > 0 {
			if err := c.dev.WriteAt(ctx, *r.buf, int64(r.off), fua); err != nil {
				c.deviceError(r, err)
				return
			}
		}
		c.okReply(r)
	case cmdFlush:
		if r.flags&^cmdFlagFUA != 0 {
			c.errorReply(r, errInval, msgBadFlags)
			return
		}
		if err := c.dev.Flush(ctx); err != nil {
			c.deviceError(r, err)
			return
		}
		c.okReply(r)
	case cmdTrim:
		switch {
		case r.flags&^cmdFlagFUA != 0:
			c.errorReply(r, errInval, msgBadFlags)
		case c.readOnly:
			c.errorReply(r, errPerm, msgReadOnly)
		case !c.inRange(r):
			c.errorReply(r, errInval, msgRange)
		case r.length == 0:
			c.okReply(r)
		default:
			if err := c.dev.Trim(ctx, int64(r.off), int64(r.length), fua); err != nil {
				c.deviceError(r, err)
				return
			}
			c.okReply(r)
		}
	case cmdWriteZeroes:
		noHole := r.flags&cmdFlagNoHole != 0
		switch {
		case r.flags&^(cmdFlagFUA|cmdFlagNoHole|cmdFlagFastZero) != 0:
			c.errorReply(r, errInval, msgBadFlags)
		case c.readOnly:
			c.errorReply(r, errPerm, msgReadOnly)
		case !c.inRange(r):
			c.errorReply(r, errNoSpc, msgRange)
		case r.length == 0:
			// Nothing to zero, fast or not: the device is not asked
			// about an empty range.
			c.okReply(r)
		case r.flags&cmdFlagFastZero != 0 && c.fastZero &&
			!c.dev.(FastZeroer).CanFastZero(int64(r.off), int64(r.length), noHole):
			c.errorReply(r, errNotSup, msgNotFast)
		default:
			if err := c.dev.WriteZeroes(ctx, int64(r.off), int64(r.length), noHole, fua); err != nil {
				c.deviceError(r, err)
				return
			}
			c.okReply(r)
		}
	case cmdBlockStatus:
		switch {
		case r.flags&^(cmdFlagFUA|cmdFlagReqOne) != 0:
			c.errorReply(r, errInval, msgBadFlags)
		case !c.meta:
			c.errorReply(r, errInval, msgNoMeta)
		case r.length == 0:
			c.errorReply(r, errInval, msgZeroLength)
		case !c.inRange(r):
			c.errorReply(r, errInval, msgRange)
		default:
			c.blockStatus(r)
		}
	case cmdCache:
		// Advisory; the device has no separate cache to warm.
		switch {
		case r.flags&^cmdFlagFUA != 0:
			c.errorReply(r, errInval, msgBadFlags)
		case !c.inRange(r):
			c.errorReply(r, errInval, msgRange)
		default:
			c.okReply(r)
		}
	default:
		c.errorReply(r, errInval, msgUnknownCmd)
	}
}

func preErrMsg(e uint32) string {
	switch e {
	case errPerm:
		return msgReadOnly
	case errNoSpc:
		return msgRange
	default:
		return msgInvalid
	}
}

// maxExtents bounds the descriptors of one block status reply; clients ask
// again for the rest.
const maxExtents = 1 << 14

func (c *conn) blockStatus(r *request) {
	extents, err := c.dev.BlockStatus(c.ctx, int64(r.off), int64(r.length))
	if err != nil {
		c.deviceError(r, err)
		return
	}
	limit := maxExtents
	if r.flags&cmdFlagReqOne != 0 {
		limit = 1
	}
	r.buf = getBuf(8 * min(len(extents)+1, limit))
	out := (*r.buf)[:0]
	left := uint64(r.length)
	var lastFlags uint32
	for _, e := range extents {
		if left == 0 {
			break
		}
		if e.Length <= 0 {
			continue
		}
		n := min(uint64(e.Length), left)
		var fl uint32
		if e.Hole {
			fl = stateHole | stateZero
		} else if e.Zero {
			fl = stateZero
		}
		left -= n
		if len(out) > 0 && fl == lastFlags {
			// Merge with the previous descriptor (lengths stay < 2^32
			// because the request length is a uint32).
			prev := be.Uint32(out[len(out)-8:])
			be.PutUint32(out[len(out)-8:], prev+uint32(n))
			continue
		}
		if len(out)/8 >= limit {
			break
		}
		out = be.AppendUint32(out, uint32(n))
		out = be.AppendUint32(out, fl)
		lastFlags = fl
	}
	if len(out) == 0 {
		// The device described nothing: claim "allocated, data" for the
		// whole range, which is always safe.
		out = be.AppendUint32(out, r.length)
		out = be.AppendUint32(out, 0)
	}
	r.payload = out
	h := r.hdr[:]
	be.PutUint32(h[0:], structReplyMagic)
	be.PutUint16(h[4:], replyFlagDone)
	be.PutUint16(h[6:], replyTypeBlockStatus)
	be.PutUint64(h[8:], r.handle)
	be.PutUint32(h[16:], uint32(4+len(out)))
	be.PutUint32(h[20:], metaBaseAllocationID)
	r.hdrLen = 24
	r.ok = true
}

// okReply builds a successful reply without data.
func (c *conn) okReply(r *request) {
	r.ok = true
	if r.typ == cmdRead && c.structured {
		// A READ must get a structured reply; zero bytes: just DONE.
		c.structHeader(r, replyFlagDone, replyTypeNone, 0)
		r.hdrLen = structReplyHeaderLen
		return
	}
	c.simpleHeader(r, 0)
}

// dataReply builds a successful READ reply carrying data.
func (c *conn) dataReply(r *request, data []byte) {
	r.ok = true
	r.payload = data
	if c.structured {
		// One OFFSET_DATA chunk, final: the data is already read, so no
		// error can follow.
		c.structHeader(r, replyFlagDone, replyTypeOffsetData, uint32(8+len(data)))
		be.PutUint64(r.hdr[structReplyHeaderLen:], r.off)
		r.hdrLen = structReplyHeaderLen + 8
		return
	}
	c.simpleHeader(r, 0)
}

// errorReply builds an error reply: a structured NBD_REPLY_TYPE_ERROR with
// a message when structured replies are negotiated, else a simple reply.
func (c *conn) errorReply(r *request, errno uint32, msg string) {
	r.ok = false
	if r.buf != nil {
		putBuf(r.buf)
		r.buf = nil
	}
	r.payload = nil
	if !c.structured {
		c.simpleHeader(r, errno)
		return
	}
	msg = msg[:min(len(msg), maxErrMsg)]
	c.structHeader(r, replyFlagDone, replyTypeError, uint32(6+len(msg)))
	be.PutUint32(r.hdr[20:], errno)
	be.PutUint16(r.hdr[24:], uint16(len(msg)))
	copy(r.hdr[26:], msg)
	r.hdrLen = 26 + len(msg)
}

func (c *conn) deviceError(r *request, err error) {
	errno := errnoOf(err)
	msg := msgDevice
	switch errno {
	case errShutdown:
		msg = msgShutdown
	case errNoSpc:
		msg = msgNoSpace
	case errPerm:
		msg = msgReadOnly
	case errInval:
		msg = msgInvalid
	case errNotSup:
		msg = msgUnsupported
	}
	var refusal *Refusal
	switch {
	case errors.As(err, &refusal):
		msg = refusal.Reason
		if c.refusalLogged.CompareAndSwap(false, true) {
			c.log.Warn("nbd: the device refused a request (told once per connection)", "export", c.s.opts.LogName(c.exportName),
				"remote", c.remote, "command", r.typ, "offset", r.off, "length", r.length, "err", refusal.Err)
		}
	case errno == errIO && c.ctx.Err() == nil:
		c.log.Warn("nbd: device error", "export", c.s.opts.LogName(c.exportName),
			"command", r.typ, "offset", r.off, "length", r.length, "err", err)
	}
	c.errorReply(r, errno, msg)
}

// errnoOf maps a device error to a protocol error value.
func errnoOf(err error) uint32 {
	switch {
	case errors.Is(err, context.Canceled), errors.Is(err, syscall.ESHUTDOWN):
		return errShutdown
	case errors.Is(err, syscall.EPERM), errors.Is(err, syscall.EROFS):
		return errPerm
	case errors.Is(err, syscall.ENOSPC), errors.Is(err, syscall.EDQUOT), errors.Is(err, syscall.EFBIG):
		return errNoSpc
	case errors.Is(err, syscall.EINVAL):
		return errInval
	case errors.Is(err, syscall.ENOTSUP), errors.Is(err, syscall.EOPNOTSUPP):
		return errNotSup
	default:
		return errIO
	}
}

func (c *conn) simpleHeader(r *request, errno uint32) {
	h := r.hdr[:]
	be.PutUint32(h[0:], simpleReplyMagic)
	be.PutUint32(h[4:], errno)
	be.PutUint64(h[8:], r.handle)
	r.hdrLen = simpleReplyLen
}

func (c *conn) structHeader(r *request, flags, typ uint16, length uint32) {
	h := r.hdr[:]
	be.PutUint32(h[0:], structReplyMagic)
	be.PutUint16(h[4:], flags)
	be.PutUint16(h[6:], typ)
	be.PutUint64(h[8:], r.handle)
	be.PutUint32(h[16:], length)
}

// Writer batching limit: at most this many replies go out in one writev.
const maxBatch = 128

// send queues r's reply. Unless another goroutine is writing already, the
// caller becomes the writer: it sends everything queued, in batches, until
// the queue is empty, then gives the role up. After a write error replies
// are dropped (and freed) instead, and the connection is cancelled so that
// the reader stops.
func (c *conn) send(r *request) {
	c.observe(r)
	c.wmu.Lock()
	c.queue = append(c.queue, r)
	c.writeQueued()
}

// observe counts r's latency, its reply built.
func (c *conn) observe(r *request) {
	op := latency.Other
	switch r.typ {
	case cmdRead:
		op = latency.Read
	case cmdWrite, cmdWriteZeroes:
		op = latency.Write
	case cmdFlush:
		op = latency.Flush
	}
	c.s.latency.Observe(op, time.Since(r.began))
}

// sendOrHold is send, except that with more it may queue r's reply
// without writing it (up to maxBatch replies and maxHeldBytes of payload):
// a writer already at work takes it along, and otherwise the reader's next
// send or kick does.
func (c *conn) sendOrHold(r *request, more bool) {
	c.observe(r)
	c.wmu.Lock()
	c.queue = append(c.queue, r)
	if more && c.held < maxBatch && c.heldBytes+len(r.payload) <= maxHeldBytes {
		c.held++
		c.heldBytes += len(r.payload)
		c.wmu.Unlock()
		return
	}
	c.writeQueued()
}

// kick writes whatever is queued, unless a writer is at work already.
func (c *conn) kick() {
	c.wmu.Lock()
	c.writeQueued()
}

// writeQueued is send and kick's writer loop. It is called with c.wmu
// held and returns with it released.
func (c *conn) writeQueued() {
	if c.writing || len(c.queue) == 0 {
		c.wmu.Unlock()
		return
	}
	c.writing = true
	for len(c.queue) > 0 {
		batch := c.queue
		c.queue = c.spare[:0]
		c.held, c.heldBytes = 0, 0
		c.wmu.Unlock()
		for i := 0; i < len(batch); i += maxBatch {
			c.writeBatch(batch[i:min(i+maxBatch, len(batch))])
		}
		c.wmu.Lock()
		c.spare = batch[:0]
	}
	c.writing = false
	c.wmu.Unlock()
}

// writeBatch writes the replies of batch with one writev and frees them.
// Only the writer calls it.
func (c *conn) writeBatch(batch []*request) {
	if !c.wfailed {
		vec := c.vec[:0]
		for _, r := range batch {
			vec = append(vec, r.hdr[:r.hdrLen])
			if len(r.payload) > 0 {
				vec = append(vec, r.payload)
			}
		}
		c.nb = vec
		c.armWrite()
		if _, err := c.nb.WriteTo(c.nc); err != nil {
			c.wfailed = true
			if c.ctx.Err() == nil {
				c.log.Debug("nbd: writing replies failed", "err", err)
			}
			c.cancel()
		}
		clear(vec) // drop references to the buffers
		c.vec = vec[:0]
		if c.idle != 0 {
			c.lastReply.Store(time.Now().UnixNano())
		}
	}
	for i, r := range batch {
		if !c.wfailed {
			c.account(r)
		}
		c.releaseReq(r)
		batch[i] = nil
	}
}

// armWrite sets the write deadline that drops a client which takes no
// reply for the idle timeout. Only the writer calls it.
func (c *conn) armWrite() {
	if c.idle == 0 {
		return
	}
	if now := time.Now(); now.Sub(c.wArmedAt) >= c.idle/16 {
		c.nc.SetWriteDeadline(now.Add(c.idle))
		c.wArmedAt = now
		// Shutdown's grace deadline may have come first; keep it.
		if c.ctx.Err() != nil {
			c.nc.SetWriteDeadline(now.Add(shutdownGrace))
		}
	}
}

func (c *conn) account(r *request) {
	if !r.ok {
		c.s.errors.Add(1)
		return
	}
	switch r.typ {
	case cmdRead:
		c.s.bytesRead.Add(int64(r.length))
	case cmdWrite:
		c.s.bytesWritten.Add(int64(r.length))
	}
}
