package rawstream

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"

	"github.com/volrep/volrep/errdefs"
)

// magic opens every connection. It cannot be mistaken for HTTP/2's
// preface, so a gRPC port that is dialled by mistake closes the
// connection instead of answering.
const magic = "VOLREP-RAWSTREAM/1\n"

// Frame kinds. A frame is a 4-byte big-endian payload length, the kind,
// then the payload.
const (
	kindHello  byte = 1 // client, first: the method, "\n", the API token
	kindMsg    byte = 2 // one protobuf message, either way
	kindClose  byte = 3 // client: it sends nothing more (CloseSend)
	kindStatus byte = 4 // server: a google.rpc.Status; OK after the hello accepts it, any later one ends the stream
)

const headerLen = 5

// keepAlive finds a connection a partition cut silently about as soon as
// the gRPC transport's pings would (10 s idle, then 5 s for an answer):
// an idle pod stream must not look healthy for minutes.
var keepAlive = net.KeepAliveConfig{Enable: true, Idle: 10 * time.Second, Interval: 5 * time.Second, Count: 2}

// DefaultSendTimeout bounds how long a frame's write may block, and how
// long data sent may go unacknowledged (TCP_USER_TIMEOUT), before the
// connection fails. Keepalive probes only an idle connection: a Send
// blocked on a full socket buffer would otherwise wait for TCP's
// retransmissions to give up, about 15 minutes, when the peer is cut off.
// When the peer hangs while its kernel still answers, TCP sees a zero
// window, not silence; Linux counts such probing against
// TCP_USER_TIMEOUT since 5.11 (here, 1.3-1.6 s at a 1 s timeout), older
// kernels never. The write deadline bounds the Send either way.
const DefaultSendTimeout = 20 * time.Second

// tune sets keepalive and TCP_USER_TIMEOUT on a stream's connection.
func tune(conn net.Conn, userTimeout time.Duration) error {
	tc, ok := conn.(*net.TCPConn)
	if !ok {
		return nil
	}
	if err := tc.SetKeepAliveConfig(keepAlive); err != nil {
		return err
	}
	raw, err := tc.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := raw.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT, int(userTimeout.Milliseconds()))
	}); err != nil {
		return err
	}
	return serr
}

// framer reads and writes one connection's frames. Reads belong to one
// goroutine at a time (the stream's receiver); writes may come from two
// (a stream's sender and the server's closing status) and are serialised.
type framer struct {
	conn net.Conn
	max  int

	r    *bufio.Reader
	rbuf []byte

	wmu  sync.Mutex
	wbuf []byte
	// sendTimeout bounds a write; the deadline is moved on when a quarter
	// of it has passed, not at every write, so a write blocks for 3/4 of
	// it at least and all of it at most.
	sendTimeout time.Duration
	deadline    time.Time
}

func newFramer(conn net.Conn, max int, sendTimeout time.Duration) *framer {
	return &framer{conn: conn, max: max, r: bufio.NewReaderSize(conn, 256<<10), sendTimeout: sendTimeout}
}

// send writes b whole, within the send timeout. Called with wmu held.
func (f *framer) send(b []byte) error {
	if now := time.Now(); f.deadline.Sub(now) < f.sendTimeout*3/4 {
		f.deadline = now.Add(f.sendTimeout)
		if err := f.conn.SetWriteDeadline(f.deadline); err != nil {
			return err
		}
	}
	_, err := f.conn.Write(b)
	return err
}

// write sends one frame in one write, so the kernel sees a whole message
// at once and TCP_NODELAY sends it without waiting.
func (f *framer) write(kind byte, m proto.Message) error {
	f.wmu.Lock()
	defer f.wmu.Unlock()
	b := append(f.wbuf[:0], 0, 0, 0, 0, kind)
	var err error
	if m != nil {
		if b, err = (proto.MarshalOptions{}).MarshalAppend(b, m); err != nil {
			return errdefs.InvalidArgument("message", "cannot be encoded: %v", err)
		}
	}
	if len(b)-headerLen > f.max {
		return errdefs.InvalidArgument("message", "is %d bytes, over the stream's limit of %d; send it in smaller pieces", len(b)-headerLen, f.max)
	}
	binary.BigEndian.PutUint32(b, uint32(len(b)-headerLen))
	err = f.send(b)
	if cap(b) <= 1<<20 {
		f.wbuf = b // keep small buffers; a rare large one is not held on to
	}
	return err
}

func (f *framer) writeRaw(kind byte, payload []byte) error {
	f.wmu.Lock()
	defer f.wmu.Unlock()
	return f.send(appendFrame(nil, kind, payload))
}

func appendFrame(b []byte, kind byte, payload []byte) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(len(payload)))
	return append(append(b, kind), payload...)
}

// read returns the next frame. The payload is valid until the next read.
func (f *framer) read() (kind byte, payload []byte, err error) {
	var h [headerLen]byte
	if _, err := io.ReadFull(f.r, h[:]); err != nil {
		return 0, nil, err
	}
	n := int(binary.BigEndian.Uint32(h[:4]))
	if n > f.max {
		return 0, nil, fmt.Errorf("a frame of %d bytes is over the stream's limit of %d", n, f.max)
	}
	if cap(f.rbuf) < n {
		f.rbuf = make([]byte, n)
	}
	f.rbuf = f.rbuf[:n]
	if _, err := io.ReadFull(f.r, f.rbuf); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return 0, nil, err
	}
	return h[4], f.rbuf, nil
}
