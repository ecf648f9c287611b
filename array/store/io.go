package store

import (
	"context"
	"errors"
	"fmt"
	"sync"

	bolt "go.etcd.io/bbolt"

	"github.com/volrep/volrep/array"
	"github.com/volrep/volrep/errdefs"
)

var blockPool = sync.Pool{New: func() any { b := make([]byte, bs); return &b }}

// beginIO pins the volume's chain for one request; the caller must
// s.io.RUnlock when done.
func (s *Store) beginIO(v *volume) (*layer, int64, error) {
	s.io.RLock()
	if s.closed.Load() {
		s.io.RUnlock()
		return nil, 0, errdefs.Unavailable("array %s is shutting down", s.opts.Name)
	}
	if v.deleted {
		s.io.RUnlock()
		return nil, 0, errdefs.NotFound("volume %q was deleted", v.rec.Name)
	}
	return v.live, v.rec.Size, nil
}

func checkRange(name string, off, length, size int64) error {
	if off < 0 || length < 0 || off+length > size {
		return errdefs.InvalidArgument("offset", "range [%d, %d) is outside %s's %d bytes", off, off+length, name, size)
	}
	return nil
}

// lockBlocks takes the stripe locks of blocks [fb, lb] in ascending stripe
// order, so concurrent writers cannot deadlock.
func (v *volume) lockBlocks(fb, lb int64) func() {
	n := int64(len(v.stripes))
	if lb-fb+1 >= n {
		for i := range v.stripes {
			v.stripes[i].Lock()
		}
		return func() {
			for i := range v.stripes {
				v.stripes[i].Unlock()
			}
		}
	}
	s0, s1 := fb%n, lb%n
	var ranges [2][2]int64
	if s0 <= s1 {
		ranges[0] = [2]int64{s0, s1}
		ranges[1] = [2]int64{1, 0}
	} else {
		ranges[0] = [2]int64{0, s1}
		ranges[1] = [2]int64{s0, n - 1}
	}
	for _, r := range ranges {
		for i := r[0]; i <= r[1]; i++ {
			v.stripes[i].Lock()
		}
	}
	return func() {
		for _, r := range ranges {
			for i := r[0]; i <= r[1]; i++ {
				v.stripes[i].Unlock()
			}
		}
	}
}

// Wait waits for a change queued to a Mirror or a Forwarder to be done
// elsewhere: on the peer, or on both copies. It is bounded by the
// mirror's own timeout, and returns ctx's error when the request's
// context ends first. The change is then not acknowledged, and stays in
// the mirror's hands: the peer may still apply it, and a mirrored
// change's range is marked diverged, so the resync copies it.
type Wait func(ctx context.Context) error

// Mirror is told of every change to a volume, in the order the changes
// were made, so a sync replica can put each on the peer before it is
// acknowledged.
type Mirror interface {
	// Write and Zero are called with the changed blocks locked, so two
	// changes to one block reach the mirror in the order they are made
	// here. They only queue the change and must never wait on the network
	// (p must be copied if it is kept); the wait they return blocks until
	// the peer has the change (or the mirror gave up on the peer), and is
	// called with no store lock held.
	Write(off int64, p []byte) Wait
	Zero(off, length int64) Wait
	// Flush makes every change mirrored so far durable on the peer; it is
	// called with no store lock held, and stops waiting when ctx ends (the
	// flush then fails: nothing is promised durable).
	Flush(ctx context.Context) error
	// Diverged says a change the mirror was given failed here, or that
	// its client stopped waiting for it, so the range may now differ
	// between the two copies.
	Diverged(off, length int64)
}

// Admitter is a Mirror that may refuse a client's change before it is
// applied here: a pod that its mediator stopped takes no writes, so its
// copy cannot move ahead of one that carries on elsewhere.
type Admitter interface {
	// Admit is called with the changed blocks locked; it must not wait
	// on the network.
	Admit() error
}

// Forwarder takes the client changes of a read-only copy that changes
// only through another array: a pod's copy at its non-preferred array.
// Its clients' changes go to the preferred array, which sequences each
// with its own writes and mirrors it back (ApplyMirrored), so both copies
// see every block's changes in one order; the change is never applied
// here by the client's write itself.
type Forwarder interface {
	// Write and Zero are called with the changed blocks locked. They only
	// queue the change (p must be copied if it is kept) and never wait on
	// the network; the wait they return, called with no store lock held
	// (the mirrored copy of the change needs the blocks' locks here),
	// blocks until the preferred array says the change is on both copies,
	// or fails.
	Write(off int64, p []byte) Wait
	Zero(off, length int64) Wait
	// Flush makes the changes forwarded so far durable at the preferred
	// array; it is called with no store lock held, and stops waiting when
	// ctx ends.
	Flush(ctx context.Context) error
}

// CompareForwarder is a Forwarder that also forwards COMPARE AND WRITE:
// the preferred array compares cmp with its copy and writes p at off only
// if they match, atomically against every write to the pod (it sequences
// them all); the wait fails with *MiscompareError if they did not. It is
// called as Write is. A Forwarder without it refuses COMPARE AND WRITE,
// since comparing against this copy could not be atomic.
type CompareForwarder interface {
	CompareAndWrite(off int64, cmp, p []byte) Wait
}

// SetForwarder makes a read-only volume take client changes through f;
// nil stops it. A writable volume (promoted) ignores its forwarder.
func (s *Store) SetForwarder(ctx context.Context, volume string, f Forwarder) error {
	v, err := s.lookup(ctx, volume)
	if err != nil {
		return err
	}
	s.io.Lock()
	v.forward = f
	s.io.Unlock()
	return nil
}

// Carrier is a Forwarder whose copy may take its clients' changes here
// for a while: a pod's copy whose preferred array was lost, and whose
// mediator gave this array the pod. Carry returns the Mirror that then
// sees each change (and records it for the preferred array's return), or
// nil while changes are forwarded; it must not wait. Pod names the pod,
// for messages.
type Carrier interface {
	Carry() Mirror
	Pod() string
}

// carried refuses a received snapshot onto a copy whose pod this array
// carries: the copy took writes the sending array lacks, acknowledged to
// this array's hosts, and received data would overwrite them. Called
// with s.io held. Commit holds it exclusively through the commit, and a
// carried write is routed under it, so every carried write lands after a
// commit that found the copy not carried, never under it.
func (v *volume) carried(array string) error {
	c, ok := v.forward.(Carrier)
	if !v.rec.ReadOnly || !ok || c.Carry() == nil {
		return nil
	}
	return errdefs.FailedPrecondition("volume %q on array %s is a copy of pod %s, which this array carries: it took writes the sending array lacks, and received data would overwrite them; "+
		"it takes none until the pod is handed back, or the copy is promoted or deleted here", v.rec.Name, array, c.Pod())
}

// route says where a change to the volume goes besides this copy: to a
// Forwarder instead (fwd, a pod's copy at its non-preferred array), or
// through a Mirror (m). Called with s.io held.
func (v *volume) route(how mirrored) (fwd Forwarder, m Mirror) {
	switch {
	case how == fromPeer:
		return nil, nil
	case !v.rec.ReadOnly:
		return nil, v.mirror
	}
	if c, ok := v.forward.(Carrier); ok {
		if m := c.Carry(); m != nil {
			return nil, m
		}
	}
	return v.forward, nil
}

// clientRoute is route(fromClient) read under the I/O lock, which a
// mirror or forwarder is set under.
func (s *Store) clientRoute(v *volume) (Forwarder, Mirror) {
	s.io.RLock()
	defer s.io.RUnlock()
	return v.route(fromClient)
}

// changer is what a change is queued to: a Mirror or a Forwarder.
type changer interface {
	Write(off int64, p []byte) Wait
	Zero(off, length int64) Wait
}

// SetMirror makes every change to volume go through m as well; nil stops it.
func (s *Store) SetMirror(ctx context.Context, volume string, m Mirror) error {
	v, err := s.lookup(ctx, volume)
	if err != nil {
		return err
	}
	s.io.Lock()
	v.mirror = m
	s.io.Unlock()
	return nil
}

// mirrored says how a write treats the volume's mirror.
type mirrored bool

const (
	// fromClient is a client's write: refused on read-only volumes, and
	// mirrored.
	fromClient mirrored = false
	// fromPeer is the sync peer applying a mirrored write to its copy,
	// which clients cannot write.
	fromPeer mirrored = true
)

func (s *Store) write(ctx context.Context, v *volume, p []byte, off int64, fua bool, how mirrored) error {
	return s.change(ctx, v, off, int64(len(p)), fua, how, nil, writeTo(off, p, MirrorTag{}),
		func(l *layer) error { return writeLayer(l, p, off) })
}

// MirrorTag names, on the mirrored copy of a write, the forwarded write
// it came from: the peer that forwarded it answers its client once that
// copy is applied there.
type MirrorTag struct{ Session, Seq uint64 }

// Tagger is a Mirror that carries a MirrorTag with a write.
type Tagger interface {
	WriteTagged(off int64, p []byte, tag MirrorTag) Wait
}

// writeTo queues a write to a Mirror or Forwarder, with its tag when it
// has one and the mirror carries tags.
func writeTo(off int64, p []byte, tag MirrorTag) func(changer) Wait {
	return func(m changer) Wait {
		if t, ok := m.(Tagger); ok && tag != (MirrorTag{}) {
			return t.WriteTagged(off, p, tag)
		}
		return m.Write(off, p)
	}
}

// Recorder is a Mirror that records, durably, which blocks its copy is
// about to change before they change (a write-intent record), so that
// after an unclean stop it still knows every block it changed.
type Recorder interface {
	// Recorded says [off, off+length) is recorded already. It is called
	// with the changed blocks locked and must not block.
	Recorded(off, length int64) bool
	// Record records [off, off+length) durably. It is called with no
	// lock held, and then the change is tried again.
	Record(ctx context.Context, off, length int64) error
}

// needsRecord is applyChange's answer when the change's blocks must be
// recorded (Recorder) before it may go on.
type needsRecord struct{ r Recorder }

func (*needsRecord) Error() string { return "the change's blocks are not recorded yet" }

// change is the one path by which a write or a zeroed range reaches a
// volume and its mirror (or forwarder), and is done: begun (applyChange),
// then waited for, then made durable when fua is set.
func (s *Store) change(ctx context.Context, v *volume, off, length int64, fua bool, how mirrored, cmp *comparison,
	mirror func(changer) Wait, apply func(*layer) error) error {
	wait, err := s.applyChange(ctx, v, off, length, how, cmp, mirror, apply)
	if err == nil && wait != nil {
		err = wait(ctx)
	}
	if err == nil && fua {
		return s.flush(ctx, v)
	}
	return err
}

// applyChange queues the change to the mirror and applies it here under
// the blocks' locks, so both copies see changes to a block in the same
// order; then every lock is released, and the wait it returns (nil when
// there is nothing to wait for) waits for the peer with none held, so a
// slow peer holds up only the writes that wait for it, never a snapshot
// or another volume. cmp, if set, is checked under the blocks' locks
// before anything is queued or applied, and a miscompare changes nothing
// (COMPARE AND WRITE).
func (s *Store) applyChange(ctx context.Context, v *volume, off, length int64, how mirrored, cmp *comparison,
	mirror func(changer) Wait, apply func(*layer) error) (Wait, error) {
	wait, err := s.applyChangeOnce(v, off, length, how, cmp, mirror, apply)
	// A record once made stays made while the copy is the Recorder's, so
	// this tries again once, or more only if the volume's mirror changed.
	for nr := (*needsRecord)(nil); errors.As(err, &nr); {
		if err = nr.r.Record(ctx, off, length); err == nil {
			wait, err = s.applyChangeOnce(v, off, length, how, cmp, mirror, apply)
		}
	}
	return wait, err
}

// applyChangeOnce is applyChange, except that a change whose blocks a
// Recorder must record first is refused with needsRecord, with no lock
// held, for applyChange to record them and try again.
func (s *Store) applyChangeOnce(v *volume, off, length int64, how mirrored, cmp *comparison,
	mirror func(changer) Wait, apply func(*layer) error) (Wait, error) {
	l, size, err := s.beginIO(v)
	if err != nil {
		return nil, err
	}
	fwd, m := v.route(how)
	if v.rec.ReadOnly && how == fromClient && fwd == nil && m == nil {
		s.io.RUnlock()
		return nil, errdefs.FailedPrecondition("volume %q is a replication target and read-only; promote it or fail over first", v.rec.Name)
	}
	if h := v.hold; h != nil && how == fromClient {
		s.io.RUnlock()
		return nil, &heldError{released: h.released}
	}
	if err := checkRange(v.rec.Name, off, length, size); err != nil {
		s.io.RUnlock()
		return nil, err
	}
	if length == 0 {
		s.io.RUnlock()
		return nil, nil
	}
	if fwd != nil {
		return s.forwardChange(v, fwd, off, length, cmp, mirror)
	}
	var wait Wait
	unlock := v.lockBlocks(off/bs, (off+length-1)/bs)
	if cmp != nil {
		if err := cmp.check(l); err != nil {
			unlock()
			s.io.RUnlock()
			return nil, err
		}
	}
	if r, ok := m.(Recorder); ok && !r.Recorded(off, length) {
		unlock()
		s.io.RUnlock()
		return nil, &needsRecord{r}
	}
	if a, ok := m.(Admitter); ok {
		if err := a.Admit(); err != nil {
			unlock()
			s.io.RUnlock()
			return nil, err
		}
	}
	// The mirror gets the change first, so the peer works on it while the
	// local write runs.
	if m != nil {
		wait = mirror(m)
	}
	err = apply(l)
	unlock()
	s.io.RUnlock()
	if err != nil {
		if wait != nil {
			// Bounded by the mirror's timeout, and nobody's request is
			// waiting: the change must be done with before it is diverged.
			_ = wait(context.Background())
		}
		if m != nil {
			m.Diverged(off, length)
		}
		return nil, err
	}
	if wait == nil {
		return nil, nil
	}
	return func(ctx context.Context) error {
		if err := wait(ctx); err != nil {
			m.Diverged(off, length)
			return err
		}
		return nil
	}, nil
}

// forwardChange is applyChange for a copy that takes its clients'
// changes through a Forwarder: the change is queued to it under the
// blocks' locks and not applied here; every lock is released before the
// wait it returns, because the preferred array answers only once its
// mirrored copy of the change is applied here, under these same locks.
// Called with s.io read-held, which it releases.
func (s *Store) forwardChange(v *volume, f Forwarder, off, length int64, cmp *comparison, queue func(changer) Wait) (Wait, error) {
	if cmp != nil {
		cf, ok := f.(CompareForwarder)
		if !ok {
			s.io.RUnlock()
			// The comparison would run against this copy while the write
			// is sequenced at the other: it could not be atomic.
			return nil, errdefs.FailedPrecondition("volume %q takes COMPARE AND WRITE only at its pod's preferred array", v.rec.Name)
		}
		queue = func(changer) Wait { return cf.CompareAndWrite(cmp.off, cmp.want, cmp.p) }
	}
	unlock := v.lockBlocks(off/bs, (off+length-1)/bs)
	wait := queue(f)
	unlock()
	s.io.RUnlock()
	return wait, nil
}

// writeLayer writes p at off into the writable layer l. Whole blocks go
// straight to the file; a partial block this layer does not hold yet is
// first filled from the view below, so the layer only ever holds whole
// blocks.
func writeLayer(l *layer, p []byte, off int64) error {
	end := off + int64(len(p))
	aLo := (off + bs - 1) / bs * bs
	aHi := end / bs * bs
	if aLo >= aHi {
		for at := off; at < end; {
			blkEnd := min((at/bs+1)*bs, end)
			if err := writePartial(l, p[at-off:blkEnd-off], at); err != nil {
				return err
			}
			at = blkEnd
		}
		return nil
	}
	if off < aLo {
		if err := writePartial(l, p[:aLo-off], off); err != nil {
			return err
		}
	}
	f, err := l.writable()
	if err != nil {
		return err
	}
	if _, err := f.WriteAt(p[aLo-off:aHi-off], aLo); err != nil {
		return err
	}
	l.markPresent(uint64(aLo/bs), uint64(aHi/bs))
	if aHi < end {
		return writePartial(l, p[aHi-off:], aHi)
	}
	return nil
}

func writePartial(l *layer, data []byte, at int64) error {
	blk := at / bs
	f, err := l.writable()
	if err != nil {
		return err
	}
	l.mu.RLock()
	has := l.present.Test(uint64(blk))
	l.mu.RUnlock()
	if has {
		_, err := f.WriteAt(data, at)
		return err
	}
	bp := blockPool.Get().(*[]byte)
	defer blockPool.Put(bp)
	buf := *bp
	if err := readView(l, buf, blk*bs); err != nil {
		return err
	}
	copy(buf[at-blk*bs:], data)
	if _, err := f.WriteAt(buf, blk*bs); err != nil {
		return err
	}
	l.markPresent(uint64(blk), uint64(blk+1))
	return nil
}

func (l *layer) markPresent(lo, hi uint64) {
	l.mu.Lock()
	l.present.SetRange(lo, hi)
	l.zero.ClearRange(lo, hi)
	l.mu.Unlock()
	l.unsynced.Store(true)
}

func (s *Store) read(v *volume, p []byte, off int64) error {
	l, size, err := s.beginIO(v)
	if err != nil {
		return err
	}
	defer s.io.RUnlock()
	if err := checkRange(v.rec.Name, off, int64(len(p)), size); err != nil {
		return err
	}
	return readView(l, p, off)
}

func (s *Store) flush(ctx context.Context, v *volume) error { return s.flushFrom(ctx, v, fromClient) }

func (s *Store) flushFrom(ctx context.Context, v *volume, how mirrored) error {
	l, _, err := s.beginIO(v)
	if err != nil {
		return err
	}
	// A flush from the peer is the peer's own: it is not mirrored back.
	f, m := v.route(how)
	err = s.flushLayer(l)
	s.io.RUnlock()
	if err != nil {
		return err
	}
	// The peer's flush is a network wait: no store lock is held across it.
	if f != nil {
		// This copy holds every change its clients were answered for (each
		// came back mirrored before): the flush above made them durable
		// here, and the preferred array makes them durable there.
		if err := f.Flush(ctx); err != nil {
			return err
		}
	}
	if m == nil {
		return nil
	}
	return m.Flush(ctx)
}

// flushLayer makes l's data and bitmaps durable: data first, so a bitmap
// on disk never names a block whose data could be lost.
func (s *Store) flushLayer(l *layer) error {
	l.flushMu.Lock()
	defer l.flushMu.Unlock()
	sets := l.takeDirty()
	dirty := false
	for _, cs := range sets {
		dirty = dirty || len(cs.chunks) > 0
	}
	if f := l.data(); f != nil && (l.unsynced.Swap(false) || dirty) {
		if err := fdatasync(f); err != nil {
			l.unsynced.Store(true)
			l.remarkDirty(sets)
			return err
		}
	}
	if !dirty {
		return nil
	}
	if err := s.durableEntry(l); err != nil {
		l.remarkDirty(sets)
		return err
	}
	err := s.update(func(tx *bolt.Tx) error {
		for _, cs := range sets {
			if err := putChunkSet(tx, l.id, cs); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		l.remarkDirty(sets)
	}
	return err
}

// zeroRange makes [off, off+length) read as zeros. Whole blocks are
// punched out of the layer file; they are marked zero only where older
// layers hold data, so discarding unwritten space changes nothing.
func (s *Store) zeroRange(ctx context.Context, v *volume, off, length int64, fua bool, how mirrored) error {
	return s.change(ctx, v, off, length, fua, how, nil,
		func(m changer) Wait { return m.Zero(off, length) },
		func(l *layer) error { return zeroLayer(l, off, off+length) })
}

// ApplyMirrored writes a change the sync peer mirrored here. It bypasses
// the read-only guard that keeps clients off a pod's passive copy, and is
// not mirrored back.
func (s *Store) ApplyMirrored(ctx context.Context, volume string, off int64, p []byte) error {
	v, err := s.lookup(ctx, volume)
	if err != nil {
		return err
	}
	if err := refusePromoted(v); err != nil {
		return err
	}
	return s.space(s.write(ctx, v, p, off, false, fromPeer))
}

// ApplyReclaimed writes, to a pod's volume at its preferred array, a
// block its peer took while it carried the pod alone. It is not mirrored
// back: the peer's copy is where it came from.
func (s *Store) ApplyReclaimed(ctx context.Context, volume string, off int64, p []byte) error {
	v, err := s.lookup(ctx, volume)
	if err != nil {
		return err
	}
	return s.space(s.write(ctx, v, p, off, false, fromPeer))
}

// refusePromoted keeps a pod's former writer from overwriting a copy that
// a failover promoted.
func refusePromoted(v *volume) error {
	if !v.rec.ReadOnly {
		return errdefs.FailedPrecondition("volume %q is writable here (promoted by a failover); it takes no mirrored writes until it is demoted", v.rec.Name)
	}
	return nil
}

// ApplyMirroredFlush makes a pod's copy here durable for the sync peer.
// It is not forwarded back to the peer: the peer's flush waits for it.
func (s *Store) ApplyMirroredFlush(ctx context.Context, volume string) error {
	v, err := s.lookup(ctx, volume)
	if err != nil {
		return err
	}
	return s.space(s.flushFrom(ctx, v, fromPeer))
}

// ApplyMirroredZero zeroes a range the sync peer zeroed.
func (s *Store) ApplyMirroredZero(ctx context.Context, volume string, off, length int64) error {
	v, err := s.lookup(ctx, volume)
	if err != nil {
		return err
	}
	if err := refusePromoted(v); err != nil {
		return err
	}
	return s.space(s.zeroRange(ctx, v, off, length, false, fromPeer))
}

// ReadLocked reads a range with its blocks locked against writes, and
// calls fn with the data while they are locked, so a resync can queue the
// data to the mirror in order with the writes around it.
func (s *Store) ReadLocked(ctx context.Context, volume string, off int64, p []byte, fn func([]byte)) error {
	v, err := s.lookup(ctx, volume)
	if err != nil {
		return err
	}
	l, size, err := s.beginIO(v)
	if err != nil {
		return err
	}
	defer s.io.RUnlock()
	if err := checkRange(v.rec.Name, off, int64(len(p)), size); err != nil {
		return err
	}
	unlock := v.lockBlocks(off/bs, (off+int64(len(p))-1)/bs)
	defer unlock()
	if err := readView(l, p, off); err != nil {
		return err
	}
	fn(p)
	return nil
}

func zeroLayer(l *layer, off, end int64) error {
	aLo := (off + bs - 1) / bs * bs
	aHi := end / bs * bs
	if aLo >= aHi {
		return writeLayer(l, zeroBlock[:end-off], off)
	}
	if off < aLo {
		if err := writeLayer(l, zeroBlock[:aLo-off], off); err != nil {
			return err
		}
	}
	if aHi < end {
		if err := writeLayer(l, zeroBlock[:end-aHi], aHi); err != nil {
			return err
		}
	}
	if f := l.data(); f != nil { // else nothing is stored to punch
		if err := punchHole(f, aLo, aHi-aLo); err != nil {
			return err
		}
	}
	lo, hi := uint64(aLo/bs), uint64(aHi/bs)
	below := resolve(l.parent, lo, hi, nil)
	l.mu.Lock()
	l.present.ClearRange(lo, hi)
	l.zero.ClearRange(lo, hi)
	for _, pc := range below {
		if pc.l != nil {
			l.zero.SetRange(pc.lo, pc.hi)
		}
	}
	l.mu.Unlock()
	l.unsynced.Store(true)
	return nil
}

// allocation describes [off, off+length) of the view topped by l as
// extents that are data or zero (unallocated).
func allocation(l *layer, off, length int64) []array.Extent {
	end := off + length
	var out []array.Extent
	for _, pc := range resolve(l, uint64(off/bs), uint64((end+bs-1)/bs), nil) {
		e := array.Extent{Offset: max(int64(pc.lo)*bs, off), Zero: pc.l == nil}
		e.Length = min(int64(pc.hi)*bs, end) - e.Offset
		if n := len(out); n > 0 && out[n-1].Zero == e.Zero {
			out[n-1].Length += e.Length
			continue
		}
		out = append(out, e)
	}
	return out
}

// Handle is direct access to one volume or snapshot for the data path,
// without a name lookup per request.
type Handle struct {
	s     *Store
	v     *volume
	snap  *snapshot
	grant *grant // set for NBD and iSCSI connections; revoking it ends their I/O
	// host is the iSCSI host the handle was opened for: its preferred
	// arrays shape the paths it is told about.
	host *host
}

// OpenVolume returns a read-write handle on a volume.
func (s *Store) OpenVolume(ctx context.Context, name string) (*Handle, error) {
	v, err := s.lookup(ctx, name)
	if err != nil {
		return nil, err
	}
	return &Handle{s: s, v: v}, nil
}

// OpenSnapshot returns a read-only handle on a snapshot.
func (s *Store) OpenSnapshot(ctx context.Context, volume, name string) (*Handle, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	v, sn, err := s.snapshotLocked(volume, name)
	if err != nil {
		return nil, err
	}
	return &Handle{s: s, v: v, snap: sn}, nil
}

// Name returns "volume" or "volume@snapshot".
func (h *Handle) Name() string {
	if h.snap != nil {
		return h.snap.rec.Volume + "@" + h.snap.rec.Name
	}
	return h.v.rec.Name
}

// Serial is the serial of the logical unit the handle serves: its
// volume's, or its snapshot's own.
func (h *Handle) Serial() string {
	h.s.mu.RLock()
	defer h.s.mu.RUnlock()
	return unitSerial(h.v, h.snap)
}

// ReadOnly reports whether writes are refused.
func (h *Handle) ReadOnly() bool {
	if h.snap != nil || (h.grant != nil && h.grant.readOnly) {
		return true
	}
	// A replica target is promoted or demoted while handles are open; a
	// pod's copy takes writes through its forwarder.
	h.s.io.RLock()
	defer h.s.io.RUnlock()
	f, m := h.v.route(fromClient)
	return h.v.rec.ReadOnly && f == nil && m == nil
}

// PathReporter is a Mirror or Forwarder that says how hosts should use
// this array's paths to the volume: a pod's copy is optimized where its
// writes are sequenced, non-optimized where they are forwarded, and
// unavailable where it takes none (stopped by the mediator, cut off).
// Path is asked on every SCSI command, so it must not wait.
type PathReporter interface {
	Path() array.Path
}

// Path reports the volume's ALUA state here: its forwarder's on a pod's
// non-preferred copy, its mirror's when the mirror reports one, optimized
// otherwise (a snapshot, an unreplicated volume, a promoted copy). For a
// pod's copy, the host's preferred arrays, when it has any, decide which
// of the states that take I/O it sees (host.forHost).
func (h *Handle) Path() array.Path {
	if h.snap != nil {
		return array.Path{State: array.PathOptimized}
	}
	return h.s.pathOf(h.v, h.host)
}

// pathOf is v's ALUA state here as host (nil: any host) is told it.
func (s *Store) pathOf(v *volume, host *host) array.Path {
	var r any
	if f, m := s.clientRoute(v); f != nil {
		r = f
	} else {
		r = m
	}
	if r, ok := r.(PathReporter); ok {
		if host != nil {
			return host.forHost(r.Path())
		}
		return r.Path()
	}
	return array.Path{State: array.PathOptimized}
}

// revoked fails I/O through an export that has been revoked since the
// connection opened it.
func (h *Handle) revoked() error {
	if h.grant != nil && h.grant.revoked.Load() {
		return fmt.Errorf("%w: %w", ErrRevoked, errdefs.FailedPrecondition("the attachment of %s was terminated", h.Name()))
	}
	return nil
}

// Size returns the current size in bytes.
func (h *Handle) Size() int64 {
	h.s.io.RLock()
	defer h.s.io.RUnlock()
	if h.snap != nil {
		return h.snap.rec.Size
	}
	return h.v.rec.Size
}

// begin pins the handle's view; the caller must h.s.io.RUnlock.
func (h *Handle) begin() (*layer, int64, error) {
	if h.snap == nil {
		return h.s.beginIO(h.v)
	}
	h.s.io.RLock()
	if h.s.closed.Load() || h.snap.deleted {
		h.s.io.RUnlock()
		return nil, 0, errdefs.NotFound("snapshot %s was deleted", h.Name())
	}
	return h.snap.layer, h.snap.rec.Size, nil
}

// writable refuses a write through a revoked export or to a read-only
// view.
func (h *Handle) writable() error {
	if err := h.revoked(); err != nil {
		return err
	}
	if h.ReadOnly() {
		return h.readOnlyErr()
	}
	return nil
}

func (h *Handle) readOnlyErr() error {
	return errdefs.FailedPrecondition("%s is read-only", h.Name())
}

// ReadAt fills p from off.
func (h *Handle) ReadAt(ctx context.Context, p []byte, off int64) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := h.revoked(); err != nil {
		return err
	}
	if err := h.throttle(ctx, false, int64(len(p))); err != nil {
		return err
	}
	l, size, err := h.begin()
	if err != nil {
		return err
	}
	defer h.s.io.RUnlock()
	if err := checkRange(h.Name(), off, int64(len(p)), size); err != nil {
		return err
	}
	return readView(l, p, off)
}

// ErrWouldBlock is returned by the NoWait methods of a Handle when the
// request cannot be served without waiting: for the disk, or for a sync
// mirror's peer. The caller then makes the ordinary call, from a goroutine
// that may wait.
var ErrWouldBlock = errors.New("store: the request would wait")

// ReadAtNoWait is ReadAt serving only what the page cache holds; otherwise
// it returns ErrWouldBlock (p may then be partly filled).
func (h *Handle) ReadAtNoWait(ctx context.Context, p []byte, off int64) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := h.revoked(); err != nil {
		return err
	}
	r, err := h.throttleNoWait(false, int64(len(p)))
	if err != nil {
		return err
	}
	l, size, err := h.begin()
	if err != nil {
		return err
	}
	defer h.s.io.RUnlock()
	if err := checkRange(h.Name(), off, int64(len(p)), size); err != nil {
		return err
	}
	err = readViewWith(l, p, off, readFullNoWait)
	if errors.Is(err, ErrWouldBlock) {
		// ReadAt, which the caller makes next, counts the request.
		r.cancel()
	}
	return err
}

// WriteAtNoWait is WriteAt without fua, for writes that go straight to the
// page cache: whole blocks of a volume without a mirror. Anything else
// returns ErrWouldBlock before changing anything (a partial block may have
// to be read from the disk first, and a mirrored write waits for the peer).
func (h *Handle) WriteAtNoWait(ctx context.Context, p []byte, off int64) error {
	if off%bs != 0 || len(p)%bs != 0 {
		return ErrWouldBlock
	}
	h.s.io.RLock()
	mirrored, held := h.v.mirror != nil || h.v.forward != nil, h.v.hold != nil
	h.s.io.RUnlock()
	if mirrored || held {
		return ErrWouldBlock
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if _, err := h.throttleNoWait(true, int64(len(p))); err != nil {
		return err
	}
	return h.write(ctx, p, off, false)
}

// WriteAt writes p at off; with fua it is durable on return.
func (h *Handle) WriteAt(ctx context.Context, p []byte, off int64, fua bool) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := h.throttle(ctx, true, int64(len(p))); err != nil {
		return err
	}
	return h.write(ctx, p, off, fua)
}

// write is WriteAt once the request's QoS tokens are taken.
func (h *Handle) write(ctx context.Context, p []byte, off int64, fua bool) error {
	if err := h.writable(); err != nil {
		return err
	}
	return h.s.space(gated(ctx, func() error { return h.s.write(ctx, h.v, p, off, fua, fromClient) }))
}

// WriteTagged applies a write here, queues it to the volume's mirror with
// tag, and returns without waiting for the peer: the preferred array of a
// pod answers a forwarded write once it is applied here, and the peer
// completes it once the tagged copy is applied there. wait then waits for
// the peer's acknowledgement; it must be called.
func (h *Handle) WriteTagged(ctx context.Context, p []byte, off int64, tag MirrorTag) (wait Wait, err error) {
	return h.changeTagged(ctx, nil, p, off, tag)
}

// CompareAndWriteTagged is WriteTagged for a COMPARE AND WRITE that the
// pod's peer forwarded: p is written only if the volume holds cmp at off
// (else *MiscompareError, and nothing is written or mirrored).
func (h *Handle) CompareAndWriteTagged(ctx context.Context, cmp, p []byte, off int64, tag MirrorTag) (wait Wait, err error) {
	c, err := newComparison(cmp, p, off)
	if err != nil {
		return noWait, err
	}
	return h.changeTagged(ctx, c, p, off, tag)
}

// changeTagged is WriteTagged and CompareAndWriteTagged. Its wait is never
// nil, whatever the error: the caller calls it either way.
func (h *Handle) changeTagged(ctx context.Context, cmp *comparison, p []byte, off int64, tag MirrorTag) (wait Wait, err error) {
	err = ctx.Err()
	if err == nil {
		err = h.throttle(ctx, true, int64(len(p)))
	}
	if err == nil {
		err = h.writable()
	}
	if err == nil {
		err = h.s.space(gated(ctx, func() error {
			wait, err = h.s.applyChange(ctx, h.v, off, int64(len(p)), fromClient, cmp, writeTo(off, p, tag),
				func(l *layer) error { return writeLayer(l, p, off) })
			return err
		}))
	}
	if err != nil || wait == nil {
		return noWait, err
	}
	return wait, nil
}

// noWait is the wait of a change that has nothing to wait for.
func noWait(context.Context) error { return nil }

// MiscompareError is CompareAndWrite's refusal: the volume's bytes differ
// from the expected ones, first at Offset (from the start of the range).
type MiscompareError struct{ Offset int }

func (e *MiscompareError) Error() string {
	return fmt.Sprintf("the volume's data differ from the expected data at byte %d of the range", e.Offset)
}

// comparison is a COMPARE AND WRITE's condition: the volume must hold
// want at off for p to be written there.
type comparison struct {
	off     int64
	want, p []byte
}

func newComparison(want, p []byte, off int64) (*comparison, error) {
	if len(want) != len(p) {
		return nil, errdefs.InvalidArgument("data", "compare and write needs as many bytes to compare (%d) as to write (%d)", len(want), len(p))
	}
	return &comparison{off: off, want: want, p: p}, nil
}

// check compares the view through l with want; called with the blocks
// locked.
func (c *comparison) check(l *layer) error {
	cur := make([]byte, len(c.want))
	if err := readView(l, cur, c.off); err != nil {
		return err
	}
	for i := range cur {
		if cur[i] != c.want[i] {
			return &MiscompareError{Offset: i}
		}
	}
	return nil
}

// CompareAndWrite writes p at off only if the volume holds cmp there
// (len(cmp) == len(p)), atomically against every other write to the
// volume, whatever protocol it came by: the comparison runs under the
// blocks' locks that every write takes, and no lock is held while a sync
// peer is awaited. At a pod's non-preferred array the comparison runs at
// the preferred array, which orders every write to the pod.
func (h *Handle) CompareAndWrite(ctx context.Context, cmp, p []byte, off int64, fua bool) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	c, err := newComparison(cmp, p, off)
	if err != nil {
		return err
	}
	if err := h.throttle(ctx, true, int64(len(p))); err != nil {
		return err
	}
	if err := h.writable(); err != nil {
		return err
	}
	return h.s.space(gated(ctx, func() error {
		return h.s.change(ctx, h.v, off, int64(len(p)), fua, fromClient, c,
			writeTo(off, p, MirrorTag{}),
			func(l *layer) error { return writeLayer(l, p, off) })
	}))
}

// Flush makes every acknowledged write to the volume durable, whichever
// handle or connection made it.
func (h *Handle) Flush(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := h.revoked(); err != nil {
		return err
	}
	if h.snap != nil {
		return nil
	}
	return h.s.space(h.s.flush(ctx, h.v))
}

// Zero makes a range read as zeros, freeing whole blocks. For QoS it is
// one write operation of no bytes: no data crosses the wire.
func (h *Handle) Zero(ctx context.Context, off, length int64, fua bool) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := h.revoked(); err != nil {
		return err
	}
	if err := h.throttle(ctx, true, 0); err != nil {
		return err
	}
	if h.ReadOnly() {
		return h.readOnlyErr()
	}
	return h.s.space(gated(ctx, func() error { return h.s.zeroRange(ctx, h.v, off, length, fua, fromClient) }))
}

// Allocation describes a range as data and zero extents.
func (h *Handle) Allocation(ctx context.Context, off, length int64) ([]array.Extent, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := h.revoked(); err != nil {
		return nil, err
	}
	l, size, err := h.begin()
	if err != nil {
		return nil, err
	}
	defer h.s.io.RUnlock()
	if err := checkRange(h.Name(), off, length, size); err != nil {
		return nil, err
	}
	return allocation(l, off, length), nil
}
