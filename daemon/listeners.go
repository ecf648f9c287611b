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

// listeners holds the daemon's addresses that name a port, opened before
// any that asks for a free one (port 0: an array's default stream_port, or
// an address written with :0). The arrays start one after another, so a
// free port the kernel handed an array that started first could otherwise
// be one that an array starting later, or the driver API, is configured
// to listen on, and that one would fail to start, held by this very
// process.
type listeners map[string]net.Listener

// openFixed opens every address with a fixed port of the arrays that will
// start, the driver API (when driverAPI) and the metrics endpoint.
func openFixed(ctx context.Context, cfg *config.Config, driverAPI bool) (listeners, error) {
	ls := listeners{}
	open := func(what, addr string) error {
		if _, port, err := net.SplitHostPort(addr); err != nil || port == "0" || ls[addr] != nil {
			return nil // a free port, opened in turn; or a bad address, reported then
		}
		lis, err := server.Listen(ctx, addr)
		if err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		ls[addr] = lis
		return nil
	}
	var err error
	for _, a := range cfg.Arrays {
		if len(a.Problems) > 0 {
			continue
		}
		prefix := "array " + a.Name + ": "
		err = errors.Join(err, open(prefix+"listen", a.Listen), open(prefix+"nbd_listen", a.NBDListen))
		for _, addr := range a.ISCSIListen {
			err = errors.Join(err, open(prefix+"iscsi_listen "+addr, addr))
		}
		if a.StreamPort > 0 {
			err = errors.Join(err, open(prefix+"stream_port", streamAddr(a)))
		}
	}
	if driverAPI {
		err = errors.Join(err, open("driver API", cfg.Daemon.DriverListen))
	}
	err = errors.Join(err, open("metrics_listen", cfg.Daemon.MetricsListen))
	if err != nil {
		ls.close()
		return nil, err
	}
	return ls, nil
}

// streamAddr is where an array serves its pod streams: stream_port on the
// host of its API.
func streamAddr(a config.Array) string {
	host, _, _ := net.SplitHostPort(a.Listen)
	return net.JoinHostPort(host, strconv.Itoa(a.StreamPort))
}

// listen hands out the listener opened for addr, or opens it now.
func (ls listeners) listen(ctx context.Context, addr string) (net.Listener, error) {
	if lis := ls[addr]; lis != nil {
		delete(ls, addr)
		return lis, nil
	}
	return server.Listen(ctx, addr)
}

// close closes the listeners not handed out.
func (ls listeners) close() {
	for addr, lis := range ls {
		lis.Close()
		delete(ls, addr)
	}
}
