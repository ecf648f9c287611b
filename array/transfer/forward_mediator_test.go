package transfer_test

import (
	"context"
	"testing"
	"time"

	"github.com/volrep/volrep/array"
	"github.com/volrep/volrep/array/mediator"
	"github.com/volrep/volrep/array/transfer"
	"github.com/volrep/volrep/internal/etcdtest"
	arrayv1 "github.com/volrep/volrep/proto/volrep/array/v1"
)

// TestPeerAsksTheMediatorUnderTheNameItIsSent: the preferred array names
// the pod at the mediator in its forward stream's open (scoped by its own
// id, so pods of the same name on other arrays sharing the mediator have
// keys of their own), and the peer, when the preferred array is gone,
// asks for the pod under that name. An older preferred array names none,
// and then both use the pod's name alone.
func TestPeerAsksTheMediatorUnderTheNameItIsSent(t *testing.T) {
	etcd := etcdtest.Start(t, "", "")
	// Each case has a pod of its own: a carried pod's mark outlives its
	// case at the shared mediator.
	for _, c := range []struct{ what, pod, sent, want string }{
		{"named", "cinder-pod.dr", mediator.Scoped("array-1", "cinder-pod.dr"), mediator.Scoped("array-1", "cinder-pod.dr")},
		{"older preferred array", "cinder-pod.old", "", "cinder-pod.old"},
	} {
		t.Run(c.what, func(t *testing.T) {
			pod := c.pod
			p := newPairWith(t, transfer.ServiceOptions{PodMediator: []string{etcd.Endpoint()}, MediatorTTL: 2 * time.Second})
			p.readOnlyCopy(t, "v")
			ctx := t.Context()
			info, err := p.dst.Info(ctx)
			if err != nil {
				t.Fatal(err)
			}
			sctx, cancel := context.WithCancel(ctx)
			defer cancel()
			cs, err := p.client.Forward(sctx)
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range []*arrayv1.ForwardRequest{
				{Msg: &arrayv1.ForwardRequest_Open{Open: &arrayv1.ForwardOpen{Pod: pod, SourceArrayId: "array-1", TimeoutMs: 5000, Session: 1,
					Mediated: true, MediatorName: c.sent}}},
				{Msg: &arrayv1.ForwardRequest_State{State: &arrayv1.ForwardState{InSync: true, Volumes: []string{"v"}}}},
			} {
				if err := cs.Send(m); err != nil {
					t.Fatal(err)
				}
			}
			waitPodCopy(t, p, pod, array.PodOnline)
			cancel() // the preferred array is gone, in sync: the peer asks for the pod
			med, err := mediator.New([]string{etcd.Endpoint()}, mediator.Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer med.Close()
			for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(50 * time.Millisecond) {
				h, err := med.Holder(ctx, c.want)
				if err == nil && h == info.ID {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("the key %q is held by %q (%v); want the peer, %q", c.want, h, err, info.ID)
				}
			}
			waitPodCopy(t, p, pod, array.PodCarried)
			for _, other := range []string{pod, mediator.Scoped("array-1", pod)} {
				if other == c.want {
					continue
				}
				if h, err := med.Holder(ctx, other); err != nil || h != "" {
					t.Fatalf("the key %q is held by %q (%v); want nobody", other, h, err)
				}
			}
		})
	}
}

// waitPodCopy waits until the target reports pod in state.
func waitPodCopy(t *testing.T, p *pair, pod, state string) {
	t.Helper()
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		r, err := p.client.GetPodCopy(t.Context(), &arrayv1.GetPodCopyRequest{Pod: pod})
		if err == nil && r.GetPod().GetState() == state {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("pod %s at the peer: %v (%v); want %s", pod, r.GetPod(), err, state)
		}
	}
}
