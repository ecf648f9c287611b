package server

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/volrep/volrep/errdefs"
	arrayv1 "github.com/volrep/volrep/proto/volrep/array/v1"
)

// kindCases has one error of every kind, with the code it must travel as.
var kindCases = []struct {
	err   error
	code  codes.Code
	kind  errdefs.Kind
	field string
}{
	{errdefs.NotFound("volume %q not found; list volumes with 'volrep volume list'", "v1"), codes.NotFound, errdefs.KindNotFound, ""},
	{errdefs.AlreadyExists("volume %q exists with another size", "v1"), codes.AlreadyExists, errdefs.KindAlreadyExists, ""},
	{errdefs.InvalidArgument("size_bytes", "must be greater than 0, got %d", -1), codes.InvalidArgument, errdefs.KindInvalidArgument, "size_bytes"},
	{errdefs.FailedPrecondition("replica is INITIALIZING; wait for ACTIVE"), codes.FailedPrecondition, errdefs.KindFailedPrecondition, ""},
	{errdefs.Unavailable("peer array site-b is unreachable"), codes.Unavailable, errdefs.KindUnavailable, ""},
	{errdefs.Aborted("another operation on volume v1 is in flight; retry"), codes.Aborted, errdefs.KindAborted, ""},
	{errdefs.Unauthenticated("bad token for array site-b"), codes.Unauthenticated, errdefs.KindUnauthenticated, ""},
	{errdefs.ResourceExhausted("pool p1 is full"), codes.ResourceExhausted, errdefs.KindResourceExhausted, ""},
	{fmt.Errorf("waiting for the lock: %w", context.Canceled), codes.Canceled, errdefs.KindCanceled, ""},
	{fmt.Errorf("waiting for the peer: %w", context.DeadlineExceeded), codes.DeadlineExceeded, errdefs.KindDeadlineExceeded, ""},
	{errors.New("bbolt: database corrupted"), codes.Internal, errdefs.KindUnknown, ""},
	{errdefs.WithKind(errdefs.KindUnknown, errors.New("unexpected")), codes.Internal, errdefs.KindUnknown, ""},
}

// proxyVolumes is a middle hop, as volrepd's driver is between the CLI
// and an array: it asks the next server and returns its error with context.
type proxyVolumes struct {
	arrayv1.UnimplementedVolumeServiceServer
	next arrayv1.VolumeServiceClient
}

func (p *proxyVolumes) GetVolume(ctx context.Context, req *arrayv1.GetVolumeRequest) (*arrayv1.GetVolumeResponse, error) {
	resp, err := p.next.GetVolume(ctx, req)
	if err != nil {
		return nil, fmt.Errorf("array site-a: %w", err)
	}
	return resp, nil
}

// TestErrorKindsAcrossTwoHops: an error of every kind raised by the array
// reaches the client through a second server with its kind, code and
// field, and the second server's context in the message.
func TestErrorKindsAcrossTwoHops(t *testing.T) {
	arr := start(t, Options{Name: "array"})
	for i, tc := range kindCases {
		arr.vols.setErr(fmt.Sprintf("kind-%d", i), tc.err)
	}
	arr.vols.setErr("unimplemented", status.Error(codes.Unimplemented, "no AdoptSnapshot here"))
	mid := New(Options{Name: "driver", Logger: arr.srv.log})
	arrayv1.RegisterVolumeServiceServer(mid.GRPC(), &proxyVolumes{next: arr.client(t, "")})
	ctx, cancel := context.WithCancel(context.Background())
	lis, err := Listen(ctx, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- mid.Serve(ctx, lis) }()
	t.Cleanup(func() { cancel(); <-done })
	h := &harness{addr: lis.Addr().String()}
	c := h.client(t, "")
	for i, tc := range kindCases {
		t.Run(tc.code.String(), func(t *testing.T) {
			_, err := c.GetVolume(testCtx(t), &arrayv1.GetVolumeRequest{Name: fmt.Sprintf("kind-%d", i)})
			var e *errdefs.Error
			if !errors.As(err, &e) || e.Kind != tc.kind || e.Field != tc.field || status.Code(err) != tc.code {
				t.Fatalf("after two hops: %v (kind %v field %q code %v), want kind %v field %q code %v",
					err, errdefs.KindOf(err), fieldOf(err), status.Code(err), tc.kind, tc.field, tc.code)
			}
			if want := "array site-a: " + tc.err.Error(); e.Error() != want {
				t.Fatalf("message %q, want %q", e.Error(), want)
			}
		})
	}
	if _, err := c.GetVolume(testCtx(t), &arrayv1.GetVolumeRequest{Name: "unimplemented"}); status.Code(err) != codes.Unimplemented {
		t.Fatalf("an UNIMPLEMENTED array call came back as %v: %v", status.Code(err), err)
	}
}

func fieldOf(err error) string {
	var e *errdefs.Error
	if errors.As(err, &e) {
		return e.Field
	}
	return ""
}
