package driver

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/semaphore"

	"github.com/volrep/volrep/array"
	"github.com/volrep/volrep/config"
	"github.com/volrep/volrep/errdefs"
)

// Conn is a connection to one array: its storage and its replication.
type Conn struct {
	Array       array.Array
	Replication array.Replication
	Close       func() error
	// Reconnect, when set, makes the connection try the array again now
	// instead of at the end of gRPC's reconnect backoff, which grows to
	// tens of seconds while an array is away.
	Reconnect func()
}

// reconnect asks for a fresh connection attempt now, if c can make one.
func (c Conn) reconnect() {
	if c.Reconnect != nil {
		c.Reconnect()
	}
}

// Dialer opens a connection to the array at addr, authenticated by token.
type Dialer func(addr, token string) (Conn, error)

// Options configure the driver.
type Options struct {
	Logger *slog.Logger
	Dial   Dialer
	Now    func() time.Time
	// RetryMin and RetryMax bound the backoff between attempts to bring a
	// down backend up.
	RetryMin, RetryMax time.Duration
	// CheckInterval is how often an up backend checks that its arrays answer.
	CheckInterval time.Duration
	// OnState is told whenever a backend goes up or down (health, metrics).
	OnState func(State)
	// ConfigFile names the configuration in reasons, for file:line.
	ConfigFile string
	// StateDir holds the driver's own state: which array serves each backend.
	StateDir string
}

func (o *Options) defaults() {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.RetryMin <= 0 {
		o.RetryMin = time.Second
	}
	if o.RetryMax <= 0 {
		o.RetryMax = 30 * time.Second
	}
	if o.CheckInterval <= 0 {
		o.CheckInterval = 10 * time.Second
	}
	if o.OnState == nil {
		o.OnState = func(State) {}
	}
}

// State is a backend's health as ListBackends reports it.
type State struct {
	Name              string
	VolumeBackendName string
	Up                bool
	Reason            string
	ActiveBackendID   string
	PrimaryArray      string
	Targets           []config.ReplicationDevice
}

// Backend is one cinder.conf backend section at run time.
type Backend struct {
	cfg config.Backend
	// conf is the section as cinder.conf has it; cfg differs from it by a
	// run-time replication schedule.
	conf config.Backend
	// stateMu serialises changes of the persisted backend state.
	stateMu sync.Mutex
	opts    Options
	log     *slog.Logger

	primary Conn
	targets map[string]Conn
	// replErr is why replication is not set up yet; setup is retried while up.
	replErr error

	mu     sync.RWMutex
	up     bool
	reason string
	active string
	stats  *Stats
	// autoProtocol is the attachment protocol found on the primary array
	// when volrep_protocol is unset ("" until asked).
	autoProtocol string
	// podOnline is each sync target's pod state as last seen, for choosing
	// a failover target when the primary can no longer be asked.
	podOnline map[string]bool
	// targetProblem is each target's trouble as last logged ("" healthy),
	// so the log records changes rather than repeating itself.
	targetProblem map[string]string
	// failing serialises failovers and failbacks. A failback holds it
	// for whole transfers: a call waiting behind one gives up with its
	// context.
	failing *semaphore.Weighted

	ops  opLocks
	wake chan struct{}
	// journal keeps the operations started through this backend, so they
	// stay queryable after a restart.
	journal *opJournal
	// runs are the operations the driver itself runs from this backend
	// (migrations): id → context.CancelFunc.
	runs sync.Map
	// arrayNames are the names of the arrays behind "primary" and the
	// sync targets' backend_ids, as hosts' preferred arrays name them.
	arrayNames sync.Map
	// gen counts switches of the active array (setActive). A check or
	// converge that started before a switch reports on the array the
	// backend no longer uses, so its outcome is dropped.
	gen uint64
}

// newBackend makes a backend of cfg; journal is its predecessor's across
// a reload, nil to load it from state_dir.
func newBackend(cfg config.Backend, opts Options, journal *opJournal) *Backend {
	b := &Backend{cfg: cfg, conf: cfg, opts: opts, active: "default", wake: make(chan struct{}, 1), failing: semaphore.NewWeighted(1),
		targets: map[string]Conn{}, journal: emptyOpJournal(),
		log: opts.Logger.With("backend", cfg.Section)}
	if len(cfg.Problems) > 0 {
		b.reason = cfg.Problems.Error()
		return b
	}
	st, err := b.loadState()
	if err != nil {
		b.reason = "driver state: " + err.Error()
		return b
	}
	b.active = st.ActiveBackendID
	if err := b.applyScheduleOverride(st); err != nil {
		b.reason = "driver state: " + err.Error()
		return b
	}
	if journal != nil {
		b.journal = journal
	} else if b.opts.StateDir != "" {
		if b.journal, err = loadOpJournal(filepath.Join(b.opts.StateDir, "operations", cfg.Section+".json")); err != nil {
			b.reason = "driver operation journal: " + err.Error()
			return b
		}
	}
	b.reason = "starting"
	if b.primary, err = opts.Dial(cfg.SanIP, cfg.APIToken.Reveal()); err != nil {
		b.reason = fmt.Sprintf("san_ip %s: %v", cfg.SanIP, err)
		return b
	}
	for _, rd := range cfg.ReplicationDevices {
		c, err := opts.Dial(rd.SanIP, rd.APIToken.Reveal())
		if err != nil {
			b.reason = fmt.Sprintf("replication_device %s san_ip %s: %v", rd.BackendID, rd.SanIP, err)
			b.close()
			b.primary = Conn{}
			return b
		}
		b.targets[rd.BackendID] = c
	}
	return b
}

// Name returns the backend's section name.
func (b *Backend) Name() string { return b.cfg.Section }

// Config returns the backend's configuration.
func (b *Backend) Config() config.Backend { return b.cfg }

// State reports whether the backend is up, and why not.
func (b *Backend) State() State {
	b.mu.RLock()
	defer b.mu.RUnlock()
	return State{Name: b.cfg.Section, VolumeBackendName: b.cfg.VolumeBackendName, Up: b.up, Reason: b.reason,
		ActiveBackendID: b.active, PrimaryArray: b.cfg.SanIP, Targets: b.cfg.ReplicationDevices}
}

func (b *Backend) setState(up bool, reason string) { b.setStateAt(b.generation(), up, reason) }

// generation is the number of active-array switches so far.
func (b *Backend) generation() uint64 {
	b.mu.RLock()
	defer b.mu.RUnlock()
	return b.gen
}

// setStateAt records the outcome of a check that started at generation
// gen, unless the active array has switched since.
func (b *Backend) setStateAt(gen uint64, up bool, reason string) {
	b.mu.Lock()
	if gen != b.gen {
		b.mu.Unlock()
		return
	}
	changed := b.up != up || b.reason != reason
	b.up, b.reason = up, reason
	b.mu.Unlock()
	if !changed {
		return
	}
	if up {
		b.log.Info("backend is up", "array", b.cfg.SanIP)
	} else {
		b.log.Error("backend is down", "reason", reason)
	}
	b.opts.OnState(b.State())
}

// ready returns an error saying why calls cannot be served now.
func (b *Backend) ready() error {
	b.mu.RLock()
	defer b.mu.RUnlock()
	if !b.up {
		return errdefs.Unavailable("backend %s is down: %s", b.cfg.Section, b.reason)
	}
	return nil
}

// run keeps the backend converged until ctx ends: it retries with backoff
// while down and checks its arrays while up.
func (b *Backend) run(ctx context.Context) {
	if b.primary.Array == nil {
		b.setState(false, b.reason)
		return
	}
	delay := b.opts.RetryMin
	for ctx.Err() == nil {
		gen := b.generation()
		if err := b.converge(ctx); err != nil {
			if ctx.Err() != nil {
				return
			}
			b.setStateAt(gen, false, err.Error())
			if !sleep(ctx, delay, b.wake) {
				return
			}
			delay = min(2*delay, b.opts.RetryMax)
			continue
		}
		b.setStateAt(gen, true, "")
		delay = b.opts.RetryMin
		if !b.failedOver() {
			b.setupReplication(ctx)
		}
		for sleep(ctx, b.opts.CheckInterval, b.wake) {
			gen := b.generation()
			if err := b.check(ctx); err != nil {
				if ctx.Err() != nil {
					return
				}
				if b.generation() != gen {
					continue // the array checked is no longer the active one
				}
				b.setStateAt(gen, false, err.Error())
				break
			}
			if b.replicationPending() && !b.failedOver() {
				b.setupReplication(ctx)
			}
			b.watchTargets(ctx)
		}
	}
}

// Reconverge asks the backend to re-run its setup now.
func (b *Backend) Reconverge() {
	select {
	case b.wake <- struct{}{}:
	default:
	}
}

func sleep(ctx context.Context, d time.Duration, wake <-chan struct{}) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	case <-wake:
		return true
	}
}

// converge makes the arrays match the configuration, idempotently, so a
// restart or a reload re-applies it.
func (b *Backend) converge(ctx context.Context) error {
	if err := b.check(ctx); err != nil {
		return err
	}
	if _, err := b.activeArray().CreatePool(ctx, b.cfg.Pool); err != nil {
		return fmt.Errorf("creating pool %q on the active array: %w", b.cfg.Pool, err)
	}
	return nil
}

// check asks the array serving the backend who it is, to catch an
// unreachable array or a rejected token.
func (b *Backend) check(ctx context.Context) error {
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := b.activeArray().Info(cctx); err != nil {
		if b.failedOver() {
			return b.arrayError("secondary array "+b.State().ActiveBackendID, "replication_device", b.activeAddr(), "api_token", err)
		}
		return b.arrayError("primary array", "san_ip", b.cfg.SanIP, "pure_api_token", err)
	}
	return nil
}

// failedOver reports whether a replication target serves the backend.
func (b *Backend) failedOver() bool { return b.activeID() != "default" }

// activeID is the backend_id that serves the backend, "default" at home.
func (b *Backend) activeID() string {
	b.mu.RLock()
	defer b.mu.RUnlock()
	return b.active
}

// arrayError turns a failed call to an array into a reason an operator can
// act on: which array, which config key, and what to check.
func (b *Backend) arrayError(what, addrKey, addr, tokenKey string, err error) error {
	where := fmt.Sprintf("%s:%d", b.cfgFile(), b.cfg.Line)
	switch {
	case errdefs.IsUnauthenticated(err):
		return errdefs.Unavailable("%s at %s rejected the token: check %s in [%s] (%s)", what, addr, tokenKey, b.cfg.Section, where)
	case errdefs.IsUnavailable(err) || errdefs.Is(err, errdefs.KindDeadlineExceeded):
		return errdefs.Unavailable("%s at %s (%s in [%s], %s) is unreachable: %s; check that it runs and the address is right", what, addr, addrKey, b.cfg.Section, where, shortErr(err))
	}
	return fmt.Errorf("%s at %s: %w", what, addr, err)
}

func (b *Backend) cfgFile() string {
	if b.opts.ConfigFile != "" {
		return b.opts.ConfigFile
	}
	return "cinder.conf"
}

// shortErr trims gRPC's long connection error down to its cause.
func shortErr(err error) string {
	s := err.Error()
	if i := strings.LastIndex(s, "dial tcp "); i >= 0 {
		return s[i:]
	}
	return s
}

func (b *Backend) close() {
	for _, c := range append([]Conn{b.primary}, mapsValues(b.targets)...) {
		if c.Close != nil {
			c.Close()
		}
	}
}

func mapsValues[K comparable, V any](m map[K]V) []V {
	out := make([]V, 0, len(m))
	for _, v := range m {
		out = append(out, v)
	}
	return out
}

// active returns the array that serves volumes now: the primary, or the
// replication target after a failover.
func (b *Backend) activeArray() array.Array { return b.activeConn().Array }

func (b *Backend) activeConn() Conn {
	b.mu.RLock()
	defer b.mu.RUnlock()
	if c, ok := b.targets[b.active]; ok {
		return c
	}
	return b.primary
}
