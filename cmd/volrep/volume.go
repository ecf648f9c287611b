package main

import (
	"context"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	driverv1 "github.com/volrep/volrep/proto/volrep/driver/v1"
)

func newVolumeCmd(a *app) *cobra.Command {
	cmd := groupCmd("volume", "Create, clone, extend, revert, migrate, list, delete, manage and unmanage volumes")
	cmd.AddCommand(
		newVolumeCreateCmd(a),
		newVolumeDeleteCmd(a),
		newVolumeExtendCmd(a),
		newVolumeListCmd(a),
		newVolumeShowCmd(a),
		newVolumeCloneCmd(a),
		newVolumeFromSnapshotCmd(a),
		newVolumeRetypeCmd(a),
		newVolumeRevertCmd(a),
		newVolumeManageCmd(a),
		newVolumeUnmanageCmd(a),
		newVolumeManageableCmd(a),
		newVolumeMigrateCmd(a),
	)
	return cmd
}

func newVolumeCreateCmd(a *app) *cobra.Command {
	var (
		size     int64
		group    string
		generate bool
		vt       volumeTypeFlags
	)
	cmd := &cobra.Command{
		Use:   "create [ID] --size GB",
		Short: "Create a volume (CreateVolume)",
		Long: `Create a volume. ID is the volume manager's ID for it; without one (or with
--generate-id) a UUID is generated and shown.

The volume type's extra specs decide replication, as in Cinder:
  --spec replication_enabled='<is> True' --spec replication_type='<in> async'
puts the volume in the backend's protection group, '<in> sync' in its pod.`,
		Example: `  volrep volume create vol-1 --size 10
  volrep volume create --size 10 --type replicated \
      --spec replication_enabled='<is> True' --spec replication_type='<in> async'`,
		Args: optionalID("ID"),
		RunE: a.runE(func(cmd *cobra.Command, args []string) error {
			if size <= 0 {
				return usageErrorf("--size must be a positive number of GB, got %d", size)
			}
			id, generated, err := a.idArg(args, generate, "volume")
			if err != nil {
				return err
			}
			return a.callBackend(cmd, func(ctx context.Context, c driverv1.DriverServiceClient, backend string) error {
				resp, err := c.CreateVolume(ctx, &driverv1.CreateVolumeRequest{
					Backend:    backend,
					VolumeId:   id,
					SizeGb:     size,
					VolumeType: vt.volumeType(),
					GroupId:    group,
				})
				if err != nil {
					return rpcError(fmt.Sprintf("create volume %q", id), err)
				}
				if generated {
					a.noteGeneratedID("volume", id)
				}
				return a.render(resp, func(w io.Writer) { modelUpdateTable(w, id, backend, resp.GetModelUpdate()) })
			})
		}),
	}
	cmd.Flags().Int64Var(&size, "size", 0, "size in GB (required)")
	cmd.Flags().StringVar(&group, "group", "", "ID of the group (consistency group) to create the volume in")
	cmd.Flags().BoolVar(&generate, "generate-id", false, "generate a UUID for the volume and print it")
	vt.add(cmd)
	_ = cmd.MarkFlagRequired("size")
	return cmd
}

func newVolumeDeleteCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "delete ID",
		Short: "Delete a volume (DeleteVolume)",
		Args:  exactIDs(1, "a volume ID"),
		RunE: a.runE(func(cmd *cobra.Command, args []string) error {
			id := args[0]
			return a.callBackend(cmd, func(ctx context.Context, c driverv1.DriverServiceClient, backend string) error {
				resp, err := c.DeleteVolume(ctx, &driverv1.DeleteVolumeRequest{Backend: backend, VolumeId: id})
				if err != nil {
					return rpcError(fmt.Sprintf("delete volume %q", id), err)
				}
				return a.render(resp, func(w io.Writer) { fmt.Fprintf(w, "deleted volume %s\n", id) })
			})
		}),
	}
}

func newVolumeExtendCmd(a *app) *cobra.Command {
	var size int64
	cmd := &cobra.Command{
		Use:   "extend ID --size GB",
		Short: "Grow a volume to a new size (ExtendVolume)",
		Args:  exactIDs(1, "a volume ID"),
		RunE: a.runE(func(cmd *cobra.Command, args []string) error {
			id := args[0]
			if size <= 0 {
				return usageErrorf("--size must be a positive number of GB, got %d", size)
			}
			return a.callBackend(cmd, func(ctx context.Context, c driverv1.DriverServiceClient, backend string) error {
				resp, err := c.ExtendVolume(ctx, &driverv1.ExtendVolumeRequest{Backend: backend, VolumeId: id, NewSizeGb: size})
				if err != nil {
					return rpcError(fmt.Sprintf("extend volume %q to %d GB", id, size), err)
				}
				return a.render(resp, func(w io.Writer) { fmt.Fprintf(w, "extended volume %s to %d GB\n", id, size) })
			})
		}),
	}
	cmd.Flags().Int64Var(&size, "size", 0, "new size in GB (required)")
	_ = cmd.MarkFlagRequired("size")
	return cmd
}

func newVolumeRevertCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "revert VOLUME SNAPSHOT",
		Short: "Make a volume's content one of its snapshots' (RevertToSnapshot)",
		Long: "Revert a volume to one of its snapshots in O(1). Attached hosts read the snapshot's content from\n" +
			"their next request; writes since the snapshot are gone. Replication carries on with the blocks\n" +
			"that differ. The snapshot must have the volume's size.",
		Args: exactIDs(2, "a volume ID and a snapshot ID"),
		RunE: a.runE(func(cmd *cobra.Command, args []string) error {
			vol, snap := args[0], args[1]
			return a.callBackend(cmd, func(ctx context.Context, c driverv1.DriverServiceClient, backend string) error {
				resp, err := c.RevertToSnapshot(ctx, &driverv1.RevertToSnapshotRequest{Backend: backend, VolumeId: vol, SnapshotId: snap})
				if err != nil {
					return rpcError(fmt.Sprintf("revert volume %q to snapshot %q", vol, snap), err)
				}
				return a.render(resp, func(w io.Writer) { fmt.Fprintf(w, "reverted volume %s to snapshot %s\n", vol, snap) })
			})
		}),
	}
}

func newVolumeListCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List a backend's volumes (ListVolumes)",
		Args:  exactIDs(0, "no arguments"),
		RunE: a.runE(func(cmd *cobra.Command, _ []string) error {
			return a.callBackend(cmd, func(ctx context.Context, c driverv1.DriverServiceClient, backend string) error {
				resp, err := listVolumes(ctx, c, backend)
				if err != nil {
					return rpcError(fmt.Sprintf("list volumes of backend %q", backend), err)
				}
				return a.printVolumes(resp)
			})
		}),
	}
}

func (a *app) printVolumes(resp *driverv1.ListVolumesResponse) error {
	return a.render(resp, func(w io.Writer) {
		row(w, "ID", "SIZE_GB", "REPLICATION", "USED", "SOURCE", "PROVIDER_ID")
		for _, v := range resp.GetVolumes() {
			row(w, v.GetId(), formatInt(v.GetSizeGb()), replicationStatus(v.GetReplicationStatus()),
				humanBytes(v.GetUsedBytes()), dash(v.GetSource()), dash(v.GetProviderId()))
		}
	})
}

func newVolumeShowCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "show ID",
		Short: "Show one volume (GetVolume)",
		Args:  exactIDs(1, "a volume ID"),
		RunE: a.runE(func(cmd *cobra.Command, args []string) error {
			id := args[0]
			return a.callBackend(cmd, func(ctx context.Context, c driverv1.DriverServiceClient, backend string) error {
				resp, err := c.GetVolume(ctx, &driverv1.GetVolumeRequest{Backend: backend, VolumeId: id})
				if err != nil {
					return rpcError(fmt.Sprintf("show volume %q", id), err)
				}
				return a.printVolume(resp)
			})
		}),
	}
}

func (a *app) printVolume(resp *driverv1.GetVolumeResponse) error {
	return a.render(resp, func(w io.Writer) {
		v := resp.GetVolume()
		row(w, "id", v.GetId())
		row(w, "size_gb", formatInt(v.GetSizeGb()))
		row(w, "replication_status", replicationStatus(v.GetReplicationStatus()))
		row(w, "used", fmt.Sprintf("%s (%d bytes)", humanBytes(v.GetUsedBytes()), v.GetUsedBytes()))
		row(w, "source", dash(v.GetSource()))
		row(w, "provider_id", dash(v.GetProviderId()))
	})
}

func newVolumeCloneCmd(a *app) *cobra.Command {
	var (
		from     string
		size     int64
		generate bool
		vt       volumeTypeFlags
	)
	cmd := &cobra.Command{
		Use:   "clone [NEWID] --from ID",
		Short: "Create a volume as a clone of another (CreateClonedVolume)",
		Long: `Create volume NEWID as a clone of volume --from. Without NEWID (or with
--generate-id) a UUID is generated and shown. --size may only grow the clone;
0 keeps the source's size.`,
		Args: optionalID("NEWID"),
		RunE: a.runE(func(cmd *cobra.Command, args []string) error {
			if size < 0 {
				return usageErrorf("--size must not be negative, got %d", size)
			}
			id, generated, err := a.idArg(args, generate, "volume")
			if err != nil {
				return err
			}
			return a.callBackend(cmd, func(ctx context.Context, c driverv1.DriverServiceClient, backend string) error {
				resp, err := c.CreateClonedVolume(ctx, &driverv1.CreateClonedVolumeRequest{
					Backend:        backend,
					VolumeId:       id,
					SourceVolumeId: from,
					SizeGb:         size,
					VolumeType:     vt.volumeType(),
				})
				if err != nil {
					return rpcError(fmt.Sprintf("clone volume %q as %q", from, id), err)
				}
				if generated {
					a.noteGeneratedID("volume", id)
				}
				return a.render(resp, func(w io.Writer) { modelUpdateTable(w, id, backend, resp.GetModelUpdate()) })
			})
		}),
	}
	cmd.Flags().StringVar(&from, "from", "", "ID of the volume to clone (required)")
	cmd.Flags().Int64Var(&size, "size", 0, "size in GB of the clone; 0 keeps the source's size")
	cmd.Flags().BoolVar(&generate, "generate-id", false, "generate a UUID for the new volume and print it")
	vt.add(cmd)
	_ = cmd.MarkFlagRequired("from")
	return cmd
}

func newVolumeFromSnapshotCmd(a *app) *cobra.Command {
	var (
		snapshot, source string
		size             int64
		generate         bool
		vt               volumeTypeFlags
	)
	cmd := &cobra.Command{
		Use:   "from-snapshot [NEWID] --snapshot SNAPID --source-volume VOLID",
		Short: "Create a volume from a snapshot (CreateVolumeFromSnapshot)",
		Long: `Create volume NEWID from snapshot --snapshot of volume --source-volume.
Without NEWID (or with --generate-id) a UUID is generated and shown. --size may
only grow the volume; 0 keeps the snapshot's size.`,
		Args: optionalID("NEWID"),
		RunE: a.runE(func(cmd *cobra.Command, args []string) error {
			if size < 0 {
				return usageErrorf("--size must not be negative, got %d", size)
			}
			id, generated, err := a.idArg(args, generate, "volume")
			if err != nil {
				return err
			}
			return a.callBackend(cmd, func(ctx context.Context, c driverv1.DriverServiceClient, backend string) error {
				resp, err := c.CreateVolumeFromSnapshot(ctx, &driverv1.CreateVolumeFromSnapshotRequest{
					Backend:        backend,
					VolumeId:       id,
					SnapshotId:     snapshot,
					SourceVolumeId: source,
					SizeGb:         size,
					VolumeType:     vt.volumeType(),
				})
				if err != nil {
					return rpcError(fmt.Sprintf("create volume %q from snapshot %q of volume %q", id, snapshot, source), err)
				}
				if generated {
					a.noteGeneratedID("volume", id)
				}
				return a.render(resp, func(w io.Writer) { modelUpdateTable(w, id, backend, resp.GetModelUpdate()) })
			})
		}),
	}
	cmd.Flags().StringVar(&snapshot, "snapshot", "", "ID of the snapshot (required)")
	cmd.Flags().StringVar(&source, "source-volume", "", "ID of the snapshot's volume (required)")
	cmd.Flags().Int64Var(&size, "size", 0, "size in GB; 0 keeps the snapshot's size")
	cmd.Flags().BoolVar(&generate, "generate-id", false, "generate a UUID for the new volume and print it")
	vt.add(cmd)
	_ = cmd.MarkFlagRequired("snapshot")
	_ = cmd.MarkFlagRequired("source-volume")
	return cmd
}
