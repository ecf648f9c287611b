package main

import (
	"context"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	driverv1 "github.com/volrep/volrep/proto/volrep/driver/v1"
)

func newVolumeMigrateCmd(a *app) *cobra.Command {
	var (
		to          string
		smallBytes  int64
		smallMillis int64
		maxPasses   int32
		detach      bool
	)
	cmd := &cobra.Command{
		Use:   "migrate VOLID --to BACKEND",
		Short: "Move a volume to a backend on another array (MigrateVolume)",
		Long: `Move volume VOLID from this backend to --to, another backend of this volrepd
on another array, by snapshot deltas: a first snapshot in full, then
incremental passes while the volume stays in use, until a pass is small
(--small-pass-bytes or --small-pass-ms); then the volume's writes are held
(they wait) for one last delta and the switch, after which the volume is
--to's and the source is deleted. A failure keeps the volume where it was.
A progress bar follows the passes; the result lists each pass's bytes and
how long writes were held.`,
		Example: `  volrep volume migrate vol-1 --to site-b
  volrep volume migrate vol-1 --to site-b --small-pass-bytes 16777216 --detach`,
		Args: exactIDs(1, "a volume ID"),
		RunE: a.runE(func(cmd *cobra.Command, args []string) error {
			return a.longCall(cmd, func(ctx context.Context, c driverv1.DriverServiceClient) error {
				backend, err := a.backendName(ctx, c)
				if err != nil {
					return err
				}
				resp, err := c.MigrateVolume(ctx, &driverv1.MigrateVolumeRequest{Backend: backend, VolumeId: args[0], DestinationBackend: to,
					SmallPassBytes: smallBytes, SmallPassMs: smallMillis, MaxPasses: maxPasses})
				if err != nil {
					return rpcError(fmt.Sprintf("migrate volume %q to %q", args[0], to), err)
				}
				if detach {
					return a.render(resp, func(w io.Writer) { row(w, "operation_id", resp.GetOperationId()) })
				}
				return a.follow(ctx, c, backend, resp.GetOperationId())
			})
		}),
	}
	cmd.Flags().StringVar(&to, "to", "", "destination backend, on another array (required)")
	cmd.Flags().Int64Var(&smallBytes, "small-pass-bytes", 0, "a pass sending at most this many bytes is small (0: 64 MiB)")
	cmd.Flags().Int64Var(&smallMillis, "small-pass-ms", 0, "a pass taking at most this many milliseconds is small (0: 1000)")
	cmd.Flags().Int32Var(&maxPasses, "max-passes", 0, "the most passes before the last one; not small by then, the migration fails (0: 10)")
	cmd.Flags().BoolVar(&detach, "detach", false, "print the operation ID and return; follow it with 'volrep operation watch'")
	_ = cmd.MarkFlagRequired("to")
	return cmd
}
