package iscsi

import (
	"context"
	"encoding/hex"
	"errors"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sync/semaphore"

	"github.com/volrep/volrep/internal/latency"
)

// Limits and defaults.
const (
	// BlockSize is the logical block size of every LUN.
	BlockSize = 512
	// MaxTransferBlocks is the largest READ or WRITE (in logical blocks)
	// the server accepts and advertises in the Block Limits VPD page
	// (8 MiB).
	MaxTransferBlocks = 16384

	defaultMaxRecvDataSegmentLength = 256 << 10
	defaultMaxBurstLength           = 1 << 20
	defaultFirstBurstLength         = 64 << 10
	defaultMaxConnections           = 1024
	defaultLoginTimeout             = 30 * time.Second
	defaultQueueDepth               = 64
	defaultMaxInflightBytes         = 64 << 20
	shutdownGrace                   = time.Second
	maxLoginText                    = 64 << 10
)

// ErrServerClosed is returned by Serve after Close.
var ErrServerClosed = errors.New("iscsi: server closed")

// Options configure a Server. The zero value works.
type Options struct {
	// Logger receives logins (info), refused logins (warn, with the
	// remote address, initiator, target and reason; never a secret) and
	// protocol violations. Nil discards them.
	Logger *slog.Logger
	// Keeper keeps the units' persistent reservations on disk; with it
	// they outlive a restart of the server (REPORT CAPABILITIES says
	// PTPL_C=1). Without it they are in memory only, and APTPL is refused.
	Keeper ReservationKeeper
	// MaxConnections caps concurrent connections over all listeners; a
	// connection over the cap is closed at once. Default 1024; negative
	// means no limit.
	MaxConnections int
	// LoginTimeout bounds the login phase. Default 30s.
	LoginTimeout time.Duration
	// MaxRecvDataSegmentLength is the largest data segment the target
	// accepts (declared to the initiator). Default 256 KiB; clamped to
	// [512, 2^24-1].
	MaxRecvDataSegmentLength int
	// MaxBurstLength and FirstBurstLength are the target's offers for the
	// negotiated burst sizes. Defaults 1 MiB and 64 KiB.
	MaxBurstLength   int
	FirstBurstLength int
	// QueueDepth is how many commands one session may have outstanding
	// (the command window between ExpCmdSN and MaxCmdSN); they run
	// concurrently. Default 64.
	QueueDepth int
	// MaxInflightBytes caps the READ data one session holds in memory at
	// once. Default 64 MiB.
	MaxInflightBytes int64
	// TargetPortalGroupTag is the portal group of every portal of this
	// server (default 1).
	TargetPortalGroupTag uint16
	// PortGroup is this server's ALUA target port group (and relative
	// target port) in INQUIRY VPD 0x83 and REPORT TARGET PORT GROUPS.
	// Two arrays that serve the same volume (a pod) must use different
	// ones, or a host's multipath takes their paths for one group.
	// Default 1.
	PortGroup uint16
	// TargetAlias, if set, is sent to initiators at login.
	TargetAlias string
}

// Stats are cumulative counters of one Server, for metrics.
type Stats struct {
	ConnectionsAccepted int64 // connections accepted
	ConnectionsActive   int64 // connections open now
	ConnectionsRejected int64 // connections closed because of MaxConnections
	Logins              int64 // successful logins (normal and discovery)
	LoginsRefused       int64 // logins answered with a failure status
	Commands            int64 // SCSI commands received
	CheckConditions     int64 // SCSI commands answered CHECK CONDITION
	Inflight            int64 // SCSI commands received and not yet answered, over all sessions
	ProtocolErrors      int64 // Reject PDUs sent and connections dropped for a violation
	TaskManagement      int64 // Task Management Function Requests answered
	Resets              int64 // logical unit resets applied: by a TMF here (one per unit for a TARGET WARM RESET) or from a shared unit's other target
	Conflicts           int64 // SCSI commands answered RESERVATION CONFLICT
	BytesRead           int64 // data bytes sent to initiators
	BytesWritten        int64 // data bytes received from initiators and written
	// Latency is how long SCSI commands took to run, by kind: from when
	// a command's data was all in to when its response was queued, so
	// the array's own time and not the network's.
	Latency [latency.NumOps]latency.Snapshot
}

// Server is an iSCSI target serving the LUNs Targets maps. Create it with
// NewServer; it is safe for concurrent use.
type Server struct {
	targets Targets
	opts    Options
	log     *slog.Logger

	ctx    context.Context // done when Close is called
	cancel context.CancelFunc

	mu        sync.Mutex
	closed    bool
	listeners map[net.Listener]struct{}
	wg        sync.WaitGroup

	tsih atomic.Uint32

	// cawLocks serialise COMPARE AND WRITE against every other write to
	// the same volume through this server (keyed by a hash of the NAA).
	cawLocks [64]sync.RWMutex
	// units keeps each volume's resets and running commands (by NAA).
	units sync.Map // [16]byte → *unit
	// resetClock ticks at every LOGICAL UNIT RESET here. A command reads
	// it as it arrives and a unit records it at its reset, so a command
	// can tell a reset of its unit that came after it (unit.lastReset).
	resetClock atomic.Uint64

	accepted, active, rejected    atomic.Int64
	logins, refused, commands     atomic.Int64
	checks, inflight, protoErrors atomic.Int64
	tmfs, resets, conflicts       atomic.Int64
	bytesRead, bytesWritten       atomic.Int64
	latency                       latency.Histograms
}

// NewServer returns a server for targets. It serves nothing until Serve.
func NewServer(targets Targets, opts Options) *Server {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.MaxConnections == 0 {
		opts.MaxConnections = defaultMaxConnections
	}
	if opts.LoginTimeout <= 0 {
		opts.LoginTimeout = defaultLoginTimeout
	}
	if opts.MaxRecvDataSegmentLength == 0 {
		opts.MaxRecvDataSegmentLength = defaultMaxRecvDataSegmentLength
	}
	opts.MaxRecvDataSegmentLength = min(max(opts.MaxRecvDataSegmentLength, minDataSegment), maxDataSegment)
	if opts.MaxBurstLength <= 0 {
		opts.MaxBurstLength = defaultMaxBurstLength
	}
	opts.MaxBurstLength = min(max(opts.MaxBurstLength, minDataSegment), maxDataSegment)
	if opts.FirstBurstLength <= 0 {
		opts.FirstBurstLength = defaultFirstBurstLength
	}
	opts.FirstBurstLength = min(max(opts.FirstBurstLength, minDataSegment), opts.MaxBurstLength)
	if opts.QueueDepth <= 0 {
		opts.QueueDepth = defaultQueueDepth
	}
	if opts.MaxInflightBytes <= 0 {
		opts.MaxInflightBytes = defaultMaxInflightBytes
	}
	opts.MaxInflightBytes = max(opts.MaxInflightBytes, MaxTransferBlocks*BlockSize)
	if opts.TargetPortalGroupTag == 0 {
		opts.TargetPortalGroupTag = 1
	}
	if opts.PortGroup == 0 {
		opts.PortGroup = 1
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Server{
		targets:   targets,
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
		Logins:              s.logins.Load(),
		LoginsRefused:       s.refused.Load(),
		Commands:            s.commands.Load(),
		CheckConditions:     s.checks.Load(),
		Inflight:            s.inflight.Load(),
		ProtocolErrors:      s.protoErrors.Load(),
		TaskManagement:      s.tmfs.Load(),
		Resets:              s.resets.Load(),
		Conflicts:           s.conflicts.Load(),
		BytesRead:           s.bytesRead.Load(),
		BytesWritten:        s.bytesWritten.Load(),
		Latency:             s.latency.Snapshot(),
	}
}

// Serve accepts connections on lis (one portal) and serves each in its
// own goroutines. It returns when ctx is done or Close is called (closing
// lis; result nil or ErrServerClosed) or when lis fails (the Accept
// error). Before it returns, the connections it accepted are closed and
// their goroutines have ended.
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
				s.log.Warn("iscsi: accept failed; retrying", "err", err, "in", backoff)
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
		if m := s.opts.MaxConnections; s.active.Add(1) > int64(m) && m > 0 {
			s.active.Add(-1)
			s.rejected.Add(1)
			s.log.Warn("iscsi: too many connections; closing a new one",
				"remote", nc.RemoteAddr().String(), "max_connections", m)
			nc.Close()
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

// Close stops every Serve call: it closes the listeners, shuts the
// connections down and waits for all their goroutines. Later Serve calls
// return ErrServerClosed.
func (s *Server) Close() error {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
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

// serveConn runs one connection from login to close.
func (s *Server) serveConn(ctx context.Context, nc net.Conn) {
	defer nc.Close()
	if tc, ok := nc.(*net.TCPConn); ok {
		tc.SetNoDelay(true)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(ctx, func() {
		nc.SetReadDeadline(aLongTimeAgo)
		nc.SetWriteDeadline(time.Now().Add(shutdownGrace))
	})
	defer stop()

	c := newConn(s, nc, ctx, cancel)
	if !c.login() {
		return
	}
	c.serve()
}

// cawLock returns the lock that orders writes and COMPARE AND WRITE to
// the volume named id.
func (s *Server) cawLock(id *Identity) *sync.RWMutex {
	var h uint32 = 2166136261
	for _, b := range id.NAA {
		h = (h ^ uint32(b)) * 16777619
	}
	return &s.cawLocks[h%uint32(len(s.cawLocks))]
}

// SharedReset applies a LOGICAL UNIT RESET that the other target of a
// shared logical unit (ResetSharer) took of the unit whose NAA is naa, as
// if taken here: every session that sees the unit gets its unit
// attention, and a command that came before it but has not begun is not
// run. The returned drain waits for the commands running on the unit
// when it came; the other target answers its reset only after, so that
// no command of this target lands after the host was told the reset is
// done. Call drain off any path those commands wait on.
func (s *Server) SharedReset(naa [16]byte) (drain func(context.Context) error) {
	s.resets.Add(1)
	start := time.Now()
	wait := s.unitOf(naa).reset(s.resetClock.Add(1))
	return func(ctx context.Context) error {
		if err := wait(ctx); err != nil {
			return err // the caller's stream ended, which it logs
		}
		s.log.Info("iscsi: a LOGICAL UNIT RESET taken at the other target applied", "wwn", hex.EncodeToString(naa[:]),
			"waited", time.Since(start).Round(time.Microsecond))
		return nil
	}
}

// unitOf returns what the server keeps of the volume whose NAA is naa
// across its sessions.
func (s *Server) unitOf(naa [16]byte) *unit {
	if v, ok := s.units.Load(naa); ok {
		return v.(*unit)
	}
	u := &unit{pr: reservations{order: semaphore.NewWeighted(1)}}
	if st := s.loadReservations(naa); st != nil {
		u.pr.state.Store(st)
	}
	v, _ := s.units.LoadOrStore(naa, u)
	return v.(*unit)
}
