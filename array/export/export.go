// Package export serves a store's volumes and snapshots over NBD. It admits
// only connections that present an export name the store authorised
// (CreateExport), and adapts store handles to the NBD server's Device.
package export

import (
	"context"
	"errors"
	"fmt"
	"net"
	"syscall"

	"github.com/volrep/volrep/array"
	"github.com/volrep/volrep/array/nbd"
	"github.com/volrep/volrep/array/store"
	"github.com/volrep/volrep/errdefs"
)

// Exports is the nbd.Exports of one store.
type Exports struct {
	s  *store.Store
	rs Reservations
}

// Reservations tells the exports what the SCSI persistent reservations
// that hosts hold over iSCSI leave an NBD client, which can hold no
// registration (lunmap.Outsiders).
type Reservations interface {
	// Outsider returns a check, made on every request, of what the
	// reservation of the logical unit whose serial is serial leaves a
	// client with no registration: the reservation's type (none, or
	// what it shuts such a client out of) and whether it may write and
	// read.
	Outsider(serial string) func() (reservation array.ReservationType, write, read bool)
}

// New returns the exports of s; rs is nil where no iSCSI target serves
// the volumes, so no host can reserve them.
func New(s *store.Store, rs Reservations) *Exports { return &Exports{s: s, rs: rs} }

// Open admits a connection that presented an authorised export name.
func (e *Exports) Open(ctx context.Context, name string, _ net.Addr) (nbd.Device, func(), error) {
	h, err := e.s.OpenExport(ctx, name)
	if err != nil {
		return nil, nil, err
	}
	d := device{h: h, outsider: unreserved}
	if e.rs != nil {
		d.outsider = e.rs.Outsider(h.Serial())
	}
	return d, func() {}, nil
}

func unreserved() (array.ReservationType, bool, bool) { return array.ReservationNone, true, true }

// List reveals nothing: export names are per-attachment secrets.
func (e *Exports) List(context.Context) []string { return nil }

// Redact shortens an export name for logs, so a refused or accepted name
// in the journal cannot be replayed.
func Redact(name string) string {
	if len(name) <= 6 {
		return "…"
	}
	return name[:6] + "…"
}

type device struct {
	h        *store.Handle
	outsider func() (array.ReservationType, bool, bool)
}

func (d device) Size() int64    { return d.h.Size() }
func (d device) ReadOnly() bool { return d.h.ReadOnly() }

// mayRead and mayWrite give an NBD client what SCSI gives an initiator
// port that is not registered: a cluster that fences its nodes through
// the volume's persistent reservation (fence_scsi) must not have its
// fence bypassed by a client of the same volume over NBD. Where an
// initiator would get RESERVATION CONFLICT, the client gets EPERM.
func (d device) mayRead() error {
	if typ, _, read := d.outsider(); !read {
		return d.reserved(typ, "read")
	}
	return nil
}

func (d device) mayWrite() error {
	if typ, write, _ := d.outsider(); !write {
		return d.reserved(typ, "write")
	}
	return nil
}

func (d device) reserved(typ array.ReservationType, what string) error {
	return &nbd.Refusal{Errno: syscall.EPERM, Reason: "reserved by a host over iSCSI (" + typ.String() + ")",
		Err: fmt.Errorf("%s is reserved by a host over iSCSI (SCSI persistent reservation %s), which lets no client without a registration %s it; "+
			"an NBD client has none: reach the volume through the cluster's iSCSI paths, or have the cluster release the reservation", d.h.Name(), typ, what)}
}

func (d device) ReadAt(ctx context.Context, p []byte, off int64) error {
	if err := d.mayRead(); err != nil {
		return err
	}
	return errno(d.h.ReadAt(ctx, p, off))
}

func (d device) WriteAt(ctx context.Context, p []byte, off int64, fua bool) error {
	if err := d.mayWrite(); err != nil {
		return err
	}
	return errno(d.h.WriteAt(ctx, p, off, fua))
}

func (d device) Flush(ctx context.Context) error { return errno(d.h.Flush(ctx)) }

// ReadAtNoWait and WriteAtNoWait let the server serve reads from the page
// cache, and whole-block writes to unmirrored volumes, on the connection's
// reader goroutine (nbd.QuickDevice).
func (d device) ReadAtNoWait(ctx context.Context, p []byte, off int64) error {
	if err := d.mayRead(); err != nil {
		return err
	}
	return quick(d.h.ReadAtNoWait(ctx, p, off))
}

func (d device) WriteAtNoWait(ctx context.Context, p []byte, off int64) error {
	if err := d.mayWrite(); err != nil {
		return err
	}
	return quick(d.h.WriteAtNoWait(ctx, p, off))
}

func quick(err error) error {
	if errors.Is(err, store.ErrWouldBlock) {
		return nbd.ErrWouldBlock
	}
	return errno(err)
}

// Trim discards by zeroing: the store frees whole blocks, and reads after
// a trim are defined (zeros) rather than whatever was there.
func (d device) Trim(ctx context.Context, off, length int64, fua bool) error {
	if err := d.mayWrite(); err != nil {
		return err
	}
	return errno(d.h.Zero(ctx, off, length, fua))
}

// WriteZeroes frees whole blocks even with NO_HOLE: unallocated blocks
// read as zeros, and the protocol lets a server ignore the hint.
func (d device) WriteZeroes(ctx context.Context, off, length int64, _, fua bool) error {
	if err := d.mayWrite(); err != nil {
		return err
	}
	return errno(d.h.Zero(ctx, off, length, fua))
}

func (d device) BlockStatus(ctx context.Context, off, length int64) ([]nbd.Extent, error) {
	if err := d.mayRead(); err != nil {
		return nil, err
	}
	ext, err := d.h.Allocation(ctx, off, length)
	if err != nil {
		return nil, errno(err)
	}
	out := make([]nbd.Extent, len(ext))
	for i, e := range ext {
		out[i] = nbd.Extent{Length: e.Length, Hole: e.Zero, Zero: e.Zero}
	}
	return out, nil
}

// Description names the volume, for NBD_INFO_DESCRIPTION.
func (d device) Description() string { return d.h.Name() }

var (
	_ nbd.Describer   = device{}
	_ nbd.QuickDevice = device{}
)

// errno gives engine errors the errno the NBD server replies with: a write
// to a read-only or revoked export is EPERM, a bad range EINVAL, a full
// disk ENOSPC, a write to a pod its mediator stopped EIO (the export
// stays; the pod resumes by itself), anything else EIO.
func errno(err error) error {
	if err == nil {
		return nil
	}
	var e syscall.Errno
	var stopped *array.PodStoppedError
	if errors.As(err, &stopped) {
		return fmt.Errorf("%w: %w", syscall.EIO, err)
	}
	switch errdefs.KindOf(err) {
	case errdefs.KindFailedPrecondition:
		e = syscall.EPERM
	case errdefs.KindInvalidArgument:
		e = syscall.EINVAL
	case errdefs.KindResourceExhausted:
		e = syscall.ENOSPC
	case errdefs.KindNotFound, errdefs.KindUnavailable:
		e = syscall.ESHUTDOWN
	default:
		return err
	}
	return fmt.Errorf("%w: %w", e, err)
}
