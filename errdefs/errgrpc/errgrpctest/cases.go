// Package errgrpctest holds the table of error kinds that the tests of
// errgrpc and of the servers using it check, so every hop is held to the
// same codes.
package errgrpctest

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/grpc/codes"

	"github.com/volrep/volrep/errdefs"
)

// Case is one error and how it must cross gRPC.
type Case struct {
	Err   error
	Code  codes.Code
	Kind  errdefs.Kind
	Field string
}

// Cases has one error of every kind, with the code it must travel as
// and the field an INVALID_ARGUMENT names.
var Cases = []Case{
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
