// Package daemon wires volrepd together from a configuration: the arrays
// it hosts, each behind its own gRPC API, and the driver backends behind
// the driver API. It owns start-up order and shutdown.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"

	"google.golang.org/grpc"

	"github.com/volrep/volrep/array"
	"github.com/volrep/volrep/array/client"
	"github.com/volrep/volrep/array/export"
	"github.com/volrep/volrep/array/iscsi"
	"github.com/volrep/volrep/array/lunmap"
	"github.com/volrep/volrep/array/nbd"
	"github.com/volrep/volrep/array/replication"
	"github.com/volrep/volrep/array/service"
	"github.com/volrep/volrep/array/store"
	"github.com/volrep/volrep/array/transfer"
	"github.com/volrep/volrep/config"
	"github.com/volrep/volrep/driver"
	driverservice "github.com/volrep/volrep/driver/service"
	"github.com/volrep/volrep/metrics"
	"github.com/volrep/volrep/server"
	"github.com/volrep/volrep/server/rawstream"
)

// Options configure a daemon run.
type Options struct {
	Logger *slog.Logger
	// Level is the logger's level, which a reload sets from log_level.
	Level *slog.LevelVar
	// Announce receives one line per listening address, for the operator.
	Announce io.Writer
	// Reload delivers a signal (SIGHUP) for each reload request; Load
	// re-reads the configuration then. Both nil means no reload.
	Reload <-chan os.Signal
	Load   func() (*config.Config, error)
}

// Run serves cfg until ctx ends. Problems confined to a backend or an
// array leave it down or unstarted, with the reason logged and reported;
// only problems that leave nothing to serve fail the run.
func Run(ctx context.Context, cfg *config.Config, opts Options) error {
	log := opts.Logger
	if opts.Announce == nil {
		opts.Announce = io.Discard
	}
	logProblems(log, cfg)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	// Each array may report an error per server (API, NBD) and per iSCSI
	// portal; the driver API and the metrics server one each.
	nerrs := 2
	for _, a := range cfg.Arrays {
		nerrs += 3 + len(a.ISCSIListen)
	}
	errs := make(chan error, nerrs)
	// run serves until ctx ends; a server that fails stops the daemon.
	run := func(serveUntilDone func() error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := serveUntilDone(); err != nil {
				errs <- err
				cancel()
			}
		}()
	}
	serve := func(s *server.Server, lis net.Listener) { run(func() error { return s.Serve(ctx, lis) }) }

	// The metrics registry exists only when metrics_listen is set; every
	// hook below is skipped when it is nil.
	var reg *metrics.Registry
	if cfg.Daemon.MetricsListen != "" {
		reg = metrics.New()
	}

	// A process that hosts only arrays serves no driver calls: opening the
	// API on the default address anyway would keep a second such process
	// on the same host from starting.
	driverAPI := len(cfg.Backends) > 0 || cfg.Daemon.DriverListenSet
	lis, err := openListeners(ctx, cfg, driverAPI)
	if err != nil {
		return err
	}
	defer lis.close()

	var stores []*store.Store
	defer func() {
		for _, st := range stores {
			if err := st.Close(); err != nil {
				log.Error("closing array", "dir", st.Dir(), "err", err)
			}
		}
	}()
	for _, a := range cfg.Arrays {
		if len(a.Problems) > 0 {
			log.Error("array not started: its configuration has problems", "array", a.Name, "problems", a.Problems.Error())
			continue
		}
		h, err := startArray(ctx, a, log, reg, lis.arrays[a.Name])
		if err != nil {
			cancel()
			wg.Wait()
			return fmt.Errorf("array %s: %w", a.Name, err)
		}
		stores = append(stores, h.store)
		serve(h.api, h.lis.api)
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer h.xfer.Close()
			defer h.repl.Close()
			h.repl.Run(ctx)
		}()
		fmt.Fprintf(opts.Announce, "volrepd: array %s API on %s (data %s)\n", a.Name, h.lis.api.Addr(), a.DataDir)
		if h.lis.nbd != nil {
			run(func() error { return named("array "+a.Name+" NBD", h.nbd.Serve(ctx, h.lis.nbd)) })
			fmt.Fprintf(opts.Announce, "volrepd: array %s NBD on %s\n", a.Name, h.lis.nbd.Addr())
		}
		if h.streams != nil {
			run(func() error { return named("array "+a.Name+" streams", h.streams.Serve(ctx, h.lis.stream)) })
			fmt.Fprintf(opts.Announce, "volrepd: array %s pod streams on %s\n", a.Name, h.lis.stream.Addr())
		}
		for _, portal := range h.lis.iscsi {
			run(func() error {
				err := h.iscsi.Serve(ctx, portal)
				if errors.Is(err, iscsi.ErrServerClosed) {
					return nil
				}
				return named(fmt.Sprintf("array %s iSCSI on %s", a.Name, portal.Addr()), err)
			})
			fmt.Fprintf(opts.Announce, "volrepd: array %s iSCSI on %s (target %s)\n", a.Name, portal.Addr(), h.store.TargetIQN())
		}
	}

	dopts := server.Options{Name: "driver", Logger: log, Token: cfg.Daemon.DriverAPIToken.Reveal()}
	if reg != nil {
		dopts.ExtraUnary = []grpc.UnaryServerInterceptor{reg.UnaryServerInterceptor("driver")}
		dopts.ExtraStream = []grpc.StreamServerInterceptor{reg.StreamServerInterceptor("driver")}
	}
	dsrv := server.New(dopts)
	d := driver.New(cfg.Backends, driver.Options{
		Logger: log, Dial: dialArray, ConfigFile: cfg.File, StateDir: cfg.Daemon.StateDir,
		OnState: func(st driver.State) {
			dsrv.SetServingStatus("backend/"+st.Name, st.Up)
			if reg != nil {
				reg.SetBackendUp(st.Name, st.Up)
			}
		},
	})
	for _, st := range d.States() {
		dsrv.SetServingStatus("backend/"+st.Name, false)
		if reg != nil {
			reg.SetBackendUp(st.Name, false)
		}
	}
	driverservice.New(d).Register(dsrv.GRPC())
	if driverAPI {
		serve(dsrv, lis.driver)
		fmt.Fprintf(opts.Announce, "volrepd: driver API on %s (backends: %d)\n", lis.driver.Addr(), len(cfg.Backends))
	} else {
		log.Info("driver API not opened: no backends are enabled and driver_listen is not set")
	}
	if reg != nil {
		run(func() error { return metrics.ServeListener(ctx, lis.metrics, reg) })
		fmt.Fprintf(opts.Announce, "volrepd: metrics on http://%s/metrics\n", lis.metrics.Addr())
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		d.Run(ctx)
	}()
	defer d.Close()

	if err := server.NotifyReady(); err != nil {
		log.Warn("sd_notify READY failed", "err", err)
	}
	go server.Watchdog(ctx)
	log.Info("volrepd is serving", "arrays", len(stores), "backends", len(cfg.Backends))
	rl := &reloader{opts: opts, driver: d, health: dsrv, reg: reg, running: cfg, driverAPI: driverAPI}
	for serving := true; serving; {
		select {
		case <-ctx.Done():
			serving = false
		case <-opts.Reload:
			if opts.Load != nil {
				rl.reload(ctx)
			}
		}
	}
	_ = server.NotifyStopping()
	log.Info("volrepd is stopping")
	wg.Wait()
	close(errs)
	var all []error
	for err := range errs {
		all = append(all, err)
	}
	return errors.Join(all...)
}

// hostedArray is one array this process serves.
type hostedArray struct {
	store *store.Store
	repl  *replication.Engine
	xfer  *transfer.Service
	api   *server.Server
	nbd   *nbd.Server
	// iscsi serves every portal of lis.iscsi.
	iscsi *iscsi.Server
	// streams serves the pod streams on lis.stream (stream_port), when set.
	streams *rawstream.Server
	lis     *arrayListeners
}

// startArray starts an array on its listeners, already open; it closes
// them if it fails.
func startArray(ctx context.Context, a config.Array, log *slog.Logger, reg *metrics.Registry, lis *arrayListeners) (*hostedArray, error) {
	alog := log.With("array", a.Name)
	h := &hostedArray{lis: lis}
	var err error
	fail := func(err error) (*hostedArray, error) {
		lis.close()
		if h.iscsi != nil {
			h.iscsi.Close()
		}
		if h.store != nil {
			h.store.Close()
		}
		return nil, err
	}
	// The store hands out the addresses the listeners really have.
	nbdAddr := ""
	if lis.nbd != nil {
		nbdAddr = lis.nbd.Addr().String()
	}
	var portals []string
	for _, l := range lis.iscsi {
		portals = append(portals, l.Addr().String())
	}
	streamPort := 0
	if lis.stream != nil {
		streamPort = lis.stream.Addr().(*net.TCPAddr).Port
	}
	if h.store, err = store.Open(a.DataDir, store.Options{Name: a.Name, Logger: alog, NBDAddress: nbdAddr,
		ISCSIPortals: portals, ISCSITargetIQN: a.ISCSITargetIQN, StreamPort: streamPort}); err != nil {
		return fail(err)
	}
	for _, p := range a.Pools {
		if _, err := h.store.CreatePool(ctx, p); err != nil {
			return fail(fmt.Errorf("creating pool %q: %w", p, err))
		}
	}
	if len(lis.iscsi) > 0 {
		// Before the replication engine starts the pods: a pod offers its
		// peer to decide reservations only if a target keeps them here.
		h.iscsi = lunmap.NewServer(h.store, iscsi.Options{Logger: alog, PortGroup: uint16(a.ISCSIPortGroup)})
	}
	ropts := replication.Options{Logger: alog, Dial: dialPeer, PodMediator: a.PodMediator}
	sopts := server.Options{Name: "array " + a.Name, Logger: log, Token: a.APIToken.Reveal()}
	if reg != nil {
		ropts.OnCycle = reg.ReplicationCycle(a.Name)
		ropts.OnPodState = reg.PodState(a.Name)
		sopts.ExtraUnary = []grpc.UnaryServerInterceptor{reg.UnaryServerInterceptor("array " + a.Name)}
		sopts.ExtraStream = []grpc.StreamServerInterceptor{reg.StreamServerInterceptor("array " + a.Name)}
	}
	if h.repl, err = replication.New(ctx, h.store, ropts); err != nil {
		return fail(err)
	}
	if reg != nil {
		repl := h.repl
		reg.Replicas(a.Name, func(ctx context.Context) ([]array.Replica, error) { return repl.ListReplicas(ctx, "") })
	}
	h.api = server.New(sopts)
	service.New(h.store).Register(h.api.GRPC())
	service.NewReplication(h.repl).Register(h.api.GRPC())
	service.NewOperations(h.repl).Register(h.api.GRPC())
	if h.xfer, err = transfer.NewService(ctx, h.store, alog, transfer.ServiceOptions{PodMediator: a.PodMediator}); err != nil {
		return fail(err)
	}
	if reg != nil {
		podState := reg.PodState(a.Name)
		h.xfer.OnCarry = func(pod string, carrying bool) {
			if carrying {
				podState(pod, array.PodCarried)
			} else {
				podState(pod, array.PodHandedBack)
			}
		}
	}
	h.xfer.Register(h.api.GRPC())
	if lis.stream != nil {
		h.streams = rawstream.NewServer(rawstream.Options{Logger: alog, CheckToken: server.CheckToken(a.APIToken.Reveal()),
			Validate: server.Validate, MaxMsgSize: server.DefaultMaxMsgSize})
		h.xfer.RegisterStreams(h.streams)
	}
	if lis.nbd != nil {
		var reserved export.Reservations
		if h.iscsi != nil {
			reserved = lunmap.Outsiders(h.iscsi)
		}
		h.nbd = nbd.NewServer(export.New(h.store, reserved), nbd.Options{Logger: alog, LogName: export.Redact,
			MaxConnections: a.NBDMaxConnections, IdleTimeout: a.NBDIdleTimeout})
		if reg != nil {
			srv := h.nbd
			reg.DataPath(a.Name, metrics.NBD, func() metrics.DataPathStats {
				st := srv.Stats()
				return metrics.DataPathStats{ConnectionsActive: st.ConnectionsActive, ConnectionsAccepted: st.ConnectionsAccepted,
					Commands: st.Requests, Errors: st.Errors, BytesRead: st.BytesRead, BytesWritten: st.BytesWritten, Latency: st.Latency}
			})
		}
	}
	if h.iscsi != nil {
		if reg != nil {
			srv := h.iscsi
			reg.DataPath(a.Name, metrics.ISCSI, func() metrics.DataPathStats {
				st := srv.Stats()
				return metrics.DataPathStats{ConnectionsActive: st.ConnectionsActive, ConnectionsAccepted: st.ConnectionsAccepted,
					Commands: st.Commands, Errors: st.CheckConditions, BytesRead: st.BytesRead, BytesWritten: st.BytesWritten,
					TaskManagement: st.TaskManagement, Resets: st.Resets, Conflicts: st.Conflicts, Latency: st.Latency}
			})
		}
	}
	return h, nil
}

// dialArray reaches an array over its gRPC API, local or remote alike.
func dialArray(addr, token string) (driver.Conn, error) {
	cc, err := server.Dial(addr, token)
	if err != nil {
		return driver.Conn{}, err
	}
	return driver.Conn{Array: client.New(cc), Replication: client.NewReplication(cc), Close: cc.Close,
		Reconnect: func() { server.Reconnect(cc) }}, nil
}

// dialPeer connects an array's replication engine to a peer array.
func dialPeer(addr, token string) (*grpc.ClientConn, error) { return server.Dial(addr, token) }

// named says which server an error came from (nil stays nil).
func named(what string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%s: %w", what, err)
}
