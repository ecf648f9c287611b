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
	"sync"

	"github.com/volrep/volrep/array"
	"github.com/volrep/volrep/array/client"
	"github.com/volrep/volrep/array/service"
	"github.com/volrep/volrep/array/store"
	"github.com/volrep/volrep/config"
	"github.com/volrep/volrep/driver"
	driverservice "github.com/volrep/volrep/driver/service"
	"github.com/volrep/volrep/server"
)

// Options configure a daemon run.
type Options struct {
	Logger *slog.Logger
	// Announce receives one line per listening address, for the operator.
	Announce io.Writer
}

// Run serves cfg until ctx ends. Problems confined to a backend or an
// array leave it down or unstarted, with the reason logged and reported;
// only problems that leave nothing to serve fail the run.
func Run(ctx context.Context, cfg *config.Config, opts Options) error {
	log := opts.Logger
	if opts.Announce == nil {
		opts.Announce = io.Discard
	}
	for _, p := range cfg.Problems {
		log.Error("config problem", "file", p.File, "line", p.Line, "section", p.Section, "key", p.Key, "problem", p.Message)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, len(cfg.Arrays)+2)
	serve := func(s *server.Server, lis net.Listener) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.Serve(ctx, lis); err != nil {
				errs <- err
				cancel()
			}
		}()
	}

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
		st, lis, srv, err := startArray(ctx, a, log)
		if err != nil {
			cancel()
			wg.Wait()
			return fmt.Errorf("array %s: %w", a.Name, err)
		}
		stores = append(stores, st)
		serve(srv, lis)
		fmt.Fprintf(opts.Announce, "volrepd: array %s API on %s (data %s)\n", a.Name, lis.Addr(), a.DataDir)
	}

	dsrv := server.New(server.Options{Name: "driver", Logger: log, Token: cfg.Daemon.DriverAPIToken.Reveal()})
	d := driver.New(cfg.Backends, driver.Options{
		Logger: log, Dial: dialArray, ConfigFile: cfg.File,
		OnState: func(st driver.State) { dsrv.SetServingStatus("backend/"+st.Name, st.Up) },
	})
	for _, st := range d.States() {
		dsrv.SetServingStatus("backend/"+st.Name, false)
	}
	driverservice.New(d).Register(dsrv.GRPC())
	lis, err := server.Listen(ctx, cfg.Daemon.DriverListen)
	if err != nil {
		cancel()
		wg.Wait()
		return fmt.Errorf("driver API: %w", err)
	}
	serve(dsrv, lis)
	fmt.Fprintf(opts.Announce, "volrepd: driver API on %s (backends: %d)\n", lis.Addr(), len(cfg.Backends))
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
	<-ctx.Done()
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

func startArray(ctx context.Context, a config.Array, log *slog.Logger) (*store.Store, net.Listener, *server.Server, error) {
	st, err := store.Open(a.DataDir, store.Options{Name: a.Name, Logger: log.With("array", a.Name)})
	if err != nil {
		return nil, nil, nil, err
	}
	for _, p := range a.Pools {
		if _, err := st.CreatePool(ctx, p); err != nil {
			st.Close()
			return nil, nil, nil, fmt.Errorf("creating pool %q: %w", p, err)
		}
	}
	srv := server.New(server.Options{Name: "array " + a.Name, Logger: log, Token: a.APIToken.Reveal()})
	service.New(st).Register(srv.GRPC())
	lis, err := server.Listen(ctx, a.Listen)
	if err != nil {
		st.Close()
		return nil, nil, nil, err
	}
	return st, lis, srv, nil
}

// dialArray reaches an array over its gRPC API, local or remote alike.
func dialArray(addr, token string) (array.Array, func() error, error) {
	cc, err := server.Dial(addr, token)
	if err != nil {
		return nil, nil, err
	}
	return client.New(cc), cc.Close, nil
}
