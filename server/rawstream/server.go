// Package rawstream carries one bidirectional stream of protobuf messages
// over a TCP connection of its own, without HTTP/2: length-prefixed
// frames, a hello that names the method and carries the API token, and a
// closing status that keeps the error's gRPC code, so both ends see the
// same errdefs kinds as over gRPC. Handlers and callers use the generated
// gRPC stream interfaces, so one handler serves both transports.
//
// It exists for a pod's streams (TransferService Mirror and Forward),
// where every message is a client write waiting for its answer: over gRPC
// each message also passed through the transport's writer goroutine on
// one side and its reader goroutine on the other, a wake-up each way that
// cost more than the rest of the round trip.
package rawstream

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"golang.org/x/net/netutil"

	"github.com/volrep/volrep/errdefs"
	"github.com/volrep/volrep/errdefs/errgrpc"
)

// helloTimeout bounds how long a connection may take to say who it is.
const helloTimeout = 10 * time.Second

// Options configure a Server.
type Options struct {
	Logger *slog.Logger
	// CheckToken checks the API token a hello carries (nil accepts any).
	CheckToken func(token string) error
	// Validate checks every message a handler receives (nil checks none).
	Validate func(msg any) error
	// MaxMsgSize limits a message's size, sent or received.
	MaxMsgSize int
	// MaxConns caps the connections served at once (0: DefaultMaxConns).
	// Beyond it a connection waits in the listen queue until one ends: a
	// flood of connections that never say hello holds up raw streams
	// (pods fall back to gRPC after the open timeout), not the daemon's
	// file descriptors.
	MaxConns int
	// SendTimeout bounds how long a handler's Send may block, and how
	// long what it sent may go unacknowledged, before its connection
	// fails (0: DefaultSendTimeout).
	SendTimeout time.Duration
}

// DefaultMaxConns is MaxConns when it is not set: a pod holds two streams
// to its peer, so this is room for far more pods than an array serves.
const DefaultMaxConns = 1024

// Server serves the registered methods on the connections of a listener.
type Server struct {
	opts     Options
	log      *slog.Logger
	handlers map[string]func(ctx context.Context, f *framer) error
}

// NewServer returns a server with no methods; Register adds them.
func NewServer(opts Options) *Server {
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	return &Server{opts: opts, log: log, handlers: map[string]func(context.Context, *framer) error{}}
}

// Register serves method (a full gRPC method name, such as
// "/volrep.array.v1.TransferService/Mirror") with fn, the same handler
// the gRPC server runs. Register before Serve.
func Register[Req, Res any](s *Server, method string, fn func(grpc.BidiStreamingServer[Req, Res]) error) {
	s.handlers[method] = func(ctx context.Context, f *framer) error {
		return fn(&serverStream[Req, Res]{ctx: ctx, f: f, validate: s.opts.Validate})
	}
}

// Serve accepts connections on lis until ctx ends; then it closes lis and
// every connection, and returns once their handlers have returned.
func (s *Server) Serve(ctx context.Context, lis net.Listener) error {
	max := s.opts.MaxConns
	if max <= 0 {
		max = DefaultMaxConns
	}
	ut := s.sendTimeout()
	// Tuned before the limit wraps them: its connections are not
	// *net.TCPConn, so they could not be tuned after.
	lis = netutil.LimitListener(tunedListener{Listener: lis, userTimeout: ut, log: s.log}, max)
	var wg sync.WaitGroup
	defer wg.Wait()
	stop := context.AfterFunc(ctx, func() { lis.Close() })
	defer stop()
	for {
		conn, err := lis.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if errors.Is(err, net.ErrClosed) {
				return err
			}
			// Out of file descriptors and the like: the pods' streams
			// come back when it passes, so wait rather than stop the array.
			s.log.Warn("accepting a raw stream connection", "err", err)
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(100 * time.Millisecond):
			}
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.serveConn(ctx, conn)
		}()
	}
}

func (s *Server) sendTimeout() time.Duration {
	if s.opts.SendTimeout > 0 {
		return s.opts.SendTimeout
	}
	return DefaultSendTimeout
}

// tunedListener sets keepalive and TCP_USER_TIMEOUT on every connection
// it accepts.
type tunedListener struct {
	net.Listener
	userTimeout time.Duration
	log         *slog.Logger
}

func (l tunedListener) Accept() (net.Conn, error) {
	conn, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	if err := tune(conn, l.userTimeout); err != nil {
		l.log.Warn("setting keepalive and TCP_USER_TIMEOUT on a raw stream connection; a cut-off peer is found later", "err", err)
	}
	return conn, nil
}

func (s *Server) serveConn(ctx context.Context, conn net.Conn) {
	ctx, cancel := context.WithCancel(ctx)
	// Closing the connection is what ends a handler's blocked Recv or
	// Send when the stream ends or the server stops.
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer func() {
		cancel()
		stop()
		conn.Close()
	}()
	f := newFramer(conn, s.opts.MaxMsgSize, s.sendTimeout())
	method, handler, err := s.hello(f)
	if err != nil {
		if errors.Is(err, errNoHello) {
			// A port scan or a client dialling the wrong port.
			s.log.Debug("closed a connection without a raw stream hello", "remote", conn.RemoteAddr().String())
			return
		}
		f.writeRaw(kindStatus, statusBytes(err))
		s.log.Warn("refused a raw stream", "remote", conn.RemoteAddr().String(), "method", method, "err", err)
		return
	}
	log := s.log.With("method", method, "remote", conn.RemoteAddr().String())
	if err := f.writeRaw(kindStatus, statusBytes(nil)); err != nil {
		return
	}
	err = s.run(ctx, log, handler, f)
	if werr := f.writeRaw(kindStatus, statusBytes(err)); werr != nil && err == nil {
		err = werr
	}
	if err != nil && ctx.Err() == nil {
		log.Info("raw stream ended", "err", err)
	}
}

var errNoHello = errors.New("the connection did not open with a raw stream hello")

func (s *Server) hello(f *framer) (string, func(context.Context, *framer) error, error) {
	f.conn.SetReadDeadline(time.Now().Add(helloTimeout))
	defer f.conn.SetReadDeadline(time.Time{})
	m := make([]byte, len(magic))
	if _, err := io.ReadFull(f.r, m); err != nil || string(m) != magic {
		return "", nil, errNoHello
	}
	kind, p, err := f.read()
	if err != nil || kind != kindHello {
		return "", nil, errNoHello
	}
	method, token, _ := strings.Cut(string(p), "\n")
	if s.opts.CheckToken != nil {
		if err := s.opts.CheckToken(token); err != nil {
			return method, nil, err
		}
	}
	h, ok := s.handlers[method]
	if !ok {
		return method, nil, errdefs.FailedPrecondition("method %q is not served on this port; use the array's gRPC API for it", method)
	}
	return method, h, nil
}

// run calls the handler as the gRPC server's recovery interceptor would:
// a panic ends this stream with INTERNAL, not the daemon.
func (s *Server) run(ctx context.Context, log *slog.Logger, h func(context.Context, *framer) error, f *framer) (err error) {
	defer func() {
		if p := recover(); p != nil {
			log.Error("panic in a raw stream handler", "panic", p)
			err = errdefs.New(errdefs.KindUnknown, "internal error; see the array's log")
		}
	}()
	return h(ctx, f)
}

// statusBytes encodes err as the google.rpc.Status a gRPC server would
// have sent (nil is OK).
func statusBytes(err error) []byte {
	st := status.New(codes.OK, "")
	if err != nil {
		st = status.Convert(errgrpc.ToStatus(err))
	}
	b, _ := proto.Marshal(st.Proto())
	return b
}

// serverStream is the handler's side of one stream.
type serverStream[Req, Res any] struct {
	ctx      context.Context
	f        *framer
	validate func(any) error
}

func (s *serverStream[Req, Res]) Recv() (*Req, error) {
	m := new(Req)
	if err := s.RecvMsg(m); err != nil {
		return nil, err
	}
	return m, nil
}

func (s *serverStream[Req, Res]) Send(m *Res) error { return s.SendMsg(m) }

func (s *serverStream[Req, Res]) RecvMsg(m any) error {
	kind, p, err := s.f.read()
	if err != nil {
		if s.ctx.Err() != nil {
			return s.ctx.Err()
		}
		return errdefs.Unavailable("the stream's connection ended: %v", err)
	}
	switch kind {
	case kindClose:
		return io.EOF
	case kindMsg:
	default:
		return errdefs.InvalidArgument("frame", "kind %d is not a message; the caller does not speak this protocol", kind)
	}
	if err := proto.Unmarshal(p, m.(proto.Message)); err != nil {
		return errdefs.InvalidArgument("message", "cannot be decoded: %v", err)
	}
	if s.validate != nil {
		return s.validate(m)
	}
	return nil
}

func (s *serverStream[Req, Res]) SendMsg(m any) error {
	if err := s.f.write(kindMsg, m.(proto.Message)); err != nil {
		if errdefs.IsInvalidArgument(err) {
			return err
		}
		if s.ctx.Err() != nil {
			return s.ctx.Err()
		}
		return errdefs.Unavailable("the stream's connection ended: %v", err)
	}
	return nil
}

// Abort closes the stream's connection at once, so a Send blocked on a
// peer that stopped reading (a partition, with the socket's buffer full)
// returns, and so does Recv; the handler's status is not delivered. It
// is for a handler that must end while its sender is blocked.
func (s *serverStream[Req, Res]) Abort() { s.f.conn.Close() }

func (s *serverStream[Req, Res]) Context() context.Context     { return s.ctx }
func (s *serverStream[Req, Res]) SetHeader(metadata.MD) error  { return nil }
func (s *serverStream[Req, Res]) SendHeader(metadata.MD) error { return nil }
func (s *serverStream[Req, Res]) SetTrailer(metadata.MD)       {}
