package nbd

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"time"
)

// errAbort ends a connection whose client sent NBD_OPT_ABORT.
var errAbort = errors.New("nbd: client aborted negotiation")

const readBufferSize = 128 << 10

var be = binary.BigEndian

func newConn(s *Server, nc net.Conn, ctx context.Context, cancel context.CancelFunc) *conn {
	return newConnSize(s, nc, ctx, cancel, readBufferSize)
}

func newConnSize(s *Server, nc net.Conn, ctx context.Context, cancel context.CancelFunc, bufSize int) *conn {
	remote := nc.RemoteAddr()
	return &conn{
		s:      s,
		nc:     nc,
		remote: remote,
		log:    s.log.With("remote", remote.String()),
		ctx:    ctx,
		cancel: cancel,
		br:     bufio.NewReaderSize(nc, bufSize),
	}
}

// negotiate runs the fixed newstyle handshake and option haggling. It
// returns nil once the connection has entered the transmission phase with
// c.dev open, errAbort after NBD_OPT_ABORT, or another error when the
// connection must be dropped.
func (c *conn) negotiate() error {
	if t := c.s.opts.HandshakeTimeout; t > 0 {
		c.nc.SetDeadline(time.Now().Add(t))
	}
	c.bw = bufio.NewWriterSize(c.nc, 4096)
	if err := c.greet(); err != nil {
		return err
	}

	for {
		var oh [optHeaderLen]byte
		if _, err := io.ReadFull(c.br, oh[:]); err != nil {
			return err
		}
		if be.Uint64(oh[0:]) != ihaveOpt {
			return errors.New("nbd: bad option magic")
		}
		opt, length := be.Uint32(oh[8:]), be.Uint32(oh[12:])
		if !c.fixed && opt != optExportName {
			return fmt.Errorf("nbd: option %d from a client without fixed newstyle", opt)
		}
		if length > maxOptionLength {
			if length > maxOptionDiscard || opt == optExportName {
				return fmt.Errorf("nbd: option %d of %d bytes is too long", opt, length)
			}
			if _, err := c.br.Discard(int(length)); err != nil {
				return err
			}
			// Flush now: the client waits for this answer before it sends
			// anything else.
			c.optReply(opt, repErrTooBig, "option too long")
			if err := c.bw.Flush(); err != nil {
				return err
			}
			continue
		}
		data := make([]byte, length)
		if _, err := io.ReadFull(c.br, data); err != nil {
			return err
		}
		done, err := c.option(opt, data)
		if ferr := c.bw.Flush(); err == nil {
			err = ferr
		}
		if err != nil {
			return err
		}
		if done {
			break
		}
	}
	c.bw = nil
	c.nc.SetDeadline(time.Time{})
	// A shutdown that raced with clearing the deadline is seen here.
	return c.ctx.Err()
}

// greet sends the greeting and reads the client's flags.
func (c *conn) greet() error {
	var hello [18]byte
	be.PutUint64(hello[0:], nbdMagic)
	be.PutUint64(hello[8:], ihaveOpt)
	be.PutUint16(hello[16:], flagFixedNewstyle|flagNoZeroes)
	c.bw.Write(hello[:])
	if err := c.bw.Flush(); err != nil {
		return err
	}
	var cf [4]byte
	if _, err := io.ReadFull(c.br, cf[:]); err != nil {
		return err
	}
	clientFlags := be.Uint32(cf[:])
	if clientFlags&^(flagCFixedNewstyle|flagCNoZeroes) != 0 {
		return fmt.Errorf("nbd: client sent unknown flags %#x", clientFlags)
	}
	c.fixed = clientFlags&flagCFixedNewstyle != 0
	c.noZeroes = clientFlags&flagCNoZeroes != 0
	return nil
}

// refuseBusy turns away a client over MaxConnections: it answers the
// first option with NBD_REP_ERR_POLICY and a message that says why, so
// that clients such as qemu and libnbd print a reason rather than "server
// closed the connection". NBD_OPT_EXPORT_NAME cannot carry an error, so
// that client (and one that is not fixed newstyle) only sees the close.
func (c *conn) refuseBusy() error {
	c.nc.SetDeadline(time.Now().Add(refuseTimeout))
	c.bw = bufio.NewWriterSize(c.nc, 512)
	if err := c.greet(); err != nil {
		return err
	}
	var oh [optHeaderLen]byte
	if _, err := io.ReadFull(c.br, oh[:]); err != nil {
		return err
	}
	opt, length := be.Uint32(oh[8:]), be.Uint32(oh[12:])
	if be.Uint64(oh[0:]) != ihaveOpt || !c.fixed || opt == optExportName || length > maxOptionLength {
		return nil
	}
	if _, err := c.br.Discard(int(length)); err != nil {
		return err
	}
	c.optReply(opt, repErrPolicy, fmt.Sprintf(
		"too many connections: this server serves at most %d at once; try again later", c.s.opts.MaxConnections))
	return c.bw.Flush()
}

// option handles one option. done reports that the transmission phase
// starts now.
func (c *conn) option(opt uint32, data []byte) (done bool, err error) {
	switch opt {
	case optExportName:
		return c.optExportName(data)
	case optAbort:
		c.optReply(opt, repAck, "")
		c.bw.Flush()
		return false, errAbort
	case optList:
		if len(data) != 0 {
			return false, c.optReply(opt, repErrInvalid, "NBD_OPT_LIST takes no data")
		}
		for _, name := range c.s.exports.List(c.ctx) {
			if len(name) > maxStringLength {
				continue
			}
			var b [4]byte
			be.PutUint32(b[:], uint32(len(name)))
			if err := c.optReplyBytes(opt, repServer, b[:], []byte(name)); err != nil {
				return false, err
			}
		}
		return false, c.optReply(opt, repAck, "")
	case optInfo, optGo:
		return c.optInfoGo(opt, data)
	case optStructuredReply:
		if len(data) != 0 {
			return false, c.optReply(opt, repErrInvalid, "NBD_OPT_STRUCTURED_REPLY takes no data")
		}
		if c.structured {
			return false, c.optReply(opt, repErrInvalid, "structured replies already negotiated")
		}
		c.structured = true
		return false, c.optReply(opt, repAck, "")
	case optListMetaContext, optSetMetaContext:
		return false, c.optMetaContext(opt, data)
	default:
		return false, c.optReply(opt, repErrUnsup, "option not supported")
	}
}

func (c *conn) optExportName(data []byte) (bool, error) {
	name := string(data)
	if len(name) > maxStringLength {
		return false, errors.New("nbd: export name too long")
	}
	dev, release, err := c.open(name)
	if err != nil {
		// NBD_OPT_EXPORT_NAME cannot report errors: drop the connection.
		return false, err
	}
	c.attach(name, dev, release)
	var b [10 + zeroPaddingLength]byte
	be.PutUint64(b[0:], c.size)
	be.PutUint16(b[8:], c.transmissionFlags(dev))
	n := 10
	if !c.noZeroes {
		n += zeroPaddingLength
	}
	_, err = c.bw.Write(b[:n])
	return true, err
}

func (c *conn) optInfoGo(opt uint32, data []byte) (bool, error) {
	if len(data) < 6 {
		return false, c.optReply(opt, repErrInvalid, "option data too short")
	}
	nameLen := be.Uint32(data)
	if uint64(nameLen)+6 > uint64(len(data)) {
		return false, c.optReply(opt, repErrInvalid, "export name length exceeds option data")
	}
	if nameLen > maxStringLength {
		return false, c.optReply(opt, repErrInvalid, "export name too long")
	}
	name := string(data[4 : 4+nameLen])
	rest := data[4+nameLen:]
	nreq := int(be.Uint16(rest))
	if len(rest) != 2+2*nreq {
		return false, c.optReply(opt, repErrInvalid, "information request count does not match option length")
	}
	dev, release, err := c.open(name)
	if err != nil {
		return false, c.optReply(opt, repErrUnknown, "export not available")
	}
	size := uint64(max(dev.Size(), 0))

	var export [12]byte
	be.PutUint16(export[0:], infoExport)
	be.PutUint64(export[2:], size)
	be.PutUint16(export[10:], c.transmissionFlags(dev))
	err = c.optReplyBytes(opt, repInfo, export[:])
	// Block size constraints are always sent: clients ignore what they did
	// not ask for, and those that ask learn the 32 MiB maximum.
	var bs [14]byte
	be.PutUint16(bs[0:], infoBlockSize)
	be.PutUint32(bs[2:], MinBlockSize)
	be.PutUint32(bs[6:], PreferredBlockSize)
	be.PutUint32(bs[10:], MaxRequestSize)
	if err == nil {
		err = c.optReplyBytes(opt, repInfo, bs[:])
	}
	for i := 0; i < nreq && err == nil; i++ {
		var t [2]byte
		switch be.Uint16(rest[2+2*i:]) {
		case infoName:
			be.PutUint16(t[:], infoName)
			err = c.optReplyBytes(opt, repInfo, t[:], []byte(name))
		case infoDescription:
			if d, ok := dev.(Describer); ok {
				if desc := d.Description(); len(desc) <= maxStringLength {
					be.PutUint16(t[:], infoDescription)
					err = c.optReplyBytes(opt, repInfo, t[:], []byte(desc))
				}
			}
		}
	}
	if err == nil {
		err = c.optReply(opt, repAck, "")
	}
	if opt == optInfo || err != nil {
		if release != nil {
			release()
		}
		return false, err
	}
	c.attach(name, dev, release)
	return true, nil
}

// optMetaContext answers NBD_OPT_LIST_META_CONTEXT and
// NBD_OPT_SET_META_CONTEXT. The only context is base:allocation.
func (c *conn) optMetaContext(opt uint32, data []byte) error {
	if opt == optSetMetaContext {
		// A SET replaces the selection even when it fails.
		c.metaSet, c.metaExport = false, ""
	}
	if !c.structured {
		return c.optReply(opt, repErrInvalid, "negotiate structured replies first")
	}
	export, queries, ok := parseMetaQueries(data)
	if !ok {
		return c.optReply(opt, repErrInvalid, "malformed metadata context request")
	}
	match := false
	if opt == optListMetaContext && len(queries) == 0 {
		match = true
	}
	for _, q := range queries {
		switch {
		case q == metaBaseAllocation:
			match = true
		case q == metaBaseNamespace && opt == optListMetaContext:
			match = true
		}
	}
	if match {
		var id [4]byte
		if opt == optSetMetaContext {
			be.PutUint32(id[:], metaBaseAllocationID)
			c.metaSet, c.metaExport = true, export
		}
		if err := c.optReplyBytes(opt, repMetaContext, id[:], []byte(metaBaseAllocation)); err != nil {
			return err
		}
	}
	return c.optReply(opt, repAck, "")
}

// parseMetaQueries splits the data of a meta context option: export name,
// query count, queries.
func parseMetaQueries(data []byte) (export string, queries []string, ok bool) {
	str := func() (string, bool) {
		if len(data) < 4 {
			return "", false
		}
		n := be.Uint32(data)
		if n > maxStringLength || uint64(n) > uint64(len(data)-4) {
			return "", false
		}
		s := string(data[4 : 4+n])
		data = data[4+n:]
		return s, true
	}
	if export, ok = str(); !ok {
		return "", nil, false
	}
	if len(data) < 4 {
		return "", nil, false
	}
	n := be.Uint32(data)
	data = data[4:]
	if uint64(n)*4 > uint64(len(data)) {
		return "", nil, false
	}
	for range n {
		q, ok := str()
		if !ok {
			return "", nil, false
		}
		queries = append(queries, q)
	}
	return export, queries, len(data) == 0
}

// open asks Exports for name, logging and counting a refusal.
func (c *conn) open(name string) (Device, func(), error) {
	dev, release, err := c.s.exports.Open(c.ctx, name, c.remote)
	if err == nil && dev == nil {
		if release != nil {
			release()
		}
		err = errors.New("no device")
	}
	if err != nil {
		c.s.refusals.Add(1)
		c.log.Warn("nbd: export refused",
			slog.String("export", c.s.opts.LogName(name)), slog.Any("err", err))
		return nil, nil, err
	}
	return dev, release, nil
}

// attach makes dev the device of the transmission phase.
func (c *conn) attach(name string, dev Device, release func()) {
	c.dev, c.release = dev, release
	c.exportName = name
	c.size = uint64(max(dev.Size(), 0))
	c.readOnly = dev.ReadOnly()
	c.meta = c.metaSet && c.metaExport == name
	_, c.fastZero = dev.(FastZeroer)
	c.quick, _ = dev.(QuickDevice)
	c.log.Debug("nbd: export attached", "export", c.s.opts.LogName(name),
		"size", c.size, "read_only", c.readOnly, "structured", c.structured)
}

func (c *conn) releaseDevice() {
	if c.release != nil {
		c.release()
		c.release = nil
	}
	c.dev, c.quick = nil, nil
}

func (c *conn) transmissionFlags(dev Device) uint16 {
	f := uint16(flagHasFlags | flagSendFlush | flagSendFUA | flagCanMultiConn | flagSendCache)
	if c.structured {
		f |= flagSendDF
	}
	if dev.ReadOnly() {
		f |= flagReadOnly
	} else {
		f |= flagSendTrim | flagSendWriteZeroes | flagSendFastZero
	}
	return f
}

// optReply writes an option reply whose data is msg (for errors, a message
// for humans).
func (c *conn) optReply(opt, typ uint32, msg string) error {
	return c.optReplyBytes(opt, typ, []byte(msg))
}

func (c *conn) optReplyBytes(opt, typ uint32, parts ...[]byte) error {
	n := 0
	for _, p := range parts {
		n += len(p)
	}
	var h [optReplyHeaderLen]byte
	be.PutUint64(h[0:], optReplyMagic)
	be.PutUint32(h[8:], opt)
	be.PutUint32(h[12:], typ)
	be.PutUint32(h[16:], uint32(n))
	c.bw.Write(h[:])
	for _, p := range parts {
		c.bw.Write(p)
	}
	if typ&repFlagError != 0 {
		c.log.Debug("nbd: option refused", "option", opt, "reply", typ&^repFlagError)
	}
	return nil
}
