package main

import (
	"context"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	driverv1 "github.com/volrep/volrep/proto/volrep/driver/v1"
)

// failoverCmds are `volrep backend failover`, `failback` and
// `failover-completed`: Cinder's failover-host, from the shell.
func failoverCmds(a *app) []*cobra.Command {
	var to string
	var volumes []string
	failover := &cobra.Command{
		Use:   "failover",
		Short: "Fail the backend over to a replication target (FailoverHost)",
		Long: `Serve the backend from a replication_device instead of its primary array,
as Cinder's "cinder failover-host" does. Without --to, volrepd picks the
target: a sync target whose pod was in sync (no data lost), otherwise the
async target holding the newest complete replicated snapshot.

Async volumes are promoted from their newest replicated snapshot: what was
written after it is lost. Sync volumes lose nothing. Volumes that were not
replicated are reported with status "error". Without --volume, every volume
the target holds a copy of fails over. Fail back with "volrep backend failback".`,
		Args: exactIDs(0, "no arguments"),
		RunE: a.runE(func(cmd *cobra.Command, _ []string) error {
			return a.failoverHost(cmd, to, volumes)
		}),
	}
	failover.Flags().StringVar(&to, "to", "", "backend_id of the replication_device to fail over to (default: volrepd chooses)")
	failover.Flags().StringSliceVar(&volumes, "volume", nil, "Cinder volume id to fail over (repeatable; default: every replicated volume)")

	failback := &cobra.Command{
		Use:   "failback",
		Short: "Bring a failed-over backend home to its primary array (FailoverHost default)",
		Long: `Send back to the primary array only the blocks written since the failover,
promote the primary's copies, demote the secondary's, and resume replication.
The primary array must be running again. Prints the bytes sent.`,
		Args: exactIDs(0, "no arguments"),
		RunE: a.runE(func(cmd *cobra.Command, _ []string) error {
			return a.failoverHost(cmd, "default", volumes)
		}),
	}
	failback.Flags().StringSliceVar(&volumes, "volume", nil, "Cinder volume id to fail back (repeatable; default: every volume the secondary serves)")

	var active string
	completed := &cobra.Command{
		Use:   "failover-completed",
		Short: "Record the active backend a clustered volume service settled on (FailoverCompleted)",
		Args:  exactIDs(0, "no arguments"),
		RunE: a.runE(func(cmd *cobra.Command, _ []string) error {
			return a.callBackend(cmd, func(ctx context.Context, c driverv1.DriverServiceClient, backend string) error {
				if _, err := c.FailoverCompleted(ctx, &driverv1.FailoverCompletedRequest{Backend: backend, ActiveBackendId: active}); err != nil {
					return rpcError(fmt.Sprintf("record %q as the active backend of %q", active, backend), err)
				}
				fmt.Fprintf(a.stdout, "backend %s: active_backend_id %s\n", backend, active)
				return nil
			})
		}),
	}
	completed.Flags().StringVar(&active, "active", "", `"default" or a replication_device backend_id`)
	_ = completed.MarkFlagRequired("active")
	return []*cobra.Command{failover, failback, completed}
}

func (a *app) failoverHost(cmd *cobra.Command, secondary string, volumes []string) error {
	if f := cmd.Flags().Lookup("timeout"); f != nil && !f.Changed {
		// A failback copies data; stopping it half-way helps nobody.
		a.timeout = 0
	}
	return a.callBackend(cmd, func(ctx context.Context, c driverv1.DriverServiceClient, backend string) error {
		resp, err := c.FailoverHost(ctx, &driverv1.FailoverHostRequest{Backend: backend, SecondaryId: secondary, VolumeIds: volumes})
		if err != nil {
			what := fmt.Sprintf("fail backend %q over", backend)
			if secondary == "default" {
				what = fmt.Sprintf("fail backend %q back", backend)
			}
			return rpcError(what, err)
		}
		return a.render(resp, func(w io.Writer) {
			row(w, "ACTIVE", resp.GetActiveBackendId())
			if secondary == "default" {
				row(w, "SENT", humanBytes(resp.GetFailbackBytes()))
			}
			row(w, "")
			row(w, "VOLUME", "STATUS", "REPLICATION", "PROVIDER_ID")
			for _, u := range resp.GetVolumeUpdates() {
				m := u.GetUpdates()
				row(w, u.GetVolumeId(), dash(m.GetStatus()), replicationStatus(m.GetReplicationStatus()), dash(m.GetProviderId()))
			}
		})
	})
}
