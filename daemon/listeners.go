package daemon

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"

	"github.com/volrep/volrep/config"
	"github.com/volrep/volrep/server"
)

// arrayListeners are the sockets of one array; nil where it serves none.
type arrayListeners struct {
	api, nbd, stream net.Listener
	iscsi            []net.Listener
}

func (al *arrayListeners) close() {
	for _, lis := range append([]net.Listener{al.api, al.nbd, al.stream}, al.iscsi...) {
		if lis != nil {
			lis.Close()
		}
	}
}

// listeners are every socket the daemon serves, opened before any array
// starts: first the addresses that name a port, then those that ask for
// a free one (port 0: an array's default stream_port, or an address
// written with :0). A free port the kernel handed out first could
// otherwise be one that another array, or the driver API, is configured
// to listen on, and that one would fail to start, held by this very
// process.
type listeners struct {
	arrays          map[string]*arrayListeners
	driver, metrics net.Listener
}

// socket is one address to listen on, and where its listener goes.
type socket struct {
	what, addr string
	dst        *net.Listener
}

// sockets lists the daemon's addresses: those of the arrays that will
// start, the driver API (when driverAPI) and the metrics endpoint. It is
// the one place that knows which addresses an array listens on.
func (ls *listeners) sockets(cfg *config.Config, driverAPI bool) []socket {
	var out []socket
	for _, a := range cfg.Arrays {
		if len(a.Problems) > 0 {
			continue
		}
		al := &arrayListeners{iscsi: make([]net.Listener, len(a.ISCSIListen))}
		ls.arrays[a.Name] = al
		prefix := "array " + a.Name + ": "
		out = append(out, socket{prefix + "listen", a.Listen, &al.api})
		if a.NBDListen != "" {
			out = append(out, socket{prefix + "nbd_listen", a.NBDListen, &al.nbd})
		}
		for i, addr := range a.ISCSIListen {
			out = append(out, socket{prefix + "iscsi_listen " + addr, addr, &al.iscsi[i]})
		}
		if a.StreamPort >= 0 {
			out = append(out, socket{prefix + "stream_port", streamAddr(a), &al.stream})
		}
	}
	if driverAPI {
		out = append(out, socket{"driver API", cfg.Daemon.DriverListen, &ls.driver})
	}
	if cfg.Daemon.MetricsListen != "" {
		out = append(out, socket{"metrics_listen", cfg.Daemon.MetricsListen, &ls.metrics})
	}
	return out
}

// openListeners opens every socket of the daemon, fixed ports first.
func openListeners(ctx context.Context, cfg *config.Config, driverAPI bool) (*listeners, error) {
	return openWith(ctx, cfg, driverAPI, server.Listen)
}

func openWith(ctx context.Context, cfg *config.Config, driverAPI bool, listen func(context.Context, string) (net.Listener, error)) (*listeners, error) {
	ls := &listeners{arrays: map[string]*arrayListeners{}}
	socks := ls.sockets(cfg, driverAPI)
	for _, fixed := range []bool{true, false} {
		var errs error
		for _, s := range socks {
			if fixedPort(s.addr) != fixed {
				continue
			}
			lis, err := listen(ctx, s.addr)
			if err != nil {
				errs = errors.Join(errs, fmt.Errorf("%s: %w", s.what, err))
				continue
			}
			*s.dst = lis
		}
		if errs != nil {
			ls.close()
			return nil, errs
		}
	}
	return ls, nil
}

// fixedPort says whether addr names a port; a malformed one counts as
// fixed, so its error is reported with the first pass.
func fixedPort(addr string) bool {
	_, port, err := net.SplitHostPort(addr)
	return err != nil || port != "0"
}

// streamAddr is where an array serves its pod streams: stream_port on the
// host of its API.
func streamAddr(a config.Array) string {
	host, _, _ := net.SplitHostPort(a.Listen)
	return net.JoinHostPort(host, strconv.Itoa(a.StreamPort))
}

// close closes every listener; those a server took are closed by it too,
// which is harmless.
func (ls *listeners) close() {
	for _, al := range ls.arrays {
		al.close()
	}
	for _, lis := range []net.Listener{ls.driver, ls.metrics} {
		if lis != nil {
			lis.Close()
		}
	}
}
