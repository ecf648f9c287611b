package nbd

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/volrep/volrep/internal/latency"
)

// Limits and defaults.
const (
	// MaxRequestSize is the largest READ or WRITE the server accepts, and
	// the maximum block size it advertises (32 MiB).
	MaxRequestSize = 1 << maxBufShift
	// PreferredBlockSize is the advertised preferred block size.
	PreferredBlockSize = 4096
	// MinBlockSize is the advertised minimum block size: any byte offset
	// and length work.
	MinBlockSize = 1

	defaultWorkers           = 16
	defaultMaxInflightBytes  = 64 << 20
	defaultMaxQueuedRequests = 1024
	defaultMaxConnections    = 1024
	defaultHandshakeTimeout  = 30 * time.Second
	shutdownGrace            = time.Second
	maxRefusing              = 16 // refusals answered at once; more are closed unanswered
	refuseTimeout            = 5 * time.Second
	rejectLogInterval        = time.Second
	maxOptionLength          = 64 << 10 // larger options are answered NBD_REP_ERR_TOO_BIG
	maxOptionDiscard         = 16 << 20 // larger options drop the connection
	maxStringLength          = 4096     // protocol limit for names and queries
)

// ErrServerClosed is returned by Serve after Close.
var ErrServerClosed = errors.New("nbd: server closed")

// Options configure a Server. The zero value works.
type Options struct {
	// Logger receives connection events, refusals (warn) and protocol
	// violations. Nil discards them.
	Logger *slog.Logger
	// MaxConnections caps concurrent client connections over all
	// listeners. A client over the cap gets the greeting, then
	// NBD_REP_ERR_POLICY with a message in answer to its first option
	// (NBD_OPT_EXPORT_NAME, which cannot carry an error, gets nothing),
	// and the connection is closed; the refusal takes no slot of the cap.
	// While more than 16 such refusals are under way, further clients over
	// the cap are closed before the greeting. Default 1024; negative means
	// no limit.
	MaxConnections int
	// IdleTimeout closes a connection in the transmission phase that has
	// had no request in flight for this long (requests arriving, being
	// served or their replies being written all count as activity), and
	// one whose client has not taken a reply for this long. Zero (the
	// default) never closes one: an attached disk may see no I/O for
	// hours, and not every client reconnects.
	IdleTimeout time.Duration
	// Workers is how many requests of one connection are processed
	// concurrently. Default 16.
	Workers int
	// MaxInflightBytes caps the READ and WRITE payload bytes one
	// connection holds in memory at once (a request larger than the cap
	// still runs, alone). Default 64 MiB.
	MaxInflightBytes int64
	// MaxQueuedRequests caps the requests of one connection that have
	// been read but whose replies are not yet written, whatever their
	// size: when it is reached the connection reads no more requests
	// until the client takes replies, so that a client that pipelines
	// requests without reading the answers cannot grow the server's
	// memory. Default 1024.
	MaxQueuedRequests int
	// HandshakeTimeout bounds option negotiation. Default 30s; negative
	// disables it.
	HandshakeTimeout time.Duration
	// LogName, if set, maps an export name to the form written to logs,
	// for example to strip a secret the name carries. By default names are
	// logged as they are.
	LogName func(name string) string
}

// Stats are cumulative counters of one Server, for metrics.
type Stats struct {
	ConnectionsAccepted int64 // connections that reached the handshake
	ConnectionsActive   int64 // connections open now
	ConnectionsRejected int64 // connections refused because of MaxConnections
	ConnectionsIdle     int64 // connections closed because of IdleTimeout
	Refusals            int64 // export names refused by Exports.Open
	Requests            int64 // transmission requests received
	Errors              int64 // requests answered with an error
	BytesRead           int64 // payload bytes sent to clients by READ
	BytesWritten        int64 // payload bytes written by WRITE
	// Latency is how long requests took to serve, by kind: from when a
	// request (and a WRITE's payload) was read to when its reply was
	// queued, so the array's own time and not the network's.
	Latency [latency.NumOps]latency.Snapshot
}

// Server serves the exports of an Exports over NBD. Create it with
// NewServer; it is safe for concurrent use.
type Server struct {
	exports Exports
	opts    Options
	log     *slog.Logger

	ctx    context.Context // done when Close is called
	cancel context.CancelFunc

	mu        sync.Mutex
	closed    bool
	listeners map[net.Listener]struct{}
	wg        sync.WaitGroup // Serve calls and their connections

	accepted, active, rejected atomic.Int64
	idleClosed, refusing       atomic.Int64
	lastRejectLog              atomic.Int64 // unix nanoseconds
	refusals, requests, errors atomic.Int64
	bytesRead, bytesWritten    atomic.Int64
	latency                    latency.Histograms
}

// NewServer returns a server for exports. It serves nothing until Serve.
func NewServer(exports Exports, opts Options) *Server {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Workers <= 0 {
		opts.Workers = defaultWorkers
	}
	if opts.MaxInflightBytes <= 0 {
		opts.MaxInflightBytes = defaultMaxInflightBytes
	}
	if opts.MaxQueuedRequests <= 0 {
		opts.MaxQueuedRequests = defaultMaxQueuedRequests
	}
	if opts.MaxConnections == 0 {
		opts.MaxConnections = defaultMaxConnections
	}
	if opts.HandshakeTimeout == 0 {
		opts.HandshakeTimeout = defaultHandshakeTimeout
	}
	if opts.LogName == nil {
		opts.LogName = func(name string) string { return name }
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Server{
		exports:   exports,
		opts:      opts,
		log:       opts.Logger,
		ctx:       ctx,
		cancel:    cancel,
		listeners: make(map[net.Listener]struct{}),
	}
}

// Stats returns a snapshot of the server's counters.
func (s *Server) Stats() Stats {
	return Stats{
		ConnectionsAccepted: s.accepted.Load(),
		ConnectionsActive:   s.active.Load(),
		ConnectionsRejected: s.rejected.Load(),
		ConnectionsIdle:     s.idleClosed.Load(),
		Refusals:            s.refusals.Load(),
		Requests:            s.requests.Load(),
		Errors:              s.errors.Load(),
		BytesRead:           s.bytesRead.Load(),
		BytesWritten:        s.bytesWritten.Load(),
		Latency:             s.latency.Snapshot(),
	}
}

// Serve accepts connections on lis and serves each in its own goroutines.
// It returns when ctx is done or Close is called (closing lis, result nil
// or ErrServerClosed) or when lis fails or is closed by someone else (the
// Accept error). The connections accepted by a Serve call belong to it:
// before Serve returns they are shut down (in-flight requests are answered
// where the client still reads, within a short grace period) and their
// goroutines have ended.
func (s *Server) Serve(ctx context.Context, lis net.Listener) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		lis.Close()
		return ErrServerClosed
	}
	s.listeners[lis] = struct{}{}
	s.wg.Add(1)
	s.mu.Unlock()
	defer s.wg.Done()

	ctx, cancel := context.WithCancel(ctx)
	stopServer := context.AfterFunc(s.ctx, cancel)
	stopLis := context.AfterFunc(ctx, func() { lis.Close() })
	var conns sync.WaitGroup
	defer func() {
		stopLis()
		stopServer()
		cancel()
		lis.Close()
		conns.Wait()
		s.mu.Lock()
		delete(s.listeners, lis)
		s.mu.Unlock()
	}()

	var backoff time.Duration
	for {
		nc, err := lis.Accept()
		if err != nil {
			if s.ctx.Err() != nil {
				return ErrServerClosed
			}
			if ctx.Err() != nil {
				return nil
			}
			var ne net.Error
			if (errors.As(err, &ne) && ne.Timeout()) ||
				errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) {
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				s.log.Warn("nbd: accept failed; retrying", "err", err, "in", backoff)
				t := time.NewTimer(backoff)
				select {
				case <-t.C:
				case <-ctx.Done():
					t.Stop()
				}
				continue
			}
			return err
		}
		backoff = 0
		// Add first and check after, so that several listeners cannot
		// together overshoot the cap.
		if m := s.opts.MaxConnections; s.active.Add(1) > int64(m) && m > 0 {
			s.active.Add(-1)
			s.reject(ctx, nc, &conns)
			continue
		}
		s.accepted.Add(1)
		conns.Add(1)
		go func() {
			defer conns.Done()
			defer s.active.Add(-1)
			s.serveConn(ctx, nc)
		}()
	}
}

// reject turns away a client over MaxConnections. Refusals run in their
// own goroutine, owned by the Serve call like a connection, at most
// maxRefusing at once, each bounded by refuseTimeout: a flood of clients
// over the cap costs neither unbounded goroutines nor the accept loop's
// time.
func (s *Server) reject(ctx context.Context, nc net.Conn, conns *sync.WaitGroup) {
	s.rejected.Add(1)
	// Rate-limited: a flood would otherwise fill the log.
	now := time.Now().UnixNano()
	if last := s.lastRejectLog.Load(); now-last >= int64(rejectLogInterval) && s.lastRejectLog.CompareAndSwap(last, now) {
		s.log.Warn("nbd: too many connections; refusing new ones",
			"remote", nc.RemoteAddr().String(), "max_connections", s.opts.MaxConnections,
			"refused_so_far", s.rejected.Load())
	}
	if s.refusing.Add(1) > maxRefusing {
		s.refusing.Add(-1)
		nc.Close()
		return
	}
	conns.Add(1)
	go func() {
		defer conns.Done()
		defer s.refusing.Add(-1)
		defer nc.Close()
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		stop := context.AfterFunc(ctx, func() { nc.SetDeadline(aLongTimeAgo) })
		defer stop()
		c := newConnSize(s, nc, ctx, cancel, 512)
		if err := c.refuseBusy(); err != nil && ctx.Err() == nil {
			c.log.Debug("nbd: refusal ended", "err", err)
		}
	}()
}

// Close stops every Serve call: it closes the listeners, shuts the
// connections down and waits for all their goroutines. Later Serve calls
// return ErrServerClosed.
func (s *Server) Close() error {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	// Cancel before closing listeners, so that Serve sees why Accept
	// failed.
	s.cancel()
	s.mu.Lock()
	for lis := range s.listeners {
		lis.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
	return nil
}

// aLongTimeAgo is a deadline in the past, used to interrupt blocked I/O.
var aLongTimeAgo = time.Unix(1, 0)

// serveConn runs one connection from handshake to close.
func (s *Server) serveConn(ctx context.Context, nc net.Conn) {
	defer nc.Close()
	if tc, ok := nc.(*net.TCPConn); ok {
		tc.SetNoDelay(true)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// On shutdown stop reading at once, and give replies still being
	// written a short grace period.
	stop := context.AfterFunc(ctx, func() {
		nc.SetReadDeadline(aLongTimeAgo)
		nc.SetWriteDeadline(time.Now().Add(shutdownGrace))
	})
	defer stop()

	c := newConn(s, nc, ctx, cancel)
	defer c.releaseDevice()
	if err := c.negotiate(); err != nil {
		if !errors.Is(err, errAbort) && ctx.Err() == nil {
			c.log.Debug("nbd: negotiation ended", "err", err)
		}
		return
	}
	c.transmit()
}
