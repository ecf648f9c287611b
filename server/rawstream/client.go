package rawstream

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"time"

	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	grpcstatus "google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/volrep/volrep/errdefs"
	"github.com/volrep/volrep/errdefs/errgrpc"
)

// Open dials addr and opens a stream of method on it. timeout bounds the
// dial and the server's answer to the hello; the stream itself lasts
// until ctx ends, CloseSend and the server's status, or the connection
// fails. Errors keep their errdefs kinds: a refused token is
// Unauthenticated, an unreachable peer Unavailable.
func Open[Req, Res any](ctx context.Context, addr, token, method string, timeout time.Duration, maxMsg int) (grpc.BidiStreamingClient[Req, Res], error) {
	d := net.Dialer{Timeout: timeout}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err == nil {
		if err = tune(conn, DefaultSendTimeout); err != nil {
			conn.Close()
		}
	}
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, errdefs.Unavailable("raw stream to %s: %v", addr, err)
	}
	f := newFramer(conn, maxMsg, DefaultSendTimeout)
	conn.SetDeadline(time.Now().Add(timeout))
	_, err = conn.Write(appendFrame([]byte(magic), kindHello, []byte(method+"\n"+token)))
	var kind byte
	var p []byte
	if err == nil {
		kind, p, err = f.read()
	}
	if err == nil && kind != kindStatus {
		err = errors.New("the server did not answer the hello with a status")
	}
	if err != nil {
		conn.Close()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, errdefs.Unavailable("raw stream to %s: %v", addr, err)
	}
	if err := decodeStatus(p); err != nil {
		conn.Close()
		return nil, err
	}
	conn.SetDeadline(time.Time{})
	cs := &clientStream[Req, Res]{ctx: ctx, f: f, addr: addr}
	cs.stop = context.AfterFunc(ctx, func() { conn.Close() })
	return cs, nil
}

// decodeStatus turns a status frame back into nil or the errdefs error
// the server's handler returned.
func decodeStatus(p []byte) error {
	var st status.Status
	if err := proto.Unmarshal(p, &st); err != nil {
		return errdefs.Unavailable("the server's status cannot be decoded: %v", err)
	}
	if codes.Code(st.GetCode()) == codes.OK {
		return nil
	}
	return errgrpc.FromStatus(grpcstatus.FromProto(&st).Err())
}

// clientStream is the caller's side of one stream. Send and Recv may run
// on two goroutines at once, as on a gRPC stream.
type clientStream[Req, Res any] struct {
	ctx  context.Context
	f    *framer
	addr string
	stop func() bool

	mu  sync.Mutex
	end error // the server's closing status (io.EOF for OK), once read
}

func (c *clientStream[Req, Res]) Send(m *Req) error { return c.SendMsg(m) }

func (c *clientStream[Req, Res]) Recv() (*Res, error) {
	m := new(Res)
	if err := c.RecvMsg(m); err != nil {
		return nil, err
	}
	return m, nil
}

func (c *clientStream[Req, Res]) SendMsg(m any) error {
	if err := c.f.write(kindMsg, m.(proto.Message)); err != nil {
		if errdefs.IsInvalidArgument(err) {
			return err // this message only; the stream goes on
		}
		return c.lost(err)
	}
	return nil
}

func (c *clientStream[Req, Res]) RecvMsg(m any) error {
	c.mu.Lock()
	end := c.end
	c.mu.Unlock()
	if end != nil {
		return end
	}
	kind, p, err := c.f.read()
	if err != nil {
		return c.lost(err)
	}
	switch kind {
	case kindMsg:
		if err := proto.Unmarshal(p, m.(proto.Message)); err != nil {
			return errdefs.Unavailable("a message from %s cannot be decoded: %v", c.addr, err)
		}
		return nil
	case kindStatus:
		end := decodeStatus(p)
		if end == nil {
			end = io.EOF
		}
		c.mu.Lock()
		c.end = end
		c.mu.Unlock()
		c.stop()
		c.f.conn.Close()
		return end
	default:
		return errdefs.Unavailable("%s sent a frame of kind %d", c.addr, kind)
	}
}

// lost reports a failed read or write: the stream's own end when its
// context ended, the peer gone otherwise.
func (c *clientStream[Req, Res]) lost(err error) error {
	if c.ctx.Err() != nil {
		return c.ctx.Err()
	}
	return errdefs.Unavailable("raw stream to %s: %v", c.addr, err)
}

func (c *clientStream[Req, Res]) CloseSend() error {
	if err := c.f.write(kindClose, nil); err != nil {
		return c.lost(err)
	}
	return nil
}

func (c *clientStream[Req, Res]) Context() context.Context     { return c.ctx }
func (c *clientStream[Req, Res]) Header() (metadata.MD, error) { return nil, nil }
func (c *clientStream[Req, Res]) Trailer() metadata.MD         { return nil }
