package replication

import (
	"context"
	"maps"
	"strings"

	"github.com/volrep/volrep/errdefs"
)

// recPodLeft records, by pod/volume, the peer's copy of a former pod
// member that the peer did not delete in time when the member left. The
// pod's steps delete it once the peer answers again, across restarts of
// this array; a member that rejoins the pod takes its copy back instead.
const recPodLeft = "pod-left"

// leftKey is the record key of a former member's copy.
func (p *pod) leftKey(local string) string { return p.name + "/" + local }

// dropFormer deletes the peer's copy of a member that left the pod, within
// the pod's timeout: the caller is the change of the group (a volume
// deleted or moved out), which must not wait on a peer that does not
// answer. A copy the peer did not delete is recorded, and the pod's steps
// delete it later (dropLeft).
func (p *pod) dropFormer(ctx context.Context, m *podMember) {
	dctx, cancel := context.WithTimeout(ctx, p.timeout)
	err := p.e.dropRemote(dctx, p.l, m.remote)
	cancel()
	if err == nil {
		return
	}
	p.mu.Lock()
	p.left[m.local] = m.remote
	p.mu.Unlock()
	if rerr := p.e.s.PutRecord(ctx, recPodLeft, p.leftKey(m.local), []byte(m.remote)); rerr != nil {
		p.e.log.Warn("removing the peer's copy of a former pod member; the pod retries while it runs, but could not record it for after a restart: "+
			"delete it at the peer if this array restarts first", "pod", p.name, "volume", m.local, "peer_volume", m.remote, "err", err, "record_err", rerr)
		return
	}
	p.e.log.Warn("removing the peer's copy of a former pod member; the pod retries while it runs", "pod", p.name, "volume", m.local,
		"peer_volume", m.remote, "err", err)
}

// loadLeft reads the copies a former run of the pod left at the peer.
func (p *pod) loadLeft(ctx context.Context) error {
	prefix := p.name + "/"
	return p.e.s.Records(ctx, recPodLeft, func(k string, data []byte) error {
		if local, ok := strings.CutPrefix(k, prefix); ok {
			p.left[local] = string(data)
		}
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

// rejoinedLocked forgets the left copy of a volume that is a member
// again: the copy is the member's own once more, and its initial copy
// brings it up to date. Called with p.mu held; it returns the key of the
// record to delete.
func (p *pod) rejoinedLocked(local string) (key string, ok bool) {
	if _, ok := p.left[local]; !ok {
		return "", false
	}
	delete(p.left, local)
	return p.leftKey(local), true
}

// dropLeft deletes, each within the pod's timeout, the peer's copies of
// former members that were left there; the pod calls it at each step that
// ends in sync. A copy still left is tried again at the next such step; another replica that now covers the volume keeps it,
// and a volume at the peer that is no longer this pod's copy of it (gone,
// or replaced there by another volume of its name) is left alone.
func (p *pod) dropLeft(ctx context.Context) {
	p.mu.Lock()
	left := maps.Clone(p.left)
	p.mu.Unlock()
	for local, remote := range left {
		p.mu.Lock()
		_, member := p.members[local]
		still := p.left[local] == remote
		p.mu.Unlock()
		if member || !still {
			continue // rejoined: refresh forgot it
		}
		if !p.dropLeftCopy(ctx, local, remote) {
			continue
		}
		p.mu.Lock()
		if p.left[local] == remote {
			delete(p.left, local)
		}
		p.mu.Unlock()
		_ = p.e.s.DeleteRecord(ctx, recPodLeft, p.leftKey(local))
	}
}

// dropLeftCopy deletes one copy left at the peer, and says whether it is
// done with: false means try again at the next step.
func (p *pod) dropLeftCopy(ctx context.Context, local, remote string) bool {
	if p.e.coveredElsewhere(ctx, p.name, local) {
		return true
	}
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	ours, err := p.copyOf(ctx, local, remote)
	if err == nil && !ours {
		p.e.log.Info("the peer holds no copy of a former pod member under its name any more; nothing to remove", "pod", p.name,
			"volume", local, "peer_volume", remote)
		return true
	}
	if err == nil {
		err = p.e.dropRemote(ctx, p.l, remote)
	}
	if err != nil {
		p.e.log.Debug("the peer's copy of a former pod member is still there; retried at the next step", "pod", p.name,
			"peer_volume", remote, "err", err)
		return false
	}
	p.e.log.Info("removed the peer's copy of a former pod member", "pod", p.name, "volume", local, "peer_volume", remote)
	return true
}
