package main

import (
	"context"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/volrep/volrep/paging"
	driverv1 "github.com/volrep/volrep/proto/volrep/driver/v1"
)

func newVolumeManageCmd(a *app) *cobra.Command {
	var (
		id, providerID string
		vt             volumeTypeFlags
	)
	cmd := &cobra.Command{
		Use:   "manage NAME --id ID",
		Short: "Adopt an array volume as volume ID (ManageExisting)",
		Long: `Adopt a volume made on the array outside the driver, as Cinder's manage_existing
does: the array renames it volume-<ID>-cinder and labels it in one transaction,
grows it to whole GB, and the volume type's extra specs put it in replication.
NAME is the array volume's name as "volume manageable" lists it; --provider-id
names it by provider_id instead. A volume Cinder already manages, a read-only
replica target, a member of a protection group or pod, or a connected one is
refused with the reason.`,
		Example: `  volrep volume manageable
  volrep volume manage legacy-db --id vol-7`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) > 1 || (len(args) == 1) == (providerID != "") {
				return fmt.Errorf("%q takes the array volume's NAME or --provider-id, one of them", cmd.CommandPath())
			}
			return nil
		},
		RunE: a.runE(func(cmd *cobra.Command, args []string) error {
			if id == "" {
				return usageErrorf("--id must name the volume to adopt it as")
			}
			ref := &driverv1.ExistingRef{SourceId: providerID}
			if len(args) == 1 {
				ref = &driverv1.ExistingRef{SourceName: args[0]}
			}
			return a.callBackend(cmd, func(ctx context.Context, c driverv1.DriverServiceClient, backend string) error {
				resp, err := c.ManageExisting(ctx, &driverv1.ManageExistingRequest{Backend: backend, VolumeId: id, Ref: ref, VolumeType: vt.volumeType()})
				if err != nil {
					return rpcError(fmt.Sprintf("manage array volume %q as %q", ref.GetSourceName()+ref.GetSourceId(), id), err)
				}
				return a.render(resp, func(w io.Writer) {
					modelUpdateTable(w, id, backend, resp.GetModelUpdate())
					row(w, "size_gb", formatInt(resp.GetSizeGb()))
				})
			})
		}),
	}
	cmd.Flags().StringVar(&id, "id", "", "the volume ID to adopt it as (required)")
	cmd.Flags().StringVar(&providerID, "provider-id", "", "name the array volume by its provider_id instead of NAME")
	vt.add(cmd)
	return cmd
}

func newVolumeUnmanageCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "unmanage ID",
		Short: "Let a volume go, leaving it on the array (Unmanage)",
		Long: `Let a volume go as Cinder's unmanage does: it stays on the array, out of the
backend's protection group or pod and without the driver's labels, renamed
volume-<ID>-cinder-unmanaged, which "volume manage" can adopt again.`,
		Args: exactIDs(1, "a volume ID"),
		RunE: a.runE(func(cmd *cobra.Command, args []string) error {
			id := args[0]
			return a.callBackend(cmd, func(ctx context.Context, c driverv1.DriverServiceClient, backend string) error {
				resp, err := c.Unmanage(ctx, &driverv1.UnmanageRequest{Backend: backend, VolumeId: id})
				if err != nil {
					return rpcError(fmt.Sprintf("unmanage volume %q", id), err)
				}
				return a.render(resp, func(w io.Writer) { fmt.Fprintf(w, "unmanaged volume %s\n", id) })
			})
		}),
	}
}

func newVolumeManageableCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "manageable",
		Short: "List the array volumes of a backend's pool and whether each can be managed (ListManageableVolumes)",
		Args:  exactIDs(0, "no arguments"),
		RunE: a.runE(func(cmd *cobra.Command, _ []string) error {
			return a.callBackend(cmd, func(ctx context.Context, c driverv1.DriverServiceClient, backend string) error {
				all, err := paging.All(ctx, func(ctx context.Context, token string) ([]*driverv1.Manageable, string, error) {
					r, err := c.ListManageableVolumes(ctx, &driverv1.ListManageableVolumesRequest{Backend: backend, PageSize: paging.MaxPageSize, PageToken: token})
					return r.GetVolumes(), r.GetNextPageToken(), err
				})
				if err != nil {
					return rpcError(fmt.Sprintf("list manageable volumes of backend %q", backend), err)
				}
				resp := &driverv1.ListManageableVolumesResponse{Volumes: all}
				return a.render(resp, func(w io.Writer) {
					row(w, "NAME", "SIZE_GB", "SAFE", "CINDER_ID", "REASON")
					for _, m := range all {
						row(w, m.GetName(), formatInt(m.GetSizeGb()), yesNo(m.GetSafeToManage()), dash(m.GetCinderId()), dash(m.GetReasonNotSafe()))
					}
				})
			})
		}),
	}
}
