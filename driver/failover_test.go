package driver

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/volrep/volrep/config"
	"github.com/volrep/volrep/errdefs"
)

func TestCopyOn(t *testing.T) {
	b := &Backend{cfg: config.Backend{PGName: "cinder-group", PodName: "cinder-pod", SanIP: "a:7401",
		ReplicationDevices: []config.ReplicationDevice{
			{BackendID: "b-async", SanIP: "b:7401", Type: "async"},
			{BackendID: "b-sync", SanIP: "b:7401", Type: "sync"},
			{BackendID: "c-async", SanIP: "c:7401", Type: "async"},
		}}}
	for _, tc := range []struct {
		target, replica string
		want            bool
	}{
		{"b-async", "cinder-group.b-async", true},
		{"b-async", "cinder-pod.b-sync", true}, // the same array
		{"b-sync", "cinder-group.b-async", true},
		{"b-async", "consisgroup-g1-cinder.b-async", true},
		{"b-async", "cinder-group.c-async", false},
		{"c-async", "consisgroup-g1-cinder.b-async", false},
		{"b-async", "other-group.b-async", false},
		{"b-async", "consisgroup-g1-other.b-async", false},
		{"b-async", "", false},
	} {
		if got := b.copyOn(tc.target, tc.replica); got != tc.want {
			t.Errorf("copyOn(%q, %q) = %v, want %v", tc.target, tc.replica, got, tc.want)
		}
	}
}

// TestExtendRefusedWhileFailedOver: a failed-over volume keeps its size
// until failback, with an error that says so; at home it grows again.
func TestExtendRefusedWhileFailedOver(t *testing.T) {
	ctx := t.Context()
	b, _, peer := pairedBackend(t, "async")
	failedOverVolume(t, b, peer)
	err := b.ExtendVolume(ctx, "v1", 2, nil)
	if !errdefs.IsFailedPrecondition(err) || !strings.Contains(err.Error(), "failed over to site-b") ||
		!strings.Contains(err.Error(), "failback") {
		t.Fatalf("extend while failed over: %v; want FAILED_PRECONDITION naming the target and failback", err)
	}
	if v, err := peer.st.GetVolume(ctx, volumeName("v1")); err != nil || v.SizeBytes != gib {
		t.Errorf("the target copy after the refused extend: %+v, %v; want 1 GiB", v, err)
	}
	if _, err := b.FailoverHost(ctx, []string{"v1"}, "default"); err != nil {
		t.Fatal(err)
	}
	if err := b.ExtendVolume(ctx, "v1", 2, nil); err != nil {
		t.Fatalf("extend after failback: %v", err)
	}
}

// TestFailoverTurnEndsWithContext: a backend's failovers and failbacks
// take turns, and a failback holds its turn while it waits for the primary
// array to answer (up to volrep_failover_wait). A call queued behind it
// gives up when its context ends instead of waiting out the failback.
func TestFailoverTurnEndsWithContext(t *testing.T) {
	ctx := t.Context()
	b, primary, peer := pairedBackend(t, "async")
	failedOverVolume(t, b, peer)
	primary.halt()
	back := make(chan error, 1)
	go func() {
		_, err := b.FailoverHost(ctx, []string{"v1"}, "default")
		back <- err
	}()
	waitFor(t, 10*time.Second, func() string {
		if b.failing.TryAcquire(1) {
			b.failing.Release(1)
			return "the failback has not taken its turn"
		}
		return ""
	})

	cctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	completed := make(chan error, 1)
	go func() { completed <- b.FailoverCompleted(cctx, "site-b") }()
	select {
	case err := <-completed:
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("failover_completed queued behind a failback: %v; want its deadline", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("failover_completed waited for its turn past its deadline")
	}

	primary.start()
	if err := <-back; err != nil {
		t.Fatalf("the failback once the primary array answers: %v", err)
	}
	if got := b.State().ActiveBackendID; got != "default" {
		t.Fatalf("active backend after the failback: %q; want default", got)
	}
}

// failedOverVolume creates async volume v1 on b, waits for the protection
// group's first cycle to copy it to peer, and fails b over to peer.
func failedOverVolume(t *testing.T, b *Backend, peer *testArray) {
	t.Helper()
	ctx := t.Context()
	if _, err := b.CreateVolume(ctx, "v1", 1, asyncSpecs, ""); err != nil {
		t.Fatal(err)
	}
	// The protection group's first cycle makes the copy at the target.
	waitFor(t, 20*time.Second, func() string {
		if _, err := peer.st.GetVolume(ctx, volumeName("v1")); err != nil {
			return err.Error()
		}
		return ""
	})
	if _, err := b.FailoverHost(ctx, []string{"v1"}, "site-b"); err != nil {
		t.Fatal(err)
	}
}
