package replication

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"maps"
	"slices"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/volrep/volrep/array"
	"github.com/volrep/volrep/array/client"
	"github.com/volrep/volrep/array/retention"
	"github.com/volrep/volrep/array/store"
	"github.com/volrep/volrep/array/transfer"
	"github.com/volrep/volrep/errdefs"
	arrayv1 "github.com/volrep/volrep/proto/volrep/array/v1"
)

// schedule starts each replica's cycle when its interval, a retry or a
// sync request falls due, until ctx ends.
func (e *Engine) schedule(ctx context.Context) {
	for {
		e.mu.Lock()
		now := e.opts.Clock.Now()
		next := now.Add(time.Hour)
		for _, r := range e.replicas {
			if r.rec.Spec.Type != array.TypeAsync || r.rec.Suspended || r.busy {
				continue
			}
			tick := r.syncNow || !now.Before(r.rec.NextTick)
			retry := r.err != nil && !now.Before(r.retryAt)
			if tick || retry {
				r.busy, r.syncNow = true, false
				waiters := r.waiters
				r.waiters = nil
				e.wg.Add(1)
				go e.runCycle(ctx, r, tick, waiters)
				continue
			}
			next = minTime(next, r.rec.NextTick)
			if r.err != nil {
				next = minTime(next, r.retryAt)
			}
		}
		e.mu.Unlock()
		select {
		case <-ctx.Done():
			return
		case <-e.kick:
		case <-e.opts.Clock.At(next):
		}
	}
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

func (e *Engine) runCycle(ctx context.Context, r *replica, tick bool, waiters []chan error) {
	defer e.wg.Done()
	err := e.cycle(ctx, r, tick)
	e.mu.Lock()
	now := e.opts.Clock.Now()
	r.busy = false
	if tick {
		next := r.rec.NextTick.Add(r.rec.Spec.Interval)
		for !next.After(now) {
			next = next.Add(r.rec.Spec.Interval)
		}
		r.rec.NextTick = next
	}
	name := r.rec.Spec.Name
	switch {
	case err != nil && ctx.Err() != nil:
		// Shutting down: not a replication failure.
	case err != nil:
		if r.err == nil {
			e.log.Warn("replication failed; retrying with backoff", "replica", name, "link", r.rec.Spec.Link, "err", err)
		}
		r.err = err
		r.backoff = min(max(2*r.backoff, e.opts.RetryMin), e.opts.RetryMax, r.rec.Spec.Interval)
		r.retryAt = now.Add(r.backoff)
	default:
		if r.err != nil {
			e.log.Info("replication recovered", "replica", name, "link", r.rec.Spec.Link)
		}
		r.err, r.backoff = nil, 0
	}
	rec := r.rec
	view := e.view(r)
	e.mu.Unlock()
	if ctx.Err() == nil {
		if serr := e.save(context.WithoutCancel(ctx), recReplicas, name, rec); serr != nil {
			e.log.Error("saving replica state", "replica", name, "err", serr)
		}
	}
	for _, w := range waiters {
		w <- err
	}
	if e.opts.OnCycle != nil {
		e.opts.OnCycle(view, err)
	}
	e.wake()
}

// members maps the entity's local member volumes to their remote names.
func (e *Engine) members(ctx context.Context, spec array.ReplicaSpec) (map[string]string, error) {
	if spec.Kind == array.KindVolume {
		return map[string]string{spec.Local: spec.RemoteEntity}, nil
	}
	g, err := e.s.GetGroup(ctx, spec.Local)
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, m := range g.Members {
		out[m] = m
		if to, ok := spec.MemberMappings[m]; ok {
			out[m] = to
		}
	}
	return out, nil
}

// cycle takes a snapshot (on a tick) and ships the newest pending one to
// the target, then applies retention on both sides.
func (e *Engine) cycle(ctx context.Context, r *replica, tick bool) error {
	e.mu.Lock()
	spec := r.rec.Spec
	l := e.links[spec.Link]
	failing := r.err != nil
	e.mu.Unlock()
	if l == nil {
		return errdefs.FailedPrecondition("link %q of replica %q no longer exists", spec.Link, spec.Name)
	}
	if failing || l.view().State != array.LinkConnected {
		l.reconnect(ctx)
	}
	members, err := e.members(ctx, spec)
	if err != nil {
		return err
	}
	if tick && len(members) > 0 {
		if err := e.takeSnapshot(ctx, r, spec, members); err != nil {
			return err
		}
	}
	e.mu.Lock()
	pending, last := r.rec.Pending, r.rec.LastSnapshot
	e.mu.Unlock()
	defer e.pruneLocal(ctx, spec, members, func(snaps []array.Snapshot) map[string]bool {
		return keepSet(snaps, e.opts.Clock.Now(), spec.SourceRetention)
	})
	if pending == "" {
		if len(members) == 0 {
			// An empty group has nothing to initialize.
			e.mu.Lock()
			r.rec.Initialized = true
			e.mu.Unlock()
		}
		// Nothing to ship, but a member may have left since the last
		// cycle: an empty group takes no snapshot, so without this the
		// last member's copy would stay on the target until another joined.
		e.tidyRemote(ctx, l, r, spec, members)
		return nil
	}
	start := e.opts.Clock.Now()
	wallStart := time.Now()
	var bytes int64
	var created time.Time
	advanced := e.advance(ctx, l, spec, members, last, pending)
	for member, remote := range members {
		if snap, ok := advanced[member]; ok {
			created = snap.Created
			continue
		}
		res, snap, err := e.ship(ctx, l, spec, member, remote, pending)
		if errors.Is(err, errNoSnapshot) {
			continue // joined the group after the snapshot was taken
		}
		if err != nil {
			return e.classify(l, member, err)
		}
		bytes += res.WireBytes
		created = snap.Created
	}
	took := time.Since(wallStart)
	e.mu.Lock()
	r.rec.Pending = ""
	r.rec.Initialized = true
	r.rec.LastSnapshot = pending
	if !created.IsZero() {
		r.rec.LastSync = created
	}
	r.rec.LastSyncBytes = bytes
	r.rec.LastSyncDuration = took
	r.rec.TotalBytes += bytes
	if took > 0 {
		r.throughput = float64(bytes) / took.Seconds()
	}
	e.mu.Unlock()
	e.log.Info("replicated", "replica", spec.Name, "snapshot", pending, "bytes", bytes, "duration", took.Round(time.Millisecond),
		"members", len(members), "lag", e.opts.Clock.Now().Sub(start))
	if err := e.pruneRemotes(ctx, l, spec, members); err != nil {
		e.log.Warn("target retention", "replica", spec.Name, "err", err)
	}
	e.tidyRemote(ctx, l, r, spec, members)
	return nil
}

// tidyEvery bounds how long cycles skip tidying while nothing it depends
// on changed here, so what changed at the target alone (a copy's QoS set
// there by hand) is still seen to.
const tidyEvery = 10 * time.Minute

// tidied is what the replica's last complete tidy saw.
type tidied struct {
	sum uint64
	at  time.Time
}

// tidyRemote runs on the cycles that reach the target, with one listing
// of the target's copies: it removes a group replica's copies of former
// members, and gives each member's copy the member's QoS limit. That
// listing costs what the group holds, not what changed (a third of a
// 10,000-member group's cycle), so it is skipped while the members, their
// copies' names and their QoS limits are as the last complete tidy saw
// them, for up to tidyEvery. A failure only postpones it to the next cycle.
func (e *Engine) tidyRemote(ctx context.Context, l *link, r *replica, spec array.ReplicaSpec, members map[string]string) {
	qos := e.memberQoS(ctx, members)
	sum := tidySum(spec, members, qos)
	now := e.opts.Clock.Now()
	e.mu.Lock()
	last := r.tidied
	e.mu.Unlock()
	if !last.at.IsZero() && last.sum == sum && now.Sub(last.at) < tidyEvery {
		return
	}
	copies, err := e.remoteCopies(ctx, l, spec)
	if err != nil {
		e.log.Warn("listing the target's copies; former members' copies and QoS limits are seen to next cycle", "replica", spec.Name, "link", spec.Link, "err", err)
		return
	}
	if spec.Kind == array.KindGroup {
		if err := e.collectFrom(ctx, l, spec, members, copies); err != nil {
			e.log.Warn("removing remote copies of former members; retrying next cycle", "replica", spec.Name, "link", spec.Link, "err", err)
			return
		}
	}
	if e.matchQoS(ctx, l, spec, members, qos, copies) {
		e.mu.Lock()
		r.tidied = tidied{sum: sum, at: now}
		e.mu.Unlock()
	}
}

// memberQoS reads each member's QoS limit; a member deleted meanwhile
// has none in the map.
func (e *Engine) memberQoS(ctx context.Context, members map[string]string) map[string]array.QoS {
	out := make(map[string]array.QoS, len(members))
	for member := range members {
		if q, err := e.s.VolumeQoS(ctx, member); err == nil {
			out[member] = q
		}
	}
	return out
}

// tidySum sums, order aside, what a tidy depends on here: each member,
// its copy's name and its QoS limit, and the link and target pool.
func tidySum(spec array.ReplicaSpec, members map[string]string, qos map[string]array.QoS) uint64 {
	h := fnv.New64a()
	one := func(tail []byte, parts ...string) uint64 {
		h.Reset()
		for _, p := range parts {
			h.Write([]byte(p))
			h.Write([]byte{0})
		}
		h.Write(tail)
		return h.Sum64()
	}
	sum := one(nil, spec.Link, spec.RemotePool, spec.RemoteEntity)
	var b []byte
	for member, remote := range members {
		q := qos[member] // a member deleted meanwhile counts as unlimited
		b = b[:0]
		for _, v := range []int64{q.TotalIOPS, q.ReadIOPS, q.WriteIOPS, q.TotalBytesPerSec, q.ReadBytesPerSec, q.WriteBytesPerSec} {
			b = binary.LittleEndian.AppendUint64(b, uint64(v))
		}
		sum += one(b, member, remote)
	}
	return sum
}

// remoteCopies lists the replica's copies at the target: the volumes of
// its pool for a group (former members' included), the one copy for a
// volume.
func (e *Engine) remoteCopies(ctx context.Context, l *link, spec array.ReplicaSpec) ([]array.Volume, error) {
	if spec.Kind == array.KindGroup {
		return l.peer.ListVolumes(ctx, spec.RemotePool)
	}
	v, err := l.peer.GetVolume(ctx, spec.RemoteEntity)
	if errdefs.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return []array.Volume{v}, nil
}

// matchQoS gives each member's copy at the target the member's QoS limit
// (from memberQoS), so that a failover finds the limit already in place on the volume its
// hosts then use.
func (e *Engine) matchQoS(ctx context.Context, l *link, spec array.ReplicaSpec, members map[string]string, qos map[string]array.QoS, copies []array.Volume) bool {
	local := make(map[string]string, len(members))
	for member, remote := range members {
		local[remote] = member
	}
	for _, c := range copies {
		member, ok := local[c.Name]
		if !ok {
			continue
		}
		q, ok := qos[member]
		if !ok || q == c.QoS {
			continue // deleted meanwhile, or matched
		}
		if _, err := l.peer.SetVolumeQoS(ctx, c.Name, q); err != nil {
			e.log.Warn("giving a replica target its source's QoS limit; retrying next cycle", "replica", spec.Name, "volume", member,
				"remote_volume", c.Name, "err", err)
			return false
		}
		e.log.Info("replica target given its source's QoS limit", "replica", spec.Name, "volume", member, "remote_volume", c.Name)
	}
	return true
}

// classify makes a failure to reach the peer UNAVAILABLE (the replica is
// degraded and retries) and keeps other kinds.
func (e *Engine) classify(l *link, member string, err error) error {
	k := errdefs.KindOf(err)
	if k == errdefs.KindUnavailable || k == errdefs.KindDeadlineExceeded || k == errdefs.KindCanceled || k == errdefs.KindUnknown {
		return errdefs.Unavailable("shipping %s over link %q to %s: %v", member, l.rec.Name, l.rec.Address, err)
	}
	return fmt.Errorf("shipping %s over link %q: %w", member, l.rec.Name, err)
}

func (e *Engine) takeSnapshot(ctx context.Context, r *replica, spec array.ReplicaSpec, members map[string]string) error {
	e.mu.Lock()
	seq := r.rec.Seq + 1
	e.mu.Unlock()
	name := fmt.Sprintf("%s.%d", spec.Name, seq)
	labels := map[string]string{LabelReplica: spec.Name}
	var err error
	if spec.Kind == array.KindGroup {
		_, err = e.s.CreateGroupSnapshot(ctx, spec.Local, name, labels)
	} else {
		_, err = e.s.CreateSnapshot(ctx, spec.Local, name, labels)
	}
	if err != nil {
		return fmt.Errorf("snapshot %s: %w", name, err)
	}
	e.mu.Lock()
	r.rec.Seq = seq
	r.rec.Pending = name
	rec := r.rec
	e.mu.Unlock()
	return e.save(ctx, recReplicas, spec.Name, rec)
}

var errNoSnapshot = errors.New("member has no such snapshot")

// advance moves every member that was not written since the last cycle's
// snapshot on to snapshot pending at the target, with one call for them
// all instead of an empty transfer each: a group's cycle then costs what
// changed, not how many members it has. It returns the members advanced,
// with their snapshot; the others, including any the target refused
// (its newest snapshot is not the last cycle's), are shipped as before.
func (e *Engine) advance(ctx context.Context, l *link, spec array.ReplicaSpec, members map[string]string, last, pending string) map[string]array.Snapshot {
	if last == "" || last == pending {
		return nil
	}
	var batch []transfer.AdvanceMember
	local := map[string]string{}
	for member, remote := range members {
		if same, err := e.s.Unchanged(ctx, member, last, pending); err != nil || !same {
			continue // a new member, or a changed one: it is shipped
		}
		base, err := e.s.GetSnapshot(ctx, member, last)
		if err != nil {
			continue
		}
		snap, err := e.s.GetSnapshot(ctx, member, pending)
		if err != nil {
			continue
		}
		batch = append(batch, transfer.AdvanceMember{Volume: remote, Base: base.GUID, Snap: snap})
		local[remote] = member
	}
	if len(batch) == 0 {
		return nil
	}
	// In name order, so each call's transaction at the target dirties the
	// few adjacent pages its members' records sit on, not a page of every
	// member's (the map's order is random).
	slices.SortFunc(batch, func(a, b transfer.AdvanceMember) int { return strings.Compare(a.Volume, b.Volume) })
	done, err := transfer.SendAdvance(ctx, l.xfer, e.id, batch)
	if err != nil {
		// The rest are shipped: an old target without Advance, or a
		// broken call, costs time but not correctness.
		e.log.Warn("advancing unchanged members; shipping them instead", "replica", spec.Name, "link", spec.Link, "err", err)
	}
	out := map[string]array.Snapshot{}
	for _, m := range batch {
		if done[m.Volume] {
			out[local[m.Volume]] = m.Snap
		}
	}
	return out
}

// ship sends one member's snapshot as a delta from the newest snapshot
// both sides hold, or in full when they hold none.
func (e *Engine) ship(ctx context.Context, l *link, spec array.ReplicaSpec, member, remote, snapName string) (transfer.Result, array.Snapshot, error) {
	snap, err := e.s.GetSnapshot(ctx, member, snapName)
	if errdefs.IsNotFound(err) {
		return transfer.Result{}, snap, errNoSnapshot
	}
	if err != nil {
		return transfer.Result{}, snap, err
	}
	base, err := e.commonBase(ctx, l, member, remote, snap)
	if err != nil {
		return transfer.Result{}, snap, err
	}
	job, err := e.Job(ctx, member, base, snap, transfer.Target{Volume: remote, Pool: spec.RemotePool, TransferID: transferID(spec.Name, member, snap.GUID),
		Labels: map[string]string{LabelReplica: spec.Name, LabelSourceVolume: member, LabelSourceArray: e.id}})
	if err != nil {
		return transfer.Result{}, snap, err
	}
	// EXISTING_TARGET's first copy lands on a writable volume the caller
	// named; every later one finds it a replica target.
	job.Header.Overwrite = spec.Mode == array.ModeExistingTarget && base == nil
	res, err := transfer.Send(ctx, l.xfer, job, transfer.Options{Compress: l.rec.Compression, Limiter: l.limiter})
	return res, snap, err
}

// commonBase finds the newest snapshot of member older than snap that the
// remote volume also holds (by GUID); nil means none, so a full copy.
func (e *Engine) commonBase(ctx context.Context, l *link, member, remote string, snap array.Snapshot) (*array.Snapshot, error) {
	rs, err := l.peer.ListSnapshots(ctx, remote)
	if err != nil && !errdefs.IsNotFound(err) {
		return nil, err
	}
	have := map[string]bool{}
	for _, s := range rs {
		have[s.GUID] = true
	}
	local, err := e.s.ListSnapshots(ctx, member)
	if err != nil {
		return nil, err
	}
	i := slices.IndexFunc(local, func(s array.Snapshot) bool { return s.GUID == snap.GUID })
	for j := i - 1; j >= 0; j-- {
		if have[local[j].GUID] {
			return &local[j], nil
		}
	}
	return nil, nil
}

// Job builds the transfer of snap from volume, as a delta from base when
// base is not nil.
func (e *Engine) Job(ctx context.Context, volume string, base *array.Snapshot, snap array.Snapshot, t transfer.Target) (transfer.Job, error) {
	baseName, baseGUID := "", ""
	if base != nil {
		baseName, baseGUID = base.Name, base.GUID
	}
	ext, err := e.s.Diff(ctx, volume, baseName, snap.Name)
	if err != nil {
		return transfer.Job{}, err
	}
	// The target volume takes the source's serial, and so its WWN: a
	// host multipathing to both copies, or attaching after a failover,
	// sees one device.
	serial, err := e.s.VolumeSerial(ctx, volume)
	if err != nil {
		return transfer.Job{}, err
	}
	h, err := e.s.OpenSnapshot(ctx, volume, snap.Name)
	if err != nil {
		return transfer.Job{}, err
	}
	return transfer.Job{Extents: ext, Source: h, Header: &arrayv1.ReceiveHeader{
		TransferId: t.TransferID, Volume: t.Volume, Pool: t.Pool, SizeBytes: snap.SizeBytes, VolumeLabels: t.Labels,
		BaseGuid: baseGUID, SnapshotName: snap.Name, SnapshotGuid: snap.GUID, SnapshotCreated: timestamppb.New(snap.Created),
		SnapshotLabels: snap.Labels, SourceArrayId: e.id, ReadOnly: true,
		VolumeSerial: serial,
	}}, nil
}

// keepSet applies a retention policy to snapshots.
func keepSet(snaps []array.Snapshot, now time.Time, p array.Retention) map[string]bool {
	times := make([]time.Time, len(snaps))
	for i, s := range snaps {
		times[i] = s.Created
	}
	keep := map[string]bool{}
	for i, k := range retention.Keep(times, now, p) {
		if k {
			keep[snaps[i].Name] = true
		}
	}
	return keep
}

// pruneLocal deletes the replica's snapshots of the members that keep
// does not want, always sparing the newest, the one pending and the
// newest one the target holds, so the next transfer can stay a delta. The
// deletes of all members go to the store together, so a large group's
// retention is one transaction rather than one per member.
func (e *Engine) pruneLocal(ctx context.Context, spec array.ReplicaSpec, members map[string]string, keep func([]array.Snapshot) map[string]bool) {
	var drop []store.SnapshotRef
	for member := range members {
		ours, err := e.s.SnapshotsLabeled(ctx, member, LabelReplica, spec.Name)
		if err != nil {
			continue
		}
		e.mu.Lock()
		spare := map[string]bool{}
		if r := e.replicas[spec.Name]; r != nil {
			spare[r.rec.Pending] = true
			spare[r.rec.LastSnapshot] = true
			if len(ours) > 0 {
				spare[ours[len(ours)-1].Name] = true
			}
		}
		e.mu.Unlock()
		wanted := keep(ours)
		for _, s := range ours {
			if !wanted[s.Name] && !spare[s.Name] {
				drop = append(drop, store.SnapshotRef{Volume: member, Name: s.Name})
			}
		}
	}
	if len(drop) == 0 {
		return
	}
	if err := e.s.DeleteSnapshots(ctx, drop); err != nil {
		e.log.Warn("source retention", "replica", spec.Name, "snapshots", len(drop), "err", err)
	}
}

// pruneRemotes applies target retention to the members' copies with one
// Prune call: the target lists and deletes (in one transaction, sparing
// snapshots someone reads), rather than a listing and a delete RPC per
// member. A target without Prune is pruned one snapshot at a time.
func (e *Engine) pruneRemotes(ctx context.Context, l *link, spec array.ReplicaSpec, members map[string]string) error {
	remotes := slices.Sorted(maps.Values(members))
	if len(remotes) == 0 {
		return nil
	}
	err := transfer.SendPrune(ctx, l.xfer, spec.Name, remotes, spec.TargetRetention, e.opts.Clock.Now())
	if status.Code(err) != codes.Unimplemented {
		return err
	}
	for _, remote := range remotes {
		if err := e.pruneRemote(ctx, l, spec, remote); err != nil {
			return err
		}
	}
	return nil
}

// pruneRemote applies target retention to the replica's snapshots on the peer.
func (e *Engine) pruneRemote(ctx context.Context, l *link, spec array.ReplicaSpec, remote string) error {
	all, err := l.peer.ListSnapshots(ctx, remote)
	if err != nil {
		return err
	}
	var ours []array.Snapshot
	for _, s := range all {
		if s.Labels[LabelReplica] == spec.Name {
			ours = append(ours, s)
		}
	}
	keep := keepSet(ours, e.opts.Clock.Now(), spec.TargetRetention)
	var held map[string]bool
	for _, s := range ours {
		if !keep[s.Name] {
			if held == nil {
				if held, err = attachedSnapshots(ctx, l.peer, remote); err != nil {
					return err
				}
			}
			if held[s.Name] {
				// Someone reads this replica at the target (a DR test,
				// volrep volume attach --at): it stays until detached, and
				// the first cycle after that prunes it.
				continue
			}
			if err := l.peer.DeleteSnapshot(ctx, remote, s.Name); err != nil && !errdefs.IsNotFound(err) {
				return err
			}
		}
	}
	return nil
}

// attachedSnapshots names the snapshots of a target volume that are
// exported over NBD or connected to an iSCSI host. Deleting one would
// revoke that attachment under its reader.
func attachedSnapshots(ctx context.Context, peer *client.Client, vol string) (map[string]bool, error) {
	held := map[string]bool{}
	exports, err := peer.ListExports(ctx, vol)
	if err != nil && status.Code(err) != codes.Unimplemented {
		return nil, err
	}
	for _, x := range exports {
		if x.Snapshot != "" {
			held[x.Snapshot] = true
		}
	}
	conns, err := peer.ListConnections(ctx, "", vol)
	if err != nil && status.Code(err) != codes.Unimplemented {
		return nil, err
	}
	for _, c := range conns {
		if c.Snapshot != "" {
			held[c.Snapshot] = true
		}
	}
	return held, nil
}

// collectRemote removes the remote copies of volumes that are no longer
// members: the replica made them, and nothing else refers to them.
func (e *Engine) collectRemote(ctx context.Context, l *link, spec array.ReplicaSpec, members map[string]string) error {
	vols, err := l.peer.ListVolumes(ctx, spec.RemotePool)
	if err != nil {
		return err
	}
	return e.collectFrom(ctx, l, spec, members, vols)
}

// collectFrom is collectRemote with the target's volumes listed.
func (e *Engine) collectFrom(ctx context.Context, l *link, spec array.ReplicaSpec, members map[string]string, vols []array.Volume) error {
	keep := map[string]bool{}
	for remote := range maps.Values(members) {
		keep[remote] = true
	}
	for _, v := range vols {
		if v.Labels[LabelReplica] != spec.Name || keep[v.Name] || e.coveredElsewhere(ctx, spec.Name, v.Labels[LabelSourceVolume]) {
			continue
		}
		if err := e.dropRemote(ctx, l, v.Name); err != nil {
			return err
		}
		e.log.Info("removed remote copy of a former member", "replica", spec.Name, "remote_volume", v.Name)
	}
	return nil
}

// dropRemote deletes a remote copy and its snapshots.
func (e *Engine) dropRemote(ctx context.Context, l *link, vol string) error {
	snaps, err := l.peer.ListSnapshots(ctx, vol)
	if errdefs.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, s := range snaps {
		if err := l.peer.DeleteSnapshot(ctx, vol, s.Name); err != nil && !errdefs.IsNotFound(err) {
			return err
		}
	}
	if err := l.peer.DeleteVolume(ctx, vol); err != nil && !errdefs.IsNotFound(err) {
		return err
	}
	return nil
}

// coveredElsewhere reports whether another replica of this array still
// replicates vol, and so still needs its remote copy: a volume moved from
// a protection group to a pod keeps the copy it already has there.
func (e *Engine) coveredElsewhere(ctx context.Context, except, vol string) bool {
	e.mu.Lock()
	var specs []array.ReplicaSpec
	for name, r := range e.replicas {
		if name != except {
			specs = append(specs, r.rec.Spec)
		}
	}
	e.mu.Unlock()
	for _, spec := range specs {
		if ms, err := e.members(ctx, spec); err == nil {
			if _, ok := ms[vol]; ok {
				return true
			}
		}
	}
	return false
}
