package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"testing"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/volrep/volrep/errdefs"
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

func TestToStatusCodes(t *testing.T) {
	for _, tc := range kindCases {
		t.Run(tc.code.String(), func(t *testing.T) {
			st := status.Convert(ToStatus(tc.err))
			if st.Code() != tc.code {
				t.Fatalf("code %v, want %v", st.Code(), tc.code)
			}
			if st.Message() != tc.err.Error() {
				t.Fatalf("message %q, want %q", st.Message(), tc.err.Error())
			}
			back := FromStatus(st.Err())
			if got := errdefs.KindOf(back); got != tc.kind {
				t.Fatalf("FromStatus kind %v, want %v", got, tc.kind)
			}
			var e *errdefs.Error
			if !errors.As(back, &e) || e.Field != tc.field || e.Error() != tc.err.Error() {
				t.Fatalf("FromStatus = %#v, want field %q message %q", back, tc.field, tc.err.Error())
			}
		})
	}
}

func TestToStatusWrappedKeepsKindAndFullMessage(t *testing.T) {
	err := fmt.Errorf("create volume v1: %w", errdefs.NotFound("pool %q not found", "p1"))
	st := status.Convert(ToStatus(err))
	if st.Code() != codes.NotFound || st.Message() != `create volume v1: pool "p1" not found` {
		t.Fatalf("got %v %q", st.Code(), st.Message())
	}
}

func TestToStatusBadRequestDetail(t *testing.T) {
	st := status.Convert(ToStatus(errdefs.InvalidArgument("labels", "has an empty key")))
	var br *errdetails.BadRequest
	for _, d := range st.Details() {
		if b, ok := d.(*errdetails.BadRequest); ok {
			br = b
		}
	}
	if br == nil || len(br.GetFieldViolations()) != 1 || br.GetFieldViolations()[0].GetField() != "labels" {
		t.Fatalf("details %v, want one BadRequest violation for labels", st.Details())
	}
	// No field, no detail.
	st = status.Convert(ToStatus(errdefs.InvalidArgument("", "bad request")))
	if len(st.Details()) != 0 {
		t.Fatalf("details %v for an error without field", st.Details())
	}
}

func TestToStatusPassesStatusThrough(t *testing.T) {
	in := status.Error(codes.PermissionDenied, "nope")
	if out := ToStatus(in); out != in {
		t.Fatalf("ToStatus changed a status error: %v", out)
	}
	wrapped := fmt.Errorf("calling peer: %w", status.Error(codes.Unimplemented, "no such method"))
	st := status.Convert(ToStatus(wrapped))
	if st.Code() != codes.Unimplemented || st.Message() != wrapped.Error() {
		t.Fatalf("wrapped status became %v %q", st.Code(), st.Message())
	}
	if ToStatus(nil) != nil {
		t.Fatal("ToStatus(nil) != nil")
	}
}

func TestFromStatusLeavesOtherErrors(t *testing.T) {
	if FromStatus(nil) != nil {
		t.Fatal("FromStatus(nil) != nil")
	}
	if err := FromStatus(io.EOF); err != io.EOF {
		t.Fatalf("FromStatus(io.EOF) = %v", err)
	}
	e := errdefs.NotFound("x")
	if err := FromStatus(e); err != e {
		t.Fatalf("FromStatus changed an errdefs error: %v", err)
	}
}

func TestFromStatusKeepsCodeAndContextErrors(t *testing.T) {
	err := FromStatus(status.Error(codes.Canceled, "context canceled"))
	if !errors.Is(err, context.Canceled) || status.Code(err) != codes.Canceled || !errdefs.Is(err, errdefs.KindCanceled) {
		t.Fatalf("canceled: %v (code %v)", err, status.Code(err))
	}
	err = FromStatus(status.Error(codes.DeadlineExceeded, "deadline"))
	if !errors.Is(err, context.DeadlineExceeded) || status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("deadline: %v", err)
	}
	err = FromStatus(status.Error(codes.Unimplemented, "unknown method"))
	if errdefs.KindOf(err) != errdefs.KindUnknown || status.Code(err) != codes.Unimplemented || err.Error() != "unknown method" {
		t.Fatalf("unimplemented: %v kind %v code %v", err, errdefs.KindOf(err), status.Code(err))
	}
	err = FromStatus(status.Error(codes.NotFound, ""))
	if err.Error() == "" || !errdefs.IsNotFound(err) {
		t.Fatalf("empty message: %q", err.Error())
	}
}

func TestKindCodeTableIsComplete(t *testing.T) {
	for k := errdefs.KindUnknown; k <= errdefs.KindResourceExhausted; k++ {
		c := CodeOf(k)
		if k != errdefs.KindUnknown && c == codes.Internal {
			t.Errorf("kind %v has no code", k)
		}
		if KindOfCode(c) != k {
			t.Errorf("kind %v → %v → %v", k, c, KindOfCode(c))
		}
	}
}
