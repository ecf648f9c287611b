package store

import "context"

// ResetSharer is a Mirror or Forwarder that tells a pod's other array of
// a LOGICAL UNIT RESET of the copy here: a host sees the two copies as
// one logical unit, so a reset at either array is a unit attention for
// the host's paths to both. ShareReset waits until the other array has
// applied the reset (NoteSharedReset, its drain included), up to the
// pod's sync timeout, or until ctx ends.
type ResetSharer interface {
	ShareReset(ctx context.Context)
}

// ShareReset tells the volume's other array, if it is a pod copy with
// one, of a LOGICAL UNIT RESET here. A copy whose pod is not in sync has
// no other array to tell.
func (h *Handle) ShareReset(ctx context.Context) {
	if h.snap != nil {
		return // a snapshot's logical unit is this array's alone
	}
	fwd, m := h.s.clientRoute(h.v)
	if rs, ok := fwd.(ResetSharer); ok {
		rs.ShareReset(ctx)
	} else if rs, ok := m.(ResetSharer); ok {
		rs.ShareReset(ctx)
	}
}

// ResetWatcher applies a LOGICAL UNIT RESET that a pod's other array took
// of its copy of a volume to this array's own sessions of the volume,
// known by its serial (the iSCSI target: lunmap.Resets). Its drain waits
// for the commands those sessions were running when the reset came.
type ResetWatcher interface {
	SharedReset(serial string) (drain func(context.Context) error)
}

// WatchResets registers w to apply the resets NoteSharedReset records.
func (s *Store) WatchResets(w ResetWatcher) { s.resetWatcher.Store(&w) }

// NoteSharedReset records a LOGICAL UNIT RESET that the pod's other array
// took of its copy of volume: this array's sessions of the volume get its
// unit attention, and their commands that came before it and have not
// begun are not run. The returned drain waits for their commands that
// were running; the other array answers its reset only once told, after
// drain, so no command here lands after the host learns the reset is
// done. Those commands may wait on the caller's stream (a write forwarded
// to the preferred array, or its copy mirrored back), so the caller
// drains off it.
func (s *Store) NoteSharedReset(ctx context.Context, volume string) (drain func(context.Context) error, err error) {
	serial, err := s.VolumeSerial(ctx, volume)
	if err != nil {
		return nil, err
	}
	w := s.resetWatcher.Load()
	if w == nil {
		return func(context.Context) error { return nil }, nil
	}
	return (*w).SharedReset(serial), nil
}
