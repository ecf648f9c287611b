package store

import (
	"errors"
	"os"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// directWriter writes received data around the page cache. A replica
// target's staged data is read by no one until a failover, so copying it
// into freshly allocated page-cache pages only to write them back at the
// next checkpoint costs a copy, evicts what the array's own volumes keep
// cached, and leaves all of it for the checkpoint's fdatasync; written
// directly, the data is on the device when the write returns and a
// checkpoint only flushes the device's cache and the file's extents.
//
// Buffers or offsets O_DIRECT cannot take go through the buffered file,
// as does everything when the file system refuses O_DIRECT (tmpfs).
//
// writeAt may run on several goroutines at once, for ranges that do not
// overlap; see Receiver.WriteBlocks for why it is worth it.
type directWriter struct {
	f        *os.File // nil: buffered only
	fd       int      // f's descriptor
	buffered atomic.Bool
	noAlloc  atomic.Bool // the file system refused fallocate
}

// directAlign is the alignment O_DIRECT asks of buffer, offset and length
// on the devices volrep runs on (a 4 KiB logical block at most).
const directAlign = 4096

func openDirect(path string) *directWriter {
	f, err := os.OpenFile(path, os.O_WRONLY|unix.O_DIRECT, 0)
	if err != nil {
		d := &directWriter{}
		d.buffered.Store(true)
		return d
	}
	return &directWriter{f: f, fd: int(f.Fd())}
}

// direct says whether p at off goes around the page cache.
func (d *directWriter) direct(p []byte, off int64) bool {
	return !d.buffered.Load() && len(p) > 0 && uintptr(unsafe.Pointer(&p[0]))%directAlign == 0 &&
		off%directAlign == 0 && len(p)%directAlign == 0
}

// writeAt writes p at off, directly when it can, else through buffered.
func (d *directWriter) writeAt(buffered *os.File, p []byte, off int64) error {
	if d.direct(p, off) {
		_, err := d.f.WriteAt(p, off)
		if !errors.Is(err, unix.EINVAL) {
			return err
		}
		// The device wants a larger alignment than directAlign: stay
		// buffered from now on.
		d.buffered.Store(true)
	}
	_, err := buffered.WriteAt(p, off)
	return err
}

// allocate gives the blocks of a direct write their place on the device
// before it is made. ext4 runs direct writes side by side only into blocks
// already allocated (unwritten ones too); one that allocates, or extends
// the file, holds the inode's lock to the end and the others queue behind
// it. fallocate itself waits for the direct writes in flight, so it is
// called for a whole batch before any of its writes.
func (d *directWriter) allocate(p []byte, off int64) error {
	if !d.direct(p, off) || d.noAlloc.Load() {
		return nil
	}
	err := unix.Fallocate(d.fd, 0, off, int64(len(p)))
	if errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.ENOSYS) {
		d.noAlloc.Store(true)
		return nil
	}
	return err
}

// close is called once no write is in flight.
func (d *directWriter) close() {
	if d != nil && d.f != nil {
		d.f.Close()
		d.f = nil
	}
}
