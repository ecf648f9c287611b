package main

import (
	"context"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	driverv1 "github.com/volrep/volrep/proto/volrep/driver/v1"
)

func newSnapshotCmd(a *app) *cobra.Command {
	cmd := groupCmd("snapshot", "Create, list and delete snapshots of volumes")
	cmd.AddCommand(
		newSnapshotCreateCmd(a),
		newSnapshotDeleteCmd(a),
		newSnapshotListCmd(a),
		newSnapshotReplicateCmd(a),
		newSnapshotVerifyCmd(a),
	)
	return cmd
}

func newSnapshotCreateCmd(a *app) *cobra.Command {
	var (
		volume   string
		generate bool
	)
	cmd := &cobra.Command{
		Use:   "create [SNAPID] --volume VOLID",
		Short: "Snapshot a volume (CreateSnapshot)",
		Long: `Take snapshot SNAPID of volume --volume. Without SNAPID (or with
--generate-id) a UUID is generated and shown.`,
		Args: optionalID("SNAPID"),
		RunE: a.runE(func(cmd *cobra.Command, args []string) error {
			id, generated, err := a.idArg(args, generate, "snapshot")
			if err != nil {
				return err
			}
			return a.callBackend(cmd, func(ctx context.Context, c driverv1.DriverServiceClient, backend string) error {
				resp, err := c.CreateSnapshot(ctx, &driverv1.CreateSnapshotRequest{Backend: backend, SnapshotId: id, VolumeId: volume})
				if err != nil {
					return rpcError(fmt.Sprintf("create snapshot %q of volume %q", id, volume), err)
				}
				if generated {
					a.noteGeneratedID("snapshot", id)
				}
				return a.render(resp, func(w io.Writer) {
					modelUpdateTable(w, id, backend, resp.GetModelUpdate())
					row(w, "volume_id", volume)
				})
			})
		}),
	}
	cmd.Flags().StringVar(&volume, "volume", "", "ID of the volume to snapshot (required)")
	cmd.Flags().BoolVar(&generate, "generate-id", false, "generate a UUID for the snapshot and print it")
	_ = cmd.MarkFlagRequired("volume")
	return cmd
}

func newSnapshotDeleteCmd(a *app) *cobra.Command {
	var volume string
	cmd := &cobra.Command{
		Use:   "delete SNAPID --volume VOLID",
		Short: "Delete a snapshot (DeleteSnapshot)",
		Args:  exactIDs(1, "a snapshot ID"),
		RunE: a.runE(func(cmd *cobra.Command, args []string) error {
			id := args[0]
			return a.callBackend(cmd, func(ctx context.Context, c driverv1.DriverServiceClient, backend string) error {
				resp, err := c.DeleteSnapshot(ctx, &driverv1.DeleteSnapshotRequest{Backend: backend, SnapshotId: id, VolumeId: volume})
				if err != nil {
					return rpcError(fmt.Sprintf("delete snapshot %q of volume %q", id, volume), err)
				}
				return a.render(resp, func(w io.Writer) { fmt.Fprintf(w, "deleted snapshot %s of volume %s\n", id, volume) })
			})
		}),
	}
	cmd.Flags().StringVar(&volume, "volume", "", "ID of the snapshot's volume (required)")
	_ = cmd.MarkFlagRequired("volume")
	return cmd
}

func newSnapshotListCmd(a *app) *cobra.Command {
	var volume string
	cmd := &cobra.Command{
		Use:   "list --volume VOLID",
		Short: "List a volume's snapshots (ListSnapshots)",
		Args:  exactIDs(0, "no arguments"),
		RunE: a.runE(func(cmd *cobra.Command, _ []string) error {
			return a.callBackend(cmd, func(ctx context.Context, c driverv1.DriverServiceClient, backend string) error {
				resp, err := listSnapshots(ctx, c, backend, volume)
				if err != nil {
					return rpcError(fmt.Sprintf("list snapshots of volume %q", volume), err)
				}
				return a.printSnapshots(resp)
			})
		}),
	}
	cmd.Flags().StringVar(&volume, "volume", "", "ID of the volume (required)")
	_ = cmd.MarkFlagRequired("volume")
	return cmd
}

func (a *app) printSnapshots(resp *driverv1.ListSnapshotsResponse) error {
	return a.render(resp, func(w io.Writer) {
		row(w, "ID", "VOLUME", "SIZE_GB", "CREATED", "GUID", "PROVIDER_ID")
		for _, s := range resp.GetSnapshots() {
			row(w, s.GetId(), s.GetVolumeId(), formatInt(s.GetSizeGb()), dash(s.GetCreated()), dash(s.GetGuid()), dash(s.GetProviderId()))
		}
	})
}
