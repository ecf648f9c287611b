package store

import (
	"context"
	"time"

	"golang.org/x/time/rate"

	"github.com/volrep/volrep/array"
	"github.com/volrep/volrep/errdefs"
)

// QoS is enforced here, below both protocols: NBD exports and iSCSI
// connections reach a volume through a Handle with a grant, and every
// request through such a handle takes tokens from the volume's buckets
// first. The buckets belong to the volume, so all its attachments share
// one limit. Requests the array makes itself (replication, the array
// API's WriteVolume/ReadVolume, snapshot attachments) are not limited.
//
// Burst: each bucket holds one second's worth of its limit, so an idle
// volume may briefly run at up to twice its limit for the first second
// and then at the limit. A bytes bucket holds at least qosMinByteBurst,
// so a request of that size passes in one reservation; a larger request
// reserves in burst-sized pieces and waits for the last.

// qosMinByteBurst is the least a bytes bucket holds.
const qosMinByteBurst = 1 << 20

// qosRec is a volume's limit as stored in its bbolt record.
type qosRec struct {
	TotalIOPS  int64 `json:"total_iops,omitempty"`
	ReadIOPS   int64 `json:"read_iops,omitempty"`
	WriteIOPS  int64 `json:"write_iops,omitempty"`
	TotalBytes int64 `json:"total_bytes,omitempty"`
	ReadBytes  int64 `json:"read_bytes,omitempty"`
	WriteBytes int64 `json:"write_bytes,omitempty"`
}

func qosRecOf(q array.QoS) *qosRec {
	if q.IsZero() {
		return nil
	}
	return &qosRec{TotalIOPS: q.TotalIOPS, ReadIOPS: q.ReadIOPS, WriteIOPS: q.WriteIOPS,
		TotalBytes: q.TotalBytesPerSec, ReadBytes: q.ReadBytesPerSec, WriteBytes: q.WriteBytesPerSec}
}

func (r *qosRec) qos() array.QoS {
	if r == nil {
		return array.QoS{}
	}
	return array.QoS{TotalIOPS: r.TotalIOPS, ReadIOPS: r.ReadIOPS, WriteIOPS: r.WriteIOPS,
		TotalBytesPerSec: r.TotalBytes, ReadBytesPerSec: r.ReadBytes, WriteBytesPerSec: r.WriteBytes}
}

func checkQoS(q array.QoS) error {
	for _, f := range []struct {
		name string
		v    int64
	}{
		{"qos.total_iops", q.TotalIOPS}, {"qos.read_iops", q.ReadIOPS}, {"qos.write_iops", q.WriteIOPS},
		{"qos.total_bytes_per_sec", q.TotalBytesPerSec}, {"qos.read_bytes_per_sec", q.ReadBytesPerSec},
		{"qos.write_bytes_per_sec", q.WriteBytesPerSec},
	} {
		if f.v < 0 {
			return errdefs.InvalidArgument(f.name, "%d is negative; give a positive limit, or 0 for none", f.v)
		}
	}
	return nil
}

// buckets are a volume's token buckets, one per limited dimension; a nil
// bucket does not limit. A volume swaps in a new buckets value on a
// change, reusing the limiters of dimensions that stay limited, so their
// debt carries over.
type buckets struct {
	iops, readIOPS, writeIOPS, bytes, readBytes, writeBytes *rate.Limiter
}

// bucketFor reuses old for a new limit (nil when limit is 0).
func bucketFor(old *rate.Limiter, limit int64, minBurst int) *rate.Limiter {
	if limit <= 0 {
		return nil
	}
	burst := max(int(limit), minBurst)
	if old == nil {
		return rate.NewLimiter(rate.Limit(limit), burst)
	}
	old.SetLimit(rate.Limit(limit))
	old.SetBurst(burst)
	return old
}

// setQoS makes q the volume's limit from the next request on. Requests
// already waiting keep the wait they were given (at most about a second
// at the old limit, with the burst above).
func (v *volume) setQoS(q array.QoS) {
	if q.IsZero() {
		v.qos.Store(nil)
		return
	}
	old := v.qos.Load()
	if old == nil {
		old = &buckets{}
	}
	v.qos.Store(&buckets{
		iops:       bucketFor(old.iops, q.TotalIOPS, 1),
		readIOPS:   bucketFor(old.readIOPS, q.ReadIOPS, 1),
		writeIOPS:  bucketFor(old.writeIOPS, q.WriteIOPS, 1),
		bytes:      bucketFor(old.bytes, q.TotalBytesPerSec, qosMinByteBurst),
		readBytes:  bucketFor(old.readBytes, q.ReadBytesPerSec, qosMinByteBurst),
		writeBytes: bucketFor(old.writeBytes, q.WriteBytesPerSec, qosMinByteBurst),
	})
}

// reservation is what one request took from a volume's buckets.
type reservation struct {
	rs    []*rate.Reservation
	delay time.Duration
}

// cancel gives the tokens back (as far as later reservations allow), for a
// request that will not run now.
func (r *reservation) cancel() {
	for i := len(r.rs) - 1; i >= 0; i-- {
		r.rs[i].Cancel()
	}
}

// reserve takes one operation and n bytes from the buckets a read or a
// write counts against; the request may run after the returned delay.
func (b *buckets) reserve(write bool, n int64) *reservation {
	r := &reservation{}
	if b == nil {
		return r
	}
	now := time.Now()
	take := func(l *rate.Limiter, n int64) {
		for l != nil && n > 0 {
			k := min(n, int64(l.Burst()))
			res := l.ReserveN(now, int(k))
			if !res.OK() {
				// The burst shrank under us (a live change): the
				// remainder passes rather than failing the request.
				return
			}
			r.rs = append(r.rs, res)
			r.delay = max(r.delay, res.DelayFrom(now))
			n -= k
		}
	}
	ops, bytes := b.readIOPS, b.readBytes
	if write {
		ops, bytes = b.writeIOPS, b.writeBytes
	}
	take(b.iops, 1)
	take(ops, 1)
	take(b.bytes, n)
	take(bytes, n)
	return r
}

// wait blocks until the reserved request may run, or ctx ends (a
// disconnect, a shutdown), which gives the tokens back.
func (r *reservation) wait(ctx context.Context) error {
	if r.delay <= 0 {
		return nil
	}
	t := time.NewTimer(r.delay)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		r.cancel()
		return ctx.Err()
	}
}

// limited says whether the handle's requests count against the volume's
// QoS: those of attachments (NBD exports and iSCSI connections) of the
// volume itself.
func (h *Handle) limited() *buckets {
	if h.grant == nil || h.snap != nil {
		return nil
	}
	return h.v.qos.Load()
}

// throttle waits until the volume's QoS lets a request of n bytes run.
func (h *Handle) throttle(ctx context.Context, write bool, n int64) error {
	b := h.limited()
	if b == nil {
		return nil
	}
	return b.reserve(write, n).wait(ctx)
}

// throttleNoWait takes the tokens for a request only if it may run now;
// otherwise it returns ErrWouldBlock, having taken nothing. The caller
// cancels the reservation if the request then does not run.
func (h *Handle) throttleNoWait(write bool, n int64) (*reservation, error) {
	r := h.limited().reserve(write, n)
	if r.delay > 0 {
		r.cancel()
		return nil, ErrWouldBlock
	}
	return r, nil
}

// QoSKeeper is a Mirror whose copy takes the volume's QoS limit too: a
// pod's peer serves hosts as well, and a limit held at one array only is
// one a host bypasses through its path to the other.
type QoSKeeper interface {
	// SetQoS gives the copy q. It is called with no store lock held,
	// once q is durable here, and may wait on the network; the change
	// here stands whatever it returns, so it keeps what it could not do
	// for later rather than fail.
	SetQoS(ctx context.Context, q array.QoS)
}

// SetVolumeQoS replaces a volume's QoS limit, durably in its record, and
// gives it to the copy a QoSKeeper mirror keeps.
func (s *Store) SetVolumeQoS(ctx context.Context, name string, q array.QoS) (array.Volume, error) {
	if err := checkQoS(q); err != nil {
		return array.Volume{}, err
	}
	out, changed, err := s.setVolumeQoS(ctx, name, q)
	if err != nil || !changed {
		return out, err
	}
	s.qosMirror(ctx, name, q)
	return out, nil
}

func (s *Store) setVolumeQoS(ctx context.Context, name string, q array.QoS) (array.Volume, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check(ctx); err != nil {
		return array.Volume{}, false, err
	}
	v, err := s.volumeLocked(name)
	if err != nil {
		return array.Volume{}, false, err
	}
	if v.rec.QoS.qos() == q {
		return s.volumeOf(v), false, nil
	}
	rec := v.rec
	rec.QoS = qosRecOf(q)
	if err := s.saveVolRec(v, rec); err != nil {
		return array.Volume{}, false, err
	}
	v.setQoS(q)
	return s.volumeOf(v), true, nil
}

// qosMirror gives q to the copy of volume's mirror, if it keeps one: the
// mirror a client's change would go through, as for growMirror.
func (s *Store) qosMirror(ctx context.Context, volume string, q array.QoS) {
	m, _, err := s.clientMirror(ctx, volume)
	if err != nil {
		return // deleted meanwhile
	}
	if k, ok := m.(QoSKeeper); ok {
		k.SetQoS(ctx, q)
	}
}

// VolumeQoS returns a volume's QoS limit.
func (s *Store) VolumeQoS(ctx context.Context, name string) (array.QoS, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if err := s.check(ctx); err != nil {
		return array.QoS{}, err
	}
	v, err := s.volumeLocked(name)
	if err != nil {
		return array.QoS{}, err
	}
	return v.rec.QoS.qos(), nil
}
