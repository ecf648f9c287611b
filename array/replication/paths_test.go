package replication_test

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/volrep/volrep/array"
	"github.com/volrep/volrep/clock"
	"github.com/volrep/volrep/errdefs"
)

// randomData is n reproducible bytes that do not compress.
func randomData(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, seed))
	p := make([]byte, n)
	for i := range p {
		p[i] = byte(r.Uint32())
	}
	return p
}

// noSnapshotOnTarget fails if the target shows snapshot vol@snap, or any
// snapshot of vol at all: a receive that did not finish must leave nothing
// a user could mistake for a replica.
func noSnapshotOnTarget(t *testing.T, tg *target, vol, snap string) {
	t.Helper()
	if s, err := tg.st.GetSnapshot(t.Context(), vol, snap); !errdefs.IsNotFound(err) {
		t.Fatalf("target has %s@%s after an unfinished transfer: %+v, %v", vol, snap, s, err)
	}
	if snaps, err := tg.st.ListSnapshots(t.Context(), vol); err == nil && len(snaps) > 0 {
		t.Fatalf("target lists snapshots of %s after an unfinished transfer: %v", vol, names(snaps))
	}
}

// slowReplicate starts replicating v@s1 (8 MiB of data) over a link capped
// at 4 MiB/s, so that the test can act while it is sending.
func slowReplicate(t *testing.T) (*source, *target, array.Replication, array.SnapshotReplicateSpec, []byte) {
	t.Helper()
	clk := clock.NewFake(t0)
	src, tg := newSource(t, clk), newTarget(t)
	a, r := serveSource(t, src)
	ctx := t.Context()
	if _, err := r.CreateLink(ctx, array.LinkSpec{Name: "site-b", Address: tg.addr, Token: token, BandwidthLimit: 4 * mib}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.CreateVolume(ctx, array.VolumeSpec{Name: "v", Pool: "cinder", SizeBytes: 16 * mib}); err != nil {
		t.Fatal(err)
	}
	data := randomData(7, 8*mib)
	if err := a.WriteVolume(ctx, "v", 0, data, false); err != nil {
		t.Fatal(err)
	}
	if _, err := a.CreateSnapshot(ctx, "v", "s1", nil); err != nil {
		t.Fatal(err)
	}
	return src, tg, r, array.SnapshotReplicateSpec{Volume: "v", Snapshot: "s1", Link: "site-b", RemotePool: "replicas"}, data
}

// watchUntil follows operation id until cond holds for it, and returns it.
func watchUntil(t *testing.T, r array.Replication, id string, cond func(array.Operation) bool) array.Operation {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	var got array.Operation
	errFound := errors.New("found")
	err := r.WatchOperation(ctx, id, func(o array.Operation) error {
		got = o
		if cond(o) {
			return errFound
		}
		return nil
	})
	if !errors.Is(err, errFound) && (err != nil || !cond(got)) {
		t.Fatalf("operation %s never reached the condition: last %+v, %v", id, got, err)
	}
	return got
}

// replicateAgain runs spec to its end. The target may still be winding
// down the broken receive (it answers ABORTED, "retry when it ends", as
// documented), so that answer is retried for a bounded time.
func replicateAgain(t *testing.T, r array.Replication, spec array.SnapshotReplicateSpec) array.Operation {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		id, err := r.ReplicateSnapshot(t.Context(), spec)
		if err != nil {
			t.Fatal(err)
		}
		op := waitOp(t, r, id)
		if op.ErrCode != "ABORTED" || time.Now().After(deadline) {
			return op
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func sameOnTarget(t *testing.T, tg *target, vol, snap string, want []byte) {
	t.Helper()
	got := make([]byte, len(want))
	if err := tg.st.ReadSnapshot(t.Context(), vol, snap, 0, got); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("target %s@%s differs from the source (%v)", vol, snap, err)
	}
}

// A snapshot replication cancelled while sending leaves no snapshot on the
// target (the receive is atomic); running it again completes it. While it
// runs, the operation reports a rate and an ETA that fit the link's cap.
func TestCancelledReplicateLeavesNoSnapshot(t *testing.T) {
	_, tg, r, spec, data := slowReplicate(t)
	ctx := t.Context()
	id, err := r.ReplicateSnapshot(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	op := watchUntil(t, r, id, func(o array.Operation) bool { return o.Phase == "sending" && o.Done >= 2*mib })
	// Progress: 4 MiB/s on the wire, so the rate since the start (which
	// includes connecting) is at most a little over that, and the ETA is
	// what is left at that rate.
	if op.Total != 8*mib || op.Rate <= 0 || op.Rate > 4*mib*1.5 {
		t.Fatalf("progress while sending: total %d, rate %.0f B/s (link capped at %d)", op.Total, op.Rate, 4*mib)
	}
	wantETA := time.Duration(float64(op.Total-op.Done) / op.Rate * float64(time.Second))
	if op.ETA <= 0 || op.ETA > 10*time.Second || (op.ETA-wantETA).Abs() > 100*time.Millisecond {
		t.Fatalf("ETA %s with %d of %d bytes done at %.0f B/s (want about %s)", op.ETA, op.Done, op.Total, op.Rate, wantETA)
	}
	op, err = r.CancelOperation(ctx, id)
	if err != nil || op.State != array.OpCanceled {
		t.Fatalf("cancel: %+v, %v", op, err)
	}
	noSnapshotOnTarget(t, tg, "v", "s1")
	if op = replicateAgain(t, r, spec); op.State != array.OpSucceeded {
		t.Fatalf("replicating again after the cancel: %+v", op)
	}
	sameOnTarget(t, tg, "v", "s1", data)
}

// The same when the target goes away mid-transfer: the operation fails,
// the target shows nothing, and once it is back the replication completes.
func TestInterruptedReplicateLeavesNoSnapshot(t *testing.T) {
	_, tg, r, spec, data := slowReplicate(t)
	ctx := t.Context()
	id, err := r.ReplicateSnapshot(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	watchUntil(t, r, id, func(o array.Operation) bool { return o.Phase == "sending" && o.Done >= 2*mib })
	tg.halt()
	if op := waitOp(t, r, id); op.State != array.OpFailed || op.Err == "" {
		t.Fatalf("a transfer whose target vanished: %+v", op)
	}
	noSnapshotOnTarget(t, tg, "v", "s1")
	tg.start()
	if op := replicateAgain(t, r, spec); op.State != array.OpSucceeded {
		t.Fatalf("replicating again once the target is back: %+v", op)
	}
	sameOnTarget(t, tg, "v", "s1", data)
}

// A suspended replica ships nothing, whatever the schedule says; resumed,
// it catches the target up with what was written meanwhile.
func TestResumeSuspendedReplica(t *testing.T) {
	clk := clock.NewFake(t0)
	src, tg := newSource(t, clk), newTarget(t)
	ctx := t.Context()
	if _, err := src.st.CreateVolume(ctx, array.VolumeSpec{Name: "vol", Pool: "cinder", SizeBytes: 8 * mib}); err != nil {
		t.Fatal(err)
	}
	protect(t, src, tg, "r", array.ReplicaSpec{Kind: array.KindVolume, Local: "vol", Interval: time.Hour,
		SourceRetention: array.Retention{AllFor: 24 * time.Hour}, TargetRetention: array.Retention{AllFor: 24 * time.Hour}})
	waitCycle(t, src.eng, "r", "r.1")
	// A witness on the same schedule: once it has shipped a tick's
	// snapshot, the scheduler has been through that tick for "r" too.
	if _, err := src.st.CreateVolume(ctx, array.VolumeSpec{Name: "witness", Pool: "cinder", SizeBytes: mib}); err != nil {
		t.Fatal(err)
	}
	if _, err := src.eng.ReplicateEntity(ctx, array.ReplicaSpec{Name: "w", Kind: array.KindVolume, Local: "witness", Link: "site-b",
		RemotePool: "replicas", Interval: time.Hour,
		SourceRetention: array.Retention{AllFor: 24 * time.Hour}, TargetRetention: array.Retention{AllFor: 24 * time.Hour}}); err != nil {
		t.Fatal(err)
	}
	waitCycle(t, src.eng, "w", "w.1")
	rep, err := src.eng.SuspendReplica(ctx, "r")
	if err != nil || rep.State != array.StateSuspended {
		t.Fatalf("suspend: %+v, %v", rep, err)
	}
	data := randomData(3, 2*mib)
	if err := src.st.WriteVolume(ctx, "vol", 2*mib, data, false); err != nil {
		t.Fatal(err)
	}
	clk.Advance(time.Hour)
	witness := waitCycle(t, src.eng, "w", "w.2")
	rep = waitState(t, src.eng, "r", array.StateSuspended)
	if _, err := tg.st.GetSnapshot(ctx, "vol", "r.2"); !errdefs.IsNotFound(err) {
		t.Fatalf("suspended replica shipped r.2 (the witness shipped %s): %v", witness.LastSnapshot, err)
	}
	if rep.LastSnapshot != "r.1" {
		t.Fatalf("suspended replica shipped: last %s", rep.LastSnapshot)
	}
	if rep, err = src.eng.ResumeReplica(ctx, "r"); err != nil || rep.State == array.StateSuspended {
		t.Fatalf("resume: %+v, %v", rep, err)
	}
	clk.Advance(time.Hour)
	deadline := time.Now().Add(20 * time.Second)
	for {
		rep, err = src.eng.GetReplica(ctx, "r")
		if err != nil {
			t.Fatal(err)
		}
		if rep.LastSnapshot != "r.1" && rep.LastSnapshot != "" && rep.SyncState == array.SyncIdle {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("resumed replica did not catch up: %+v", rep)
		}
		time.Sleep(time.Millisecond)
	}
	if rep.State != array.StateActive || rep.LastSyncBytes != 2*mib {
		t.Fatalf("after resume: state %s, sent %d bytes (want the 2 MiB written while suspended)", rep.State, rep.LastSyncBytes)
	}
	got := make([]byte, len(data))
	if err := tg.st.ReadSnapshot(ctx, "vol", rep.LastSnapshot, 2*mib, got); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("target %s lacks the writes made while suspended (%v)", rep.LastSnapshot, err)
	}
}

// A consistency-group replica with member mappings puts each member on the
// target under its mapped name, and nothing under the local names.
func TestGroupReplicaMemberMappings(t *testing.T) {
	clk := clock.NewFake(t0)
	src, tg := newSource(t, clk), newTarget(t)
	ctx := t.Context()
	want := map[string][]byte{}
	for i, v := range []string{"db", "logs"} {
		if _, err := src.st.CreateVolume(ctx, array.VolumeSpec{Name: v, Pool: "cinder", SizeBytes: 4 * mib}); err != nil {
			t.Fatal(err)
		}
		want[v] = randomData(uint64(i+10), mib)
		if err := src.st.WriteVolume(ctx, v, 0, want[v], false); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := src.st.CreateGroup(ctx, "app", "cinder", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := src.st.AddMembers(ctx, "app", []string{"db", "logs"}); err != nil {
		t.Fatal(err)
	}
	mapping := map[string]string{"db": "dr-db", "logs": "dr-logs"}
	protect(t, src, tg, "g", array.ReplicaSpec{Kind: array.KindGroup, Local: "app", RemoteEntity: "dr-app",
		MemberMappings: mapping, Interval: time.Hour,
		SourceRetention: array.Retention{AllFor: 24 * time.Hour}, TargetRetention: array.Retention{AllFor: 24 * time.Hour}})
	rep := waitCycle(t, src.eng, "g", "g.1")
	if rep.State != array.StateActive {
		t.Fatalf("group replica: %+v", rep)
	}
	for local, remote := range mapping {
		got := make([]byte, mib)
		if err := tg.st.ReadSnapshot(ctx, remote, "g.1", 0, got); err != nil || !bytes.Equal(got, want[local]) {
			t.Fatalf("member %s is not on the target as %s@g.1 (%v)", local, remote, err)
		}
		if _, err := tg.st.GetVolume(ctx, local); !errdefs.IsNotFound(err) {
			t.Fatalf("member %s also landed on the target under its local name: %v", local, err)
		}
	}
	// A delta keeps the mapping.
	more := randomData(99, mib)
	if err := src.st.WriteVolume(ctx, "logs", 2*mib, more, false); err != nil {
		t.Fatal(err)
	}
	clk.Advance(time.Hour)
	waitCycle(t, src.eng, "g", "g.2")
	got := make([]byte, mib)
	if err := tg.st.ReadSnapshot(ctx, "dr-logs", "g.2", 2*mib, got); err != nil || !bytes.Equal(got, more) {
		t.Fatalf("delta of logs is not on the target as dr-logs@g.2 (%v)", err)
	}
}
