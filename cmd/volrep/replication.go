package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	driverv1 "github.com/volrep/volrep/proto/volrep/driver/v1"
)

func newReplicationCmd(a *app) *cobra.Command {
	cmd := groupCmd("replication", "Inspect and tune volume replication")
	cmd.AddCommand(newReplicationInfoCmd(a), newReplicationScheduleCmd(a))
	return cmd
}

func healthName(h driverv1.ReplicationHealth) string {
	return strings.ToLower(strings.TrimPrefix(h.String(), "REPLICATION_HEALTH_"))
}

func newReplicationInfoCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "info VOLID",
		Short: "How a volume's replication is doing: last sync, lag, status (GetReplicationInfo)",
		Args:  exactIDs(1, "a volume ID"),
		RunE: a.runE(func(cmd *cobra.Command, args []string) error {
			return a.callBackend(cmd, func(ctx context.Context, c driverv1.DriverServiceClient, backend string) error {
				r, err := c.GetReplicationInfo(ctx, &driverv1.GetReplicationInfoRequest{Backend: backend, VolumeId: args[0]})
				if err != nil {
					return rpcError(fmt.Sprintf("replication info of volume %q", args[0]), err)
				}
				return a.render(r, func(w io.Writer) {
					row(w, "TARGET", "TYPE", "STATUS", "LAST_SYNC", "LAG", "BYTES", "DURATION", "MESSAGE")
					for _, t := range r.GetTargets() {
						last := "-"
						if t.GetLastSyncTime() != nil {
							last = t.GetLastSyncTime().AsTime().Format(time.RFC3339)
						}
						msg := t.GetStatusMessage()
						if msg == "" {
							msg = "-"
						}
						row(w, t.GetBackendId(), t.GetType(), healthName(t.GetStatus()), last,
							(time.Duration(t.GetLagSeconds()) * time.Second).String(), fmt.Sprint(t.GetLastSyncBytes()),
							fmt.Sprintf("%.2fs", t.GetLastSyncDurationSeconds()), msg)
					}
					podRows(w, r.GetTargets())
				})
			})
		}),
	}
}

// podRows shows each sync target's pod: the state of both sides and the
// mediator's health as the primary sees them, after the targets' table;
// then the pod as each target array itself reports it.
func podRows(w io.Writer, targets []*driverv1.TargetReplicationInfo) {
	header := false
	for _, t := range targets {
		if t.GetPrimaryPodState() == "" {
			continue
		}
		if !header {
			row(w)
			row(w, "POD_TARGET", "PRIMARY_SIDE", "TARGET_SIDE", "PRIMARY_WRITES", "TARGET_WRITES", "MEDIATOR", "KEY_HELD", "MEDIATOR_NAME", "MEDIATOR_MESSAGE")
			header = true
		}
		med, held, msg := "none", "-", t.GetMediatorMessage()
		if t.GetMediatorState() != "" {
			med, held = t.GetMediatorState(), fmt.Sprint(t.GetMediatorHeld())
		}
		if msg == "" {
			msg = "-"
		}
		row(w, t.GetBackendId(), t.GetPrimaryPodState(), t.GetTargetPodState(), dash(t.GetPrimaryWrites()), dash(t.GetTargetWrites()), med, held, dash(t.GetMediatorName()), msg)
	}
	header = false
	for _, t := range targets {
		if t.GetPrimaryPodState() == "" && t.GetTargetOwnMessage() == "" {
			continue
		}
		if !header {
			row(w)
			row(w, "POD_TARGET", "TARGET_SAYS", "TARGET_WRITES", "TARGET_KEY_HELD", "TARGET_MESSAGE")
			header = true
		}
		state, writes, held := "unknown", "-", "-"
		if t.GetTargetOwnState() != "" {
			state, writes, held = t.GetTargetOwnState(), dash(t.GetTargetOwnWrites()), fmt.Sprint(t.GetTargetMediatorHeld())
		}
		row(w, t.GetBackendId(), state, writes, held, dash(t.GetTargetOwnMessage()))
	}
}

func newReplicationScheduleCmd(a *app) *cobra.Command {
	var interval, keepAll time.Duration
	var perDay, days int64
	cmd := &cobra.Command{
		Use:   "schedule --interval DURATION [--keep-all DURATION --per-day N --days N]",
		Short: "Change the protection group's interval and retention now (SetReplicationSchedule)",
		Long: `Change how often the backend's protection group replicates and what the
snapshots' retention is: keep all for --keep-all, then --per-day a day for
--days days. A restart of volrepd re-applies cinder.conf's
pure_replica_* values; edit those to make a change permanent.`,
		Example: `  volrep replication schedule --interval 30m --keep-all 4h --per-day 3 --days 7`,
		Args:    exactIDs(0, "no arguments"),
		RunE: a.runE(func(cmd *cobra.Command, args []string) error {
			if interval < time.Second {
				return usageErrorf("--interval must be at least 1s")
			}
			return a.callBackend(cmd, func(ctx context.Context, c driverv1.DriverServiceClient, backend string) error {
				r, err := c.SetReplicationSchedule(ctx, &driverv1.SetReplicationScheduleRequest{Backend: backend,
					IntervalSeconds: int64(interval / time.Second), RetentionShortTermSeconds: int64(keepAll / time.Second),
					RetentionLongTermPerDay: perDay, RetentionLongTermDays: days})
				if err != nil {
					return rpcError("set the replication schedule of "+backend, err)
				}
				return a.render(r, func(w io.Writer) {
					row(w, "interval", (time.Duration(r.GetIntervalSeconds()) * time.Second).String())
					row(w, "keep_all_for", (time.Duration(r.GetRetentionShortTermSeconds()) * time.Second).String())
					row(w, "per_day", fmt.Sprint(r.GetRetentionLongTermPerDay()))
					row(w, "days", fmt.Sprint(r.GetRetentionLongTermDays()))
				})
			})
		}),
	}
	cmd.Flags().DurationVar(&interval, "interval", 0, "time between replication snapshots (required)")
	cmd.Flags().DurationVar(&keepAll, "keep-all", 4*time.Hour, "keep every snapshot this long")
	cmd.Flags().Int64Var(&perDay, "per-day", 3, "then keep this many a day")
	cmd.Flags().Int64Var(&days, "days", 7, "for this many days")
	_ = cmd.MarkFlagRequired("interval")
	return cmd
}

func newVolumeRetypeCmd(a *app) *cobra.Command {
	var vt volumeTypeFlags
	cmd := &cobra.Command{
		Use:   "retype ID --type NAME [--spec key=value ...]",
		Short: "Move a volume to another volume type's replication (Retype)",
		Example: `  volrep volume retype vol-1 --type replicated --spec replication_enabled='<is> True'
  volrep volume retype vol-1 --type plain`,
		Args: exactIDs(1, "a volume ID"),
		RunE: a.runE(func(cmd *cobra.Command, args []string) error {
			return a.callBackend(cmd, func(ctx context.Context, c driverv1.DriverServiceClient, backend string) error {
				nt := vt.volumeType()
				if nt == nil {
					nt = &driverv1.VolumeType{}
				}
				r, err := c.Retype(ctx, &driverv1.RetypeRequest{Backend: backend, VolumeId: args[0], NewType: nt})
				if err != nil {
					return rpcError(fmt.Sprintf("retype volume %q", args[0]), err)
				}
				return a.render(r, func(w io.Writer) {
					modelUpdateTable(w, args[0], backend, r.GetModelUpdate())
					row(w, "retyped", fmt.Sprint(r.GetRetyped()))
				})
			})
		}),
	}
	vt.add(cmd)
	return cmd
}
