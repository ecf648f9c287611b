package replication

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/volrep/volrep/array"
	"github.com/volrep/volrep/array/transfer"
	"github.com/volrep/volrep/errdefs"
)

// operation is one long-running job. Watchers wait on changed, which is
// closed and replaced at every update.
type operation struct {
	key    string
	cancel context.CancelFunc

	mu         sync.Mutex
	op         array.Operation
	changed    chan struct{}
	lastUpdate time.Time
}

func (o *operation) view() (array.Operation, <-chan struct{}) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.op, o.changed
}

// update applies f and wakes watchers; progress updates are coalesced to
// a few a second so a watcher is not flooded by every megabyte.
func (o *operation) update(f func(op *array.Operation), progress bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	f(&o.op)
	if progress && time.Since(o.lastUpdate) < 25*time.Millisecond {
		return
	}
	o.lastUpdate = time.Now()
	close(o.changed)
	o.changed = make(chan struct{})
}

// opsKeep is how long finished operations stay listed.
const opsKeep = time.Hour

func newOpID() string {
	var b [6]byte
	rand.Read(b[:])
	return "op-" + hex.EncodeToString(b[:])
}

// ReplicateSnapshot starts sending one snapshot over a link: the delta
// from the newest snapshot both sides hold, or all of it with ForceFull.
func (e *Engine) ReplicateSnapshot(ctx context.Context, spec array.SnapshotReplicateSpec) (string, error) {
	if spec.RemoteVolume == "" {
		spec.RemoteVolume = spec.Volume
	}
	snaps, err := e.snapshotsToSend(ctx, spec)
	if err != nil {
		return "", err
	}
	// The operation is known by the newest snapshot it sends.
	snap := snaps[len(snaps)-1]
	e.mu.Lock()
	l, err := e.linkLocked(spec.Link)
	e.mu.Unlock()
	if err != nil {
		return "", err
	}
	if l.view().State != array.LinkConnected {
		// A failback reuses its link after the peer was away: try it now,
		// not when gRPC's reconnect backoff ends.
		l.reconnect(ctx)
	}
	if _, err := l.peer.GetPool(ctx, spec.RemotePool); err != nil {
		if errdefs.IsNotFound(err) {
			return "", errdefs.NotFound("remote pool %q not found on the array behind link %q; create it there first", spec.RemotePool, spec.Link)
		}
		return "", errdefs.Unavailable("link %q to %s: %v", spec.Link, l.rec.Address, err)
	}
	key := snap.Ref() + "→" + spec.Link
	e.mu.Lock()
	for _, o := range e.ops {
		if v, _ := o.view(); o.key == key && v.State == array.OpRunning {
			e.mu.Unlock()
			return "", errdefs.Aborted("snapshot %s is already being replicated over link %q by operation %s; wait for it or cancel it", snap.Ref(), spec.Link, v.ID)
		}
	}
	now := time.Now()
	for id, o := range e.ops {
		if v, _ := o.view(); v.State != array.OpRunning && now.Sub(v.Finished) > opsKeep {
			delete(e.ops, id)
		}
	}
	runCtx, cancel := context.WithCancel(e.runCtx)
	o := &operation{key: key, cancel: cancel, changed: make(chan struct{}), op: array.Operation{
		ID: newOpID(), Kind: "snapshot_replicate", Target: key, State: array.OpRunning, Phase: "preparing", Started: now}}
	e.ops[o.op.ID] = o
	e.wg.Add(1)
	e.mu.Unlock()
	e.log.Info("snapshot replication started", "operation", o.op.ID, "snapshot", snap.Ref(), "link", spec.Link, "force_full_copy", spec.ForceFull)
	go func() {
		defer e.wg.Done()
		defer cancel()
		res, err := e.replicateSnapshots(runCtx, l, spec, snaps, o)
		o.update(func(op *array.Operation) {
			op.Result = res
			op.End(err, time.Now())
		}, false)
		v, _ := o.view()
		if err != nil {
			e.log.Warn("snapshot replication failed", "operation", v.ID, "snapshot", snap.Ref(), "link", spec.Link, "err", err)
			return
		}
		e.log.Info("snapshot replicated", "operation", v.ID, "snapshot", snap.Ref(), "link", spec.Link,
			"incremental", res.Incremental, "base", res.BaseSnapshot, "bytes_sent", res.BytesSent, "resumed_from", res.ResumedFrom,
			"duration", v.Finished.Sub(v.Started).Round(time.Millisecond))
	}()
	return o.op.ID, nil
}

// snapshotsToSend returns the snapshots spec names, oldest first.
func (e *Engine) snapshotsToSend(ctx context.Context, spec array.SnapshotReplicateSpec) ([]array.Snapshot, error) {
	want := map[string]bool{}
	for _, n := range append([]string{spec.Snapshot}, spec.Snapshots...) {
		if n != "" {
			want[n] = true
		}
	}
	if len(want) == 0 {
		return nil, errdefs.InvalidArgument("snapshot", "names no snapshot to send")
	}
	all, err := e.s.ListSnapshots(ctx, spec.Volume)
	if err != nil {
		return nil, err
	}
	var out []array.Snapshot
	for _, s := range all {
		if want[s.Name] {
			out = append(out, s)
			delete(want, s.Name)
		}
	}
	for n := range want {
		return nil, errdefs.NotFound("snapshot %q of volume %q not found on array %s", n, spec.Volume, e.id)
	}
	return out, nil
}

// replicateSnapshots sends snaps, oldest first, each a delta on the newest
// snapshot the target holds by then: the one sent before it.
func (e *Engine) replicateSnapshots(ctx context.Context, l *link, spec array.SnapshotReplicateSpec, snaps []array.Snapshot, o *operation) (array.SnapshotReplicateResult, error) {
	if len(snaps) == 1 {
		return e.replicateSnapshot(ctx, l, spec, snaps[0], o, nil)
	}
	var total array.SnapshotReplicateResult
	var doneBefore, totalBefore int64
	for i, snap := range snaps {
		step := func(op *array.Operation) {
			op.Phase = fmt.Sprintf("%s (%d/%d: %s)", op.Phase, i+1, len(snaps), snap.Name)
			op.Done += doneBefore
			op.Total += totalBefore
		}
		res, err := e.replicateSnapshot(ctx, l, spec, snap, o, step)
		total.Steps = append(total.Steps, res)
		total.BytesSent += res.BytesSent
		total.BytesTotal += res.BytesTotal
		total.RemoteVolume, total.RemoteSnapshot = res.RemoteVolume, res.RemoteSnapshot
		if i == 0 {
			total.BaseSnapshot, total.BaseGUID, total.Incremental = res.BaseSnapshot, res.BaseGUID, res.Incremental
		}
		if err != nil {
			return total, fmt.Errorf("snapshot %d of %d (%s): %w", i+1, len(snaps), snap.Name, err)
		}
		doneBefore += res.BytesTotal
		totalBefore += res.BytesTotal
		spec.ForceFull = false // only the first goes in full
	}
	total.AlreadyPresent = !slices.ContainsFunc(total.Steps, func(r array.SnapshotReplicateResult) bool { return !r.AlreadyPresent })
	return total, nil
}

// replicateSnapshot sends one snapshot; step, when set, adjusts the
// progress it reports to the operation (one step of several).
func (e *Engine) replicateSnapshot(ctx context.Context, l *link, spec array.SnapshotReplicateSpec, snap array.Snapshot, o *operation, step func(*array.Operation)) (array.SnapshotReplicateResult, error) {
	res := array.SnapshotReplicateResult{RemoteVolume: spec.RemoteVolume, RemoteSnapshot: snap.Name}
	var base *array.Snapshot
	if !spec.ForceFull {
		var err error
		if base, err = e.commonBase(ctx, l, spec.Volume, spec.RemoteVolume, snap); err != nil {
			return res, err
		}
	}
	if base != nil {
		res.BaseSnapshot, res.BaseGUID, res.Incremental = base.Name, base.GUID, true
	}
	labels := map[string]string{LabelSourceVolume: spec.Volume, LabelSourceArray: e.id}
	maps.Copy(labels, spec.RemoteLabels)
	job, err := e.Job(ctx, spec.Volume, base, snap, transfer.Target{Volume: spec.RemoteVolume, Pool: spec.RemotePool,
		TransferID: transferID("snapshot-replicate", spec.Volume+"\x00"+spec.Link, snap.GUID),
		Labels:     labels})
	if err != nil {
		return res, err
	}
	r, err := transfer.Send(ctx, l.xfer, job, transfer.Options{Compress: l.rec.Compression, Limiter: l.limiter,
		Progress: func(p transfer.Progress) {
			o.update(func(op *array.Operation) {
				op.Phase, op.Done, op.Total = p.Phase, p.Done, p.Total
				if el := time.Since(p.Started).Seconds(); el > 0 && p.Done > 0 {
					op.Rate = float64(p.Done) / el
					op.ETA = time.Duration(float64(p.Total-p.Done) / op.Rate * float64(time.Second))
				}
				if step != nil {
					step(op)
				}
			}, p.Phase == "sending")
		}})
	res.BytesSent, res.BytesTotal, res.ResumedFrom, res.AlreadyPresent = r.WireBytes, r.Total, r.ResumedFrom, r.AlreadyReceived
	if err != nil && ctx.Err() != nil {
		return res, context.Canceled
	}
	return res, err
}

func (e *Engine) opLocked(id string) (*operation, error) {
	o, ok := e.ops[id]
	if !ok {
		return nil, errdefs.NotFound("operation %q not found (finished operations are kept for %s)", id, opsKeep)
	}
	return o, nil
}

// GetOperation returns an operation.
func (e *Engine) GetOperation(ctx context.Context, id string) (array.Operation, error) {
	e.mu.Lock()
	o, err := e.opLocked(id)
	e.mu.Unlock()
	if err != nil {
		return array.Operation{}, err
	}
	v, _ := o.view()
	return v, nil
}

// ListOperations lists operations, newest first.
func (e *Engine) ListOperations(ctx context.Context) ([]array.Operation, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := []array.Operation{}
	for _, o := range e.ops {
		v, _ := o.view()
		out = append(out, v)
	}
	slices.SortFunc(out, func(a, b array.Operation) int { return b.Started.Compare(a.Started) })
	return out, nil
}

// WatchOperation calls fn as the operation progresses, until it finishes.
func (e *Engine) WatchOperation(ctx context.Context, id string, fn func(array.Operation) error) error {
	e.mu.Lock()
	o, err := e.opLocked(id)
	e.mu.Unlock()
	if err != nil {
		return err
	}
	for {
		v, changed := o.view()
		if err := fn(v); err != nil {
			return err
		}
		if v.State != array.OpRunning {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// CancelOperation stops a running operation; what was staged on the
// receiver stays, so running it again resumes.
func (e *Engine) CancelOperation(ctx context.Context, id string) (array.Operation, error) {
	e.mu.Lock()
	o, err := e.opLocked(id)
	e.mu.Unlock()
	if err != nil {
		return array.Operation{}, err
	}
	o.cancel()
	for {
		v, changed := o.view()
		if v.State != array.OpRunning {
			return v, nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return v, ctx.Err()
		}
	}
}
