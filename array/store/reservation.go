package store

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"

	bolt "go.etcd.io/bbolt"

	"github.com/volrep/volrep/array"
	"github.com/volrep/volrep/errdefs"
)

// A pod's volume is one logical unit to a host with paths to both arrays,
// so it has one set of SCSI persistent reservations. The array that
// orders the pod's writes decides them too: the other array forwards each
// PERSISTENT RESERVE OUT to it, and it gives the other array every new
// state before the host is answered. The store carries the messages; the
// iSCSI target (ReservationWatcher) reads them.

// ReservationForwarder is a Forwarder to the array that decides the pod's
// reservations: each PERSISTENT RESERVE OUT at this copy runs there.
type ReservationForwarder interface {
	ForwardReservation(ctx context.Context, req []byte) (reply []byte, err error)
	// SharesReservations: that array decides forwarded ones (it is not
	// too old).
	SharesReservations() bool
}

// ReservationSharer is a Mirror, or a carrying copy's, of an array that
// decides the pod's reservations: each new state goes to the other array
// (ReservationWatcher.InstallReservations there) before the host is
// answered. With no other array to tell now, ShareReservations returns
// at once; the two keep the newer state when they meet again.
type ReservationSharer interface {
	ShareReservations(ctx context.Context, state []byte) (newer []byte, err error)
	SharesReservations() bool
}

// ErrReservationsUnshared: the volume's reservations cannot be kept at
// both of its arrays now (the other array is too old, or this copy is a
// replica whose pod is not connected), so hosts get none.
var ErrReservationsUnshared = errors.New("persistent reservations of this volume cannot be shared with its other array")

// ReservationsUnshared reports that hosts can have no persistent
// reservations of the volume here now: another array serves it too and
// the two cannot share them, or it is a replica's read-only copy, whose
// reservations are decided where its writes are. A snapshot's and an
// unreplicated volume's are this array's alone.
func (h *Handle) ReservationsUnshared() bool {
	return h.snap == nil && h.s.reservationsUnshared(h.v)
}

func (s *Store) reservationsUnshared(v *volume) bool {
	s.io.RLock()
	fwd, m := v.route(fromClient)
	ro := v.rec.ReadOnly
	s.io.RUnlock()
	switch {
	case fwd != nil:
		f, ok := fwd.(ReservationForwarder)
		return !ok || !f.SharesReservations()
	case m != nil:
		s, ok := m.(ReservationSharer)
		return !ok || !s.SharesReservations()
	}
	return ro
}

// ForwardReservation runs a PERSISTENT RESERVE OUT at the array that
// decides the volume's reservations when that is the other one.
func (h *Handle) ForwardReservation(ctx context.Context, req []byte) (reply []byte, forwarded bool, err error) {
	if h.snap != nil {
		return nil, false, nil
	}
	return h.s.forwardReservation(ctx, h.v, req)
}

func (s *Store) forwardReservation(ctx context.Context, v *volume, req []byte) (reply []byte, forwarded bool, err error) {
	fwd, _ := s.clientRoute(v)
	f, ok := fwd.(ReservationForwarder)
	if !ok {
		return nil, false, nil
	}
	reply, err = f.ForwardReservation(ctx, req)
	return reply, true, err
}

// ShareReservations gives the volume's other array, if it has one, the
// new state this array decided.
func (h *Handle) ShareReservations(ctx context.Context, state []byte) (newer []byte, err error) {
	if h.snap != nil {
		return nil, nil
	}
	return h.s.shareReservations(ctx, h.v, state)
}

func (s *Store) shareReservations(ctx context.Context, v *volume, state []byte) ([]byte, error) {
	_, m := s.clientRoute(v)
	if rs, ok := m.(ReservationSharer); ok {
		return rs.ShareReservations(ctx, state)
	}
	return nil, nil
}

// ReservationWatcher keeps the reservations of the volumes' logical
// units, by serial (the iSCSI target: lunmap.Reservations).
type ReservationWatcher interface {
	// DecideReservation runs a PERSISTENT RESERVE OUT the other array
	// forwarded; share gives that array the new state first.
	DecideReservation(ctx context.Context, serial string, req []byte, share func(context.Context, []byte) ([]byte, error)) ([]byte, error)
	// InstallReservations takes the other array's newer state, or
	// returns this array's when it is the newer. drain is nil but for a
	// PREEMPT AND ABORT.
	InstallReservations(serial string, state []byte) (newer []byte, drain func(context.Context) error, err error)
	// Reservations is the unit's state, for the other array.
	Reservations(serial string) []byte
	// ClearReservations clears the unit's reservations for the array's
	// operator. forward runs the clear at the other array when that one
	// decides (forwarded false: this one does); share gives the other
	// array the new state.
	ClearReservations(ctx context.Context, serial string, forward func(context.Context, []byte) (reply []byte, forwarded bool, err error),
		share func(context.Context, []byte) ([]byte, error)) error
	// ShowReservations is the unit's state, for the operator.
	ShowReservations(serial string) array.Reservations
	// ForgetReservations drops the unit's state: its volume was deleted
	// (and its kept state with it).
	ForgetReservations(serial string)
}

// WatchReservations registers w to keep the reservations.
func (s *Store) WatchReservations(w ReservationWatcher) { s.reservationWatcher.Store(&w) }

// KeepsReservations says whether an iSCSI target keeps the reservations
// here, so this array can decide a pod's for its peer.
func (s *Store) KeepsReservations() bool { return s.reservationWatcher.Load() != nil }

// DecideReservation runs a PERSISTENT RESERVE OUT that the pod's other
// array forwarded for its copy of volume, and returns the answer for its
// host.
func (s *Store) DecideReservation(ctx context.Context, volume string, req []byte) ([]byte, error) {
	v, err := s.lookup(ctx, volume)
	if err != nil {
		return nil, err
	}
	w := s.reservationWatcher.Load()
	if w == nil {
		return nil, ErrReservationsUnshared // no iSCSI target here keeps them
	}
	return (*w).DecideReservation(ctx, v.rec.Serial, req, func(ctx context.Context, state []byte) ([]byte, error) {
		return s.shareReservations(ctx, v, state)
	})
}

// InstallReservations takes the state the pod's other array decided for
// its copy of volume (see ReservationWatcher). The drain, only for a
// PREEMPT AND ABORT (nil otherwise), is waited for before the other array
// is answered; it may wait for writes on the caller's stream, so the
// caller drains off it.
func (s *Store) InstallReservations(ctx context.Context, volume string, state []byte) (newer []byte, drain func(context.Context) error, err error) {
	serial, err := s.VolumeSerial(ctx, volume)
	if err != nil {
		return nil, nil, err
	}
	w := s.reservationWatcher.Load()
	if w == nil {
		return nil, nil, nil
	}
	return (*w).InstallReservations(serial, state)
}

// Reservations is the reservation state of volume's logical unit here,
// nil without an iSCSI target.
func (s *Store) Reservations(ctx context.Context, volume string) ([]byte, error) {
	serial, err := s.VolumeSerial(ctx, volume)
	if err != nil {
		return nil, err
	}
	w := s.reservationWatcher.Load()
	if w == nil {
		return nil, nil
	}
	return (*w).Reservations(serial), nil
}

// reservationKeeper is the iSCSI target that keeps volume's
// reservations, for the array's operator: a volume whose reservations
// hosts cannot have here now is FAILED_PRECONDITION, saying why.
func (s *Store) reservationKeeper(ctx context.Context, volume string) (ReservationWatcher, *volume, error) {
	if err := array.CheckName("volume", volume); err != nil {
		return nil, nil, err
	}
	v, err := s.lookup(ctx, volume)
	if err != nil {
		return nil, nil, err
	}
	w := s.reservationWatcher.Load()
	if w == nil {
		return nil, nil, errdefs.FailedPrecondition("array %s serves no iSCSI target, which keeps the persistent reservations of volumes; ask the array that serves %q to hosts", s.opts.Name, volume)
	}
	if s.reservationsUnshared(v) {
		return nil, nil, errdefs.FailedPrecondition("hosts have no persistent reservations of volume %q at array %s now: it is a replica target, or its pod's other array cannot share them (too old, or not connected); ask the array that takes its writes", volume, s.opts.Name)
	}
	return *w, v, nil
}

// VolumeReservations returns the persistent reservations of volume's
// logical unit.
func (s *Store) VolumeReservations(ctx context.Context, volume string) (array.Reservations, error) {
	w, v, err := s.reservationKeeper(ctx, volume)
	if err != nil {
		return array.Reservations{}, err
	}
	return w.ShowReservations(v.rec.Serial), nil
}

// ClearVolumeReservations drops every registration and the reservation
// of volume's logical unit, at both arrays of a pod, and returns what is
// left: nothing, unless a host registered again meanwhile.
func (s *Store) ClearVolumeReservations(ctx context.Context, volume string) (array.Reservations, error) {
	w, v, err := s.reservationKeeper(ctx, volume)
	if err != nil {
		return array.Reservations{}, err
	}
	forward := func(ctx context.Context, req []byte) ([]byte, bool, error) { return s.forwardReservation(ctx, v, req) }
	share := func(ctx context.Context, state []byte) ([]byte, error) { return s.shareReservations(ctx, v, state) }
	if err := w.ClearReservations(ctx, v.rec.Serial, forward, share); err != nil {
		return array.Reservations{}, err
	}
	return w.ShowReservations(v.rec.Serial), nil
}

// The reservations of a volume's logical unit are kept on disk, by the
// unit's NAA, so that a restart of the array keeps every registration, as
// a controller failover of an array keeps them (reservationBucket).
const reservationBucket = "iscsi-reservations"

// SaveReservations makes state the reservations kept for the unit whose
// NAA is naa, durably.
func (s *Store) SaveReservations(ctx context.Context, naa [16]byte, state []byte) error {
	return s.PutRecord(ctx, reservationBucket, hex.EncodeToString(naa[:]), state)
}

// LoadReservations returns the reservations kept for the unit whose NAA
// is naa, nil if none are.
func (s *Store) LoadReservations(ctx context.Context, naa [16]byte) ([]byte, error) {
	if err := s.checkOpen(ctx); err != nil {
		return nil, err
	}
	var state []byte
	err := s.db.View(func(tx *bolt.Tx) error {
		if b := tx.Bucket(recordBucket(reservationBucket)); b != nil {
			state = bytes.Clone(b.Get([]byte(hex.EncodeToString(naa[:]))))
		}
		return nil
	})
	return state, err
}

// deleteReservations drops a deleted volume's reservations.
func deleteReservations(tx *bolt.Tx, serial string) error {
	b := tx.Bucket(recordBucket(reservationBucket))
	if b == nil || serial == "" {
		return nil
	}
	naa := array.NAA(serial)
	return b.Delete([]byte(hex.EncodeToString(naa[:])))
}
