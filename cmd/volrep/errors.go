package main

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/volrep/volrep/errdefs/errgrpc"
)

// Exit codes. They are part of the command's interface (scripts test them),
// so keep them stable and keep exitCodesHelp in step.
const (
	exitOK               = 0
	exitGeneric          = 1   // anything not listed below
	exitUsage            = 2   // bad command line, or INVALID_ARGUMENT from volrepd
	exitNotFound         = 3   // NOT_FOUND
	exitUnavailable      = 4   // UNAVAILABLE: volrepd (or an array behind it) unreachable
	exitUnauthenticated  = 5   // UNAUTHENTICATED, PERMISSION_DENIED
	exitAlreadyExists    = 6   // ALREADY_EXISTS
	exitPrecondition     = 7   // FAILED_PRECONDITION
	exitAborted          = 8   // ABORTED: another operation is in flight
	exitDeadlineExceeded = 9   // DEADLINE_EXCEEDED: --timeout passed
	exitInterrupted      = 130 // CANCELLED: interrupted (Ctrl-C)
)

// exitCodesHelp is the table shown by `volrep --help`.
const exitCodesHelp = `Exit status:
  0    success
  1    generic failure
  2    usage: bad flags or arguments (or INVALID_ARGUMENT from volrepd)
  3    not found (NOT_FOUND)
  4    unavailable: volrepd or an array behind it is unreachable (UNAVAILABLE)
  5    not authenticated or not allowed (UNAUTHENTICATED, PERMISSION_DENIED)
  6    already exists with a different shape (ALREADY_EXISTS)
  7    failed precondition (FAILED_PRECONDITION)
  8    aborted: another operation on the same object is in flight; retry (ABORTED)
  9    timed out: the call took longer than --timeout (DEADLINE_EXCEEDED)
  130  interrupted (CANCELLED)`

// cliError is an error that a command reports to the user: what failed, why,
// and optionally how to fix it. Every error a command's RunE returns is a
// *cliError (see app.runE); an untyped error reaching run therefore comes
// from cobra itself (flag parsing, argument validation) and is a usage error.
type cliError struct {
	// What failed, phrased as an action: `create volume "v1"`.
	What string
	// Err is why. A gRPC status error contributes its message and code.
	Err error
	// Exit overrides the exit code derived from Err when non-zero.
	Exit int
	// Hint overrides the hint derived from Err's gRPC code when non-empty.
	Hint string
}

func (e *cliError) Error() string {
	if e.Err == nil {
		return e.What
	}
	return e.What + ": " + e.Err.Error()
}

func (e *cliError) Unwrap() error { return e.Err }

// usageErrorf reports a bad command line found by a command itself.
func usageErrorf(format string, args ...any) error {
	return &cliError{What: fmt.Sprintf(format, args...), Exit: exitUsage}
}

// rpcError wraps the error of a call to volrepd.
func rpcError(what string, err error) error {
	return &cliError{What: what, Err: err}
}

// report is what run prints for an error and the status it exits with.
type report struct {
	Line string // "volrep: ..." — always exactly one line
	Hint string // "" or one line of advice
	Exit int
}

// grpcStatus returns the gRPC status carried by err, if any. Context errors
// count as the matching codes so that a deadline hit outside an RPC reads the
// same as one hit inside it.
func grpcStatus(err error) (*status.Status, bool) {
	var se interface{ GRPCStatus() *status.Status }
	if errors.As(err, &se) {
		return se.GRPCStatus(), true
	}
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return status.New(codes.DeadlineExceeded, err.Error()), true
	case errors.Is(err, context.Canceled):
		return status.New(codes.Canceled, err.Error()), true
	}
	return nil, false
}

// explain turns any error returned by the root command into a report.
// addr is the daemon address (for the UNAVAILABLE hint), cmdPath the command
// that failed (for the usage hint).
func explain(err error, addr, cmdPath string) report {
	var ce *cliError
	if !errors.As(err, &ce) {
		// Not ours: cobra rejected the command line.
		return report{
			Line: "volrep: " + oneLine(err.Error()),
			Hint: fmt.Sprintf("run '%s --help' for usage", cmdPath),
			Exit: exitUsage,
		}
	}

	r := report{Exit: ce.Exit, Hint: ce.Hint}
	st, isRPC := grpcStatus(ce.Err)
	switch {
	case ce.Err == nil:
		r.Line = "volrep: " + oneLine(ce.What)
	case isRPC:
		r.Line = fmt.Sprintf("volrep: %s: %s (%s)", oneLine(ce.What), oneLine(st.Message()), codeName(st.Code()))
		if r.Exit == 0 {
			r.Exit = exitCodeFor(st.Code())
		}
		if r.Hint == "" {
			r.Hint = hintFor(st, addr)
		}
	default:
		r.Line = "volrep: " + oneLine(ce.Error())
	}
	if r.Exit == 0 {
		r.Exit = exitGeneric
	}
	if r.Exit == exitUsage && r.Hint == "" {
		r.Hint = fmt.Sprintf("run '%s --help' for usage", cmdPath)
	}
	return r
}

// exitCodeFor maps a gRPC code to the exit status documented in exitCodesHelp.
func exitCodeFor(c codes.Code) int {
	switch c {
	case codes.OK:
		return exitOK
	case codes.InvalidArgument:
		return exitUsage
	case codes.NotFound:
		return exitNotFound
	case codes.Unavailable:
		return exitUnavailable
	case codes.Unauthenticated, codes.PermissionDenied:
		return exitUnauthenticated
	case codes.AlreadyExists:
		return exitAlreadyExists
	case codes.FailedPrecondition:
		return exitPrecondition
	case codes.Aborted:
		return exitAborted
	case codes.DeadlineExceeded:
		return exitDeadlineExceeded
	case codes.Canceled:
		return exitInterrupted
	default:
		return exitGeneric
	}
}

// hintFor gives advice for the codes a user can do something about. An
// UNAVAILABLE that volrepd returned is about an array or backend behind
// it, not about volrepd, and is hinted as such.
func hintFor(st *status.Status, addr string) string {
	switch st.Code() {
	case codes.Unavailable:
		if errgrpc.Answered(st) {
			return fmt.Sprintf("volrepd at %s answered, but an array behind it did not: check the array named above; 'volrep backend list' shows each backend's state (journalctl -u volrepd)", addr)
		}
		return fmt.Sprintf("is volrepd running at %s? check --addr / VOLREP_ADDR (journalctl -u volrepd)", addr)
	case codes.Unauthenticated:
		return "check --token / VOLREP_TOKEN"
	case codes.PermissionDenied:
		return "the token is not allowed to do this; check --token / VOLREP_TOKEN"
	case codes.NotFound:
		return "'volrep backend list', 'volrep volume list' and 'volrep snapshot list' show what exists"
	case codes.DeadlineExceeded:
		return "raise --timeout, or see why volrepd is slow (journalctl -u volrepd)"
	case codes.Aborted:
		return "another operation on the same object is in flight; retry"
	case codes.Unimplemented:
		return "this volrepd does not serve the call; is it older than this client?"
	}
	return ""
}

// codeName is the canonical name of a gRPC code, as in google.rpc.Code.
func codeName(c codes.Code) string { return errgrpc.CodeName(c) }

// oneLine folds a message onto a single line so that every error is one
// line; spacing within a line is kept as the server sent it.
func oneLine(s string) string {
	return strings.TrimSpace(lineBreaks.Replace(s))
}

var lineBreaks = strings.NewReplacer("\r\n", " ", "\n", " ", "\r", " ")
