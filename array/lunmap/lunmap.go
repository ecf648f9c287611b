// Package lunmap is a store's LUN masking as the iSCSI target server sees
// it (iscsi.Targets): which initiators may discover and log into the
// array's target, with which CHAP secrets, and which volumes their
// sessions see at which LUNs. It asks the store on every call, so a new
// host, connection or disconnection applies to open sessions at once.
//
// Discovery: an initiator that belongs to a host may discover the target
// (with the host's CHAP), whether or not anything is connected to it yet,
// so a host can be set up before its first volume; any other initiator is
// refused as if its secret were wrong.
package lunmap

import (
	"context"
	"errors"
	"fmt"

	"github.com/volrep/volrep/array"
	"github.com/volrep/volrep/array/export"
	"github.com/volrep/volrep/array/iscsi"
	"github.com/volrep/volrep/array/store"
	"github.com/volrep/volrep/errdefs"
)

// tpgt is the target portal group tag every portal is in: one group, so
// an initiator may run a session over each portal (multipath).
const tpgt = 1

// Product is INQUIRY's product identification of every LUN.
const Product = "volrep"

// Targets is the iscsi.Targets of one store.
type Targets struct {
	s *store.Store
}

var _ iscsi.Targets = (*Targets)(nil)

// New returns the targets of s.
func New(s *store.Store) *Targets { return &Targets{s: s} }

// NewServer is the iSCSI target of s's LUN map, which keeps its units'
// persistent reservations in s and takes the resets and reservations of
// a pod's other array. Create it before the pods start: a pod offers its
// peer to decide reservations only where a target keeps them.
func NewServer(s *store.Store, opts iscsi.Options) *iscsi.Server {
	opts.Keeper = s
	srv := iscsi.NewServer(New(s), opts)
	s.WatchResets(Resets(srv))
	s.WatchReservations(Reservations(srv))
	return srv
}

// lookup returns the initiator's host, or ErrUnknownInitiator.
func (t *Targets) lookup(ctx context.Context, initiator string) (store.Initiator, error) {
	in, ok, err := t.s.LookupInitiator(ctx, initiator)
	if err != nil {
		return store.Initiator{}, deviceErr(err)
	}
	if !ok {
		return store.Initiator{}, iscsi.ErrUnknownInitiator
	}
	return in, nil
}

func (t *Targets) checkTarget(target string) error {
	if array.ISCSINameKey(target) != array.ISCSINameKey(t.s.TargetIQN()) {
		return iscsi.ErrUnknownTarget
	}
	return nil
}

func authOf(h array.Host) iscsi.Auth {
	return iscsi.Auth{User: h.CHAPUser, Secret: h.CHAPSecret, MutualUser: h.MutualCHAPUser, MutualSecret: h.MutualCHAPSecret}
}

// Discover returns the array's target and its portals to an initiator
// that belongs to a host, and nothing to any other.
func (t *Targets) Discover(ctx context.Context, initiator string) ([]iscsi.Target, error) {
	if _, err := t.lookup(ctx, initiator); err != nil {
		if errors.Is(err, iscsi.ErrUnknownInitiator) {
			return nil, nil
		}
		return nil, err
	}
	portals := t.s.Portals()
	out := iscsi.Target{Name: t.s.TargetIQN(), Portals: make([]string, len(portals))}
	for i, p := range portals {
		out.Portals[i] = fmt.Sprintf("%s,%d", p, tpgt)
	}
	return []iscsi.Target{out}, nil
}

// DiscoveryAuth is the host's CHAP; an initiator of no host is refused.
func (t *Targets) DiscoveryAuth(ctx context.Context, initiator string) (iscsi.Auth, error) {
	in, err := t.lookup(ctx, initiator)
	if err != nil {
		return iscsi.Auth{}, err
	}
	return authOf(in.Host), nil
}

// Login is the host's CHAP, for the array's target only.
func (t *Targets) Login(ctx context.Context, initiator, target string) (iscsi.Auth, error) {
	in, err := t.lookup(ctx, initiator)
	if err != nil {
		return iscsi.Auth{}, err
	}
	if err := t.checkTarget(target); err != nil {
		return iscsi.Auth{}, err
	}
	return authOf(in.Host), nil
}

// LUNs are the host's connections' LUNs, ascending.
func (t *Targets) LUNs(ctx context.Context, initiator, target string) ([]uint64, error) {
	in, err := t.lookup(ctx, initiator)
	if err != nil {
		return nil, err
	}
	if err := t.checkTarget(target); err != nil {
		return nil, err
	}
	out := make([]uint64, len(in.LUNs))
	for i, l := range in.LUNs {
		out[i] = uint64(l)
	}
	return out, nil
}

// Open returns the volume or snapshot behind lun. Its I/O goes through a
// store handle, the path NBD exports take: the same write path (sync
// mirroring, FUA and flush durability), and the connection checked on
// every request, so a disconnect fails the next one with ErrNotMapped.
func (t *Targets) Open(ctx context.Context, initiator, target string, lun uint64) (iscsi.Device, error) {
	if _, err := t.lookup(ctx, initiator); err != nil {
		return nil, err
	}
	if err := t.checkTarget(target); err != nil {
		return nil, err
	}
	if lun > 1<<62 {
		return nil, iscsi.ErrNotMapped
	}
	h, serial, err := t.s.OpenLUN(ctx, initiator, int64(lun))
	if err != nil {
		return nil, deviceErr(err)
	}
	return &device{h: h, id: iscsi.Identity{NAA: array.NAA(serial), Serial: serial, Product: Product}}, nil
}

type device struct {
	h  *store.Handle
	id iscsi.Identity
}

func (d *device) Size() int64              { return d.h.Size() }
func (d *device) ReadOnly() bool           { return d.h.ReadOnly() }
func (d *device) Identity() iscsi.Identity { return d.id }

var _ iscsi.AccessReporter = (*device)(nil)

// Access is the volume's ALUA state at this array (a pod's side).
func (d *device) Access() iscsi.Access {
	p := d.h.Path()
	return iscsi.Access{State: accessStates[p.State], Preferred: p.Preferred}
}

var accessStates = map[array.PathState]iscsi.AccessState{
	array.PathOptimized:     iscsi.ActiveOptimized,
	array.PathNonOptimized:  iscsi.ActiveNonOptimized,
	array.PathStandby:       iscsi.Standby,
	array.PathUnavailable:   iscsi.Unavailable,
	array.PathTransitioning: iscsi.Transitioning,
}

// Close has nothing to release: a handle holds no resources of its own.
func (d *device) Close() {}

var (
	_ iscsi.CompareWriter      = (*device)(nil)
	_ iscsi.ResetSharer        = (*device)(nil)
	_ iscsi.ReservationRefuser = (*device)(nil)
	_ iscsi.ReservationSharer  = (*device)(nil)
)

// RefusesReservations: a volume the other array of a pod serves as well,
// and cannot share persistent reservations with now.
func (d *device) RefusesReservations() bool { return d.h.ReservationsUnshared() }

// ForwardReservation runs PERSISTENT RESERVE OUT at the pod's deciding
// array, when that is the other one.
func (d *device) ForwardReservation(ctx context.Context, req []byte) ([]byte, bool, error) {
	reply, forwarded, err := d.h.ForwardReservation(ctx, req)
	return reply, forwarded, deviceErr(err)
}

// ShareReservations gives the pod's other array the new state.
func (d *device) ShareReservations(ctx context.Context, state []byte) ([]byte, error) {
	newer, err := d.h.ShareReservations(ctx, state)
	return newer, deviceErr(err)
}

// Outsiders tells NBD exports what the reservations srv keeps leave a
// client with no registration (export.Reservations).
func Outsiders(srv *iscsi.Server) export.Reservations { return outsiders{srv} }

type outsiders struct{ srv *iscsi.Server }

func (o outsiders) Outsider(serial string) func() (array.ReservationType, bool, bool) {
	check := o.srv.Outsiders(array.NAA(serial))
	return func() (array.ReservationType, bool, bool) {
		c := check()
		return array.ReservationType(c.Reserved), c.Write, c.Read
	}
}

// Reservations keeps the persistent reservations of the volumes' units in
// srv's (store.ReservationWatcher), by the NAA a serial gives at both
// arrays of a pod.
func Reservations(srv *iscsi.Server) store.ReservationWatcher { return reservations{srv} }

type reservations struct{ srv *iscsi.Server }

func (r reservations) DecideReservation(ctx context.Context, serial string, req []byte, share func(context.Context, []byte) ([]byte, error)) ([]byte, error) {
	return r.srv.DecideReservation(ctx, array.NAA(serial), req, share)
}

func (r reservations) InstallReservations(serial string, state []byte) ([]byte, func(context.Context) error, error) {
	return r.srv.InstallReservations(array.NAA(serial), state)
}

func (r reservations) Reservations(serial string) []byte {
	return r.srv.Reservations(array.NAA(serial))
}

func (r reservations) ClearReservations(ctx context.Context, serial string, forward func(context.Context, []byte) ([]byte, bool, error),
	share func(context.Context, []byte) ([]byte, error)) error {
	err := r.srv.ClearReservations(ctx, array.NAA(serial), forward, share)
	switch {
	case errors.Is(err, iscsi.ErrOldDecider):
		return errdefs.WithKind(errdefs.KindFailedPrecondition, fmt.Errorf("%w; upgrade the pod's other array, or clear them there", err))
	case errors.Is(err, iscsi.ErrUnavailable):
		return errdefs.WithKind(errdefs.KindUnavailable, fmt.Errorf("%w: the pod's other array kept moving on while this one cleared; retry", err))
	}
	return err
}

func (r reservations) ForgetReservations(serial string) { r.srv.ForgetReservations(array.NAA(serial)) }

func (r reservations) ShowReservations(serial string) array.Reservations {
	st := r.srv.ReservationStatus(array.NAA(serial))
	out := array.Reservations{Generation: st.Generation, Type: array.ReservationType(st.Type), APTPL: st.APTPL}
	for _, g := range st.Registrations {
		out.Registrations = append(out.Registrations, array.Registration{InitiatorPort: g.InitiatorPort, Target: g.Target,
			RelativeTargetPort: g.RelativePort, Key: g.Key, Holder: g.Holder})
	}
	return out
}

// ShareReset carries a LOGICAL UNIT RESET here to the other array of a
// pod, whose copies are one logical unit to a host; Resets brings the
// other array's back.
func (d *device) ShareReset(ctx context.Context) { d.h.ShareReset(ctx) }

// Resets applies the resets a pod's other array took to srv's sessions
// (store.ResetWatcher): the unit is the volume's, by the NAA its serial
// gives at both arrays.
func Resets(srv *iscsi.Server) store.ResetWatcher { return resets{srv} }

type resets struct{ srv *iscsi.Server }

func (r resets) SharedReset(serial string) func(context.Context) error {
	return r.srv.SharedReset(array.NAA(serial))
}

func (d *device) ReadAt(ctx context.Context, p []byte, off int64) error {
	return deviceErr(d.h.ReadAt(ctx, p, off))
}

func (d *device) WriteAt(ctx context.Context, p []byte, off int64, fua bool) error {
	return deviceErr(d.h.WriteAt(ctx, p, off, fua))
}

func (d *device) Flush(ctx context.Context) error { return deviceErr(d.h.Flush(ctx)) }

// CompareAndWrite is atomic against every write to the volume, NBD's and
// the sync peer's included, so the iSCSI server needs no lock of its own.
func (d *device) CompareAndWrite(ctx context.Context, cmp, data []byte, off int64, fua bool) error {
	err := d.h.CompareAndWrite(ctx, cmp, data, off, fua)
	if me := (*store.MiscompareError)(nil); errors.As(err, &me) {
		return &iscsi.MiscompareError{Offset: me.Offset}
	}
	return deviceErr(err)
}

func (d *device) Zero(ctx context.Context, off, length int64, fua bool) error {
	return deviceErr(d.h.Zero(ctx, off, length, fua))
}

// deviceErr gives engine errors the iscsi error that chooses their sense
// data: a revoked connection or a volume gone is not mapped any more, a
// refused write (a snapshot, a replica target) write protected, a full
// disk out of space, a stopping array unavailable; anything else stays
// as it is (a medium or hardware error).
func deviceErr(err error) error {
	if err == nil {
		return nil
	}
	var sense error
	switch {
	case errors.Is(err, store.ErrRevoked):
		sense = iscsi.ErrNotMapped
	case errors.Is(err, store.ErrReservationsUnshared):
		sense = iscsi.ErrNoReservations
	default:
		switch errdefs.KindOf(err) {
		case errdefs.KindNotFound:
			sense = iscsi.ErrNotMapped
		case errdefs.KindFailedPrecondition:
			sense = iscsi.ErrWriteProtected
		case errdefs.KindResourceExhausted:
			sense = iscsi.ErrNoSpace
		case errdefs.KindUnavailable:
			sense = iscsi.ErrUnavailable
		default:
			return err
		}
	}
	return fmt.Errorf("%w: %w", sense, err)
}
