// Package errdefs holds the typed errors that the engine and the driver
// return. Each kind maps to exactly one gRPC code in package server, and
// back again in the clients, so an error keeps its kind across the wire.
package errdefs

import (
	"context"
	"errors"
	"fmt"
	"strings"
)

// Kind classifies an error the way a caller needs to react to it.
type Kind int

const (
	// KindUnknown is an internal failure that the caller cannot fix.
	KindUnknown Kind = iota
	KindNotFound
	KindAlreadyExists
	KindInvalidArgument
	KindFailedPrecondition
	KindUnavailable
	KindAborted
	KindUnauthenticated
	KindCanceled
	KindDeadlineExceeded
	KindResourceExhausted
)

func (k Kind) String() string {
	switch k {
	case KindNotFound:
		return "not found"
	case KindAlreadyExists:
		return "already exists"
	case KindInvalidArgument:
		return "invalid argument"
	case KindFailedPrecondition:
		return "failed precondition"
	case KindUnavailable:
		return "unavailable"
	case KindAborted:
		return "aborted"
	case KindUnauthenticated:
		return "unauthenticated"
	case KindCanceled:
		return "canceled"
	case KindDeadlineExceeded:
		return "deadline exceeded"
	case KindResourceExhausted:
		return "resource exhausted"
	default:
		return "internal"
	}
}

// Name is the kind as records and operations spell it: "NOT_FOUND",
// "FAILED_PRECONDITION", "INTERNAL" for KindUnknown.
func (k Kind) Name() string { return strings.ToUpper(strings.ReplaceAll(k.String(), " ", "_")) }

// ParseKind is the inverse of Name, so a kind recorded as text (an
// operation's error code) becomes a kind again. It also takes gRPC's
// spelling "CANCELLED". Anything else is KindUnknown.
func ParseKind(name string) Kind {
	if name == "CANCELLED" {
		return KindCanceled
	}
	for k := KindUnknown; k <= KindResourceExhausted; k++ {
		if k.Name() == name {
			return k
		}
	}
	return KindUnknown
}

// Error is an error of a known kind. Field names the request field at
// fault for KindInvalidArgument, so clients can point at it.
type Error struct {
	Kind  Kind
	Field string
	Msg   string
	Err   error
}

// Error returns Msg, which already holds the text of any wrapped error.
func (e *Error) Error() string {
	if e.Msg == "" && e.Err != nil {
		return e.Err.Error()
	}
	return e.Msg
}

func (e *Error) Unwrap() error { return e.Err }

func newf(k Kind, format string, args ...any) *Error {
	err := fmt.Errorf(format, args...)
	return &Error{Kind: k, Msg: err.Error(), Err: errors.Unwrap(err)}
}

// New returns an error of kind k; like fmt.Errorf, a %w verb keeps the
// wrapped error in the chain.
func New(k Kind, format string, args ...any) error { return newf(k, format, args...) }

// NotFound reports a missing object. Name the object and how to list them.
func NotFound(format string, args ...any) error { return newf(KindNotFound, format, args...) }

// AlreadyExists reports a name taken by an object of another shape.
func AlreadyExists(format string, args ...any) error {
	return newf(KindAlreadyExists, format, args...)
}

// InvalidArgument reports a bad or missing request field, naming it.
func InvalidArgument(field, format string, args ...any) error {
	e := newf(KindInvalidArgument, format, args...)
	e.Field = field
	if field != "" {
		e.Msg = field + ": " + e.Msg
	}
	return e
}

// FailedPrecondition reports a request that cannot run in the current state.
func FailedPrecondition(format string, args ...any) error {
	return newf(KindFailedPrecondition, format, args...)
}

// Unavailable reports an unreachable peer or a backend that is down.
func Unavailable(format string, args ...any) error { return newf(KindUnavailable, format, args...) }

// Aborted reports a conflict with another operation in flight.
func Aborted(format string, args ...any) error { return newf(KindAborted, format, args...) }

// Unauthenticated reports a missing or wrong token.
func Unauthenticated(format string, args ...any) error {
	return newf(KindUnauthenticated, format, args...)
}

// ResourceExhausted reports a full pool or disk.
func ResourceExhausted(format string, args ...any) error {
	return newf(KindResourceExhausted, format, args...)
}

// KindOf returns the kind of err, looking through wrapping. Context errors
// keep their own kinds so a canceled call is not reported as internal.
func KindOf(err error) Kind {
	if err == nil {
		return KindUnknown
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	switch {
	case errors.Is(err, context.Canceled):
		return KindCanceled
	case errors.Is(err, context.DeadlineExceeded):
		return KindDeadlineExceeded
	}
	return KindUnknown
}

// Is reports whether err is of kind k.
func Is(err error, k Kind) bool { return err != nil && KindOf(err) == k }

func IsNotFound(err error) bool           { return Is(err, KindNotFound) }
func IsAlreadyExists(err error) bool      { return Is(err, KindAlreadyExists) }
func IsInvalidArgument(err error) bool    { return Is(err, KindInvalidArgument) }
func IsFailedPrecondition(err error) bool { return Is(err, KindFailedPrecondition) }
func IsUnavailable(err error) bool        { return Is(err, KindUnavailable) }
func IsAborted(err error) bool            { return Is(err, KindAborted) }
func IsUnauthenticated(err error) bool    { return Is(err, KindUnauthenticated) }
func IsResourceExhausted(err error) bool  { return Is(err, KindResourceExhausted) }

// WithKind wraps err with a kind, keeping its message.
func WithKind(k Kind, err error) error {
	if err == nil {
		return nil
	}
	return &Error{Kind: k, Err: err}
}
