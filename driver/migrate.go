package driver

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/volrep/volrep/array"
	"github.com/volrep/volrep/errdefs"
)

// MigrateOptions bound a migration's passes. Zero fields take the defaults.
type MigrateOptions struct {
	// A pass that sends at most SmallBytes, or takes at most SmallTime, is
	// small enough that the next one can run with the volume's writes held.
	SmallBytes int64
	SmallTime  time.Duration
	// MaxPasses is the most passes before the last one: a migration whose
	// passes are not small by then fails rather than hold writes for long.
	MaxPasses int
	// HoldLease is how long the source array holds writes if the driver
	// neither renews nor releases the hold (it died): it bounds the last
	// pass, which fails if the hold lapsed before the switch.
	HoldLease time.Duration
}

// Migration defaults.
const (
	DefaultSmallPassBytes = 64 << 20
	DefaultSmallPassTime  = time.Second
	DefaultMaxPasses      = 10
	defaultHoldLease      = 30 * time.Second
)

func (o *MigrateOptions) defaults() {
	if o.SmallBytes <= 0 {
		o.SmallBytes = DefaultSmallPassBytes
	}
	if o.SmallTime <= 0 {
		o.SmallTime = DefaultSmallPassTime
	}
	if o.MaxPasses <= 0 {
		o.MaxPasses = DefaultMaxPasses
	}
	if o.HoldLease <= 0 {
		o.HoldLease = defaultHoldLease
	}
}

// kindMigrateVolume is the kind of a migration's operation.
const kindMigrateVolume = "migrate_volume"

// labelMigration marks the snapshots a migration takes with its operation.
const labelMigration = "volrep.migration"

// migration is one MigrateVolume run: volume name from backend from to
// backend to (dst is how the source array reaches it).
type migration struct {
	from, to *Backend
	dst      destination
	volID    string
	name     string
	opts     MigrateOptions
	op       array.Operation
	// labels are the copy's: the driver's labels of the volume, as the
	// destination backend's.
	labels map[string]string
	// snaps are the snapshots the passes took, oldest first; both arrays
	// hold the newest, the base of the next delta.
	snaps []string
}

// MigrateVolume moves volume volID from backend src to backend dst, on
// another array, by snapshot deltas: a first snapshot in full, then
// incremental passes while the volume stays in use until one is small
// (MigrateOptions), then one last delta with the volume's writes held,
// after which the copy becomes the volume on dst and the source is
// deleted. It checks what it can at once and returns the operation's id
// on src; the passes run in the background (GetOperation, WatchOperation,
// CancelOperation). A failure keeps the source as it was and deletes the
// copy.
func (d *Driver) MigrateVolume(ctx context.Context, src, volID, dst string, opts MigrateOptions) (string, error) {
	opts.defaults()
	from, err := d.Backend(src)
	if err != nil {
		return "", err
	}
	if err := from.ready(); err != nil {
		return "", err
	}
	to, err := d.Backend(dst)
	if err != nil {
		return "", errdefs.NotFound("destination backend %q: %v; migrate to another volrep backend of this volrepd, or let Cinder migrate the volume generically", dst, err)
	}
	if from == to {
		return "", errdefs.InvalidArgument("destination_backend", "is the volume's own backend %s; name another backend", src)
	}
	if err := to.ready(); err != nil {
		return "", err
	}
	for _, b := range []*Backend{from, to} {
		if b.failedOver() {
			return "", errdefs.FailedPrecondition("backend %s is failed over to %s; migrate after failing it back (cinder failover-host --backend_id default)",
				b.cfg.Section, b.State().ActiveBackendID)
		}
	}
	if from.activeAddr() == to.activeAddr() {
		return "", errdefs.FailedPrecondition("backends %s and %s are both served by the array at %s; MigrateVolume moves volumes between arrays (retype changes a volume's type on one array)",
			src, dst, from.activeAddr())
	}
	_, dest, err := d.pair(src, dst)
	if err != nil {
		return "", err
	}
	release, err := from.ops.acquire("volume "+volID, "migrate")
	if err != nil {
		return "", err
	}
	releaseDst, err := to.ops.acquire("volume "+volID, "migrate")
	if err != nil {
		release()
		return "", err
	}
	unlock := func() { releaseDst(); release() }
	// Until the run takes the volume over, every return here releases it.
	running := false
	defer func() {
		if !running {
			unlock()
		}
	}()
	m := &migration{from: from, to: to, dst: dest, volID: volID, name: volumeName(volID), opts: opts}
	if err := m.check(ctx); err != nil {
		return "", err
	}
	if _, err := dest.array.CreatePool(ctx, dest.pool); err != nil {
		return "", fmt.Errorf("destination %s: %w", dst, err)
	}
	if _, err := from.activeConn().Replication.CreateLink(ctx, array.LinkSpec{Name: dest.link, Address: dest.addr, Token: dest.token}); err != nil {
		return "", fmt.Errorf("linking backend %s to %s: %w", src, dst, err)
	}
	m.op = array.Operation{ID: newOperationID(), Kind: kindMigrateVolume, Target: m.name + "→" + dst,
		State: array.OpRunning, Phase: "preparing", Started: time.Now()}
	if err := from.journal.record(m.op); err != nil {
		return "", fmt.Errorf("operation journal: %w", err)
	}
	runCtx, cancel := context.WithCancel(context.Background())
	from.runs.Store(m.op.ID, cancel)
	started := d.spawn(func(dctx context.Context) {
		defer unlock()
		defer from.runs.Delete(m.op.ID)
		defer cancel()
		stop := context.AfterFunc(dctx, cancel)
		defer stop()
		m.run(runCtx)
	})
	running = started
	if !started {
		from.runs.Delete(m.op.ID)
		cancel()
		err := errdefs.Unavailable("volrepd is stopping; migrate again when it runs")
		m.finish(err)
		return "", err
	}
	from.log.Info("volume migration started", "volume", volID, "destination", dst, "operation", m.op.ID,
		"small_pass_bytes", opts.SmallBytes, "small_pass_time", opts.SmallTime, "max_passes", opts.MaxPasses)
	return m.op.ID, nil
}

// cancelRun cancels driver operation id if it runs here.
func (b *Backend) cancelRun(id string) bool {
	c, ok := b.runs.Load(id)
	if ok {
		c.(context.CancelFunc)()
	}
	return ok
}

func newOperationID() string {
	var b [6]byte
	rand.Read(b[:])
	return "op-" + hex.EncodeToString(b[:])
}

// check refuses what the migration cannot take: the errors say what to do.
func (m *migration) check(ctx context.Context) error {
	fa, ta := m.from.activeArray(), m.dst.array
	v, err := fa.GetVolume(ctx, m.name)
	if err != nil {
		return m.from.volumeErr(m.volID, err)
	}
	m.labels = m.to.volumeLabels(m.volID, VolumeType{Name: v.Labels[labelVolumeType]}, "")
	kind, group, err := m.from.protectionOf(ctx, m.name)
	if err != nil {
		return err
	}
	if kind != "" {
		return errdefs.FailedPrecondition("volume %s is %s-replicated (in %s on backend %s); its replicas would stay behind: retype it to a volume type without replication first, or let Cinder migrate it generically (--force-host-copy)",
			m.volID, kind, group, m.from.cfg.Section)
	}
	snaps, err := m.from.ListSnapshots(ctx, m.volID)
	if err != nil {
		return err
	}
	if len(snaps) > 0 {
		return errdefs.FailedPrecondition("volume %s has %d snapshots; Cinder does not migrate a volume with snapshots: delete them first", m.volID, len(snaps))
	}
	conns, err := fa.ListConnections(ctx, "", m.name)
	if err != nil {
		return err
	}
	if len(conns) > 0 {
		return errdefs.FailedPrecondition("volume %s is connected over iSCSI to host %s; the switch cannot move a connection: detach it first, or let Cinder migrate it generically (Nova swaps an in-use volume)",
			m.volID, conns[0].Host)
	}
	if tv, err := ta.GetVolume(ctx, m.name); err == nil {
		return errdefs.AlreadyExists("backend %s already has a volume %s (%s, created %s); delete it there or migrate to another backend",
			m.to.cfg.Section, m.volID, tv.Name, tv.Created.Format(time.RFC3339))
	} else if !errdefs.IsNotFound(err) {
		return err
	}
	info, err := ta.Info(ctx)
	if err != nil {
		return err
	}
	if info.FreeBytes < v.UsedBytes {
		return errdefs.ResourceExhausted("backend %s's array has %d bytes free and volume %s uses %d; free space there or migrate to another backend",
			m.to.cfg.Section, info.FreeBytes, m.volID, v.UsedBytes)
	}
	return nil
}

// run makes the passes, then the last one with writes held and the
// switch, and records the outcome.
func (m *migration) run(ctx context.Context) {
	err := m.passes(ctx)
	if err != nil {
		m.abandon(ctx, err)
	}
	m.finish(err)
}

func (m *migration) passes(ctx context.Context) error {
	n := 1
	for ; ; n++ {
		res, took, err := m.pass(ctx, n, "")
		if err != nil {
			return err
		}
		if res.BytesSent <= m.opts.SmallBytes || took <= m.opts.SmallTime {
			break
		}
		// Holding writes for a large delta would stall the volume's users
		// for as long as it takes: a migration that does not converge
		// gives up instead.
		if n >= m.opts.MaxPasses {
			return errdefs.Aborted("after %d passes the volume's changes still outpace the copy (the last pass sent %d bytes in %s, small is at most %d bytes or %s); the volume stays on %s: migrate it when it is less busy, or with larger small_pass_bytes or small_pass_ms",
				n, res.BytesSent, took.Round(time.Millisecond), m.opts.SmallBytes, m.opts.SmallTime, m.from.cfg.Section)
		}
	}
	return m.last(ctx, n+1)
}

// pass snapshots the volume and sends the delta from the previous pass's
// snapshot (all of it the first time); phase names the pass in progress.
func (m *migration) pass(ctx context.Context, n int, phase string) (array.SnapshotReplicateResult, time.Duration, error) {
	start := time.Now()
	fa, ops := m.from.activeArray(), m.from.activeConn().Replication
	snap := fmt.Sprintf("migrate-%s-%d", strings.TrimPrefix(m.op.ID, "op-"), n)
	// Recorded first: a create cut short by a cancel may still have made
	// the snapshot, and the clean-up must delete it then too.
	m.snaps = append(m.snaps, snap)
	if _, err := fa.CreateSnapshot(ctx, m.name, snap, map[string]string{labelMigration: m.op.ID}); err != nil {
		return array.SnapshotReplicateResult{}, 0, fmt.Errorf("pass %d: snapshot: %w", n, err)
	}
	id, err := ops.ReplicateSnapshot(ctx, array.SnapshotReplicateSpec{Volume: m.name, Snapshot: snap, Link: m.dst.link, RemotePool: m.dst.pool,
		RemoteLabels: m.labels})
	if err != nil {
		return array.SnapshotReplicateResult{}, 0, fmt.Errorf("pass %d: %w", n, err)
	}
	if phase == "" {
		phase = fmt.Sprintf("pass %d", n)
	}
	var last array.Operation
	err = ops.WatchOperation(ctx, id, func(o array.Operation) error {
		last = o
		m.progress(func(op *array.Operation) {
			op.Phase = phase + ": " + o.Phase
			op.Done, op.Total, op.Rate, op.ETA = o.Done, o.Total, o.Rate, o.ETA
		})
		return nil
	})
	if err != nil {
		if ctx.Err() != nil {
			_, _ = ops.CancelOperation(context.WithoutCancel(ctx), id)
		}
		return array.SnapshotReplicateResult{}, 0, fmt.Errorf("pass %d: %w", n, err)
	}
	if last.State != array.OpSucceeded {
		return last.Result, 0, errdefs.New(errdefs.ParseKind(last.ErrCode), "pass %d (%s): %s", n, id, last.Err)
	}
	took := time.Since(start)
	res := last.Result
	m.progress(func(op *array.Operation) {
		op.Result.Steps = append(op.Result.Steps, res)
		op.Result.BytesSent += res.BytesSent
		op.Result.BytesTotal += res.BytesTotal
	})
	m.from.log.Info("migration pass sent", "operation", m.op.ID, "volume", m.volID, "pass", n, "snapshot", snap,
		"incremental", res.Incremental, "bytes_sent", res.BytesSent, "duration", took.Round(time.Millisecond))
	// The delta base is now snap; the one before is of no more use. The
	// last pass keeps it: deleting a snapshot merges layers, which has no
	// place while writes are held (cleanUp deletes it after the switch).
	if len(m.snaps) >= 2 && !strings.Contains(phase, "last") {
		m.dropSnapshots(context.WithoutCancel(ctx), m.snaps[len(m.snaps)-2:len(m.snaps)-1])
		m.snaps = append(m.snaps[:len(m.snaps)-2], snap)
	}
	return res, took, nil
}

// last holds the volume's writes, sends the last delta and switches: the
// copy on the destination is promoted to the writable volume and the
// source is fenced (read-only) before the writes are let go, so they fail
// there rather than land where nobody reads them. The hold covers only
// this: writes wait (they do not fail) for as long as it takes.
func (m *migration) last(ctx context.Context, n int) error {
	fa, ta := m.from.activeArray(), m.dst.array
	held := time.Now()
	since, err := fa.HoldWrites(ctx, m.name, m.opts.HoldLease)
	if err != nil {
		return fmt.Errorf("holding the writes of volume %s: %w", m.volID, err)
	}
	switched := false
	defer func() {
		if switched {
			return
		}
		if _, err := fa.HoldWrites(context.WithoutCancel(ctx), m.name, 0); err != nil && !errdefs.IsNotFound(err) {
			m.from.log.Warn("migration: releasing the source's writes failed; they go on when the hold's lease ends", "operation", m.op.ID, "lease", m.opts.HoldLease, "error", err)
		}
	}()
	_, sendTook, err := m.pass(ctx, n, fmt.Sprintf("pass %d (last, writes held)", n))
	if err != nil {
		return err
	}
	// The hold must not have lapsed: writes after the last snapshot
	// would be lost by the switch.
	again, err := fa.HoldWrites(ctx, m.name, m.opts.HoldLease)
	if err != nil {
		return fmt.Errorf("renewing the hold of volume %s's writes: %w", m.volID, err)
	}
	if !again.Equal(since) {
		return errdefs.Aborted("the hold of volume %s's writes lapsed during the last pass (lease %s), so writes may have landed after its snapshot; the volume stays on %s: migrate again, when it is less busy or with a smaller small_pass_bytes",
			m.volID, m.opts.HoldLease, m.from.cfg.Section)
	}
	m.progress(func(op *array.Operation) { op.Phase = "switching (writes held)" })
	if err := fa.SetReadOnly(ctx, m.name, true); err != nil {
		return fmt.Errorf("fencing the source volume %s: %w", m.volID, err)
	}
	if err := ta.SetReadOnly(ctx, m.name, false); err != nil {
		if uerr := fa.SetReadOnly(context.WithoutCancel(ctx), m.name, false); uerr != nil {
			err = errors.Join(err, fmt.Errorf("the source volume %s stays read-only; make it writable with SetVolumeReadOnly: %w", m.volID, uerr))
		}
		return fmt.Errorf("promoting the copy on %s: %w", m.to.cfg.Section, err)
	}
	switched = true
	heldFor := time.Since(held)
	if _, err := fa.HoldWrites(context.WithoutCancel(ctx), m.name, 0); err != nil && !errdefs.IsNotFound(err) {
		m.from.log.Warn("migration: releasing the fenced source's writes failed", "operation", m.op.ID, "error", err)
	}
	m.progress(func(op *array.Operation) { op.WritesHeld, op.Phase = heldFor, "cleaning up" })
	m.from.log.Info("volume migration switched", "operation", m.op.ID, "volume", m.volID, "destination", m.to.cfg.Section,
		"passes", n, "writes_held", heldFor.Round(time.Microsecond), "last_pass", sendTook.Round(time.Microsecond))
	m.cleanUp(context.WithoutCancel(ctx))
	return nil
}

// cleanUp deletes the migration's snapshots on both arrays and the
// source volume, after the switch: the migration has succeeded, so what
// fails here is logged, not returned.
func (m *migration) cleanUp(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	m.dropSnapshots(ctx, m.snaps)
	fa := m.from.activeArray()
	// NBD clients of the source lose their attachment; they attach to the
	// volume on its new backend.
	if _, err := fa.DeleteExport(ctx, "", m.name, ""); err != nil && !errdefs.IsNotFound(err) {
		m.from.log.Warn("migration: revoking the source's exports failed", "operation", m.op.ID, "error", err)
	}
	if err := fa.DeleteVolume(ctx, m.name); err != nil && !errdefs.IsNotFound(err) {
		m.from.log.Warn("migration: the source volume was not deleted; it is read-only, delete it by hand", "operation", m.op.ID,
			"volume", m.name, "error", err)
	}
}

// dropSnapshots deletes migration snapshots on both arrays.
func (m *migration) dropSnapshots(ctx context.Context, snaps []string) {
	for _, a := range []array.Array{m.from.activeArray(), m.dst.array} {
		for _, s := range snaps {
			if err := a.DeleteSnapshot(ctx, m.name, s); err != nil && !errdefs.IsNotFound(err) {
				m.from.log.Warn("migration: a snapshot it took was not deleted", "operation", m.op.ID, "snapshot", s, "error", err)
			}
		}
	}
}

// abandon undoes a failed migration: the source stays as it was and the
// destination's copy goes.
func (m *migration) abandon(ctx context.Context, cause error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	m.dropSnapshots(ctx, m.snaps)
	ta := m.dst.array
	if ss, err := ta.ListSnapshots(ctx, m.name); err == nil {
		for _, s := range ss {
			if err := ta.DeleteSnapshot(ctx, m.name, s.Name); err != nil && !errdefs.IsNotFound(err) {
				m.from.log.Warn("migration: a snapshot of the copy was not deleted", "operation", m.op.ID, "snapshot", s.Name, "error", err)
			}
		}
	}
	if err := ta.DeleteVolume(ctx, m.name); err != nil && !errdefs.IsNotFound(err) {
		m.from.log.Warn("migration: the copy on the destination was not deleted; delete it by hand", "operation", m.op.ID,
			"backend", m.to.cfg.Section, "volume", m.name, "error", err)
	}
	m.from.log.Warn("volume migration failed; the volume stays on its backend", "operation", m.op.ID, "volume", m.volID,
		"destination", m.to.cfg.Section, "error", cause)
}

// progress changes the operation and journals it.
func (m *migration) progress(f func(op *array.Operation)) {
	f(&m.op)
	if err := m.from.journal.record(m.op); err != nil {
		m.from.log.Warn("operation journal: not written", "operation", m.op.ID, "error", err)
	}
}

// finish records how the migration ended.
func (m *migration) finish(err error) {
	m.progress(func(op *array.Operation) { op.End(err, time.Now()) })
	if err == nil {
		var perPass []int64
		for _, s := range m.op.Result.Steps {
			perPass = append(perPass, s.BytesSent)
		}
		m.from.log.Info("volume migrated", "operation", m.op.ID, "volume", m.volID, "destination", m.to.cfg.Section,
			"passes", len(perPass), "bytes_per_pass", perPass, "writes_held", m.op.WritesHeld.Round(time.Microsecond),
			"duration", m.op.Finished.Sub(m.op.Started).Round(time.Millisecond))
	}
}
