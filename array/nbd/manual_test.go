//go:build manual

// A build tag rather than a skip: `make test` allows no skips, and this is
// a server to benchmark against by hand, not a test.

package nbd

import (
	"context"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"testing"
)

// TestManualServe serves a file for manual benchmarks with nbdcopy, fio
// or qemu, built only with -tags manual:
//
//	VOLREP_NBD_SERVE_FILE=/tmp/disk.img VOLREP_NBD_SERVE_ADDR=127.0.0.1:10809 \
//	  go test -tags manual ./array/nbd -run TestManualServe -timeout 0 -v
//
// and stops on SIGINT. The export is named "disk". VOLREP_NBD_WORKERS
// sets Options.Workers.
func TestManualServe(t *testing.T) {
	path := os.Getenv("VOLREP_NBD_SERVE_FILE")
	if path == "" {
		t.Fatal("set VOLREP_NBD_SERVE_FILE to the file to serve")
	}
	addr := os.Getenv("VOLREP_NBD_SERVE_ADDR")
	if addr == "" {
		addr = "127.0.0.1:10809"
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	dev := &fileDevice{f: f, fd: int(f.Fd()), size: st.Size()}
	ex := newTestExports()
	ex.add("disk", dev, true)
	workers, _ := strconv.Atoi(os.Getenv("VOLREP_NBD_WORKERS"))
	srv := NewServer(ex, Options{Workers: workers,
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))})
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	t.Logf("serving %s (%d bytes) as nbd://%s/disk", path, st.Size(), addr)
	srv.Serve(ctx, lis)
	srv.Close()
	s := srv.Stats()
	t.Logf("stats: %+v", s)
}
