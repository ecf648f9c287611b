package store

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	bolt "go.etcd.io/bbolt"

	"github.com/volrep/volrep/errdefs"
)

// A full filesystem is an operator's problem, not a client's: every write
// that hits it gets RESOURCE_EXHAUSTED saying what to do, and the log says
// it once per episode, from the first failed write until one succeeds
// again, instead of once per refused NBD request.

// isNoSpace reports whether err is ENOSPC or EDQUOT. bbolt flattens some
// of its errors into text ("file resize error: no space left on device"),
// so the messages are matched too.
func isNoSpace(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
		return true
	}
	msg := err.Error()
	return strings.Contains(msg, syscall.ENOSPC.Error()) || strings.Contains(msg, syscall.EDQUOT.Error())
}

// space passes err through, except that a full filesystem becomes a
// ResourceExhausted error that still wraps err (so the NBD server still
// answers ENOSPC) and starts an episode. A nil err ends one.
func (s *Store) space(err error) error {
	if err == nil {
		if s.diskFull.Load() && s.diskFull.CompareAndSwap(true, false) {
			s.opts.Logger.Info("array data filesystem accepts writes again", "array", s.opts.Name, "path", s.dir)
		}
		return nil
	}
	// A typed error is already mapped: ours from a nested call, or one a
	// sync peer sent back about its own disk, which is not ours to log.
	var e *errdefs.Error
	if errors.As(err, &e) || !isNoSpace(err) {
		return err
	}
	path := s.dir
	var pe *os.PathError
	if errors.As(err, &pe) && filepath.IsAbs(pe.Path) {
		path = pe.Path
	}
	if !s.diskFull.Swap(true) {
		s.opts.Logger.Error("array data filesystem is full; writes fail with ENOSPC until space is freed",
			"array", s.opts.Name, "path", path, "err", err,
			"fix", "free space on "+s.dir+" or grow the filesystem")
	}
	return errdefs.ResourceExhausted("array %s is out of space writing %s: free space on %s or grow the filesystem: %w",
		s.opts.Name, path, s.dir, err)
}

// update runs a metadata transaction; a full disk under meta.db is
// RESOURCE_EXHAUSTED, not INTERNAL.
func (s *Store) update(fn func(*bolt.Tx) error) error {
	err := s.db.Update(fn)
	var pe *os.PathError
	if err != nil && isNoSpace(err) && !errors.As(err, &pe) {
		// bbolt's own errors do not name the file.
		err = &os.PathError{Op: "write", Path: filepath.Join(s.dir, "meta.db"), Err: err}
	}
	return s.space(err)
}
