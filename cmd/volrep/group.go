package main

import (
	"context"
	"fmt"
	"io"
	"maps"
	"strings"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/proto"

	driverv1 "github.com/volrep/volrep/proto/volrep/driver/v1"
)

func newGroupCmd(a *app) *cobra.Command {
	cmd := groupCmd("group", "Generic volume groups: consistent snapshots and group replication")
	snap := groupCmd("snapshot", "Create and delete crash-consistent snapshots of a group's volumes")
	snap.AddCommand(newGroupSnapshotCreateCmd(a), newGroupSnapshotDeleteCmd(a))
	cmd.AddCommand(
		newGroupCreateCmd(a),
		newGroupDeleteCmd(a),
		newGroupUpdateCmd(a),
		snap,
		newGroupReplicationCmd(a, "enable-replication", "Make the group a protection group of its own (EnableReplication)"),
		newGroupReplicationCmd(a, "disable-replication", "Return the group's volumes to the backend's protection group (DisableReplication)"),
		newGroupFailoverCmd(a),
	)
	return cmd
}

// groupReply is a group RPC's response: the group's model update, and
// perhaps its volumes' (GetVolumeUpdates).
type groupReply interface {
	proto.Message
	GetModelUpdate() *driverv1.ModelUpdate
}

type volumeUpdater interface {
	GetVolumeUpdates() []*driverv1.VolumeUpdate
}

// groupRPC calls rpc on the backend and shows the group's model update
// and whatever else the response carries.
func (a *app) groupRPC(cmd *cobra.Command, id, what string, rpc func(context.Context, driverv1.DriverServiceClient, string) (groupReply, error)) error {
	return a.callBackend(cmd, func(ctx context.Context, c driverv1.DriverServiceClient, backend string) error {
		resp, err := rpc(ctx, c, backend)
		if err != nil {
			return rpcError(what, err)
		}
		return a.render(resp, func(w io.Writer) {
			modelUpdateTable(w, id, backend, resp.GetModelUpdate())
			switch r := resp.(type) {
			case *driverv1.FailoverReplicationResponse:
				row(w, "active_backend_id", r.GetActiveBackendId())
				row(w, "group_snapshot", dash(r.GetGroupSnapshot()))
				row(w, "failback_sent", humanBytes(r.GetFailbackBytes()))
			case *driverv1.CreateGroupSnapshotResponse:
				row(w, "")
				row(w, "VOLUME", "PROVIDER_ID", "GUID")
				for _, s := range r.GetSnapshots() {
					row(w, s.GetVolumeId(), s.GetProviderId(), dash(s.GetGuid()))
				}
			}
			if r, ok := resp.(volumeUpdater); ok && len(r.GetVolumeUpdates()) > 0 {
				row(w, "")
				row(w, "VOLUME", "STATUS", "REPLICATION", "PROVIDER_ID")
				for _, u := range r.GetVolumeUpdates() {
					m := u.GetUpdates()
					row(w, u.GetVolumeId(), dash(m.GetStatus()), replicationStatus(m.GetReplicationStatus()), dash(m.GetProviderId()))
				}
			}
		})
	})
}

func newGroupCreateCmd(a *app) *cobra.Command {
	var (
		name, typeID string
		specs        extraSpecs
		generate     bool
	)
	cmd := &cobra.Command{
		Use:   "create [GROUPID]",
		Short: "Create a group (CreateGroup)",
		Long: `Create a generic volume group. Without GROUPID (or with --generate-id) a
UUID is generated and shown. The group type's specs decide whether the group
can replicate as one protection group:
  --spec consistent_group_replication_enabled='<is> True'`,
		Example: `  volrep group create cg-1
  volrep group create cg-2 --type replicated --spec consistent_group_replication_enabled='<is> True'`,
		Args: optionalID("GROUPID"),
		RunE: a.runE(func(cmd *cobra.Command, args []string) error {
			id, generated, err := a.idArg(args, generate, "group")
			if err != nil {
				return err
			}
			gt := &driverv1.GroupType{Id: typeID, Name: name, GroupSpecs: maps.Clone(specs.values)}
			return a.groupRPC(cmd, id, fmt.Sprintf("create group %q", id), func(ctx context.Context, c driverv1.DriverServiceClient, backend string) (groupReply, error) {
				if generated {
					a.noteGeneratedID("group", id)
				}
				return c.CreateGroup(ctx, &driverv1.CreateGroupRequest{Backend: backend, GroupId: id, GroupType: gt})
			})
		}),
	}
	cmd.Flags().StringVar(&name, "type", "", "group type name")
	cmd.Flags().StringVar(&typeID, "type-id", "", "group type ID")
	cmd.Flags().Var(&specs, "spec", "group spec, repeatable: --spec consistent_group_replication_enabled='<is> True'")
	cmd.Flags().BoolVar(&generate, "generate-id", false, "generate a UUID for the group and print it")
	return cmd
}

func newGroupDeleteCmd(a *app) *cobra.Command {
	var volumes []string
	cmd := &cobra.Command{
		Use:   "delete GROUPID [--volume VOLID]...",
		Short: "Delete a group and its volumes (DeleteGroup)",
		Long: `Delete a group and its volumes, as Cinder's delete_group does: the volumes
given with --volume and the group's members on the array. The volumes must
have no snapshots or group snapshots left.`,
		Args: exactIDs(1, "a group ID"),
		RunE: a.runE(func(cmd *cobra.Command, args []string) error {
			id := args[0]
			return a.groupRPC(cmd, id, fmt.Sprintf("delete group %q", id), func(ctx context.Context, c driverv1.DriverServiceClient, backend string) (groupReply, error) {
				return c.DeleteGroup(ctx, &driverv1.DeleteGroupRequest{Backend: backend, GroupId: id, VolumeIds: volumes})
			})
		}),
	}
	volumesFlag(cmd, &volumes, "volume of the group to delete with it")
	return cmd
}

// volumesFlag adds a repeatable --volume flag.
func volumesFlag(cmd *cobra.Command, volumes *[]string, usage string) {
	cmd.Flags().StringSliceVar(volumes, "volume", nil, usage+" (repeatable)")
}

func newGroupUpdateCmd(a *app) *cobra.Command {
	var add, remove []string
	cmd := &cobra.Command{
		Use:   "update GROUPID [--add VOLID]... [--remove VOLID]...",
		Short: "Add volumes to a group and remove them (UpdateGroup)",
		Long: `Add and remove volumes. A group whose type replicates takes only
async-replicated volumes of its backend; while it replicates, the volumes move
between it and the backend's protection group.`,
		Args: exactIDs(1, "a group ID"),
		RunE: a.runE(func(cmd *cobra.Command, args []string) error {
			id := args[0]
			if len(add)+len(remove) == 0 {
				return usageErrorf("give volumes to --add or --remove")
			}
			return a.groupRPC(cmd, id, fmt.Sprintf("update group %q", id), func(ctx context.Context, c driverv1.DriverServiceClient, backend string) (groupReply, error) {
				return c.UpdateGroup(ctx, &driverv1.UpdateGroupRequest{Backend: backend, GroupId: id, AddVolumeIds: add, RemoveVolumeIds: remove})
			})
		}),
	}
	cmd.Flags().StringSliceVar(&add, "add", nil, "volume to add (repeatable)")
	cmd.Flags().StringSliceVar(&remove, "remove", nil, "volume to remove (repeatable)")
	return cmd
}

func newGroupSnapshotCreateCmd(a *app) *cobra.Command {
	var (
		group    string
		volumes  []string
		generate bool
	)
	cmd := &cobra.Command{
		Use:   "create [GSID] --group GROUPID [--volume VOLID]...",
		Short: "Snapshot a group's volumes at one write barrier (CreateGroupSnapshot)",
		Long: `Take group snapshot GSID of the volumes given with --volume, or of the
members of a replicating group. Every volume's snapshot is taken at the same
write barrier, and is snapshot GSID of that volume for "volrep snapshot" and
"volrep volume from-snapshot".`,
		Args: optionalID("GSID"),
		RunE: a.runE(func(cmd *cobra.Command, args []string) error {
			id, generated, err := a.idArg(args, generate, "group snapshot")
			if err != nil {
				return err
			}
			return a.groupRPC(cmd, id, fmt.Sprintf("snapshot group %q", group), func(ctx context.Context, c driverv1.DriverServiceClient, backend string) (groupReply, error) {
				if generated {
					a.noteGeneratedID("group snapshot", id)
				}
				return c.CreateGroupSnapshot(ctx, &driverv1.CreateGroupSnapshotRequest{Backend: backend, GroupId: group, GroupSnapshotId: id, VolumeIds: volumes})
			})
		}),
	}
	cmd.Flags().StringVar(&group, "group", "", "ID of the group (required)")
	cmd.Flags().BoolVar(&generate, "generate-id", false, "generate a UUID for the group snapshot and print it")
	volumesFlag(cmd, &volumes, "volume to snapshot")
	_ = cmd.MarkFlagRequired("group")
	return cmd
}

func newGroupSnapshotDeleteCmd(a *app) *cobra.Command {
	var (
		group   string
		volumes []string
	)
	cmd := &cobra.Command{
		Use:   "delete GSID --group GROUPID [--volume VOLID]...",
		Short: "Delete a group snapshot (DeleteGroupSnapshot)",
		Long: `Delete group snapshot GSID from the volumes given with --volume, or from
every volume of the backend that has it.`,
		Args: exactIDs(1, "a group snapshot ID"),
		RunE: a.runE(func(cmd *cobra.Command, args []string) error {
			id := args[0]
			return a.callBackend(cmd, func(ctx context.Context, c driverv1.DriverServiceClient, backend string) error {
				resp, err := c.DeleteGroupSnapshot(ctx, &driverv1.DeleteGroupSnapshotRequest{Backend: backend, GroupId: group, GroupSnapshotId: id, VolumeIds: volumes})
				if err != nil {
					return rpcError(fmt.Sprintf("delete group snapshot %q of group %q", id, group), err)
				}
				return a.render(resp, func(w io.Writer) {
					fmt.Fprintf(w, "deleted group snapshot %s of volumes: %s\n", id, listOrDash(resp.GetVolumeIds()))
				})
			})
		}),
	}
	cmd.Flags().StringVar(&group, "group", "", "ID of the group (required)")
	volumesFlag(cmd, &volumes, "volume whose member snapshot to delete")
	_ = cmd.MarkFlagRequired("group")
	return cmd
}

func newGroupReplicationCmd(a *app, use, short string) *cobra.Command {
	var volumes []string
	cmd := &cobra.Command{
		Use:   use + " GROUPID [--volume VOLID]...",
		Short: short,
		Args:  exactIDs(1, "a group ID"),
		RunE: a.runE(func(cmd *cobra.Command, args []string) error {
			id := args[0]
			what := fmt.Sprintf("%s of group %q", strings.ReplaceAll(use, "-", " "), id)
			return a.groupRPC(cmd, id, what, func(ctx context.Context, c driverv1.DriverServiceClient, backend string) (groupReply, error) {
				if use == "enable-replication" {
					return c.EnableReplication(ctx, &driverv1.EnableReplicationRequest{Backend: backend, GroupId: id, VolumeIds: volumes})
				}
				return c.DisableReplication(ctx, &driverv1.DisableReplicationRequest{Backend: backend, GroupId: id, VolumeIds: volumes})
			})
		}),
	}
	volumesFlag(cmd, &volumes, "volume of the group")
	return cmd
}

func newGroupFailoverCmd(a *app) *cobra.Command {
	var (
		to      string
		volumes []string
	)
	cmd := &cobra.Command{
		Use:   "failover GROUPID [--to BACKEND_ID] [--volume VOLID]...",
		Short: "Fail a replicating group over to a target, or back with --to default (FailoverReplication)",
		Long: `Promote the group's copies on --to (default: the backend's only async
target) at the newest group snapshot every member holds there, so the volumes
stay crash-consistent with each other. With --to default, send home only what
was written since, and resume the group's replication. --volume lists the
group's volumes, needed when the primary array is gone.`,
		Example: `  volrep group failover cg-2 --to site-b
  volrep group failover cg-2 --to default`,
		Args: exactIDs(1, "a group ID"),
		RunE: a.runE(func(cmd *cobra.Command, args []string) error {
			id := args[0]
			if f := cmd.Flags().Lookup("timeout"); f != nil && !f.Changed {
				// A failback copies data; stopping it half-way helps nobody.
				a.timeout = 0
			}
			return a.groupRPC(cmd, id, fmt.Sprintf("fail group %q over to %q", id, to), func(ctx context.Context, c driverv1.DriverServiceClient, backend string) (groupReply, error) {
				return c.FailoverReplication(ctx, &driverv1.FailoverReplicationRequest{Backend: backend, GroupId: id, VolumeIds: volumes, SecondaryBackendId: to})
			})
		}),
	}
	cmd.Flags().StringVar(&to, "to", "", `backend_id of an async replication_device, or "default" to fail back`)
	volumesFlag(cmd, &volumes, "volume of the group")
	return cmd
}
