package transfer

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/volrep/volrep/array"
	"github.com/volrep/volrep/array/bitmap"
	"github.com/volrep/volrep/array/mediator"
	"github.com/volrep/volrep/array/store"
	"github.com/volrep/volrep/errdefs"
)

// A pod's non-preferred array carries the pod alone when the preferred
// array is gone from both this array and the pod's mediator: the
// preferred array's lease at the mediator ends, this array takes the
// pod's key (ClaimToCarry, which also sets its mark there, so the
// preferred array cannot take the key back over writes it lacks), and its
// copies take client writes here, each block recorded. When the preferred
// array is back it takes those blocks (Reclaim), and this array gives the
// key and its mark up.
//
// This array carries a pod only when everything says its copy is
// complete: the pod was in sync when its forward stream ended, and the
// preferred array uses a mediator (which it must hold, and mark, before
// it acknowledges a write this copy lacks).

const recCarried = "pod-carried"

// carrying is a pod this array carries.
type carrying struct {
	pod *podForward
	s   *store.Store
	// medName is the pod's name at the mediator (podForward.medName) as
	// carrying began, kept in the record for a restart.
	medName string

	mu sync.Mutex
	// dirty: blocks changed here since carrying began, by volume, kept
	// until the preferred array has them; fresh: those changed since the
	// current reclaim round began.
	dirty, fresh map[string]*bitmap.Bitmap
	changed      bool // dirty or intent not yet persisted
	// intent: the runs of blocks changed here since carrying began (see
	// intend); recorded: the intent the newest record holds. persistMu
	// keeps one persist at a time.
	intent, recorded map[string]*bitmap.Bitmap
	persistMu        sync.Mutex
	handing          bool // the last reclaim round: writes are refused
	// reclaiming numbers the Reclaim stream handing the pod back now (0:
	// none), from reclaims; a stream that gave its slot up (lastRound's
	// watchdog) then cannot clear a later stream's.
	reclaiming, reclaims uint64
	copies               map[string]*carriedCopy
	// admitted counts writes admitted and not yet recorded: the last
	// reclaim round waits for them.
	admitted atomic.Int64
}

func newCarrying(s *store.Store, p *podForward, volumes []string) *carrying {
	c := &carrying{pod: p, s: s, dirty: map[string]*bitmap.Bitmap{}, fresh: map[string]*bitmap.Bitmap{}, copies: map[string]*carriedCopy{},
		intent: map[string]*bitmap.Bitmap{}, recorded: map[string]*bitmap.Bitmap{}}
	for _, v := range volumes {
		c.dirty[v], c.fresh[v], c.intent[v] = bitmap.New(), bitmap.New(), bitmap.New()
		c.copies[v] = &carriedCopy{c: c, volume: v}
	}
	return c
}

func (c *carrying) volumes() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Sorted(maps.Keys(c.copies))
}

func (c *carrying) mark(volume string, off, length int64) {
	lo, hi := uint64(off/blockSize), uint64((off+length+blockSize-1)/blockSize)
	c.mu.Lock()
	if d := c.dirty[volume]; d != nil {
		d.SetRange(lo, hi)
		c.fresh[volume].SetRange(lo, hi)
		c.changed = true
	}
	c.mu.Unlock()
}

type carriedRec struct {
	Volumes []string          `json:"volumes"`
	Dirty   map[string][]byte `json:"dirty"`
	// Intent: every block changed here since carrying began, recorded
	// (in intentBlocks-aligned runs) before the change reached the copy,
	// so it holds after an unclean stop too. Records from before it
	// existed have none, and then the whole copies are resent.
	Intent map[string][]byte `json:"intent,omitempty"`
	// MediatorName is the pod's name at the mediator while this array
	// carries it; records from before it existed used the pod's name.
	MediatorName string `json:"mediator_name,omitempty"`
}

// intentBlocks is the run of blocks one intent record covers (4 MiB of
// 4 KiB blocks): a change to a run not yet recorded waits for one
// metadata commit, and every later change to that run waits for none,
// so scattered writes cost at most one commit per 4 MiB of the copy.
const intentBlocks = 1024

// intentRun is the run of whole intentBlocks that blocks [off,
// off+length) fall in.
func intentRun(off, length int64) (lo, hi uint64) {
	lo = uint64(off/blockSize) / intentBlocks * intentBlocks
	hi = (uint64((off+max(length, 1)+blockSize-1)/blockSize) + intentBlocks - 1) / intentBlocks * intentBlocks
	return lo, hi
}

// recordedRange says the newest record's intent names every block of
// [off, off+length) of volume.
func (c *carrying) recordedRange(volume string, off, length int64) bool {
	lo, hi := intentRun(off, length)
	c.mu.Lock()
	defer c.mu.Unlock()
	rec := c.recorded[volume]
	return rec != nil && rec.NextClear(lo) >= hi
}

// intend makes sure the carried pod's record names the blocks of a
// change before the change reaches the copy, the way a RAID write-intent
// bitmap does: after an unclean stop the record then still holds every
// block this array changed, and the preferred array takes back those
// rather than the whole copies. The intent only grows while the pod is
// carried, so a run once recorded stays recorded.
func (c *carrying) intend(ctx context.Context, volume string, off, length int64) error {
	lo, hi := intentRun(off, length)
	c.mu.Lock()
	in := c.intent[volume]
	if in == nil {
		c.mu.Unlock()
		return errdefs.FailedPrecondition("volume %q is not a copy of carried pod %s", volume, c.pod.name)
	}
	in.SetRange(lo, hi)
	c.changed = true
	c.mu.Unlock()
	return c.persist(ctx, false)
}

// persist stores the carried pod's record: written before the first write
// is taken, before a change to blocks its intent does not name yet, and
// with every flush, so a restart of this array still knows which blocks
// the preferred array lacks. One at a time, so that recorded is what the
// newest record holds.
func (c *carrying) persist(ctx context.Context, force bool) error {
	c.persistMu.Lock()
	defer c.persistMu.Unlock()
	c.mu.Lock()
	if !c.changed && !force {
		c.mu.Unlock()
		return nil
	}
	rec := carriedRec{Dirty: map[string][]byte{}, Intent: map[string][]byte{}, MediatorName: c.medName}
	recorded := map[string]*bitmap.Bitmap{}
	for v, d := range c.dirty {
		rec.Volumes = append(rec.Volumes, v)
		data, err := d.Encode()
		if err == nil {
			recorded[v] = c.intent[v].Clone()
			rec.Intent[v], err = recorded[v].Encode()
		}
		if err != nil {
			c.mu.Unlock()
			return err
		}
		rec.Dirty[v] = data
	}
	c.changed = false
	c.mu.Unlock()
	data, err := json.Marshal(rec)
	if err == nil {
		err = c.s.PutRecord(ctx, recCarried, c.pod.name, data)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if err != nil {
		c.changed = true
		return err
	}
	c.recorded = recorded
	return nil
}

// held says this array may take the pod's writes: it holds the key.
func (c *carrying) held() bool {
	p := c.pod
	p.mu.Lock()
	cl := p.claim
	p.mu.Unlock()
	return cl != nil && cl.Held()
}

func (c *carrying) refusal() error {
	c.mu.Lock()
	handing := c.handing
	c.mu.Unlock()
	if handing {
		return &array.PodStoppedError{Err: errdefs.Unavailable("pod %s: this array is handing the pod back to its preferred array; writes go there in a moment", c.pod.name)}
	}
	if !c.held() {
		return &array.PodStoppedError{Err: errdefs.Unavailable("pod %s: this array carries the pod but cannot prove it still holds the pod's key at the mediator; "+
			"writes resume by themselves when the mediator or the preferred array is back", c.pod.name)}
	}
	return nil
}

// carriedCopy is one copy's store.Mirror while its pod is carried here:
// the change is applied here and recorded for the preferred array.
type carriedCopy struct {
	c      *carrying
	volume string
}

// Admit refuses writes while this array cannot prove it holds the key,
// and during the last reclaim round (store.Admitter).
func (m *carriedCopy) Admit() error {
	m.c.admitted.Add(1)
	if err := m.c.refusal(); err != nil {
		m.c.admitted.Add(-1)
		return err
	}
	return nil
}

// Recorded and Record keep the carried pod's intent (store.Recorder): the
// blocks a change touches are in the pod's record before they change.
func (m *carriedCopy) Recorded(off, length int64) bool {
	return m.c.recordedRange(m.volume, off, length)
}

func (m *carriedCopy) Record(ctx context.Context, off, length int64) error {
	return m.c.intend(ctx, m.volume, off, length)
}

// Resize refuses (store.Resizer): the preferred array, which keeps the
// pod's sizes, cannot grow with this copy while cut off from it, and
// takes back only blocks within its own size.
func (m *carriedCopy) Resize(context.Context, int64) error {
	return errdefs.FailedPrecondition("volume %q is carried here for pod %s while its preferred array is cut off from this array; "+
		"extend it at the preferred array once the pod is back in sync (volrep replication info shows the pod's state)", m.volume, m.c.pod.name)
}

func (m *carriedCopy) Write(off int64, p []byte) store.Wait {
	m.c.mark(m.volume, off, int64(len(p)))
	m.c.admitted.Add(-1)
	return nil
}

func (m *carriedCopy) Zero(off, length int64) store.Wait {
	m.c.mark(m.volume, off, length)
	m.c.admitted.Add(-1)
	return nil
}

// Flush persists what the carry changed, a local commit that the carried
// pod's later resync needs even if the client has gone.
func (m *carriedCopy) Flush(context.Context) error {
	return m.c.persist(context.Background(), false)
}

func (m *carriedCopy) Diverged(off, length int64) { m.c.mark(m.volume, off, length) }

// Path: the carrying array is the only one that takes the pod's writes.
func (m *carriedCopy) Path() array.Path {
	if m.c.refusal() != nil {
		return array.Path{State: array.PathUnavailable}
	}
	return array.Path{State: array.PathOptimized, Preferred: true, Alone: true}
}

// ShareReservations: while this array carries the pod it decides the
// volume's persistent reservations alone; the preferred array takes the
// newer state when it opens its next mirror stream (store.ReservationSharer).
func (m *carriedCopy) ShareReservations(context.Context, []byte) ([]byte, error) { return nil, nil }

func (m *carriedCopy) SharesReservations() bool { return true }

var (
	_ store.ReservationSharer = (*carriedCopy)(nil)
	_ store.Mirror            = (*carriedCopy)(nil)
	_ store.Admitter          = (*carriedCopy)(nil)
	_ store.Recorder          = (*carriedCopy)(nil)
	_ store.Resizer           = (*carriedCopy)(nil)
	_ store.PathReporter      = (*carriedCopy)(nil)
)

// Carry is store.Carrier: the carried copy while this array carries the
// pod, else nil (changes are forwarded).
func (v *volumeForward) Carry() store.Mirror {
	v.p.mu.Lock()
	c := v.p.carry
	v.p.mu.Unlock()
	if c == nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if m := c.copies[v.volume]; m != nil {
		return m
	}
	return nil
}

func (v *volumeForward) Pod() string { return v.p.name }

var _ store.Carrier = (*volumeForward)(nil)

// lost is called when the pod's forward stream ended: when the pod was
// in sync and its preferred array uses a mediator, this array asks the
// mediator for the pod, and carries it once it holds the key.
func (t *Service) lost(p *podForward, wasInSync bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if t.med == nil || !p.mediated || !wasInSync || p.claim != nil || p.carry != nil || p.unmarking {
		return
	}
	t.log.Info("the pod's preferred array is gone; asking the mediator for the pod", "pod", p.name)
	t.askToCarry(p)
}

// askToCarry starts asking the mediator for the pod. Called with p.mu
// held.
func (t *Service) askToCarry(p *podForward) {
	p.claim = t.med.ClaimToCarry(p.mediatorNameLocked(), t.id, p.preferred, func(st mediator.Status) { t.claimChanged(p, st) })
}

// claimChanged starts carrying the pod when this array took the key.
func (t *Service) claimChanged(p *podForward, st mediator.Status) {
	if !st.Held {
		p.mu.Lock()
		carried := p.carry != nil
		p.mu.Unlock()
		if carried {
			t.log.Error("this array carries the pod but lost its key at the mediator; its writes fail until the mediator or the preferred array is back", "pod", p.name)
		}
		return
	}
	p.mu.Lock()
	if p.carry != nil || p.sess != nil {
		p.mu.Unlock()
		return
	}
	c := newCarrying(t.s, p, slices.Sorted(maps.Keys(p.volumes)))
	c.medName = p.mediatorNameLocked()
	p.mu.Unlock()
	// The record is durable before the first write is taken.
	if err := c.persist(context.Background(), true); err != nil {
		t.log.Error("recording that this array carries the pod; it takes no writes", "pod", p.name, "err", err)
		return
	}
	p.mu.Lock()
	if p.carry != nil || p.sess != nil {
		p.mu.Unlock()
		return
	}
	// A mirror stream from the preferred array that is still open would
	// be a second writer: it is stopped before the first write is taken.
	for adm := range p.mirrors {
		adm.carried.Store(true)
	}
	p.mu.Unlock()
	p.stopMirrors()
	p.mu.Lock()
	if p.carry != nil || p.sess != nil {
		p.mu.Unlock()
		return
	}
	p.carry = c
	p.mu.Unlock()
	t.log.Warn("carrying the pod alone: the preferred array is gone from this array and from the mediator, which gave this array the pod's key; "+
		"its writes are taken here and sent to the preferred array when it is back", "pod", p.name, "volumes", c.volumes())
	if t.OnCarry != nil {
		t.OnCarry(p.name, true)
	}
}

// stopAsking ends a claim that has not led to carrying the pod (its
// preferred array is back): its mark goes with it.
func (t *Service) stopAsking(p *podForward) {
	p.mu.Lock()
	cl := p.claim
	if p.carry != nil {
		cl = nil
	} else {
		p.claim = nil
	}
	p.mu.Unlock()
	if cl == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), t.med.TTL())
	defer cancel()
	if err := cl.Release(ctx); err != nil {
		t.log.Warn("giving the pod's key up at the mediator; its lease ends by itself", "pod", p.name, "err", err)
		cl.Close(ctx)
	}
}

// admitMirror registers a mirror stream from the preferred array, or
// refuses it while this array carries the pod.
func (p *podForward) admitMirror(adm *mirrorAdmission) error {
	p.mu.Lock()
	if p.carry != nil {
		p.mu.Unlock()
		return errdefs.FailedPrecondition("pod %s is carried by this array, which took writes the preferred array lacks; the preferred array takes them back first (Reclaim)", p.name)
	}
	if p.mirrors == nil {
		p.mirrors = map[*mirrorAdmission]bool{}
	}
	// The preferred array keeps one mirror stream per pod: it opens a new
	// one only after giving up on the last, whose unacknowledged changes
	// it resends. Whatever of the old stream is still to be read here
	// must not land after the new stream's changes.
	for old := range p.mirrors {
		if old.source == adm.source {
			old.superseded.Store(true)
		}
	}
	p.mirrors[adm] = true
	p.mu.Unlock()
	p.stopMirrors()
	return nil
}

// stopMirrors waits for the change a stopped mirror stream may be
// applying; the flags set before it keep the stream from applying more.
func (p *podForward) stopMirrors() {
	p.applyMu.Lock()
	defer p.applyMu.Unlock()
}

func (p *podForward) mirrorDone(adm *mirrorAdmission) {
	p.mu.Lock()
	delete(p.mirrors, adm)
	p.mu.Unlock()
}

// restoreCarried loads the pods this array carried when it stopped: their
// copies stay writable here only once the key is held again, and the
// preferred array still gets every block (all of them after an unclean
// stop, when writes may have reached the copies without the record).
func (t *Service) restoreCarried(ctx context.Context) error {
	type restored struct {
		name string
		rec  carriedRec
	}
	var all []restored
	err := t.s.Records(ctx, recCarried, "", func(k string, data []byte) error {
		var rec carriedRec
		if err := json.Unmarshal(data, &rec); err != nil {
			return fmt.Errorf("record of carried pod %s: %w", k, err)
		}
		all = append(all, restored{k, rec})
		return nil
	})
	if err != nil {
		return err
	}
	for _, r := range all {
		p := t.fwd.pod(r.name)
		c := newCarrying(t.s, p, r.rec.Volumes)
		c.medName = r.rec.MediatorName
		for _, v := range r.rec.Volumes {
			vol, verr := t.s.GetVolume(ctx, v)
			if verr != nil {
				continue
			}
			d, in, ok := restoredBlocks(r.rec, v, t.s.WasClean())
			if !ok {
				d = bitmap.New()
				d.SetRange(0, uint64((vol.SizeBytes+blockSize-1)/blockSize))
			}
			c.dirty[v], c.fresh[v], c.intent[v], c.recorded[v] = d, d.Clone(), in, in.Clone()
			if err := t.restoreCopy(ctx, p, v); err != nil {
				return err
			}
		}
		p.mu.Lock()
		p.carry, p.mediated, p.medName = c, true, r.rec.MediatorName
		if t.med != nil {
			t.askToCarry(p)
		}
		p.mu.Unlock()
		t.log.Warn("this array carried the pod when it stopped; it takes writes again once it holds the pod's key, and keeps every block for the preferred array",
			"pod", r.name, "volumes", r.rec.Volumes, "clean_stop", t.s.WasClean())
	}
	return nil
}

// recUnmark records the pods whose mark at the mediator this array must
// still clear: it handed them back while the mediator did not answer.
const recUnmark = "pod-unmark"

// unmarkRec is a recUnmark record: the pod's name at the mediator, empty
// in records from before names were scoped (the pod's name alone).
type unmarkRec struct {
	MediatorName string `json:"mediator_name,omitempty"`
}

// unmarkLater clears this array's mark on p at the mediator, trying again
// until the mediator answers or the service closes. The mark is this
// array's alone to clear: it stops asking for the pod until then
// (unmarking), so it sets no new mark that this could remove by mistake.
func (t *Service) unmarkLater(p *podForward, name string) {
	p.mu.Lock()
	p.unmarking = true
	p.mu.Unlock()
	t.bg.Add(1)
	go func() {
		defer t.bg.Done()
		tick := time.NewTicker(t.med.TTL() / 3)
		defer tick.Stop()
		for {
			ctx, cancel := context.WithTimeout(context.Background(), t.med.TTL())
			err := t.med.Unmark(ctx, name, t.id)
			if err == nil {
				err = t.s.DeleteRecord(ctx, recUnmark, p.name)
			}
			cancel()
			if err == nil {
				p.mu.Lock()
				p.unmarking = false
				p.mu.Unlock()
				t.log.Info("cleared this array's mark at the mediator, left from handing the pod back while the mediator did not answer", "pod", p.name)
				return
			}
			select {
			case <-t.stop:
				return
			case <-tick.C:
			}
		}
	}()
}

// forgetMarkCommand is the command that drops this array's mark on a pod
// at the mediator (named there mname), for an operator when this array
// cannot.
func (t *Service) forgetMarkCommand(mname string) string {
	return "volrep mediator forget-mark " + mname + " --array " + t.id + " --accept-data-loss --mediator etcd://HOST:PORT"
}

// restoreUnmarks resumes clearing the marks a hand-back left at a
// mediator that did not answer.
func (t *Service) restoreUnmarks(ctx context.Context) error {
	pods := map[string]string{} // the pod's name at the mediator, by its name
	if err := t.s.Records(ctx, recUnmark, "", func(k string, data []byte) error {
		var rec unmarkRec
		if err := json.Unmarshal(data, &rec); err != nil {
			return fmt.Errorf("record of pod %s's mark to clear: %w", k, err)
		}
		pods[k] = cmp.Or(rec.MediatorName, k)
		return nil
	}); err != nil {
		return err
	}
	for name, mname := range pods {
		if t.med == nil {
			t.log.Warn("this array handed a pod back while the mediator did not answer and has no mediator configured now: its mark stays there "+
				"until an operator drops it ("+t.forgetMarkCommand(mname)+"); the preferred array holds every block", "pod", name)
			continue
		}
		p := t.fwd.pod(name)
		p.mu.Lock()
		carried := p.carry != nil
		p.mu.Unlock()
		if carried {
			// Stopped before the hand-back finished: this array still
			// carries the pod, and its next hand-back clears the mark.
			if err := t.s.DeleteRecord(ctx, recUnmark, name); err != nil {
				return err
			}
			continue
		}
		t.unmarkLater(p, mname)
	}
	return nil
}

// restoredBlocks reads volume's blocks from a carried pod's record: those
// the preferred array lacks, and the intent. After an unclean stop the
// dirty blocks may miss changes made since the last flush, but not the
// intent, which named them before they were made; ok is false when the
// record cannot tell (no intent, from an older version, or undecodable),
// and then every block goes back.
func restoredBlocks(rec carriedRec, volume string, clean bool) (dirty, intent *bitmap.Bitmap, ok bool) {
	dirty, derr := bitmap.Decode(rec.Dirty[volume])
	data, logged := rec.Intent[volume]
	intent, ierr := bitmap.New(), error(nil)
	if logged {
		intent, ierr = bitmap.Decode(data)
	}
	switch {
	case derr != nil || ierr != nil:
		return nil, bitmap.New(), false
	case clean:
		return dirty, intent, true
	case !logged:
		return nil, intent, false
	}
	dirty.Or(intent)
	return dirty, intent, true
}

// Close ends the mediator claims; a carried pod's record is brought up
// to date, so a clean restart resends only the blocks changed.
func (t *Service) Close() {
	var claims []*mediator.Claim
	var carried []*carrying
	t.fwd.mu.Lock()
	for _, p := range t.fwd.pods {
		p.mu.Lock()
		if p.claim != nil {
			claims = append(claims, p.claim)
			p.claim = nil
		}
		if p.carry != nil {
			carried = append(carried, p.carry)
		}
		p.mu.Unlock()
	}
	t.fwd.mu.Unlock()
	for _, c := range carried {
		if err := c.persist(context.Background(), false); err != nil {
			t.log.Error("recording the blocks the carried pod changed: the record may miss those changed since the last flush, so compare the copies before trusting the hand-back", "pod", c.pod.name, "err", err)
		}
	}
	for _, cl := range claims {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		cl.Close(ctx)
		cancel()
	}
	t.stopOnce.Do(func() { close(t.stop) })
	t.bg.Wait()
	if t.med != nil {
		_ = t.med.Close()
	}
}
