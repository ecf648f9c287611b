package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"

	driverv1 "github.com/volrep/volrep/proto/volrep/driver/v1"
)

// longCall is call without --timeout, for commands that follow a transfer
// for as long as it takes (Ctrl-C stops following, not the transfer).
func (a *app) longCall(cmd *cobra.Command, fn func(ctx context.Context, c driverv1.DriverServiceClient) error) error {
	c, err := a.dial()
	if err != nil {
		return err
	}
	ctx := cmd.Context()
	if ctx == nil {
		ctx = context.Background()
	}
	return fn(ctx, c)
}

func newSnapshotReplicateCmd(a *app) *cobra.Command {
	var (
		volume, to string
		force      bool
		detach     bool
		count      int32
	)
	cmd := &cobra.Command{
		Use:   "replicate SNAPID... --volume VOLID --to BACKEND",
		Short: "Send a snapshot to another backend (SnapshotReplicate)",
		Long: `Send snapshot SNAPID of volume --volume from this backend to --to: another
backend, or a replication_device backend_id of this one.
Only the blocks that changed since the newest snapshot both backends hold
are sent, unless --force-full-copy. A progress bar follows the transfer;
interrupted, it resumes from where it stopped when run again.
Several SNAPIDs, or --count N (the N newest snapshots, up to SNAPID if
given), go in one operation: oldest first, each a delta on the one before,
so the destination ends with all of them.`,
		Example: `  volrep snapshot replicate snap-2 --volume vol-1 --to site-b
  volrep snapshot replicate snap-2 --volume vol-1 --to site-b --force-full-copy
  volrep snapshot replicate snap-1 snap-2 snap-3 --volume vol-1 --to site-b
  volrep snapshot replicate --count 3 --volume vol-1 --to site-b`,
		Args: func(cmd *cobra.Command, args []string) error {
			if count > 0 {
				if len(args) > 1 {
					return fmt.Errorf("%q with --count takes at most one snapshot ID (the newest to send), got %d", cmd.CommandPath(), len(args))
				}
				return nil
			}
			if len(args) == 0 {
				return fmt.Errorf("%q takes one or more snapshot IDs, or --count", cmd.CommandPath())
			}
			return nil
		},
		RunE: a.runE(func(cmd *cobra.Command, args []string) error {
			return a.longCall(cmd, func(ctx context.Context, c driverv1.DriverServiceClient) error {
				backend, err := a.backendName(ctx, c)
				if err != nil {
					return err
				}
				req := &driverv1.SnapshotReplicateRequest{Backend: backend, VolumeId: volume, DestinationBackend: to, ForceFullCopy: force, Count: count}
				what := fmt.Sprintf("the %d newest snapshots of %q", count, volume)
				switch {
				case len(args) == 1:
					req.SnapshotId = args[0]
					if count == 0 {
						what = fmt.Sprintf("snapshot %q", args[0])
					}
				case len(args) > 1:
					req.SnapshotIds = args
					what = fmt.Sprintf("snapshots %q", args)
				}
				if count < 0 {
					return usageErrorf("--count must be positive, got %d", count)
				}
				resp, err := c.SnapshotReplicate(ctx, req)
				if err != nil {
					return rpcError(fmt.Sprintf("replicate %s to %q", what, to), err)
				}
				if detach {
					return a.render(resp, func(w io.Writer) { row(w, "operation_id", resp.GetOperationId()) })
				}
				return a.follow(ctx, c, backend, resp.GetOperationId())
			})
		}),
	}
	cmd.Flags().StringVar(&volume, "volume", "", "ID of the snapshot's volume (required)")
	cmd.Flags().StringVar(&to, "to", "", "destination: a backend, or a replication_device backend_id of this backend (required)")
	cmd.Flags().BoolVar(&force, "force-full-copy", false, "send every allocated block, not a delta")
	cmd.Flags().Int32Var(&count, "count", 0, "send the N newest snapshots of the volume (up to SNAPID if given) in one operation")
	cmd.Flags().BoolVar(&detach, "detach", false, "print the operation ID and return; follow it with 'volrep operation watch'")
	_ = cmd.MarkFlagRequired("volume")
	_ = cmd.MarkFlagRequired("to")
	return cmd
}

// follow watches an operation with a progress bar on stderr, then prints
// its outcome. A failed operation is an error with its code.
func (a *app) follow(ctx context.Context, c driverv1.DriverServiceClient, backend, id string) error {
	stream, err := c.WatchOperation(ctx, &driverv1.WatchOperationRequest{Backend: backend, OperationId: id})
	if err != nil {
		return rpcError("watch operation "+id, err)
	}
	var bar *progressbar.ProgressBar
	var last *driverv1.Operation
	for {
		r, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return rpcError("watch operation "+id, err)
		}
		last = r.GetOperation()
		if bar == nil && last.GetBytesTotal() > 0 && a.output != "json" {
			bar = progressbar.NewOptions64(last.GetBytesTotal(), progressbar.OptionSetWriter(os.Stderr),
				progressbar.OptionShowBytes(true), progressbar.OptionSetDescription(id),
				progressbar.OptionThrottle(100*time.Millisecond), progressbar.OptionShowCount(),
				progressbar.OptionSetPredictTime(true), progressbar.OptionFullWidth())
		}
		if bar != nil {
			bar.Describe(fmt.Sprintf("%s %s", id, last.GetPhase()))
			_ = bar.Set64(last.GetBytesDone())
		}
	}
	if bar != nil {
		_ = bar.Finish()
		fmt.Fprintln(os.Stderr)
	}
	if last == nil {
		return fmt.Errorf("operation %s reported nothing", id)
	}
	if err := a.render(last, func(w io.Writer) { operationTable(w, last) }); err != nil {
		return err
	}
	if last.GetState() != driverv1.OperationState_OPERATION_STATE_SUCCEEDED {
		return fmt.Errorf("operation %s %s: %s (%s)", id, stateName(last.GetState()), last.GetError(), last.GetErrorCode())
	}
	return nil
}

func stateName(s driverv1.OperationState) string {
	switch s {
	case driverv1.OperationState_OPERATION_STATE_RUNNING:
		return "running"
	case driverv1.OperationState_OPERATION_STATE_SUCCEEDED:
		return "succeeded"
	case driverv1.OperationState_OPERATION_STATE_FAILED:
		return "failed"
	case driverv1.OperationState_OPERATION_STATE_CANCELED:
		return "canceled"
	}
	return "-"
}

func operationTable(w io.Writer, o *driverv1.Operation) {
	row(w, "operation_id", o.GetId())
	row(w, "state", stateName(o.GetState()))
	row(w, "target", o.GetTarget())
	row(w, "bytes", fmt.Sprintf("%d / %d", o.GetBytesDone(), o.GetBytesTotal()))
	row(w, "bytes_sent", fmt.Sprint(o.GetBytesSent()))
	base := o.GetBaseSnapshotId()
	if base == "" {
		base = "- (full copy)"
	}
	row(w, "incremental", fmt.Sprint(o.GetIncremental()))
	row(w, "base_snapshot", base)
	if o.GetResumedFrom() > 0 {
		row(w, "resumed_from", fmt.Sprint(o.GetResumedFrom()))
	}
	if o.GetAlreadyPresent() {
		row(w, "already_present", "true")
	}
	if o.GetRateBytesPerSecond() > 0 {
		row(w, "rate", fmt.Sprintf("%.1f MiB/s", o.GetRateBytesPerSecond()/(1<<20)))
	}
	for i, st := range o.GetSteps() {
		from := "full copy"
		if st.GetIncremental() {
			from = "delta on " + st.GetBaseSnapshotId()
		}
		row(w, fmt.Sprintf("step %d", i+1), fmt.Sprintf("%s: %s, %d bytes sent", st.GetSnapshotId(), from, st.GetBytesSent()))
	}
	if held := o.GetWritesHeldSeconds(); held > 0 {
		row(w, "writes_held", fmt.Sprintf("%.3f s", held))
	}
	if o.GetError() != "" {
		row(w, "error", fmt.Sprintf("%s (%s)", o.GetError(), o.GetErrorCode()))
	}
}

func newSnapshotVerifyCmd(a *app) *cobra.Command {
	var volume, against string
	cmd := &cobra.Command{
		Use:   "verify SNAPID --volume VOLID --against BACKEND",
		Short: "Compare a snapshot with its replica on another backend (VerifySnapshot)",
		Long: `Compare snapshot SNAPID of volume --volume with its replica on backend
--against, by the CRC-32C of every 4 KiB block computed on each array.
Exits 1 and reports the first mismatching offset when they differ.`,
		Args: exactIDs(1, "a snapshot ID"),
		RunE: a.runE(func(cmd *cobra.Command, args []string) error {
			return a.longCall(cmd, func(ctx context.Context, c driverv1.DriverServiceClient) error {
				backend, err := a.backendName(ctx, c)
				if err != nil {
					return err
				}
				resp, err := c.VerifySnapshot(ctx, &driverv1.VerifySnapshotRequest{Backend: backend, SnapshotId: args[0], VolumeId: volume, DestinationBackend: against})
				if err != nil {
					return rpcError(fmt.Sprintf("verify snapshot %q against %q", args[0], against), err)
				}
				if err := a.render(resp, func(w io.Writer) {
					row(w, "match", fmt.Sprint(resp.GetMatch()))
					row(w, "blocks_compared", fmt.Sprint(resp.GetBlocksCompared()))
					if !resp.GetMatch() {
						row(w, "first_mismatch_offset", fmt.Sprint(resp.GetFirstMismatchOffset()))
						row(w, "source_crc32c", fmt.Sprintf("%08x", resp.GetSourceCrc32C()))
						row(w, "destination_crc32c", fmt.Sprintf("%08x", resp.GetDestinationCrc32C()))
					}
				}); err != nil {
					return err
				}
				if !resp.GetMatch() {
					return &cliError{What: "verify", Err: fmt.Errorf("snapshot %s differs from its replica on %s at offset %d", args[0], against, resp.GetFirstMismatchOffset()), Exit: 1}
				}
				return nil
			})
		}),
	}
	cmd.Flags().StringVar(&volume, "volume", "", "ID of the snapshot's volume (required)")
	cmd.Flags().StringVar(&against, "against", "", "backend, or replication_device backend_id, holding the replica (required)")
	_ = cmd.MarkFlagRequired("volume")
	_ = cmd.MarkFlagRequired("against")
	return cmd
}

func newOperationCmd(a *app) *cobra.Command {
	cmd := groupCmd("operation", "Follow or cancel long-running operations such as snapshot replication")
	show := &cobra.Command{
		Use: "show OPID", Short: "Show an operation (GetOperation)", Args: exactIDs(1, "an operation ID"),
		RunE: a.runE(func(cmd *cobra.Command, args []string) error {
			return a.callBackend(cmd, func(ctx context.Context, c driverv1.DriverServiceClient, backend string) error {
				r, err := c.GetOperation(ctx, &driverv1.GetOperationRequest{Backend: backend, OperationId: args[0]})
				if err != nil {
					return rpcError("get operation "+args[0], err)
				}
				return a.render(r, func(w io.Writer) { operationTable(w, r.GetOperation()) })
			})
		}),
	}
	watch := &cobra.Command{
		Use: "watch OPID", Short: "Follow an operation with a progress bar (WatchOperation)", Args: exactIDs(1, "an operation ID"),
		RunE: a.runE(func(cmd *cobra.Command, args []string) error {
			return a.longCall(cmd, func(ctx context.Context, c driverv1.DriverServiceClient) error {
				backend, err := a.backendName(ctx, c)
				if err != nil {
					return err
				}
				return a.follow(ctx, c, backend, args[0])
			})
		}),
	}
	cancel := &cobra.Command{
		Use: "cancel OPID", Short: "Cancel an operation; running it again resumes it (CancelOperation)", Args: exactIDs(1, "an operation ID"),
		RunE: a.runE(func(cmd *cobra.Command, args []string) error {
			return a.callBackend(cmd, func(ctx context.Context, c driverv1.DriverServiceClient, backend string) error {
				r, err := c.CancelOperation(ctx, &driverv1.CancelOperationRequest{Backend: backend, OperationId: args[0]})
				if err != nil {
					return rpcError("cancel operation "+args[0], err)
				}
				return a.render(r, func(w io.Writer) { operationTable(w, r.GetOperation()) })
			})
		}),
	}
	cmd.AddCommand(show, watch, cancel)
	return cmd
}
