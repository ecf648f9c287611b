package nbd

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// rawClient speaks the NBD protocol by hand, for the edge cases real
// clients do not produce and for benchmarks. It checks what the server
// sends against the protocol and fails the test on any violation.
type rawClient struct {
	t  testing.TB
	nc net.Conn
	br *bufio.Reader
	bw *bufio.Writer

	serverFlags uint16

	// After the handshake.
	size       uint64
	tflags     uint16
	structured bool
	metaID     uint32

	wmu        sync.Mutex
	mu         sync.Mutex
	pending    map[uint64]*call
	nextHandle atomic.Uint64
	readerDone chan struct{}
	readErr    error
	wscratch   [28]byte // request header, under wmu
	rscratch   [28]byte // reader's scratch
}

// call is one request in flight.
type call struct {
	typ    uint16
	off    uint64
	length uint32
	buf    []byte // READ destination
	errno  uint32
	msg    string
	chunks []uint16    // structured chunk types received
	descs  [][2]uint32 // BLOCK_STATUS descriptors
	ctxID  uint32
	dataN  int // bytes of READ data received
	done   chan struct{}
}

var callPool = sync.Pool{New: func() any { return &call{done: make(chan struct{}, 1)} }}

const errConnClosed = ^uint32(0)

// dialRaw connects and reads the server's greeting.
func dialRaw(t testing.TB, addr string) *rawClient {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c := &rawClient{t: t, nc: nc, br: bufio.NewReaderSize(nc, 256<<10), bw: bufio.NewWriterSize(nc, 256<<10),
		pending: make(map[uint64]*call)}
	t.Cleanup(func() { c.nc.Close() })
	var hello [18]byte
	c.nc.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(c.br, hello[:]); err != nil {
		t.Fatalf("reading greeting: %v", err)
	}
	if m := binary.BigEndian.Uint64(hello[0:]); m != nbdMagic {
		t.Fatalf("greeting magic %#x, want NBDMAGIC", m)
	}
	if m := binary.BigEndian.Uint64(hello[8:]); m != ihaveOpt {
		t.Fatalf("greeting magic %#x, want IHAVEOPT", m)
	}
	c.serverFlags = binary.BigEndian.Uint16(hello[16:])
	return c
}

func (c *rawClient) sendClientFlags(f uint32) {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], f)
	c.bw.Write(b[:])
	c.flush()
}

func (c *rawClient) flush() {
	if err := c.bw.Flush(); err != nil {
		c.t.Fatalf("write to server: %v", err)
	}
}

func (c *rawClient) sendOpt(opt uint32, data []byte) {
	var h [16]byte
	binary.BigEndian.PutUint64(h[0:], ihaveOpt)
	binary.BigEndian.PutUint32(h[8:], opt)
	binary.BigEndian.PutUint32(h[12:], uint32(len(data)))
	c.bw.Write(h[:])
	c.bw.Write(data)
	c.flush()
}

type optReply struct {
	opt, typ uint32
	data     []byte
}

func (c *rawClient) readOptReply() (optReply, error) {
	var h [20]byte
	if _, err := io.ReadFull(c.br, h[:]); err != nil {
		return optReply{}, err
	}
	if m := binary.BigEndian.Uint64(h[0:]); m != optReplyMagic {
		c.t.Fatalf("option reply magic %#x", m)
	}
	r := optReply{opt: binary.BigEndian.Uint32(h[8:]), typ: binary.BigEndian.Uint32(h[12:])}
	r.data = make([]byte, binary.BigEndian.Uint32(h[16:]))
	_, err := io.ReadFull(c.br, r.data)
	return r, err
}

// option sends opt and collects replies up to the final one (ACK or error).
func (c *rawClient) option(opt uint32, data []byte) (infos []optReply, final optReply) {
	c.t.Helper()
	c.sendOpt(opt, data)
	for {
		r, err := c.readOptReply()
		if err != nil {
			c.t.Fatalf("option %d: reading reply: %v", opt, err)
		}
		if r.opt != opt {
			c.t.Fatalf("reply for option %d to option %d", r.opt, opt)
		}
		if r.typ == repAck || r.typ&repFlagError != 0 {
			return infos, r
		}
		infos = append(infos, r)
	}
}

func infoGoData(name string, infos ...uint16) []byte {
	b := binary.BigEndian.AppendUint32(nil, uint32(len(name)))
	b = append(b, name...)
	b = binary.BigEndian.AppendUint16(b, uint16(len(infos)))
	for _, i := range infos {
		b = binary.BigEndian.AppendUint16(b, i)
	}
	return b
}

func metaData(export string, queries ...string) []byte {
	b := binary.BigEndian.AppendUint32(nil, uint32(len(export)))
	b = append(b, export...)
	b = binary.BigEndian.AppendUint32(b, uint32(len(queries)))
	for _, q := range queries {
		b = binary.BigEndian.AppendUint32(b, uint32(len(q)))
		b = append(b, q...)
	}
	return b
}

// parseInfoExport finds NBD_INFO_EXPORT among info replies.
func parseInfoExport(t testing.TB, infos []optReply) (size uint64, flags uint16) {
	t.Helper()
	for _, r := range infos {
		if r.typ == repInfo && binary.BigEndian.Uint16(r.data) == infoExport {
			if len(r.data) != 12 {
				t.Fatalf("NBD_INFO_EXPORT of %d bytes", len(r.data))
			}
			return binary.BigEndian.Uint64(r.data[2:]), binary.BigEndian.Uint16(r.data[10:])
		}
	}
	t.Fatal("no NBD_INFO_EXPORT reply")
	return 0, 0
}

// clientOpts selects what connect negotiates.
type clientOpts struct {
	structured bool
	meta       bool
}

// connect performs a full handshake with NBD_OPT_GO and starts the reply
// reader.
func connect(t testing.TB, addr, name string, o clientOpts) *rawClient {
	t.Helper()
	c := dialRaw(t, addr)
	c.sendClientFlags(flagCFixedNewstyle | flagCNoZeroes)
	if o.structured {
		if _, r := c.option(optStructuredReply, nil); r.typ != repAck {
			t.Fatalf("NBD_OPT_STRUCTURED_REPLY: reply %#x", r.typ)
		}
		c.structured = true
	}
	if o.meta {
		infos, r := c.option(optSetMetaContext, metaData(name, metaBaseAllocation))
		if r.typ != repAck || len(infos) != 1 || infos[0].typ != repMetaContext {
			t.Fatalf("NBD_OPT_SET_META_CONTEXT: replies %v final %#x", infos, r.typ)
		}
		c.metaID = binary.BigEndian.Uint32(infos[0].data)
		if got := string(infos[0].data[4:]); got != metaBaseAllocation {
			t.Fatalf("selected context %q", got)
		}
	}
	infos, r := c.option(optGo, infoGoData(name, infoBlockSize))
	if r.typ != repAck {
		t.Fatalf("NBD_OPT_GO %q: reply %#x %q", name, r.typ, r.data)
	}
	c.size, c.tflags = parseInfoExport(t, infos)
	c.start()
	return c
}

// start begins the transmission phase: a goroutine reads replies.
func (c *rawClient) start() {
	c.nc.SetDeadline(time.Time{})
	c.readerDone = make(chan struct{})
	go c.readLoop()
	c.t.Cleanup(c.shutdown)
}

// shutdown closes the connection and waits for the reader.
func (c *rawClient) shutdown() {
	c.nc.Close()
	<-c.readerDone
}

func (c *rawClient) readLoop() {
	defer close(c.readerDone)
	err := c.readReplies()
	c.mu.Lock()
	c.readErr = err
	for h, cl := range c.pending {
		cl.errno = errConnClosed
		delete(c.pending, h)
		cl.done <- struct{}{}
	}
	c.mu.Unlock()
}

func (c *rawClient) lookup(h uint64, final bool) (*call, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	cl, ok := c.pending[h]
	if !ok {
		return nil, fmt.Errorf("reply for unknown handle %d", h)
	}
	if final {
		delete(c.pending, h)
	}
	return cl, nil
}

// protoErr marks a protocol violation by the server.
type protoErr struct{ error }

func (c *rawClient) readReplies() error {
	h := c.rscratch[8:28]
	for {
		if _, err := io.ReadFull(c.br, h[:4]); err != nil {
			return err
		}
		switch binary.BigEndian.Uint32(h[:4]) {
		case simpleReplyMagic:
			if _, err := io.ReadFull(c.br, h[4:16]); err != nil {
				return err
			}
			cl, err := c.lookup(binary.BigEndian.Uint64(h[8:]), true)
			if err != nil {
				return protoErr{err}
			}
			cl.errno = binary.BigEndian.Uint32(h[4:])
			if cl.typ == cmdRead && c.structured {
				return protoErr{errors.New("simple reply to READ with structured replies")}
			}
			if cl.typ == cmdRead && cl.errno == 0 {
				if _, err := io.ReadFull(c.br, cl.buf); err != nil {
					return err
				}
				cl.dataN = len(cl.buf)
			}
			cl.done <- struct{}{}
		case structReplyMagic:
			if !c.structured {
				return protoErr{errors.New("structured reply without negotiation")}
			}
			if _, err := io.ReadFull(c.br, h[4:20]); err != nil {
				return err
			}
			flags := binary.BigEndian.Uint16(h[4:])
			typ := binary.BigEndian.Uint16(h[6:])
			length := binary.BigEndian.Uint32(h[16:])
			final := flags&replyFlagDone != 0
			cl, err := c.lookup(binary.BigEndian.Uint64(h[8:]), final)
			if err != nil {
				return protoErr{err}
			}
			cl.chunks = append(cl.chunks, typ)
			if err := c.readChunk(cl, typ, length); err != nil {
				return err
			}
			if final {
				cl.done <- struct{}{}
			}
		default:
			return protoErr{fmt.Errorf("bad reply magic %#x", h[:4])}
		}
	}
}

func (c *rawClient) readChunk(cl *call, typ uint16, length uint32) error {
	switch typ {
	case replyTypeNone:
		if length != 0 {
			return protoErr{errors.New("NONE chunk with payload")}
		}
	case replyTypeOffsetData:
		if cl.typ != cmdRead || length < 9 {
			return protoErr{fmt.Errorf("bad OFFSET_DATA chunk (len %d)", length)}
		}
		o := c.rscratch[:8]
		if _, err := io.ReadFull(c.br, o); err != nil {
			return err
		}
		off := binary.BigEndian.Uint64(o)
		n := uint64(length - 8)
		if off < cl.off || off+n > cl.off+uint64(cl.length) {
			return protoErr{fmt.Errorf("OFFSET_DATA [%d,+%d) outside request [%d,+%d)", off, n, cl.off, cl.length)}
		}
		if _, err := io.ReadFull(c.br, cl.buf[off-cl.off:][:n]); err != nil {
			return err
		}
		cl.dataN += int(n)
	case replyTypeOffsetHole:
		var p [12]byte
		if length != 12 {
			return protoErr{errors.New("bad OFFSET_HOLE length")}
		}
		if _, err := io.ReadFull(c.br, p[:]); err != nil {
			return err
		}
		off, n := binary.BigEndian.Uint64(p[:]), uint64(binary.BigEndian.Uint32(p[8:]))
		clear(cl.buf[off-cl.off:][:n])
		cl.dataN += int(n)
	default:
		p := make([]byte, length)
		if _, err := io.ReadFull(c.br, p); err != nil {
			return err
		}
		switch {
		case typ == replyTypeBlockStatus:
			if length < 12 || (length-4)%8 != 0 {
				return protoErr{fmt.Errorf("bad BLOCK_STATUS length %d", length)}
			}
			cl.ctxID = binary.BigEndian.Uint32(p)
			for i := 4; i < len(p); i += 8 {
				cl.descs = append(cl.descs, [2]uint32{binary.BigEndian.Uint32(p[i:]), binary.BigEndian.Uint32(p[i+4:])})
			}
		case typ&(1<<15) != 0:
			if length < 6 {
				return protoErr{errors.New("short error chunk")}
			}
			cl.errno = binary.BigEndian.Uint32(p)
			ml := int(binary.BigEndian.Uint16(p[4:]))
			if 6+ml > len(p) {
				return protoErr{errors.New("error message longer than chunk")}
			}
			cl.msg = string(p[6 : 6+ml])
			if cl.errno == 0 {
				return protoErr{errors.New("error chunk with error 0")}
			}
		default:
			return protoErr{fmt.Errorf("unknown chunk type %d", typ)}
		}
	}
	return nil
}

// send queues a request; payload is sent after the header for WRITE.
func (c *rawClient) send(typ, flags uint16, off uint64, length uint32, payload []byte, buf []byte) *call {
	cl := callPool.Get().(*call)
	*cl = call{typ: typ, off: off, length: length, buf: buf, done: cl.done, chunks: cl.chunks[:0], descs: cl.descs[:0]}
	h := c.nextHandle.Add(1)
	c.mu.Lock()
	if c.readErr != nil {
		c.mu.Unlock()
		cl.errno = errConnClosed
		cl.done <- struct{}{}
		return cl
	}
	c.pending[h] = cl
	c.mu.Unlock()
	c.wmu.Lock()
	b := c.wscratch[:]
	binary.BigEndian.PutUint32(b[0:], requestMagic)
	binary.BigEndian.PutUint16(b[4:], flags)
	binary.BigEndian.PutUint16(b[6:], typ)
	binary.BigEndian.PutUint64(b[8:], h)
	binary.BigEndian.PutUint64(b[16:], off)
	binary.BigEndian.PutUint32(b[24:], length)
	c.bw.Write(b)
	c.bw.Write(payload)
	err := c.bw.Flush()
	c.wmu.Unlock()
	if err != nil {
		c.nc.Close() // the reader fails the call
	}
	return cl
}

// wait blocks until cl has its final reply.
func (c *rawClient) wait(cl *call) *call {
	// No timer here (it would allocate in benchmarks): the reader fails
	// every pending call when the connection ends, and go test has its
	// own timeout.
	<-cl.done
	return cl
}

// recycle returns a finished call to the pool.
func recycle(cl *call) {
	cl.buf = nil
	callPool.Put(cl)
}

func (c *rawClient) do(typ, flags uint16, off uint64, length uint32, payload, buf []byte) *call {
	return c.wait(c.send(typ, flags, off, length, payload, buf))
}

func (c *rawClient) read(off uint64, buf []byte, flags uint16) *call {
	return c.do(cmdRead, flags, off, uint32(len(buf)), nil, buf)
}

func (c *rawClient) write(off uint64, p []byte, flags uint16) *call {
	return c.do(cmdWrite, flags, off, uint32(len(p)), p, nil)
}

// disconnect sends NBD_CMD_DISC and waits for the server to close.
func (c *rawClient) disconnect() error {
	var b [28]byte
	binary.BigEndian.PutUint32(b[0:], requestMagic)
	binary.BigEndian.PutUint16(b[6:], cmdDisc)
	c.wmu.Lock()
	c.bw.Write(b[:])
	err := c.bw.Flush()
	c.wmu.Unlock()
	if err != nil {
		return err
	}
	select {
	case <-c.readerDone:
	case <-time.After(10 * time.Second):
		return errors.New("server did not close the connection after DISC")
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if errors.Is(c.readErr, io.EOF) {
		return nil
	}
	return fmt.Errorf("connection ended with %v, want EOF", c.readErr)
}

// checkProto fails the test if the reader stopped on a protocol violation.
func (c *rawClient) checkProto() {
	c.t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	var pe protoErr
	if errors.As(c.readErr, &pe) {
		c.t.Fatalf("server violated the protocol: %v", pe)
	}
}
