package server

import (
	"context"
	"errors"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/volrep/volrep/errdefs"
)

// This file is the one place in volrep that maps between errdefs kinds and
// gRPC codes. The table below is used in both directions.

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
// errdefs.KindUnknown.
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
//     a field also carries a google.rpc.BadRequest detail naming it;
//   - an error that already is a gRPC status passes through unchanged;
//   - context.Canceled and context.DeadlineExceeded become CANCELED and
//     DEADLINE_EXCEEDED;
//   - anything else becomes INTERNAL with err.Error() as the message.
//
// ToStatus(nil) is nil.
func ToStatus(err error) error {
	if err == nil {
		return nil
	}
	var e *errdefs.Error
	if errors.As(err, &e) {
		return newStatus(CodeOf(e.Kind), err.Error(), e)
	}
	if _, ok := err.(grpcStatuser); ok {
		return err
	}
	if s, ok := status.FromError(err); ok {
		// A status wrapped with more context: keep the code and details,
		// with the whole text as the message.
		return s.Err()
	}
	switch {
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, err.Error())
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, err.Error())
	}
	return status.Error(codes.Internal, err.Error())
}

func newStatus(c codes.Code, msg string, e *errdefs.Error) error {
	s := status.New(c, msg)
	if e.Kind == errdefs.KindInvalidArgument && e.Field != "" {
		br := &errdetails.BadRequest{FieldViolations: []*errdetails.BadRequest_FieldViolation{{
			Field:       e.Field,
			Description: msg,
		}}}
		if ds, err := s.WithDetails(br); err == nil {
			s = ds
		}
	}
	return s.Err()
}

// FromStatus turns a gRPC status error, as a client receives it, back into
// an *errdefs.Error of the same kind and message, so errdefs.IsNotFound and
// friends work across the wire. For INVALID_ARGUMENT the Field comes from
// the google.rpc.BadRequest detail. The status error stays in the chain,
// so status.Code still reports the original code, and CANCELED and
// DEADLINE_EXCEEDED also match context.Canceled and
// context.DeadlineExceeded with errors.Is.
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
