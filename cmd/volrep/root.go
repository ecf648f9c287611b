package main

import (
	"context"
	"fmt"
	"io"

	"github.com/spf13/cobra"
)

// commandGroups builds the top-level commands. To add a group (replication,
// failover, doctor, ...), write a file with a func(*app) *cobra.Command and
// list it here.
var commandGroups = []func(*app) *cobra.Command{
	newBackendCmd,
	newStatsCmd,
	newVolumeCmdWithAttach, // volume, plus attach and detach (attach.go)
	newSnapshotCmd,
	newHostCmd,  // host.go: the array's iSCSI hosts
	newGroupCmd, // group.go
	newReplicationCmd,
	newOperationCmd,
	newDoctorCmd,   // doctor.go
	newMediatorCmd, // mediator.go: a pod's keys at its etcd, without volrepd
}

const rootLong = `volrep talks to volrepd, the Cinder-style volume driver with replication,
over its gRPC driver API (volrep.driver.v1.DriverService).

Most commands act on one driver backend: --backend / VOLREP_BACKEND, or, when
the daemon serves exactly one backend, that one.

Errors are printed as one line on stderr,
  volrep: <what failed>: <message from volrepd> (<gRPC code>)
followed by a hint where there is one.

` + exitCodesHelp

// newRootCmd builds the whole command tree around a.
func newRootCmd(a *app) *cobra.Command {
	root := &cobra.Command{
		Use:           "volrep",
		Short:         "Command-line client for volrepd",
		Long:          rootLong,
		SilenceErrors: true, // run prints errors, one line each
		SilenceUsage:  true, // usage errors get a hint, not the whole usage text
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			a.applyEnv(cmd)
			return nil
		},
	}
	root.SetOut(a.stdout)
	root.SetErr(a.stderr)
	a.addGlobalFlags(root)
	for _, build := range commandGroups {
		root.AddCommand(build(a))
	}
	return root
}

// run executes one invocation and returns the process's exit status.
func run(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	a := newApp(stdout, stderr, getenv)
	defer a.close()
	root := newRootCmd(a)
	root.SetArgs(args)
	cmd, err := root.ExecuteContextC(ctx)
	if err == nil {
		return exitOK
	}
	if cmd == nil {
		cmd = root
	}
	r := explain(err, a.addr, cmd.CommandPath())
	fmt.Fprintln(stderr, r.Line)
	if r.Hint != "" {
		fmt.Fprintln(stderr, "volrep: hint: "+r.Hint)
	}
	return r.Exit
}

// groupCmd makes a command that only holds subcommands. Run without one it
// prints its help; with an unknown one it fails as a usage error (cobra
// itself would print the help and succeed).
func groupCmd(use, short string) *cobra.Command {
	return &cobra.Command{
		Use:   use,
		Short: short,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return fmt.Errorf("unknown command %q for %q", args[0], cmd.CommandPath())
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
}

// Argument validators; their errors are untyped and so count as usage errors.
func exactIDs(n int, names string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != n {
			return fmt.Errorf("%q takes %s, got %d argument(s)", cmd.CommandPath(), names, len(args))
		}
		return nil
	}
}

func optionalID(name string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) > 1 {
			return fmt.Errorf("%q takes at most one %s, got %d arguments", cmd.CommandPath(), name, len(args))
		}
		return nil
	}
}
