package driver

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/volrep/volrep/array"
	"github.com/volrep/volrep/errdefs"
)

// twoArrayDriver runs backends ba (on array a) and bb (on array b).
func twoArrayDriver(t *testing.T, extraA ...string) (*Driver, *testArray, *testArray) {
	t.Helper()
	a, b := newTestArray(t, "array-a"), newTestArray(t, "array-b")
	d := startDriver(t, backendConf(map[string][]string{
		"ba": append([]string{"san_ip = " + a.addr, "pure_api_token = " + a.token}, extraA...),
		"bb": {"san_ip = " + b.addr, "pure_api_token = " + b.token},
	}), a)
	return d, a, b
}

// seqWriter writes 4 KiB blocks of a volume through an open handle, as an
// attached client does, one at a time, each stamped with its sequence
// number; model is what the volume holds after every acknowledged write.
type seqWriter struct {
	mu               sync.Mutex
	model            []byte
	acked            int
	ackedAfterStart  int
	started          bool
	err              error
	waitedAtTheClose time.Duration
}

// TestMigrateVolumeUnderWrites migrates a volume between backends on two
// arrays while a client keeps writing to it: a full first pass, then
// incremental passes until one is small, then the last with writes held.
// Writes go on during the passes; the write caught by the hold waits
// instead of failing, and fails only once the source is fenced at the
// switch. The destination then holds exactly every acknowledged write,
// the source is gone, and the operation reports the passes, their bytes
// and how long writes were held.
func TestMigrateVolumeUnderWrites(t *testing.T) {
	ctx := t.Context()
	d, a, b := twoArrayDriver(t)
	ba := testBackend(t, d, "ba")
	if _, err := ba.CreateVolume(ctx, "v1", 1, VolumeType{}, ""); err != nil {
		t.Fatal(err)
	}
	const mib = 1 << 20
	const area = 32 * mib
	w := &seqWriter{model: make([]byte, area)}
	r := rand.New(rand.NewPCG(1, 2))
	for i := range w.model {
		w.model[i] = byte(r.Uint32())
	}
	name := volumeName("v1")
	if err := a.st.WriteVolume(ctx, name, 0, w.model, false); err != nil {
		t.Fatal(err)
	}
	h, err := a.st.OpenVolume(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		blk := make([]byte, 4096)
		for seq := uint64(1); ; seq++ {
			off := int64(r.IntN(area/4096)) * 4096
			for i := 0; i < len(blk); i += 8 {
				binary.LittleEndian.PutUint64(blk[i:], seq)
			}
			start := time.Now()
			err := h.WriteAt(ctx, blk, off, false)
			w.mu.Lock()
			if err != nil {
				w.err, w.waitedAtTheClose = err, time.Since(start)
				w.mu.Unlock()
				return
			}
			copy(w.model[off:], blk)
			w.acked++
			if w.started {
				w.ackedAfterStart++
			}
			w.mu.Unlock()
			time.Sleep(2 * time.Millisecond)
		}
	}()
	waitFor(t, 5*time.Second, func() string {
		w.mu.Lock()
		defer w.mu.Unlock()
		if w.acked < 50 {
			return "the writer has not started"
		}
		w.started = true
		return ""
	})

	start := time.Now()
	// 32 MiB would be a small pass by the default (64 MiB): a 4 MiB
	// threshold makes the first pass large, so an incremental one follows
	// before the last. Only bytes decide: on an idle machine the full pass
	// takes under the default 1 s, which alone would make it small.
	id, err := d.MigrateVolume(ctx, "ba", "v1", "bb", MigrateOptions{SmallBytes: 4 * mib, SmallTime: time.Nanosecond})
	if err != nil {
		t.Fatal(err)
	}
	ops, err := ba.Operations()
	if err != nil {
		t.Fatal(err)
	}
	var op array.Operation
	var phases []string
	if err := ops.WatchOperation(ctx, id, func(o array.Operation) error {
		op = o
		if len(phases) == 0 || phases[len(phases)-1] != o.Phase {
			phases = append(phases, o.Phase)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	<-writerDone
	if op.State != array.OpSucceeded {
		t.Fatalf("migration %s: %s %s (%s); phases %q", id, op.State, op.Err, op.ErrCode, phases)
	}
	steps := op.Result.Steps
	var perPass []int64
	for _, s := range steps {
		perPass = append(perPass, s.BytesSent)
	}
	t.Logf("migrated in %s: %d passes, bytes per pass %v, writes held %s; %d writes acknowledged during it; the held write waited %s and then failed with %v",
		took.Round(time.Millisecond), len(steps), perPass, op.WritesHeld, w.ackedAfterStart, w.waitedAtTheClose.Round(time.Microsecond), w.err)
	if len(steps) < 3 || steps[0].Incremental || steps[0].BytesSent < area {
		t.Fatalf("passes = %+v; want a first full one of at least %d bytes, then more", steps, area)
	}
	for i, s := range steps[1:] {
		if !s.Incremental || s.BytesSent >= area/2 {
			t.Fatalf("pass %d = %+v, want a small incremental one", i+2, s)
		}
	}
	if !slicesHasPrefix(phases, "pass 1") || !slicesContains(phases, "(last, writes held)") {
		t.Fatalf("phases %q lack the passes", phases)
	}
	// The hold lasts the last pass and the switch. Under -race on a loaded
	// machine a pass of a MiB or two takes a second or more, so the bound
	// here is loose; e2e's TestMigrateVolumeUnderWrites holds volrepd (no
	// -race) to 2 s.
	if op.WritesHeld <= 0 || op.WritesHeld > 5*time.Second {
		t.Fatalf("writes held for %s, want (0, 5s]", op.WritesHeld)
	}
	if w.ackedAfterStart < 10 {
		t.Fatalf("only %d writes were acknowledged during the migration: the volume was not in use", w.ackedAfterStart)
	}
	if !errdefs.IsFailedPrecondition(w.err) && !errdefs.IsNotFound(w.err) {
		t.Fatalf("the writer stopped with %v, want the fenced source's FAILED_PRECONDITION or NOT_FOUND", w.err)
	}
	// Every acknowledged write is on the destination, and nothing else.
	got := make([]byte, area)
	if err := b.st.ReadVolume(ctx, name, 0, got); err != nil {
		t.Fatal(err)
	}
	if i := firstDiff(got, w.model); i >= 0 {
		t.Fatalf("the destination differs from the acknowledged writes at byte %d", i)
	}
	if _, err := a.st.GetVolume(ctx, name); !errdefs.IsNotFound(err) {
		t.Fatalf("the source volume is still there: %v", err)
	}
	v, err := b.st.GetVolume(ctx, name)
	if err != nil || v.ReadOnly || v.SizeBytes != gib {
		t.Fatalf("destination volume = %+v, %v; want a writable 1 GiB volume", v, err)
	}
	if v.Labels[labelBackend] != "bb" || v.Labels[labelVolumeID] != "v1" {
		t.Fatalf("destination volume labels = %v; want the driver's, as backend bb's", v.Labels)
	}
	if ss, _ := b.st.ListSnapshots(ctx, name); len(ss) != 0 {
		t.Fatalf("the migration left snapshots on the destination: %v", ss)
	}
	if err := b.st.WriteVolume(ctx, name, 0, []byte("after"), true); err != nil {
		t.Fatalf("writing the migrated volume: %v", err)
	}
	bb := testBackend(t, d, "bb")
	if gv, err := bb.GetVolume(ctx, "v1"); err != nil || gv.ProviderID != name {
		t.Fatalf("GetVolume on the destination backend = %+v, %v", gv, err)
	}
	// The journal keeps the result for GetOperation.
	rec, err := ops.GetOperation(ctx, id)
	if err != nil || rec.State != array.OpSucceeded || rec.WritesHeld != op.WritesHeld || len(rec.Result.Steps) != len(steps) {
		t.Fatalf("GetOperation = %+v, %v", rec, err)
	}
}

func slicesHasPrefix(list []string, prefix string) bool {
	return slices.ContainsFunc(list, func(s string) bool { return strings.HasPrefix(s, prefix) })
}

func slicesContains(list []string, sub string) bool {
	return slices.ContainsFunc(list, func(s string) bool { return strings.Contains(s, sub) })
}

func firstDiff(a, b []byte) int {
	if bytes.Equal(a, b) {
		return -1
	}
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// TestMigrateVolumeRefusals: what a migration cannot take is refused at
// once, with the error kind Cinder and operators act on, and leaves both
// arrays as they were.
func TestMigrateVolumeRefusals(t *testing.T) {
	ctx := t.Context()
	c := newTestArray(t, "array-c")
	d, a, b := twoArrayDriver(t, device("site-c", c.addr, c, "async"))
	ba := testBackend(t, d, "ba")
	for _, id := range []string{"plain", "snapped", "taken"} {
		if _, err := ba.CreateVolume(ctx, id, 1, VolumeType{}, ""); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := ba.CreateVolume(ctx, "repl", 1, asyncSpecs, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := ba.CreateSnapshot(ctx, "s1", "snapped"); err != nil {
		t.Fatal(err)
	}
	if _, err := b.st.CreatePool(ctx, "p"); err != nil {
		t.Fatal(err)
	}
	if _, err := b.st.CreateVolume(ctx, array.VolumeSpec{Name: volumeName("taken"), Pool: "p", SizeBytes: gib}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name, vol, dst string
		is             func(error) bool
		says           string
	}{
		{"same backend", "plain", "ba", errdefs.IsInvalidArgument, "own backend"},
		{"unknown backend", "plain", "nope", errdefs.IsNotFound, "generically"},
		{"replication device", "plain", "site-c", errdefs.IsNotFound, "another volrep backend"},
		{"missing volume", "ghost", "bb", errdefs.IsNotFound, "ghost"},
		{"snapshots", "snapped", "bb", errdefs.IsFailedPrecondition, "delete them first"},
		{"replicated", "repl", "bb", errdefs.IsFailedPrecondition, "retype it"},
		{"taken on the destination", "taken", "bb", errdefs.IsAlreadyExists, "delete it there"},
	} {
		_, err := d.MigrateVolume(ctx, "ba", c.vol, c.dst, MigrateOptions{})
		if !c.is(err) || !strings.Contains(err.Error(), c.says) {
			t.Errorf("%s: %v; want a refusal saying %q", c.name, err, c.says)
		}
	}
	if _, err := a.st.GetVolume(ctx, volumeName("plain")); err != nil {
		t.Fatal(err)
	}
	if _, err := b.st.GetVolume(ctx, volumeName("plain")); !errdefs.IsNotFound(err) {
		t.Fatalf("a refused migration left a volume on the destination: %v", err)
	}
	// After the refusals the volume is not held busy: it migrates.
	id, err := d.MigrateVolume(ctx, "ba", "plain", "bb", MigrateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	op := watchOp(t, ba, id)
	if op.State != array.OpSucceeded || len(op.Result.Steps) != 2 {
		t.Fatalf("migrating an idle volume = %+v; want 2 passes (full, then the last)", op)
	}
}

func watchOp(t *testing.T, b *Backend, id string) array.Operation {
	t.Helper()
	ops, err := b.Operations()
	if err != nil {
		t.Fatal(err)
	}
	var op array.Operation
	if err := ops.WatchOperation(t.Context(), id, func(o array.Operation) error { op = o; return nil }); err != nil {
		t.Fatal(err)
	}
	return op
}

// TestMigrateVolumeCanceled: a migration canceled during its passes ends
// canceled, the source keeps its data and stays writable, and the
// destination's copy is deleted. One whose passes do not get small within
// max_passes fails the same way, ABORTED, without holding writes.
func TestMigrateVolumeCanceled(t *testing.T) {
	t.Run("canceled", func(t *testing.T) { testMigrateVolumeStops(t, 100) })
	t.Run("not converging", func(t *testing.T) { testMigrateVolumeStops(t, 2) })
}

// migrationSource makes volume v1 on backend ba (array a) holding data.
func migrationSource(t *testing.T, data []byte) (*Driver, *Backend, *testArray, *testArray) {
	t.Helper()
	d, a, b := twoArrayDriver(t)
	ba := testBackend(t, d, "ba")
	if _, err := ba.CreateVolume(t.Context(), "v1", 1, VolumeType{}, ""); err != nil {
		t.Fatal(err)
	}
	if err := a.st.WriteVolume(t.Context(), volumeName("v1"), 0, data, false); err != nil {
		t.Fatal(err)
	}
	return d, ba, a, b
}

func testMigrateVolumeStops(t *testing.T, maxPasses int) {
	ctx := t.Context()
	name := volumeName("v1")
	data := bytes.Repeat([]byte("0123456789abcdef"), 16<<20/16)
	d, ba, a, b := migrationSource(t, data)
	// Every pass is "large": with many allowed, the migration is still
	// passing when it is canceled; with 2, it gives up after them.
	id, err := d.MigrateVolume(ctx, "ba", "v1", "bb", MigrateOptions{SmallBytes: 1, SmallTime: time.Nanosecond, MaxPasses: maxPasses})
	if err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	writer := make(chan error, 1)
	go func() {
		// Each pass has something to send.
		for i := int64(0); ; i++ {
			select {
			case <-stop:
				writer <- nil
				return
			default:
			}
			if err := a.st.WriteVolume(ctx, name, (i%4096)*4096, data[:4096], false); err != nil {
				writer <- err
				return
			}
			time.Sleep(time.Millisecond)
		}
	}()
	ops, err := ba.Operations()
	if err != nil {
		t.Fatal(err)
	}
	var op array.Operation
	if maxPasses > 2 {
		waitFor(t, 20*time.Second, func() string {
			o, err := ops.GetOperation(ctx, id)
			if err != nil || len(o.Result.Steps) < 2 {
				return "waiting for 2 passes"
			}
			return ""
		})
		if op, err = ops.CancelOperation(ctx, id); err != nil {
			t.Fatal(err)
		}
	} else {
		op = watchOp(t, ba, id)
	}
	close(stop)
	if err := <-writer; err != nil {
		t.Fatalf("the writer failed during the migration: %v", err)
	}
	switch {
	case maxPasses > 2 && op.State != array.OpCanceled:
		t.Fatalf("canceled migration = %s %s", op.State, op.Err)
	case maxPasses == 2 && (op.State != array.OpFailed || op.ErrCode != "ABORTED" || !strings.Contains(op.Err, "outpace") ||
		len(op.Result.Steps) != 2 || op.WritesHeld != 0):
		t.Fatalf("migration that does not converge = %s %s (%s), %d passes, held %s", op.State, op.Err, op.ErrCode, len(op.Result.Steps), op.WritesHeld)
	}
	if _, err := b.st.GetVolume(ctx, name); !errdefs.IsNotFound(err) {
		t.Fatalf("the copy on the destination was not deleted: %v", err)
	}
	got := make([]byte, 4096)
	if err := a.st.ReadVolume(ctx, name, 8<<20, got); err != nil || !bytes.Equal(got, data[8<<20:8<<20+4096]) {
		t.Fatalf("the source lost data: %v", err)
	}
	if err := a.st.WriteVolume(ctx, name, 0, []byte("still writable"), false); err != nil {
		t.Fatalf("the source is not writable after the cancel: %v", err)
	}
	if ss, _ := a.st.ListSnapshots(ctx, name); len(ss) != 0 {
		t.Fatalf("the canceled migration left snapshots on the source: %v", ss)
	}
}

// TestMigrateVolumeHoldLapses: a hold whose lease ends during the last
// pass (here a lease of 1 ms) lets writes land after the last snapshot,
// so the migration must not switch: it fails ABORTED saying so, the
// source keeps its writes and stays writable, and the copy is deleted.
func TestMigrateVolumeHoldLapses(t *testing.T) {
	ctx := t.Context()
	name := volumeName("v1")
	d, ba, a, b := migrationSource(t, bytes.Repeat([]byte{'a'}, 1<<20))
	id, err := d.MigrateVolume(ctx, "ba", "v1", "bb", MigrateOptions{HoldLease: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	op := watchOp(t, ba, id)
	if op.State != array.OpFailed || op.ErrCode != "ABORTED" || !strings.Contains(op.Err, "lapsed") || op.WritesHeld != 0 {
		t.Fatalf("migration with a lapsing hold = %s %s (%s), held %s", op.State, op.Err, op.ErrCode, op.WritesHeld)
	}
	if _, err := b.st.GetVolume(ctx, name); !errdefs.IsNotFound(err) {
		t.Fatalf("the copy on the destination was not deleted: %v", err)
	}
	if v, err := a.st.GetVolume(ctx, name); err != nil || v.ReadOnly {
		t.Fatalf("source after the failed migration = %+v, %v", v, err)
	}
	if err := a.st.WriteVolume(ctx, name, 0, []byte("b"), false); err != nil {
		t.Fatalf("the source is not writable after the failed migration: %v", err)
	}
	if ss, _ := a.st.ListSnapshots(ctx, name); len(ss) != 0 {
		t.Fatalf("the failed migration left snapshots on the source: %v", ss)
	}
}
