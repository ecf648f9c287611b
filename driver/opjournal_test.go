package driver

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/volrep/volrep/array"
)

func TestOpJournalRestartFailsRunningKeepsFinished(t *testing.T) {
	path := filepath.Join(t.TempDir(), "operations", "b.json")
	j, err := loadOpJournal(path)
	if err != nil {
		t.Fatal(err)
	}
	done := array.Operation{ID: "op-done", State: array.OpSucceeded, Phase: "done", Done: 10, Total: 10,
		Started: time.Now().Add(-time.Minute), Finished: time.Now(), Result: array.SnapshotReplicateResult{BytesSent: 10}}
	failed := array.Operation{ID: "op-failed", State: array.OpFailed, Err: "link down", Started: time.Now(), Finished: time.Now()}
	running := array.Operation{ID: "op-run", State: array.OpRunning, Phase: "sending", Started: time.Now()}
	migrating := array.Operation{ID: "op-mig", Kind: kindMigrateVolume, State: array.OpRunning, Phase: "pass 2: sending", Started: time.Now(),
		Result: array.SnapshotReplicateResult{Steps: []array.SnapshotReplicateResult{{BytesSent: 7}}}}
	for _, o := range []array.Operation{done, failed, running, migrating} {
		if err := j.record(o); err != nil {
			t.Fatal(err)
		}
	}
	j2, err := loadOpJournal(path)
	if err != nil {
		t.Fatal(err)
	}
	if o, ok := j2.get("op-done"); !ok || o.State != array.OpSucceeded || o.Result.BytesSent != 10 || o.Done != 10 {
		t.Fatalf("finished operation after restart: %+v %v", o, ok)
	}
	if o, ok := j2.get("op-failed"); !ok || o.Err != "link down" {
		t.Fatalf("failed operation after restart: %+v %v", o, ok)
	}
	o, ok := j2.get("op-run")
	if !ok || o.State != array.OpFailed || !strings.Contains(o.Err, "restarted") || o.Finished.IsZero() {
		t.Fatalf("running operation after restart: %+v %v", o, ok)
	}
	if strings.Contains(o.Err, "migration") {
		t.Fatalf("a snapshot replication's restart message speaks of a migration: %s", o.Err)
	}
	// A migration's says where the volume is and what to clean up, and
	// keeps the passes it made.
	if m, ok := j2.get("op-mig"); !ok || m.State != array.OpFailed || !strings.Contains(m.Err, "stays on its source backend") ||
		!strings.Contains(m.Err, "delete the partial copy") || len(m.Result.Steps) != 1 || m.Result.Steps[0].BytesSent != 7 {
		t.Fatalf("running migration after restart: %+v %v", m, ok)
	}
	// The failure was written back: a third start reads it as failed too.
	j3, err := loadOpJournal(path)
	if err != nil {
		t.Fatal(err)
	}
	if o3, _ := j3.get("op-run"); o3.State != array.OpFailed || !o3.Finished.Equal(o.Finished) {
		t.Fatalf("third start: %+v", o3)
	}
}

func TestOpJournalPrunes(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ops.json")
	j, err := loadOpJournalMax(path, 20)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	if err := j.record(array.Operation{ID: "op-old", State: array.OpSucceeded, Finished: now.Add(-8 * 24 * time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if err := j.record(array.Operation{ID: "op-oldrunning", State: array.OpRunning, Started: now.Add(-8 * 24 * time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if _, ok := j.get("op-old"); ok {
		t.Fatal("a finished operation older than 7 days was kept")
	}
	if _, ok := j.get("op-oldrunning"); !ok {
		t.Fatal("a running operation was pruned")
	}
	for i := range 20 + 5 {
		o := array.Operation{ID: "op-" + time.Duration(i).String(), State: array.OpSucceeded, Finished: now.Add(time.Duration(i) * time.Second)}
		if err := j.record(o); err != nil {
			t.Fatal(err)
		}
	}
	j2, err := loadOpJournalMax(path, 20)
	if err != nil {
		t.Fatal(err)
	}
	// The running one, failed at restart, finished before the others: it goes.
	if n := len(j2.ops); n != 20 {
		t.Fatalf("%d operations kept, want the newest 20", n)
	}
	if _, ok := j2.get("op-0s"); ok {
		t.Fatal("the oldest finished operation beyond the newest 20 was kept")
	}
	if _, ok := j2.get("op-" + time.Duration(20+4).String()); !ok {
		t.Fatal("the newest finished operation was pruned")
	}
}

func TestOpJournalProgressIsThrottled(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ops.json")
	j, err := loadOpJournal(path)
	if err != nil {
		t.Fatal(err)
	}
	clock := time.Now()
	j.now = func() time.Time { return clock }
	o := array.Operation{ID: "op-a", State: array.OpRunning, Phase: "sending", Total: 100}
	if err := j.record(o); err != nil {
		t.Fatal(err)
	}
	o.Done = 50
	if err := j.record(o); err != nil {
		t.Fatal(err)
	}
	if onDisk(t, path).Done != 0 {
		t.Fatal("a progress update within 5s was written")
	}
	clock = clock.Add(opJournalProgressEvery)
	o.Done = 60
	if err := j.record(o); err != nil {
		t.Fatal(err)
	}
	if onDisk(t, path).Done != 60 {
		t.Fatal("progress after 5s was not written")
	}
	o.Done, o.Phase = 70, "verifying"
	if err := j.record(o); err != nil {
		t.Fatal(err)
	}
	if got := onDisk(t, path); got.Phase != "verifying" || got.Done != 70 {
		t.Fatalf("a phase change was not written at once: %+v", got)
	}
}

func onDisk(t *testing.T, path string) array.Operation {
	t.Helper()
	got, err := loadOpJournal(path)
	if err != nil {
		t.Fatal(err)
	}
	o, _ := got.get("op-a")
	return o
}

// A crash between the temporary file and the rename leaves the old
// journal readable, and the stray temporary file does not break loading.
func TestOpJournalCrashLeavesOldOrNew(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "ops.json")
	j, err := loadOpJournal(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := j.record(array.Operation{ID: "op-a", State: array.OpSucceeded, Finished: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, ".state-crashed"), []byte(`[{"ID":"op-half`), 0o600); err != nil {
		t.Fatal(err)
	}
	j2, err := loadOpJournal(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := j2.get("op-a"); !ok {
		t.Fatal("the journal written before the crash was lost")
	}
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if e.Name() != "ops.json" && e.Name() != ".state-crashed" {
			t.Fatalf("stray file %s left by a write", e.Name())
		}
	}
}
