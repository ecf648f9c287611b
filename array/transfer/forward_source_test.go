package transfer_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/volrep/volrep/array"
	"github.com/volrep/volrep/errdefs"
	arrayv1 "github.com/volrep/volrep/proto/volrep/array/v1"
)

// TestPodNamesAreUniqueAtThePeer: two preferred arrays stretching pods of
// the same name to one peer (two backends with the same pod name and
// replication target) must not take each other's place there, stream by
// stream. The second is refused, naming the first and the setting to
// change; the first keeps its copies. Once the first releases its
// copies, the name is free for the second.
func TestPodNamesAreUniqueAtThePeer(t *testing.T) {
	p := newPair(t)
	ctx := t.Context()
	p.readOnlyCopy(t, "v")
	p.readOnlyCopy(t, "w")
	var openIn func(ctx context.Context, source, vol string) arrayv1.TransferService_ForwardClient
	open := func(source, vol string) arrayv1.TransferService_ForwardClient {
		t.Helper()
		return openIn(ctx, source, vol)
	}
	openIn = func(ctx context.Context, source, vol string) arrayv1.TransferService_ForwardClient {
		t.Helper()
		cs, err := p.client.Forward(ctx)
		if err != nil {
			t.Fatal(err)
		}
		st := &arrayv1.ForwardState{InSync: true}
		if vol != "" {
			st.Volumes = []string{vol}
		}
		for _, m := range []*arrayv1.ForwardRequest{
			{Msg: &arrayv1.ForwardRequest_Open{Open: &arrayv1.ForwardOpen{Pod: "cinder-pod.dr", SourceArrayId: source, TimeoutMs: 5000, Session: 1, CompareAndWrite: true}}},
			{Msg: &arrayv1.ForwardRequest_State{State: st}},
		} {
			// A peer that refuses the stream ends it at once: a Send
			// after that gets io.EOF, and Recv says why (gRPC's rule).
			if err := cs.Send(m); errors.Is(err, io.EOF) {
				break
			} else if err != nil {
				t.Fatal(err)
			}
		}
		return cs
	}
	waitPath := func(vol string, want array.PathState) {
		t.Helper()
		h, err := p.dst.OpenVolume(ctx, vol)
		if err != nil {
			t.Fatal(err)
		}
		for deadline := time.Now().Add(10 * time.Second); h.Path().State != want; time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%s reports its path %s, want %s", vol, h.Path().State, want)
			}
		}
	}
	// GetPodCopy says whose pod it is, so that volrep doctor, run for the
	// second array's backend, can name the first.
	wantSource := func(want string) {
		t.Helper()
		r, err := p.client.GetPodCopy(ctx, &arrayv1.GetPodCopyRequest{Pod: "cinder-pod.dr"})
		if err != nil || r.GetPod().GetSourceArrayId() != want {
			t.Fatalf("GetPodCopy: %v, %v; want the pod of array %s", r, err, want)
		}
	}
	ctx1, cancel1 := context.WithCancel(ctx)
	defer cancel1()
	openIn(ctx1, "array-1", "v")
	waitPath("v", array.PathNonOptimized)
	wantSource("array-1")

	_, err := open("array-2", "w").Recv()
	if !errdefs.IsFailedPrecondition(err) || !strings.Contains(err.Error(), "the pod of array array-1") || !strings.Contains(err.Error(), "pure_replication_pod_name") {
		t.Fatalf("a pod of the same name from a second array: %v; want FAILED_PRECONDITION naming the first and the setting", err)
	}
	waitPath("v", array.PathNonOptimized)
	waitPath("w", array.PathOptimized) // a plain replica still
	wantSource("array-1")

	// The first array's stream ends without a release: its copy is still
	// the pod's, so the name is still taken.
	cancel1()
	waitPath("v", array.PathUnavailable)
	if _, err := open("array-2", "w").Recv(); !errdefs.IsFailedPrecondition(err) {
		t.Fatalf("a pod of the same name, the first array's stream gone but its copy still the pod's: %v; want FAILED_PRECONDITION", err)
	}
	// A failover promotes the copy (say, the first array was lost and is
	// rebuilt): the name is free.
	if err := p.dst.SetReadOnly(ctx, "v", false); err != nil {
		t.Fatal(err)
	}
	open("array-2", "w")
	waitPath("w", array.PathNonOptimized)
	wantSource("array-2")
}

// TestPodNameOpenedByTwoArraysAtOnce: two arrays opening streams for
// pods of one name at the same moment are admitted one after the other:
// exactly one is refused, and the other keeps its stream, round after
// round. The pod names many copies, all promoted, so the check reads
// each (the name is free) while the other array's stream may be let in;
// checked apart, both would pass, and the second would take the first's
// place.
func TestPodNameOpenedByTwoArraysAtOnce(t *testing.T) {
	p := newPair(t)
	ctx := t.Context()
	const pod = "cinder-pod.dr"
	var vols []string
	for i := range 64 {
		v := fmt.Sprintf("v%d", i)
		p.readOnlyCopy(t, v)
		vols = append(vols, v)
	}
	open := func(ctx context.Context, source string, st *arrayv1.ForwardState) (arrayv1.TransferService_ForwardClient, error) {
		cs, err := p.client.Forward(ctx)
		if err != nil {
			return nil, err
		}
		msgs := []*arrayv1.ForwardRequest{{Msg: &arrayv1.ForwardRequest_Open{Open: &arrayv1.ForwardOpen{
			Pod: pod, SourceArrayId: source, TimeoutMs: 5000, Session: 1}}}}
		if st != nil {
			msgs = append(msgs, &arrayv1.ForwardRequest{Msg: &arrayv1.ForwardRequest_State{State: st}})
		}
		for _, m := range msgs {
			if err := cs.Send(m); err != nil {
				return nil, err
			}
		}
		return cs, nil
	}
	ctx1, cancel1 := context.WithCancel(ctx)
	if _, err := open(ctx1, "array-1", &arrayv1.ForwardState{InSync: true, Volumes: vols}); err != nil {
		t.Fatal(err)
	}
	last, err := p.dst.OpenVolume(ctx, vols[len(vols)-1])
	if err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); last.Path().State != array.PathNonOptimized; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the pod's copies were not taken by its stream: %s", last.Path().State)
		}
	}
	cancel1()
	for _, v := range vols {
		if err := p.dst.SetReadOnly(ctx, v, false); err != nil {
			t.Fatal(err)
		}
	}
	for round := range 40 {
		rctx, cancel := context.WithCancel(ctx)
		errs := make(chan error, 2)
		start := make(chan struct{})
		for _, source := range []string{"array-1", "array-2"} {
			go func() {
				<-start
				cs, err := open(rctx, source, nil)
				if err == nil {
					_, err = cs.Recv()
				}
				errs <- err
			}()
		}
		close(start)
		first := <-errs
		if !errdefs.IsFailedPrecondition(first) {
			cancel()
			t.Fatalf("round %d: the first stream to end ended with %v; want one of the two refused (FAILED_PRECONDITION)", round, first)
		}
		select {
		case err := <-errs:
			cancel()
			t.Fatalf("round %d: both streams ended (%v, then %v); want the admitted one kept open", round, first, err)
		case <-time.After(100 * time.Millisecond):
		}
		cancel()
		<-errs
	}
}
