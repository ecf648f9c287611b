package transfer_test

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/volrep/volrep/array"
	"github.com/volrep/volrep/array/store"
	"github.com/volrep/volrep/errdefs"
	arrayv1 "github.com/volrep/volrep/proto/volrep/array/v1"
)

// TestForwardedCompareAndWrite plays the preferred array on a Forward
// stream, by hand: a COMPARE AND WRITE at the pod's copy here goes to it
// with the bytes to compare, and its miscompare (with the offset) comes
// back to the client as one. A preferred array whose open does not say it
// compares (an older volrep) would write the bytes unconditionally, so
// the copy refuses COMPARE AND WRITE there instead of forwarding it.
func TestForwardedCompareAndWrite(t *testing.T) {
	for _, compares := range []bool{true, false} {
		t.Run(map[bool]string{true: "comparing", false: "older"}[compares], func(t *testing.T) {
			p := newPair(t)
			ctx := t.Context()
			p.readOnlyCopy(t, "v")
			cs, err := p.client.Forward(ctx)
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range []*arrayv1.ForwardRequest{
				{Msg: &arrayv1.ForwardRequest_Open{Open: &arrayv1.ForwardOpen{Pod: "cinder-pod", SourceArrayId: "a", TimeoutMs: 5000, Session: 7, CompareAndWrite: compares}}},
				{Msg: &arrayv1.ForwardRequest_State{State: &arrayv1.ForwardState{Volumes: []string{"v"}, InSync: true}}},
			} {
				if err := cs.Send(m); err != nil {
					t.Fatal(err)
				}
			}
			h, err := p.dst.OpenVolume(ctx, "v")
			if err != nil {
				t.Fatal(err)
			}
			for deadline := time.Now().Add(10 * time.Second); h.Path().State != array.PathNonOptimized; time.Sleep(10 * time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatalf("the copy reports its path %s, not the in-sync peer's non-optimized", h.Path().State)
				}
			}
			cmp, data := bytes.Repeat([]byte{0}, 8192), bytes.Repeat([]byte{0x6e}, 8192)
			done := make(chan error, 1)
			go func() { done <- h.CompareAndWrite(ctx, cmp, data, 3*4096, false) }()
			if !compares {
				err := <-done
				if !errdefs.IsFailedPrecondition(err) || !strings.Contains(err.Error(), "too old") {
					t.Fatalf("COMPARE AND WRITE through an older preferred array: %v, want FAILED_PRECONDITION naming its version", err)
				}
				return
			}
			m, err := cs.Recv()
			if err != nil {
				t.Fatal(err)
			}
			w := m.GetWrite()
			if w == nil || w.GetVolume() != "v" || w.GetOffset() != 3*4096 || !bytes.Equal(w.GetCompare(), cmp) || !bytes.Equal(w.GetData(), data) {
				t.Fatalf("forwarded %v, want a write of v at %d carrying the bytes to compare", m, 3*4096)
			}
			if err := cs.Send(&arrayv1.ForwardRequest{Msg: &arrayv1.ForwardRequest_Result{Result: &arrayv1.ForwardResult{
				Seq: w.GetSeq(), Error: "miscompare", Kind: "FAILED_PRECONDITION", Miscompare: true, MiscompareOffset: 4100}}}); err != nil {
				t.Fatal(err)
			}
			var me *store.MiscompareError
			if err := <-done; !errors.As(err, &me) || me.Offset != 4100 {
				t.Fatalf("COMPARE AND WRITE the preferred array miscompared: %v, want a miscompare at byte 4100", err)
			}
			got := make([]byte, 8192)
			if err := p.dst.ReadVolume(ctx, "v", 3*4096, got); err != nil || !bytes.Equal(got, cmp) {
				t.Fatalf("the copy changed after a miscompare (%v)", err)
			}
		})
	}
}
