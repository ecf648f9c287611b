package server

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/volrep/volrep/errdefs"
	"github.com/volrep/volrep/errdefs/errgrpc/errgrpctest"
	arrayv1 "github.com/volrep/volrep/proto/volrep/array/v1"
)

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
	for i, tc := range errgrpctest.Cases {
		arr.vols.setErr(fmt.Sprintf("kind-%d", i), tc.Err)
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
	for i, tc := range errgrpctest.Cases {
		t.Run(tc.Code.String(), func(t *testing.T) {
			_, err := c.GetVolume(testCtx(t), &arrayv1.GetVolumeRequest{Name: fmt.Sprintf("kind-%d", i)})
			var e *errdefs.Error
			if !errors.As(err, &e) || e.Kind != tc.Kind || e.Field != tc.Field || status.Code(err) != tc.Code {
				t.Fatalf("after two hops: %v (kind %v field %q code %v), want kind %v field %q code %v",
					err, errdefs.KindOf(err), fieldOf(err), status.Code(err), tc.Kind, tc.Field, tc.Code)
			}
			if want := "array site-a: " + tc.Err.Error(); e.Error() != want {
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
