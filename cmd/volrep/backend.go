package main

import (
	"context"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	driverv1 "github.com/volrep/volrep/proto/volrep/driver/v1"
)

func newBackendCmd(a *app) *cobra.Command {
	cmd := groupCmd("backend", "Driver backends served by volrepd")
	cmd.AddCommand(&cobra.Command{
		Use:   "list",
		Short: "List every configured backend, up or down, with the reason (ListBackends)",
		Long: `List every backend (cinder.conf section) volrepd runs, whether it is up,
the array serving it (ACTIVE: "default" or the backend_id it failed over to),
its replication targets, and why it is down.`,
		Args: exactIDs(0, "no arguments"),
		RunE: a.runE(func(cmd *cobra.Command, _ []string) error {
			return a.call(cmd, func(ctx context.Context, c driverv1.DriverServiceClient) error {
				resp, err := listBackends(ctx, c)
				if err != nil {
					return rpcError("list backends", err)
				}
				return a.printBackends(resp)
			})
		}),
	})
	cmd.AddCommand(failoverCmds(a)...)
	return cmd
}

func (a *app) printBackends(resp *driverv1.ListBackendsResponse) error {
	return a.render(resp, func(w io.Writer) {
		row(w, "NAME", "UP", "ACTIVE", "TARGETS", "REASON")
		for _, b := range resp.GetBackends() {
			row(w, b.GetName(), yesNo(b.GetUp()), dash(b.GetActiveBackendId()), targetsCell(b.GetReplicationTargets()), dash(b.GetReason()))
		}
	})
}

// targetsCell shows replication targets as "backend_id(type)" joined by commas.
func targetsCell(ts []*driverv1.ReplicationTarget) string {
	cells := make([]string, len(ts))
	for i, t := range ts {
		cells[i] = t.GetBackendId()
		if t.GetType() != "" {
			cells[i] += "(" + t.GetType() + ")"
		}
	}
	return listOrDash(cells)
}

func newStatsCmd(a *app) *cobra.Command {
	var refresh bool
	cmd := &cobra.Command{
		Use:   "stats [BACKEND]",
		Short: "Show a backend's capacity and capabilities (GetVolumeStats)",
		Long: `Show what the driver reports to the volume manager (Cinder's get_volume_stats):
capacity, thin provisioning, replication capabilities and targets, and the
backend's state. BACKEND defaults to --backend / VOLREP_BACKEND, or the
daemon's only backend.`,
		Args: optionalID("BACKEND"),
		RunE: a.runE(func(cmd *cobra.Command, args []string) error {
			if len(args) == 1 {
				if a.backend != "" && a.backend != args[0] {
					return usageErrorf("backend %q given as argument and %q by --backend/%s; give one", args[0], a.backend, envBackend)
				}
				a.backend = args[0]
			}
			return a.callBackend(cmd, func(ctx context.Context, c driverv1.DriverServiceClient, backend string) error {
				resp, err := c.GetVolumeStats(ctx, &driverv1.GetVolumeStatsRequest{Backend: backend, Refresh: refresh})
				if err != nil {
					return rpcError(fmt.Sprintf("get stats of backend %q", backend), err)
				}
				return a.printStats(resp)
			})
		}),
	}
	cmd.Flags().BoolVar(&refresh, "refresh", false, "ask the arrays again instead of returning cached stats")
	return cmd
}

func (a *app) printStats(s *driverv1.GetVolumeStatsResponse) error {
	return a.render(s, func(w io.Writer) {
		state := "down"
		if s.GetBackendStateUp() {
			state = "up"
		}
		row(w, "volume_backend_name", dash(s.GetVolumeBackendName()))
		row(w, "backend_state", state)
		if r := s.GetBackendStateReason(); r != "" {
			row(w, "backend_state_reason", r)
		}
		row(w, "active_backend_id", dash(s.GetActiveBackendId()))
		row(w, "vendor_name", dash(s.GetVendorName()))
		row(w, "driver_version", dash(s.GetDriverVersion()))
		row(w, "storage_protocol", dash(s.GetStorageProtocol()))
		row(w, "total_capacity_gb", formatFloat(s.GetTotalCapacityGb()))
		row(w, "free_capacity_gb", formatFloat(s.GetFreeCapacityGb()))
		row(w, "provisioned_capacity_gb", formatFloat(s.GetProvisionedCapacityGb()))
		row(w, "reserved_percentage", formatInt(s.GetReservedPercentage()))
		row(w, "max_over_subscription_ratio", formatFloat(s.GetMaxOverSubscriptionRatio()))
		row(w, "thin_provisioning_support", fmt.Sprint(s.GetThinProvisioningSupport()))
		row(w, "thick_provisioning_support", fmt.Sprint(s.GetThickProvisioningSupport()))
		row(w, "multiattach", fmt.Sprint(s.GetMultiattach()))
		row(w, "replication_enabled", fmt.Sprint(s.GetReplicationEnabled()))
		row(w, "replication_type", listOrDash(s.GetReplicationType()))
		row(w, "replication_count", formatInt(s.GetReplicationCount()))
		row(w, "replication_targets", listOrDash(s.GetReplicationTargets()))
		row(w, "consistent_group_snapshot_enabled", fmt.Sprint(s.GetConsistentGroupSnapshotEnabled()))
		row(w, "consistent_group_replication_enabled", fmt.Sprint(s.GetConsistentGroupReplicationEnabled()))
	})
}
