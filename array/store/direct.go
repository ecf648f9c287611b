package store

import (
	"errors"
	"os"
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
type directWriter struct {
	f *os.File // nil: buffered only
}

// directAlign is the alignment O_DIRECT asks of buffer, offset and length
// on the devices volrep runs on (a 4 KiB logical block at most).
const directAlign = 4096

func openDirect(path string) *directWriter {
	f, err := os.OpenFile(path, os.O_WRONLY|unix.O_DIRECT, 0)
	if err != nil {
		return &directWriter{}
	}
	return &directWriter{f: f}
}

// writeAt writes p at off, directly when it can, else through buffered.
func (d *directWriter) writeAt(buffered *os.File, p []byte, off int64) error {
	if d.f != nil && len(p) > 0 && uintptr(unsafe.Pointer(&p[0]))%directAlign == 0 &&
		off%directAlign == 0 && len(p)%directAlign == 0 {
		_, err := d.f.WriteAt(p, off)
		if !errors.Is(err, unix.EINVAL) {
			return err
		}
		// The device wants a larger alignment than directAlign: stay
		// buffered from now on.
		d.f.Close()
		d.f = nil
	}
	_, err := buffered.WriteAt(p, off)
	return err
}

func (d *directWriter) close() {
	if d != nil && d.f != nil {
		d.f.Close()
		d.f = nil
	}
}
