package nbd

import (
	"context"
	"errors"
	"net"
	"syscall"
)

// Device is the block device behind one export. The server calls its methods
// concurrently: from the workers of one connection and from every
// connection attached to the same volume. Offsets and lengths passed in
// are always within [0, Size()); the server checks them first.
//
// Errors: any error is reported to the client as EIO, except that an error
// for which errors.Is reports true against one of syscall.EPERM /
// syscall.EROFS (EPERM), syscall.ENOSPC / syscall.EDQUOT / syscall.EFBIG
// (ENOSPC), syscall.EINVAL (EINVAL), syscall.ENOTSUP / syscall.EOPNOTSUPP
// (ENOTSUP) or syscall.ESHUTDOWN and context.Canceled (ESHUTDOWN) is
// reported as that error. Errors never close the connection.
type Device interface {
	// Size is the export size in bytes. It must not change while the
	// device is open.
	Size() int64
	// ReadOnly reports whether the export refuses writes. The server then
	// advertises NBD_FLAG_READ_ONLY and fails WRITE, TRIM and
	// WRITE_ZEROES with EPERM without calling the device.
	ReadOnly() bool
	// ReadAt fills all of p with the bytes at off, or returns an error.
	// Unwritten ranges read as zeros.
	ReadAt(ctx context.Context, p []byte, off int64) error
	// WriteAt writes all of p at off. With fua the data must be durable
	// (survive a crash) before WriteAt returns. p is only valid during the
	// call; the device must copy what it keeps.
	WriteAt(ctx context.Context, p []byte, off int64, fua bool) error
	// Flush makes durable every write that was acknowledged before Flush
	// was called on ANY connection to the same volume, not only this
	// one: the server advertises NBD_FLAG_CAN_MULTI_CONN, so clients such
	// as nbdcopy spread writes over several connections and flush once.
	// Writes, trims and zeroes acknowledged with fua=true must likewise be
	// visible on every connection once they return.
	Flush(ctx context.Context) error
	// Trim is a hint that [off, off+length) is no longer needed; the
	// device may deallocate it (afterwards it should read as zeros, as
	// thin volumes do, but clients must not rely on that). With fua the
	// effect must be durable before Trim returns.
	Trim(ctx context.Context, off, length int64, fua bool) error
	// WriteZeroes makes [off, off+length) read as zeros. With noHole the
	// range must stay allocated (no hole may be punched); otherwise the
	// device may deallocate it. With fua the zeroes must be durable before
	// WriteZeroes returns.
	WriteZeroes(ctx context.Context, off, length int64, noHole, fua bool) error
	// BlockStatus describes [off, off+length) as consecutive extents
	// starting at off. It may describe less than length (at least one
	// byte) but never more than it; the server clips longer answers. An
	// extent with Hole set is unallocated and reads as zeros; one with
	// Zero set is allocated but known to read as zeros.
	BlockStatus(ctx context.Context, off, length int64) ([]Extent, error)
}

// Refusal is a device's refusal of a request whose reason the client
// should be told and the operator should hear of (a volume reserved by
// another host, say). The server answers with Errno and, in a structured
// reply, Reason (cut to the 80 bytes it sends); it logs Err as a warning
// once per connection, where the generic messages it sends for other
// errors would leave the client's user guessing.
type Refusal struct {
	Errno  syscall.Errno
	Reason string
	Err    error
}

func (r *Refusal) Error() string   { return r.Err.Error() }
func (r *Refusal) Unwrap() []error { return []error{r.Errno, r.Err} }

// Extent is one run of a BlockStatus answer.
type Extent struct {
	Length int64
	// Hole reports an unallocated range; it reads as zeros.
	Hole bool
	// Zero reports an allocated range known to read as zeros.
	Zero bool
}

// FastZeroer may be implemented by a Device whose WriteZeroes is not always
// cheaper than writing the zeros. For a client's WRITE_ZEROES with
// NBD_CMD_FLAG_FAST_ZERO the server asks CanFastZero and answers ENOTSUP
// without touching the device when it returns false. Devices that do not
// implement FastZeroer are assumed to zero fast (thin volumes unmap).
type FastZeroer interface {
	CanFastZero(off, length int64, noHole bool) bool
}

// ErrWouldBlock is returned by the methods of a QuickDevice when serving
// the request now would mean waiting (for a disk, a network peer, ...).
var ErrWouldBlock = errors.New("nbd: the request would wait")

// QuickDevice may be implemented by a Device that can serve some READs and
// WRITEs (those without FUA) at once, for example from the page cache. The
// server tries them on the connection's reader goroutine, which saves
// handing each request to a worker goroutine (a wake-up that costs more
// than a cached 4 KiB read or write), and hands a request to a worker, for
// the ordinary ReadAt or WriteAt, only when the method returns
// ErrWouldBlock. While a method runs the connection reads no further
// requests, so it must not wait. When it returns ErrWouldBlock it must not
// have changed anything that the ordinary call would not change the same
// way; it may have filled part of p.
type QuickDevice interface {
	ReadAtNoWait(ctx context.Context, p []byte, off int64) error
	WriteAtNoWait(ctx context.Context, p []byte, off int64) error
}

// Describer may be implemented by a Device to give NBD_INFO_DESCRIPTION, a
// human-readable description sent to clients that ask for it.
type Describer interface {
	Description() string
}

// Exports resolves the export names clients ask for.
type Exports interface {
	// Open returns the device for the export name on behalf of the client
	// at remote, or an error to refuse it (the client then gets
	// NBD_REP_ERR_UNKNOWN, whatever the reason, so a refusal reveals
	// nothing). This is where per-attachment authorisation happens, for
	// example an export name that carries a secret which is revoked when
	// the attachment ends. release is called exactly once when the server
	// no longer uses dev: at the end of the connection, or at once after
	// answering NBD_OPT_INFO. release may be nil.
	Open(ctx context.Context, name string, remote net.Addr) (dev Device, release func(), err error)
	// List returns the export names that NBD_OPT_LIST may reveal. It may
	// return nothing, for instance when names carry secrets.
	List(ctx context.Context) []string
}
