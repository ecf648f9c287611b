package transfer_test

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/volrep/volrep/array"
	"github.com/volrep/volrep/errdefs"
	arrayv1 "github.com/volrep/volrep/proto/volrep/array/v1"
)

// TestMirrorOpenChecksNames: the pod named by a mirror stream's first
// message is checked like every other name before it is used.
func TestMirrorOpenChecksNames(t *testing.T) {
	p := newPair(t)
	for _, tc := range []struct{ pod, source string }{
		{"", ""},
		{strings.Repeat("p", 10_000), ""},
		{"../../etc", ""},
		{"pod\x00\n", ""},
		{"cinder-pod", "../x"},
		{"cinder-pod", "id\r\nforged log line"},
	} {
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		defer cancel()
		cs, err := p.client.Mirror(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := cs.Send(&arrayv1.MirrorRequest{Msg: &arrayv1.MirrorRequest_Open{Open: &arrayv1.MirrorOpen{Pod: tc.pod, SourceArrayId: tc.source}}}); err != nil {
			t.Fatal(err)
		}
		_, err = cs.Recv()
		if !errdefs.IsInvalidArgument(err) {
			t.Errorf("mirror open with pod %.40q, source %q: %v, want INVALID_ARGUMENT", tc.pod, tc.source, err)
		}
	}
	// A good name opens the stream: a flush is answered.
	cs, err := p.client.Mirror(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range []*arrayv1.MirrorRequest{
		{Msg: &arrayv1.MirrorRequest_Open{Open: &arrayv1.MirrorOpen{Pod: "cinder-pod", SourceArrayId: "0b7e6c1a-5d2e-4f5e-9a63-1c2d3e4f5a6b"}}},
		{Msg: &arrayv1.MirrorRequest_Flush{Flush: &arrayv1.MirrorFlush{Seq: 1}}},
	} {
		if err := cs.Send(m); err != nil {
			t.Fatal(err)
		}
	}
	r, err := cs.Recv()
	if err != nil || r.GetSeq() != 1 || r.GetError() != "" {
		t.Fatalf("a well-named mirror stream: %v %v", r, err)
	}
}

// TestReclaimChecksItsRequest: a Reclaim stream's open names a pod and
// block-aligned ranges; one for a pod this array does not carry changes
// nothing and says so.
func TestReclaimChecksItsRequest(t *testing.T) {
	p := newPair(t)
	for _, tc := range []struct {
		open *arrayv1.ReclaimRequest
		want func(error) bool
	}{
		{&arrayv1.ReclaimRequest{Msg: &arrayv1.ReclaimRequest_Applied{Applied: &arrayv1.ReclaimApplied{}}}, errdefs.IsInvalidArgument},
		{&arrayv1.ReclaimRequest{Msg: &arrayv1.ReclaimRequest_Open{Open: &arrayv1.ReclaimOpen{Pod: "../x"}}}, errdefs.IsInvalidArgument},
		{&arrayv1.ReclaimRequest{Msg: &arrayv1.ReclaimRequest_Open{Open: &arrayv1.ReclaimOpen{Pod: "cinder-pod",
			Volumes: []*arrayv1.ReclaimVolume{{Volume: "v1", Extents: []*arrayv1.Extent{{Offset: 100, Length: 4096}}}}}}}, errdefs.IsInvalidArgument},
		{&arrayv1.ReclaimRequest{Msg: &arrayv1.ReclaimRequest_Open{Open: &arrayv1.ReclaimOpen{Pod: "cinder-pod",
			Volumes: []*arrayv1.ReclaimVolume{{Volume: "v1", Extents: []*arrayv1.Extent{{Offset: 0, Length: -1}}}}}}}, errdefs.IsInvalidArgument},
		{&arrayv1.ReclaimRequest{Msg: &arrayv1.ReclaimRequest_Open{Open: &arrayv1.ReclaimOpen{Pod: "cinder-pod",
			Volumes: []*arrayv1.ReclaimVolume{{Volume: "v1\x00", Extents: nil}}}}}, errdefs.IsInvalidArgument},
		// Well formed, but this array carries no pod.
		{&arrayv1.ReclaimRequest{Msg: &arrayv1.ReclaimRequest_Open{Open: &arrayv1.ReclaimOpen{Pod: "cinder-pod",
			Volumes: []*arrayv1.ReclaimVolume{{Volume: "v1", Extents: []*arrayv1.Extent{{Offset: 0, Length: 4096}}}}}}}, errdefs.IsFailedPrecondition},
	} {
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		cs, err := p.client.Reclaim(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := cs.Send(tc.open); err != nil {
			t.Fatal(err)
		}
		if _, err = cs.Recv(); !tc.want(err) {
			t.Errorf("reclaim opened with %v: %v", tc.open, err)
		}
		cancel()
	}
}

// TestALaterMirrorStreamStopsTheEarlierOne: the preferred array opens a new
// mirror stream only after giving up on the last and resends what that
// one had not acknowledged. Whatever of the old stream is still to be
// read here must not be applied over the new stream's changes: it ends
// the old stream instead, with nothing applied.
func TestALaterMirrorStreamStopsTheEarlierOne(t *testing.T) {
	p := newPair(t)
	ctx := t.Context()
	p.readOnlyCopy(t, "v")
	open := func() arrayv1.TransferService_MirrorClient {
		cs, err := p.client.Mirror(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := cs.Send(&arrayv1.MirrorRequest{Msg: &arrayv1.MirrorRequest_Open{Open: &arrayv1.MirrorOpen{Pod: "cinder-pod"}}}); err != nil {
			t.Fatal(err)
		}
		return cs
	}
	write := func(cs arrayv1.TransferService_MirrorClient, seq uint64, b byte) (*arrayv1.MirrorResponse, error) {
		data := bytes.Repeat([]byte{b}, 4096)
		if err := cs.Send(&arrayv1.MirrorRequest{Msg: &arrayv1.MirrorRequest_Write{Write: &arrayv1.MirrorWrite{Seq: seq, Volume: "v", Data: data}}}); err != nil {
			return nil, err
		}
		return cs.Recv()
	}
	holds := func(want byte) {
		t.Helper()
		got := make([]byte, 4096)
		if err := p.dst.ReadVolume(ctx, "v", 0, got); err != nil || !bytes.Equal(got, bytes.Repeat([]byte{want}, 4096)) {
			t.Fatalf("the copy holds %#x (%v), want %#x", got[0], err, want)
		}
	}
	old := open()
	if r, err := write(old, 1, 0x11); err != nil || r.GetError() != "" {
		t.Fatalf("a write on the only stream: %v %v", r, err)
	}
	holds(0x11)
	// The new stream is admitted once its first message is handled: a
	// flush answered says so.
	cur := open()
	if err := cur.Send(&arrayv1.MirrorRequest{Msg: &arrayv1.MirrorRequest_Flush{Flush: &arrayv1.MirrorFlush{Seq: 1, Volumes: []string{"v"}}}}); err != nil {
		t.Fatal(err)
	}
	if r, err := cur.Recv(); err != nil || r.GetError() != "" {
		t.Fatalf("a flush on the new stream: %v %v", r, err)
	}
	if r, err := write(cur, 2, 0x22); err != nil || r.GetError() != "" {
		t.Fatalf("a write on the new stream: %v %v", r, err)
	}
	// A write the old stream still carried arrives late.
	r, err := write(old, 2, 0x99)
	if !errdefs.IsUnavailable(err) || !strings.Contains(err.Error(), "newer mirror stream") {
		t.Fatalf("a late write on the replaced stream: %v %v, want UNAVAILABLE naming the newer stream", r, err)
	}
	holds(0x22)
	if r, err := write(cur, 3, 0x33); err != nil || r.GetError() != "" {
		t.Fatalf("the new stream after the old one ended: %v %v", r, err)
	}
	holds(0x33)
}

// readOnlyCopy makes a 1 MiB read-only volume at dst, as a pod's copy at
// its peer is.
func (p *pair) readOnlyCopy(t *testing.T, vol string) {
	t.Helper()
	if _, err := p.dst.CreateVolume(t.Context(), array.VolumeSpec{Name: vol, Pool: "p", SizeBytes: mib}); err != nil {
		t.Fatal(err)
	}
	if err := p.dst.SetReadOnly(t.Context(), vol, true); err != nil {
		t.Fatal(err)
	}
}
