// Package errgrpc carries errdefs errors across gRPC: ToStatus on the
// server side turns an error into the status of its kind, FromStatus on
// the client side turns the status back into an errdefs error of the same
// kind. An error that crosses several hops (CLI → volrepd → array) keeps
// its kind at every one. Servers apply ToStatus in their interceptor
// chain and clients FromStatus in theirs (package server wires both); a
// client that does not use them can still ask Answered whether a status
// came from a volrep server.
package errgrpc

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/volrep/volrep/errdefs"
)

// Domain is the google.rpc.ErrorInfo domain of every status a volrep
// server returns. A status without it was made by the client's own gRPC
// library (no connection, a deadline) or by something else on the path.
const Domain = "volrep.io"

var kindToCode = map[errdefs.Kind]codes.Code{
	errdefs.KindUnknown:            codes.Internal,
	errdefs.KindNotFound:           codes.NotFound,
	errdefs.KindAlreadyExists:      codes.AlreadyExists,
	errdefs.KindInvalidArgument:    codes.InvalidArgument,
	errdefs.KindFailedPrecondition: codes.FailedPrecondition,
	errdefs.KindUnavailable:        codes.Unavailable,
	errdefs.KindAborted:            codes.Aborted,
	errdefs.KindUnauthenticated:    codes.Unauthenticated,
	errdefs.KindCanceled:           codes.Canceled,
	errdefs.KindDeadlineExceeded:   codes.DeadlineExceeded,
	errdefs.KindResourceExhausted:  codes.ResourceExhausted,
}

var codeToKind = func() map[codes.Code]errdefs.Kind {
	m := make(map[codes.Code]errdefs.Kind, len(kindToCode))
	for k, c := range kindToCode {
		m[c] = k
	}
	return m
}()

// CodeOf returns the gRPC code that an errdefs kind travels as.
func CodeOf(k errdefs.Kind) codes.Code {
	if c, ok := kindToCode[k]; ok {
		return c
	}
	return codes.Internal
}

// KindOfCode returns the errdefs kind that a gRPC code arrives as. Codes
// that no kind maps to (UNKNOWN, UNIMPLEMENTED, DATA_LOSS, ...) are
// errdefs.KindUnknown; ToStatus still sends them on with their own code.
func KindOfCode(c codes.Code) errdefs.Kind {
	if k, ok := codeToKind[c]; ok {
		return k
	}
	return errdefs.KindUnknown
}

// grpcStatuser is implemented by the errors of package status.
type grpcStatuser interface{ GRPCStatus() *status.Status }

// ToStatus turns an error returned by a handler into a gRPC status error:
//   - an errdefs error (anywhere in the chain) gets the code of its kind,
//     with err.Error() as the message; an InvalidArgument error that names
//     a field also carries a google.rpc.BadRequest detail naming it. An
//     error of no kind that arrived from another server as a code no kind
//     maps to (UNIMPLEMENTED, PERMISSION_DENIED, ...) keeps that code;
//   - a status error keeps its code and details, with the whole text of
//     the chain as the message;
//   - context.Canceled and context.DeadlineExceeded become CANCELLED and
//     DEADLINE_EXCEEDED;
//   - anything else becomes INTERNAL with err.Error() as the message.
//
// Every status it returns carries a google.rpc.ErrorInfo of Domain, so a
// client can tell an answer from the server from a failure to reach it.
// ToStatus(nil) is nil.
func ToStatus(err error) error {
	if err == nil {
		return nil
	}
	var e *errdefs.Error
	if errors.As(err, &e) {
		c := CodeOf(e.Kind)
		if e.Kind == errdefs.KindUnknown {
			if inner, ok := innerStatus(err); ok && KindOfCode(inner.Code()) == errdefs.KindUnknown && inner.Code() != codes.OK {
				c = inner.Code()
			}
		}
		return build(status.New(c, err.Error()), e)
	}
	if s, ok := innerStatus(err); ok {
		// A status passed on, maybe wrapped with more context: grpc's
		// FromError already puts the whole text in the message.
		return build(s, nil)
	}
	switch {
	case errors.Is(err, context.Canceled):
		return build(status.New(codes.Canceled, err.Error()), nil)
	case errors.Is(err, context.DeadlineExceeded):
		return build(status.New(codes.DeadlineExceeded, err.Error()), nil)
	}
	return build(status.New(codes.Internal, err.Error()), nil)
}

// innerStatus finds a gRPC status in err's chain.
func innerStatus(err error) (*status.Status, bool) {
	var se grpcStatuser
	if !errors.As(err, &se) {
		return nil, false
	}
	return status.FromError(err)
}

// build adds volrep's details to s: the ErrorInfo that marks the server's
// answer, and for a field error the BadRequest naming the field. Details
// s already has (from an inner hop) are kept.
func build(s *status.Status, e *errdefs.Error) error {
	p := s.Proto() // a copy
	add := func(m proto.Message) {
		if a, err := anypb.New(m); err == nil {
			p.Details = append(p.Details, a)
		}
	}
	if e != nil && e.Kind == errdefs.KindInvalidArgument && e.Field != "" && badRequestField(s) == "" {
		add(&errdetails.BadRequest{FieldViolations: []*errdetails.BadRequest_FieldViolation{{
			Field: e.Field, Description: s.Message(),
		}}})
	}
	if !Answered(s) {
		add(&errdetails.ErrorInfo{Domain: Domain, Reason: CodeName(s.Code())})
	}
	return status.FromProto(p).Err()
}

// Answered reports whether a status was returned by a volrep server, as
// opposed to made up by the client's gRPC library because the server
// could not be reached or did not answer in time.
func Answered(s *status.Status) bool {
	for _, d := range s.Details() {
		if ei, ok := d.(*errdetails.ErrorInfo); ok && ei.GetDomain() == Domain {
			return true
		}
	}
	return false
}

// FromStatus turns a gRPC status error, as a client receives it, back into
// an *errdefs.Error of the same kind and message, so errdefs.IsNotFound and
// friends work across the wire. For INVALID_ARGUMENT the Field comes from
// the google.rpc.BadRequest detail. The status error stays in the chain,
// so status.Code still reports the original code (and ToStatus sends it on
// unchanged), and CANCELLED and DEADLINE_EXCEEDED also match
// context.Canceled and context.DeadlineExceeded with errors.Is.
//
// Errors that are not gRPC statuses (io.EOF, say) and errors that already
// are errdefs errors are returned unchanged. FromStatus(nil) is nil.
func FromStatus(err error) error {
	if err == nil {
		return nil
	}
	var e *errdefs.Error
	if errors.As(err, &e) {
		return err
	}
	s, ok := status.FromError(err)
	if !ok {
		return err
	}
	if s.Code() == codes.OK {
		return nil
	}
	kind := KindOfCode(s.Code())
	out := &errdefs.Error{Kind: kind, Msg: s.Message(), Err: err}
	if out.Msg == "" {
		out.Msg = s.Code().String()
	}
	switch s.Code() {
	case codes.Canceled:
		out.Err = errors.Join(err, context.Canceled)
	case codes.DeadlineExceeded:
		out.Err = errors.Join(err, context.DeadlineExceeded)
	case codes.InvalidArgument:
		out.Field = badRequestField(s)
	}
	return out
}

// badRequestField returns the first field named in a BadRequest detail.
func badRequestField(s *status.Status) string {
	for _, d := range s.Details() {
		if br, ok := d.(*errdetails.BadRequest); ok {
			for _, v := range br.GetFieldViolations() {
				if v.GetField() != "" {
					return v.GetField()
				}
			}
		}
	}
	return ""
}

// CodeName is the canonical name of a code, as google.rpc.Code spells it
// ("INVALID_ARGUMENT", "CANCELLED").
func CodeName(c codes.Code) string {
	if n, ok := codeNames[c]; ok {
		return n
	}
	return fmt.Sprintf("CODE_%d", uint32(c))
}

var codeNames = map[codes.Code]string{
	codes.OK:                 "OK",
	codes.Canceled:           "CANCELLED",
	codes.Unknown:            "UNKNOWN",
	codes.InvalidArgument:    "INVALID_ARGUMENT",
	codes.DeadlineExceeded:   "DEADLINE_EXCEEDED",
	codes.NotFound:           "NOT_FOUND",
	codes.AlreadyExists:      "ALREADY_EXISTS",
	codes.PermissionDenied:   "PERMISSION_DENIED",
	codes.ResourceExhausted:  "RESOURCE_EXHAUSTED",
	codes.FailedPrecondition: "FAILED_PRECONDITION",
	codes.Aborted:            "ABORTED",
	codes.OutOfRange:         "OUT_OF_RANGE",
	codes.Unimplemented:      "UNIMPLEMENTED",
	codes.Internal:           "INTERNAL",
	codes.Unavailable:        "UNAVAILABLE",
	codes.DataLoss:           "DATA_LOSS",
	codes.Unauthenticated:    "UNAUTHENTICATED",
}
