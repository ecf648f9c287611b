package main

import (
	"bytes"
	"context"
	"fmt"
	"net"

	"github.com/volrep/volrep/array"
	"github.com/volrep/volrep/array/export"
	"github.com/volrep/volrep/array/nbd"
	"github.com/volrep/volrep/array/store"
)

// nbdExports serves a store's exports over NBD on loopback, in this
// process, as volrepd does for an array.
type nbdExports struct {
	s    *store.Store
	addr string
	stop func()
}

func serveNBD(ctx context.Context, s *store.Store, lis net.Listener) *nbdExports {
	srv := nbd.NewServer(export.New(s, nil), nbd.Options{})
	sctx, cancel := context.WithCancel(ctx)
	served := make(chan struct{})
	go func() { srv.Serve(sctx, lis); close(served) }()
	return &nbdExports{s: s, addr: lis.Addr().String(), stop: func() {
		cancel()
		srv.Close()
		<-served
	}}
}

// export authorises an attachment and returns its nbd:// URI.
func (n *nbdExports) export(ctx context.Context, spec array.ExportSpec) (string, error) {
	e, err := n.s.CreateExport(ctx, spec)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("nbd://%s/%s", n.addr, e.Name), nil
}

// sameContent compares a snapshot on one store with a volume on another,
// 4 MiB at a time.
func sameContent(ctx context.Context, a *store.Store, vol, snap string, b *store.Store, copyVol string, size int64) error {
	const step = 4 << 20
	x, y := make([]byte, step), make([]byte, step)
	for off := int64(0); off < size; off += step {
		n := min(step, size-off)
		if err := a.ReadSnapshot(ctx, vol, snap, off, x[:n]); err != nil {
			return err
		}
		if err := b.ReadVolume(ctx, copyVol, off, y[:n]); err != nil {
			return err
		}
		if !bytes.Equal(x[:n], y[:n]) {
			return fmt.Errorf("%s differs from %s@%s in the 4 MiB at %d", copyVol, vol, snap, off)
		}
	}
	return nil
}
