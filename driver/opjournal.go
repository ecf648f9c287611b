package driver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/volrep/volrep/array"
	"github.com/volrep/volrep/errdefs"
)

// Bounds of the operation journal: finished operations older than
// opJournalKeep, or beyond the newest opJournalMax, are pruned.
const (
	opJournalKeep = 7 * 24 * time.Hour
	opJournalMax  = 1000
	// opJournalProgressEvery bounds how often progress alone is written:
	// a state or phase change is written at once.
	opJournalProgressEvery = 5 * time.Second
)

// restartedMsg is the error of an operation that was running when
// volrepd stopped: the array engine's record of it died with the process.
const restartedMsg = "volrepd restarted while this operation was running; run SnapshotReplicate again: it resumes from the receiver's checkpoint"

// restartedMigrationMsg is restartedMsg for a migration: the switch is
// its last step, so the volume is still the source's.
const restartedMigrationMsg = "volrepd restarted while this migration was running; the volume stays on its source backend: delete the partial copy on the destination array (its volume of the same name) and migrate again. " +
	"If the source refuses writes as a read-only replication target, volrepd stopped in the switch: make it writable (SetVolumeReadOnly on the array API) before anything else"

// opJournal keeps the driver's copy of the operations it started, so
// their ids stay queryable after volrepd restarts (the array engine keeps
// them in memory only). It is one JSON file written temp+fsync+rename.
type opJournal struct {
	path string

	mu    sync.Mutex
	ops   map[string]array.Operation
	saved map[string]time.Time // when each was last written
	// changed is closed and replaced at every record, for watchers of the
	// operations the driver runs itself (migrations).
	changed chan struct{}
	now     func() time.Time
	max     int // opJournalMax; tests lower it
}

// emptyOpJournal keeps operations in memory only (no state_dir).
func emptyOpJournal() *opJournal {
	return &opJournal{ops: map[string]array.Operation{}, saved: map[string]time.Time{}, changed: make(chan struct{}),
		now: time.Now, max: opJournalMax}
}

// loadOpJournal reads path; operations that were running are marked
// failed with restartedMsg and the result written back.
func loadOpJournal(path string) (*opJournal, error) { return loadOpJournalMax(path, opJournalMax) }

func loadOpJournalMax(path string, max int) (*opJournal, error) {
	j := emptyOpJournal()
	j.path, j.max = path, max
	if path == "" {
		return j, nil
	}
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return j, nil
	}
	if err != nil {
		return nil, err
	}
	var list []array.Operation
	if err := json.Unmarshal(data, &list); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	changed := false
	for _, o := range list {
		if o.State == array.OpRunning {
			msg := restartedMsg
			if o.Kind == kindMigrateVolume {
				msg = restartedMigrationMsg
			}
			o.State, o.Err, o.ErrCode, o.Finished = array.OpFailed, msg, "Unavailable", j.now()
			changed = true
		}
		j.ops[o.ID] = o
	}
	if j.pruneLocked() || changed {
		if err := j.writeLocked(); err != nil {
			return nil, err
		}
	}
	return j, nil
}

// record stores o: at once when it is new or its state or phase changed,
// otherwise at most every opJournalProgressEvery.
func (j *opJournal) record(o array.Operation) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	old, ok := j.ops[o.ID]
	j.ops[o.ID] = o
	close(j.changed)
	j.changed = make(chan struct{})
	if ok && old.State == o.State && old.Phase == o.Phase && j.now().Sub(j.saved[o.ID]) < opJournalProgressEvery {
		return nil
	}
	j.saved[o.ID] = j.now()
	j.pruneLocked()
	return j.writeLocked()
}

func (j *opJournal) get(id string) (array.Operation, bool) {
	j.mu.Lock()
	defer j.mu.Unlock()
	o, ok := j.ops[id]
	return o, ok
}

// watch calls fn with operation id now and at every change, until it
// is no longer running, fn fails or ctx ends.
func (j *opJournal) watch(ctx context.Context, id string, fn func(array.Operation) error) error {
	for {
		j.mu.Lock()
		o, ok := j.ops[id]
		changed := j.changed
		j.mu.Unlock()
		if !ok {
			return errdefs.NotFound("operation %q not found (finished operations are kept for %s)", id, opJournalKeep)
		}
		if err := fn(o); err != nil || o.State != array.OpRunning {
			return err
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// pruneLocked drops finished operations past the bounds; running ones stay.
func (j *opJournal) pruneLocked() bool {
	var done []array.Operation
	pruned := false
	for id, o := range j.ops {
		switch {
		case o.State == array.OpRunning:
		case j.now().Sub(o.Finished) > opJournalKeep:
			delete(j.ops, id)
			delete(j.saved, id)
			pruned = true
		default:
			done = append(done, o)
		}
	}
	if len(done) <= j.max {
		return pruned
	}
	slices.SortFunc(done, func(a, b array.Operation) int { return b.Finished.Compare(a.Finished) })
	for _, o := range done[j.max:] {
		delete(j.ops, o.ID)
		delete(j.saved, o.ID)
	}
	return true
}

func (j *opJournal) writeLocked() error {
	if j.path == "" {
		return nil
	}
	list := make([]array.Operation, 0, len(j.ops))
	for _, o := range j.ops {
		list = append(list, o)
	}
	slices.SortFunc(list, func(a, b array.Operation) int { return a.Started.Compare(b.Started) })
	data, err := json.Marshal(list)
	if err != nil {
		return err
	}
	return writeFileDurable(j.path, data)
}

// writeFileDurable writes data to path through a temporary file, fsync,
// rename and fsync of the directory, so a crash leaves the old or the new.
func writeFileDurable(path string, data []byte) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, ".state-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	if _, err := f.Write(data); err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// journaledOps answers from the array engine, and from the journal for
// operations the engine no longer knows (it restarted) or never knew (the
// driver runs them: migrations).
type journaledOps struct {
	array.Operations
	j *opJournal
	// cancel cancels a running driver operation; false if there is none.
	cancel func(id string) bool
}

func (o journaledOps) GetOperation(ctx context.Context, id string) (array.Operation, error) {
	op, err := o.Operations.GetOperation(ctx, id)
	if errdefs.IsNotFound(err) {
		if rec, ok := o.j.get(id); ok {
			return rec, nil
		}
	}
	return op, err
}

func (o journaledOps) WatchOperation(ctx context.Context, id string, fn func(array.Operation) error) error {
	err := o.Operations.WatchOperation(ctx, id, fn)
	if errdefs.IsNotFound(err) {
		if _, ok := o.j.get(id); ok {
			return o.j.watch(ctx, id, fn)
		}
	}
	return err
}

func (o journaledOps) CancelOperation(ctx context.Context, id string) (array.Operation, error) {
	op, err := o.Operations.CancelOperation(ctx, id)
	if errdefs.IsNotFound(err) {
		if o.cancel != nil && o.cancel(id) {
			// The run records its end; answer with it, as the engine does.
			err := o.j.watch(ctx, id, func(rec array.Operation) error { op = rec; return nil })
			return op, err
		}
		if rec, ok := o.j.get(id); ok {
			return rec, nil // finished: nothing to cancel
		}
	}
	return op, err
}

// follow copies operation id's progress from the backend's array into
// the journal until it finishes or ctx ends.
func (b *Backend) follow(ctx context.Context, id string) {
	ops := b.activeConn().Replication
	err := ops.WatchOperation(ctx, id, func(o array.Operation) error { return b.journal.record(o) })
	if err != nil && ctx.Err() == nil {
		b.log.Warn("operation journal: following stopped", "operation", id, "error", err)
	}
}
