package store

import "context"

// ResetSharer is a Mirror or Forwarder that tells a pod's other array of
// a LOGICAL UNIT RESET of the copy here: a host sees the two copies as
// one logical unit, so a reset at either array is a unit attention for
// the host's paths to both. ShareReset waits until the other array has
// recorded the reset, or up to the pod's sync timeout.
type ResetSharer interface {
	ShareReset()
}

// ShareReset tells the volume's other array, if it is a pod copy with
// one, of a LOGICAL UNIT RESET here. A copy whose pod is not in sync has
// no other array to tell.
func (h *Handle) ShareReset() {
	if h.snap != nil {
		return // a snapshot's logical unit is this array's alone
	}
	h.s.io.RLock()
	fwd, m := h.v.route(fromClient)
	h.s.io.RUnlock()
	if rs, ok := fwd.(ResetSharer); ok {
		rs.ShareReset()
	} else if rs, ok := m.(ResetSharer); ok {
		rs.ShareReset()
	}
}

// SharedResets counts the LOGICAL UNIT RESETs the volume's other array
// took (NoteSharedReset).
func (h *Handle) SharedResets() uint64 {
	if h.snap != nil {
		return 0
	}
	return h.v.sharedResets.Load()
}

// NoteSharedReset records a LOGICAL UNIT RESET that the pod's other array
// took of its copy of volume.
func (s *Store) NoteSharedReset(ctx context.Context, volume string) error {
	v, err := s.lookup(ctx, volume)
	if err != nil {
		return err
	}
	v.sharedResets.Add(1)
	return nil
}
