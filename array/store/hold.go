package store

import (
	"context"
	"errors"
	"time"

	"github.com/volrep/volrep/errdefs"
)

// writeHold makes a volume's client writes wait: a migration holds them
// from its last snapshot until the copy it sent becomes the volume, so no
// write lands on the source after that snapshot. It is state, not a lock:
// nothing is held across the network waits in between, and each waiting
// write gives up when its own context ends. A hold lapses by itself after
// its lease, so a driver that died cannot freeze a volume.
type writeHold struct {
	released chan struct{}
	since    time.Time
	timer    *time.Timer
}

// heldError is change's answer while the volume's writes are held; the
// caller waits on released and tries again.
type heldError struct{ released <-chan struct{} }

func (e *heldError) Error() string { return "the volume's writes are held" }

// HoldWrites holds volume's client writes for lease (renewing a hold that
// is in force), or releases them with lease 0. When it returns, no client
// write is in flight and none will change the volume until the release:
// a snapshot taken then has every acknowledged write. It returns when the
// hold in force began, so the holder can tell that its hold did not lapse
// in between (a later time means it did).
func (s *Store) HoldWrites(ctx context.Context, volume string, lease time.Duration) (time.Time, error) {
	if lease < 0 {
		return time.Time{}, errdefs.InvalidArgument("lease", "is %s; give a positive lease, or 0 to release", lease)
	}
	v, err := s.lookup(ctx, volume)
	if err != nil {
		return time.Time{}, err
	}
	// The write lock waits out the writes in flight.
	s.io.Lock()
	defer s.io.Unlock()
	if v.deleted {
		return time.Time{}, errdefs.NotFound("volume %q was deleted", volume)
	}
	h := v.hold
	if lease == 0 {
		if h != nil {
			s.releaseLocked(v, h)
		}
		return time.Time{}, nil
	}
	if h == nil {
		h = &writeHold{released: make(chan struct{}), since: time.Now()}
		v.hold = h
		h.timer = time.AfterFunc(lease, func() {
			s.io.Lock()
			defer s.io.Unlock()
			if v.hold == h {
				s.opts.Logger.Warn("a volume's write hold lapsed: its holder did not renew or release it", "array", s.opts.Name, "volume", volume, "lease", lease)
				s.releaseLocked(v, h)
			}
		})
		return h.since, nil
	}
	h.timer.Reset(lease)
	return h.since, nil
}

// releaseLocked ends hold h of v; s.io is write-locked.
func (s *Store) releaseLocked(v *volume, h *writeHold) {
	h.timer.Stop()
	close(h.released)
	v.hold = nil
}

// gated runs a client write, waiting while the volume's writes are held,
// until ctx ends.
func gated(ctx context.Context, write func() error) error {
	for {
		err := write()
		var h *heldError
		if !errors.As(err, &h) {
			return err
		}
		select {
		case <-h.released:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}
