package main

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestExplainRPCErrors(t *testing.T) {
	const addr = "10.0.0.5:7400"
	for _, tc := range []struct {
		err      error
		line     string
		hintHas  string // "" means no hint
		exitCode int
	}{
		{
			err:      rpcError("list backends", status.Error(codes.Unavailable, "connection refused")),
			line:     "volrep: list backends: connection refused (UNAVAILABLE)",
			hintHas:  "is volrepd running at 10.0.0.5:7400? check --addr / VOLREP_ADDR (journalctl -u volrepd)",
			exitCode: exitUnavailable,
		},
		{
			err:      rpcError(`show volume "v1"`, status.Error(codes.Unauthenticated, "missing token")),
			line:     `volrep: show volume "v1": missing token (UNAUTHENTICATED)`,
			hintHas:  "check --token / VOLREP_TOKEN",
			exitCode: exitUnauthenticated,
		},
		{
			err:      rpcError(`show volume "v1"`, status.Error(codes.PermissionDenied, "read-only token")),
			line:     `volrep: show volume "v1": read-only token (PERMISSION_DENIED)`,
			hintHas:  "check --token / VOLREP_TOKEN",
			exitCode: exitUnauthenticated,
		},
		{
			err:      rpcError(`show volume "v1"`, status.Error(codes.NotFound, `volume "v1" not found`)),
			line:     `volrep: show volume "v1": volume "v1" not found (NOT_FOUND)`,
			hintHas:  "volrep volume list",
			exitCode: exitNotFound,
		},
		{
			err:      rpcError(`create volume "v1"`, status.Error(codes.InvalidArgument, "size_gb: must be positive")),
			line:     `volrep: create volume "v1": size_gb: must be positive (INVALID_ARGUMENT)`,
			hintHas:  "run 'volrep volume create --help' for usage",
			exitCode: exitUsage,
		},
		{
			err:      rpcError(`create volume "v1"`, status.Error(codes.AlreadyExists, "exists with size 5")),
			line:     `volrep: create volume "v1": exists with size 5 (ALREADY_EXISTS)`,
			exitCode: exitAlreadyExists,
		},
		{
			err:      rpcError("x", status.Error(codes.FailedPrecondition, "replica is INITIALIZING")),
			line:     "volrep: x: replica is INITIALIZING (FAILED_PRECONDITION)",
			exitCode: exitPrecondition,
		},
		{
			err:      rpcError("x", status.Error(codes.Aborted, "busy")),
			line:     "volrep: x: busy (ABORTED)",
			hintHas:  "retry",
			exitCode: exitAborted,
		},
		{
			err:      rpcError("x", status.Error(codes.DeadlineExceeded, "context deadline exceeded")),
			line:     "volrep: x: context deadline exceeded (DEADLINE_EXCEEDED)",
			hintHas:  "--timeout",
			exitCode: exitDeadlineExceeded,
		},
		{
			// A deadline hit outside an RPC reads the same as inside one.
			err:      rpcError("x", fmt.Errorf("waiting: %w", context.DeadlineExceeded)),
			line:     "volrep: x: waiting: context deadline exceeded (DEADLINE_EXCEEDED)",
			hintHas:  "--timeout",
			exitCode: exitDeadlineExceeded,
		},
		{
			err:      rpcError("x", status.Error(codes.Canceled, "context canceled")),
			line:     "volrep: x: context canceled (CANCELLED)",
			exitCode: exitInterrupted,
		},
		{
			err:      rpcError("x", status.Error(codes.Internal, "boom")),
			line:     "volrep: x: boom (INTERNAL)",
			exitCode: exitGeneric,
		},
		{
			err:      rpcError("x", status.Error(codes.Unimplemented, "unknown method")),
			line:     "volrep: x: unknown method (UNIMPLEMENTED)",
			hintHas:  "older than this client",
			exitCode: exitGeneric,
		},
		{
			// Messages spread over lines are folded: one error, one line.
			err:      rpcError("start backend", status.Error(codes.FailedPrecondition, "cinder.conf:12: unknown key\n  did you mean san_ip?\n")),
			line:     "volrep: start backend: cinder.conf:12: unknown key   did you mean san_ip? (FAILED_PRECONDITION)",
			exitCode: exitPrecondition,
		},
		{
			// A command's own exit code and hint win over the code's.
			err:      &cliError{What: "pick a backend", Err: status.Error(codes.NotFound, "none"), Exit: exitUsage, Hint: "use -b"},
			line:     "volrep: pick a backend: none (NOT_FOUND)",
			hintHas:  "use -b",
			exitCode: exitUsage,
		},
		{
			err:      usageErrorf("--size must be positive, got %d", 0),
			line:     "volrep: --size must be positive, got 0",
			hintHas:  "run 'volrep volume create --help' for usage",
			exitCode: exitUsage,
		},
		{
			err:      &cliError{What: "write output", Err: errors.New("broken pipe")},
			line:     "volrep: write output: broken pipe",
			exitCode: exitGeneric,
		},
		{
			// Untyped errors come from cobra: flag and argument parsing.
			err:      errors.New(`unknown flag: --sise`),
			line:     "volrep: unknown flag: --sise",
			hintHas:  "run 'volrep volume create --help' for usage",
			exitCode: exitUsage,
		},
	} {
		r := explain(tc.err, addr, "volrep volume create")
		if r.Line != tc.line {
			t.Errorf("explain(%v).Line\n got %q\nwant %q", tc.err, r.Line, tc.line)
		}
		if strings.Contains(r.Line, "\n") || strings.Contains(r.Hint, "\n") {
			t.Errorf("explain(%v) is not one line: %q / %q", tc.err, r.Line, r.Hint)
		}
		if tc.hintHas == "" && r.Hint != "" {
			t.Errorf("explain(%v).Hint = %q, want none", tc.err, r.Hint)
		}
		if tc.hintHas != "" && !strings.Contains(r.Hint, tc.hintHas) {
			t.Errorf("explain(%v).Hint = %q, want it to contain %q", tc.err, r.Hint, tc.hintHas)
		}
		if r.Exit != tc.exitCode {
			t.Errorf("explain(%v).Exit = %d, want %d", tc.err, r.Exit, tc.exitCode)
		}
	}
}

// The exit codes of the failure classes the brief names must differ, and
// `volrep --help` must document every exit code the program can return.
func TestExitCodesDistinctAndDocumented(t *testing.T) {
	classes := map[string]codes.Code{
		"not found":   codes.NotFound,
		"unavailable": codes.Unavailable,
		"unauth":      codes.Unauthenticated,
		"exists":      codes.AlreadyExists,
		"precond":     codes.FailedPrecondition,
		"aborted":     codes.Aborted,
		"deadline":    codes.DeadlineExceeded,
		"cancelled":   codes.Canceled,
		"usage":       codes.InvalidArgument,
		"generic":     codes.Internal,
	}
	seen := map[int]string{}
	for name, c := range classes {
		e := exitCodeFor(c)
		if other, dup := seen[e]; dup {
			t.Errorf("%s and %s share exit code %d", name, other, e)
		}
		seen[e] = name
	}
	if exitCodeFor(codes.NotFound) != 3 || exitCodeFor(codes.Unavailable) != 4 || exitCodeFor(codes.Internal) != 1 || exitCodeFor(codes.InvalidArgument) != 2 {
		t.Errorf("the brief's exit codes (1 generic, 2 usage, 3 not found, 4 unavailable) changed")
	}

	documented := map[int]bool{}
	for _, m := range regexp.MustCompile(`(?m)^  (\d+) `).FindAllStringSubmatch(exitCodesHelp, -1) {
		var n int
		fmt.Sscan(m[1], &n)
		documented[n] = true
	}
	for c := codes.OK; c <= codes.Unauthenticated; c++ {
		if e := exitCodeFor(c); !documented[e] {
			t.Errorf("exit code %d (for %s) is not in exitCodesHelp", e, codeName(c))
		}
	}
	if !documented[exitUsage] {
		t.Errorf("usage exit code %d is not documented", exitUsage)
	}
	if !strings.Contains(rootLong, exitCodesHelp) {
		t.Errorf("the root command's help does not include the exit codes")
	}
}

func TestCodeNames(t *testing.T) {
	for c := codes.OK; c <= codes.Unauthenticated; c++ {
		n := codeName(c)
		if !regexp.MustCompile(`^[A-Z_]+$`).MatchString(n) || strings.HasPrefix(n, "CODE_") {
			t.Errorf("codeName(%d) = %q", c, n)
		}
	}
	if n := codeName(codes.Code(42)); n != "CODE_42" {
		t.Errorf("codeName(42) = %q", n)
	}
}
