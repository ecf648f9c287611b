package errgrpc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/volrep/volrep/errdefs"
	"github.com/volrep/volrep/errdefs/errgrpc/errgrpctest"
)

func TestToStatusCodes(t *testing.T) {
	for _, tc := range errgrpctest.Cases {
		t.Run(tc.Code.String(), func(t *testing.T) {
			st := status.Convert(ToStatus(tc.Err))
			if st.Code() != tc.Code {
				t.Fatalf("code %v, want %v", st.Code(), tc.Code)
			}
			if st.Message() != tc.Err.Error() {
				t.Fatalf("message %q, want %q", st.Message(), tc.Err.Error())
			}
			back := FromStatus(st.Err())
			if got := errdefs.KindOf(back); got != tc.Kind {
				t.Fatalf("FromStatus kind %v, want %v", got, tc.Kind)
			}
			var e *errdefs.Error
			if !errors.As(back, &e) || e.Field != tc.Field || e.Error() != tc.Err.Error() {
				t.Fatalf("FromStatus = %#v, want field %q message %q", back, tc.Field, tc.Err.Error())
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
	// No field, no BadRequest.
	st = status.Convert(ToStatus(errdefs.InvalidArgument("", "bad request")))
	for _, d := range st.Details() {
		if _, ok := d.(*errdetails.BadRequest); ok {
			t.Fatalf("details %v for an error without field", st.Details())
		}
	}
}

func TestToStatusPassesStatusThrough(t *testing.T) {
	in := status.Error(codes.PermissionDenied, "nope")
	st := status.Convert(ToStatus(in))
	if st.Code() != codes.PermissionDenied || st.Message() != "nope" || !Answered(st) {
		t.Fatalf("ToStatus(%v) = %v %q answered=%v", in, st.Code(), st.Message(), Answered(st))
	}
	wrapped := fmt.Errorf("calling peer: %w", status.Error(codes.Unimplemented, "no such method"))
	st = status.Convert(ToStatus(wrapped))
	if st.Code() != codes.Unimplemented || st.Message() != wrapped.Error() {
		t.Fatalf("wrapped status became %v %q", st.Code(), st.Message())
	}
	if ToStatus(nil) != nil {
		t.Fatal("ToStatus(nil) != nil")
	}
}

// TestAnswered tells a status a volrep server returned from one the
// client's gRPC library made up because it could not reach the server.
func TestAnswered(t *testing.T) {
	for _, tc := range errgrpctest.Cases {
		if st := status.Convert(ToStatus(tc.Err)); !Answered(st) {
			t.Errorf("%v: ToStatus's status is not marked as answered: %v", tc.Code, st.Details())
		}
	}
	local := status.New(codes.Unavailable, "connection error: desc = \"transport: Error while dialing: dial tcp 127.0.0.1:7400: connect: connection refused\"")
	if Answered(local) {
		t.Fatal("a status the client made up is marked as answered")
	}
	// An answer passed on by another hop carries one mark, not two.
	hop := ToStatus(fmt.Errorf("array site-b: %w", FromStatus(ToStatus(errdefs.Unavailable("peer down")))))
	n := 0
	for _, d := range status.Convert(hop).Details() {
		if ei, ok := d.(*errdetails.ErrorInfo); ok {
			n++
			if ei.GetDomain() != Domain || ei.GetReason() != "UNAVAILABLE" {
				t.Fatalf("ErrorInfo %v", ei)
			}
		}
	}
	if n != 1 {
		t.Fatalf("%d ErrorInfo details after two hops, want 1", n)
	}
}

// TestKindsSurviveHops sends every kind through two servers, as an
// array's answer reaches the CLI through volrepd: the driver wraps the
// array's error with context, and the client must see the array's kind.
func TestKindsSurviveHops(t *testing.T) {
	cases := append(slices.Clone(errgrpctest.Cases),
		errgrpctest.Case{Err: status.Error(codes.Unimplemented, "the array does not serve AdoptSnapshot"), Code: codes.Unimplemented},
		errgrpctest.Case{Err: status.Error(codes.PermissionDenied, "read-only token"), Code: codes.PermissionDenied})
	for _, tc := range cases {
		t.Run(tc.Code.String(), func(t *testing.T) {
			atArray := FromStatus(ToStatus(tc.Err)) // the driver's array client
			inDriver := fmt.Errorf("failing back volume v1: %w", atArray)
			atCLI := FromStatus(ToStatus(inDriver))
			if got := errdefs.KindOf(atCLI); got != tc.Kind {
				t.Fatalf("kind after two hops %v, want %v", got, tc.Kind)
			}
			if got := status.Code(atCLI); got != tc.Code {
				t.Fatalf("code after two hops %v, want %v", got, tc.Code)
			}
			var e *errdefs.Error
			if errors.As(atCLI, &e) && e.Field != tc.Field {
				t.Fatalf("field after two hops %q, want %q", e.Field, tc.Field)
			}
			if !strings.Contains(atCLI.Error(), "failing back volume v1: ") {
				t.Fatalf("message lost the driver's context: %q", atCLI.Error())
			}
		})
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

func TestCodeNames(t *testing.T) {
	for c, want := range map[codes.Code]string{codes.Canceled: "CANCELLED", codes.InvalidArgument: "INVALID_ARGUMENT", codes.Code(99): "CODE_99"} {
		if got := CodeName(c); got != want {
			t.Errorf("CodeName(%v) = %q, want %q", c, got, want)
		}
	}
}
