// Package server is the gRPC plumbing that the array API and the driver
// API share: listeners, the interceptor chain (logging with slog, error
// mapping, bearer-token auth, request validation, panic recovery), health,
// reflection, graceful stop, the client dialer, and systemd notification.
// The errdefs ↔ gRPC status mapping the chain and the dialer apply is
// package errdefs/errgrpc, which clients that dial on their own use too.
package server

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/reflection"
)

// DefaultMaxMsgSize is the default limit on a message's size, sent or
// received, on both servers and clients.
const DefaultMaxMsgSize = 16 << 20

// Flow-control window and socket buffer sizes for every connection.
const (
	windowSize   = 8 << 20
	socketBuffer = 256 << 10
)

// Both ends of every connection ping after this long without a frame from
// the other and give up when no answer comes within keepaliveTimeout: a
// partition that drops packets silently, or a peer whose process hangs
// while its kernel still answers TCP, is found within 15 s. Without the
// server's own pings a handler waiting on such a peer (a transfer's
// receiver in Recv, a pod's hand-back in Send on a full flow-control
// window) would wait for gRPC's 2-hour default; a target volume then
// refuses new transfers as "already receiving" all that time.
const (
	DefaultKeepalive = 10 * time.Second
	keepaliveTimeout = 5 * time.Second
)

// DefaultStopTimeout is how long Serve waits for in-flight calls after its
// context ends before it cuts them off.
const DefaultStopTimeout = 10 * time.Second

// Options configure a Server.
type Options struct {
	// Name identifies the server in logs, for example "driver" or
	// "array site-a".
	Name   string
	Logger *slog.Logger // nil uses slog.Default()
	// Token is the API token clients must send as
	// "authorization: Bearer <token>". Empty turns auth off.
	Token string
	// ExtraUnary and ExtraStream run after validation and before recovery,
	// for example metrics.
	ExtraUnary  []grpc.UnaryServerInterceptor
	ExtraStream []grpc.StreamServerInterceptor
	// MaxMsgSize limits messages sent and received; 0 means
	// DefaultMaxMsgSize (16 MiB).
	MaxMsgSize int
	// StopTimeout bounds the graceful stop in Serve; 0 means
	// DefaultStopTimeout (10s).
	StopTimeout time.Duration
	// Keepalive is how long a connection may stay silent before the
	// server pings it; it is cut when the answer takes half as long
	// again. 0 means DefaultKeepalive (10s); gRPC raises anything under
	// a second to one.
	Keepalive time.Duration
}

// Server is a gRPC server with volrep's interceptor chain, the
// grpc.health.v1 service and server reflection.
type Server struct {
	log         *slog.Logger
	grpc        *grpc.Server
	health      *health.Server
	stopTimeout time.Duration
}

// New builds a server. Register services on GRPC(), then call Serve.
func New(opts Options) *Server {
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	if opts.Name != "" {
		log = log.With("server", opts.Name)
	}
	size := opts.MaxMsgSize
	if size <= 0 {
		size = DefaultMaxMsgSize
	}
	stop := opts.StopTimeout
	if stop <= 0 {
		stop = DefaultStopTimeout
	}
	ping, pingTimeout := DefaultKeepalive, keepaliveTimeout
	if opts.Keepalive > 0 {
		ping, pingTimeout = opts.Keepalive, opts.Keepalive/2
	}
	gs := grpc.NewServer(
		grpc.ChainUnaryInterceptor(unaryChain(log, opts.Token, opts.ExtraUnary)...),
		grpc.ChainStreamInterceptor(streamChain(log, opts.Token, opts.ExtraStream)...),
		grpc.MaxRecvMsgSize(size),
		// Clients (Dial) ping every 10 s as well; the policy lets them.
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: ping, Timeout: pingTimeout}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 5 * time.Second, PermitWithoutStream: true}),
		// Bulk transfers (snapshot shipping) stream megabyte messages; the
		// default 64 KiB flow-control window and 32 KiB socket buffers
		// would stall them on loopback and LAN alike.
		grpc.InitialWindowSize(windowSize),
		grpc.InitialConnWindowSize(2*windowSize),
		grpc.ReadBufferSize(socketBuffer),
		grpc.WriteBufferSize(socketBuffer),
		grpc.MaxSendMsgSize(size),
	)
	hs := health.NewServer()
	healthpb.RegisterHealthServer(gs, hs)
	reflection.Register(gs)
	return &Server{log: log, grpc: gs, health: hs, stopTimeout: stop}
}

// GRPC returns the underlying server, for registering services.
func (s *Server) GRPC() *grpc.Server { return s.grpc }

// SetServingStatus sets the health of one service ("" is the server as a
// whole), as grpc.health.v1 reports it.
func (s *Server) SetServingStatus(service string, serving bool) {
	st := healthpb.HealthCheckResponse_NOT_SERVING
	if serving {
		st = healthpb.HealthCheckResponse_SERVING
	}
	s.health.SetServingStatus(service, st)
}

// Serve serves on lis until ctx is done, then stops gracefully: health
// turns NOT_SERVING, no new calls are accepted and in-flight calls may
// finish for up to StopTimeout before they are cut off. It returns nil on
// such a stop and the error if serving fails. Serve closes lis. Call it
// once per Server.
func (s *Server) Serve(ctx context.Context, lis net.Listener) error {
	errc := make(chan error, 1)
	go func() { errc <- s.grpc.Serve(lis) }()
	s.log.InfoContext(ctx, "serving gRPC", "address", lis.Addr().String())

	select {
	case err := <-errc:
		// Serve failed (or someone else stopped the server).
		s.grpc.Stop()
		s.health.Shutdown()
		if errors.Is(err, grpc.ErrServerStopped) {
			return nil
		}
		return err
	case <-ctx.Done():
	}

	s.health.Shutdown()
	done := make(chan struct{})
	go func() {
		s.grpc.GracefulStop()
		close(done)
	}()
	t := time.NewTimer(s.stopTimeout)
	defer t.Stop()
	select {
	case <-done:
		s.log.Info("gRPC server stopped", "address", lis.Addr().String())
	case <-t.C:
		s.log.Warn("graceful stop timed out; cancelling the calls still in flight",
			"address", lis.Addr().String(), "timeout", s.stopTimeout.String())
		s.grpc.Stop()
		<-done
	}
	if err := <-errc; err != nil && !errors.Is(err, grpc.ErrServerStopped) {
		return err
	}
	return nil
}
