package replication

import (
	"context"
	"encoding/json"
	"strings"
	"time"

	"github.com/volrep/volrep/errdefs"
)

// recPodLeft records, by pod/volume, the peer's copy of a former pod
// member that the peer did not delete in time when the member left. The
// pod's steps delete it once the peer answers again, across restarts of
// this array; a member that rejoins the pod takes its copy back instead.
const recPodLeft = "pod-left"

// leftWarnEvery is how often a copy the peer keeps refusing to delete is
// named again in a warning; the retries between are logged at debug.
const leftWarnEvery = 10 * time.Minute

// leftCopy is the peer's copy of a former member, still to be deleted.
type leftCopy struct {
	remote string
	// gen tells this leave from an earlier one of the same volume: a
	// deletion begun for the earlier one must not forget this one.
	gen    uint64
	since  time.Time // when the member left, kept across restarts
	tries  int       // deletions the peer refused or did not answer, in this run
	warned time.Time
}

// leftRec is a left copy's record. Records from before it held the
// peer's volume name alone, which loads as a copy left when it loads.
type leftRec struct {
	Remote string    `json:"remote"`
	Since  time.Time `json:"since"`
}

// leftKey is the record key of a former member's copy.
func (p *pod) leftKey(local string) string { return p.name + "/" + local }

// addLeftLocked remembers a copy left at the peer since since. Called
// with p.leftMu held.
func (p *pod) addLeftLocked(local, remote string, since time.Time) *leftCopy {
	p.leftGen++
	c := &leftCopy{remote: remote, gen: p.leftGen, since: since, warned: p.e.opts.Clock.Now()}
	p.left[local] = c
	return c
}

// dropFormer deletes the peer's copy of a member that left the pod, within
// the pod's timeout: the caller is the change of the group (a volume
// deleted or moved out), which must not wait on a peer that does not
// answer. A copy the peer did not delete is recorded, and the pod's steps
// delete it later (dropLeft).
func (p *pod) dropFormer(ctx context.Context, m *podMember) {
	dctx, cancel := context.WithTimeout(ctx, p.timeout)
	err := p.e.dropRemote(dctx, p.l, m.remote)
	cancel()
	if err != nil {
		p.recordLeft(ctx, m.local, m.remote, err)
	}
}

// recordLeft remembers, and records for after a restart, the copy a
// former member left at the peer, which did not delete it (cause).
func (p *pod) recordLeft(ctx context.Context, local, remote string, cause error) {
	p.leftMu.Lock()
	defer p.leftMu.Unlock()
	c := p.addLeftLocked(local, remote, p.e.opts.Clock.Now())
	rec, rerr := json.Marshal(leftRec{Remote: remote, Since: c.since.UTC()})
	if rerr == nil {
		rerr = p.e.s.PutRecord(ctx, recPodLeft, p.leftKey(local), rec)
	}
	if rerr != nil {
		p.e.log.Warn("removing the peer's copy of a former pod member; the pod retries while it runs, but could not record it for after a restart: "+
			"delete it at the peer if this array restarts first", "pod", p.name, "volume", local, "peer_volume", remote, "err", cause, "record_err", rerr)
		return
	}
	p.e.log.Warn("removing the peer's copy of a former pod member; the pod retries while it runs", "pod", p.name, "volume", local,
		"peer_volume", remote, "err", cause)
}

// loadLeft reads the copies a former run of the pod left at the peer.
func (p *pod) loadLeft(ctx context.Context) error {
	prefix := p.name + "/"
	p.leftMu.Lock()
	defer p.leftMu.Unlock()
	return p.e.s.Records(ctx, recPodLeft, prefix, func(k string, data []byte) error {
		var rec leftRec
		if json.Unmarshal(data, &rec) != nil || rec.Remote == "" {
			rec = leftRec{Remote: string(data), Since: p.e.opts.Clock.Now()}
		}
		p.addLeftLocked(strings.TrimPrefix(k, prefix), rec.Remote, rec.Since)
		return nil
	})
}

// copyOf says whether the peer's volume remote is still a copy of local,
// by the labels of the transfer that made it (the pod's initial copy, or a
// protection group's before the volume moved into the pod).
func (p *pod) copyOf(ctx context.Context, local, remote string) (bool, error) {
	v, err := p.l.peer.GetVolume(ctx, remote)
	if errdefs.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return v.Labels[LabelSourceVolume] == local && v.Labels[LabelSourceArray] == p.e.id, nil
}

// rejoined forgets the left copy of a volume that is a member again: the
// copy is the member's own once more, and its initial copy brings it up
// to date.
func (p *pod) rejoined(ctx context.Context, local string) error {
	p.leftMu.Lock()
	defer p.leftMu.Unlock()
	if _, ok := p.left[local]; !ok {
		return nil
	}
	delete(p.left, local)
	return p.e.s.DeleteRecord(ctx, recPodLeft, p.leftKey(local))
}

// dropLeft deletes, each within the pod's timeout, the peer's copies of
// former members that were left there; the pod calls it at each step that
// ends in sync. A copy still left is tried again at the next such step;
// another replica that now covers the volume keeps it, and a volume at
// the peer that is no longer this pod's copy of it (gone, or replaced
// there by another volume of its name) is left alone.
func (p *pod) dropLeft(ctx context.Context) {
	p.leftMu.Lock()
	left := make(map[string]leftCopy, len(p.left))
	for local, c := range p.left {
		left[local] = *c
	}
	p.leftMu.Unlock()
	for local, c := range left {
		p.mu.Lock()
		_, member := p.members[local]
		p.mu.Unlock()
		if member {
			continue // rejoined: refresh forgets it
		}
		p.settleLeft(ctx, local, c.gen, p.dropLeftCopy(ctx, local, c.remote))
	}
}

// settleLeft notes how the deletion of a left copy, begun for the leave
// numbered gen, ended: forgotten (err nil) or still there. A volume that
// rejoined the pod and left again meanwhile left a newer copy, which is
// not this deletion's to forget.
func (p *pod) settleLeft(ctx context.Context, local string, gen uint64, err error) {
	p.leftMu.Lock()
	defer p.leftMu.Unlock()
	c := p.left[local]
	switch {
	case c == nil || c.gen != gen:
	case err == nil:
		delete(p.left, local)
		_ = p.e.s.DeleteRecord(ctx, recPodLeft, p.leftKey(local))
	default:
		p.refusedLocked(local, c, err)
	}
}

// refusedLocked logs a left copy the peer did not delete again: at debug
// each time, and as a warning every leftWarnEvery while it stays, so an
// operator hears of a copy the peer keeps refusing (one exported there,
// say) and not only of the first attempt. Called with p.leftMu held.
func (p *pod) refusedLocked(local string, c *leftCopy, err error) {
	c.tries++
	now := p.e.opts.Clock.Now()
	if now.Sub(c.warned) < leftWarnEvery {
		p.e.log.Debug("the peer's copy of a former pod member is still there; retried at the next step", "pod", p.name,
			"peer_volume", c.remote, "err", err)
		return
	}
	c.warned = now
	p.e.log.Warn("the peer still refuses to remove the copy of a former pod member; the pod keeps trying: "+
		"free the volume at the peer (unexport or detach it), or delete it there",
		"pod", p.name, "volume", local, "peer_volume", c.remote, "since", c.since.UTC().Format(time.RFC3339), "tries", c.tries, "err", err)
}

// dropLeftCopy deletes one copy left at the peer. It returns nil once the
// copy is dealt with, and otherwise why it is still there.
func (p *pod) dropLeftCopy(ctx context.Context, local, remote string) error {
	if p.e.coveredElsewhere(ctx, p.name, local) {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	ours, err := p.copyOf(ctx, local, remote)
	if err == nil && !ours {
		p.e.log.Info("the peer holds no copy of a former pod member under its name any more; nothing to remove", "pod", p.name,
			"volume", local, "peer_volume", remote)
		return nil
	}
	if err == nil {
		err = p.e.dropRemote(ctx, p.l, remote)
	}
	if err != nil {
		return err
	}
	p.e.log.Info("removed the peer's copy of a former pod member", "pod", p.name, "volume", local, "peer_volume", remote)
	return nil
}
