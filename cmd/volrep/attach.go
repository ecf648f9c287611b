package main

import (
	"context"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	arrayv1 "github.com/volrep/volrep/proto/volrep/array/v1"
	driverv1 "github.com/volrep/volrep/proto/volrep/driver/v1"
)

// newVolumeCmdWithAttach is the volume group with attach and detach, the
// NBD attachment commands (InitializeConnection, TerminateConnection).
func newVolumeCmdWithAttach(a *app) *cobra.Command {
	cmd := newVolumeCmd(a)
	cmd.AddCommand(newVolumeAttachCmd(a), newVolumeDetachCmd(a))
	return cmd
}

// attachTableKeys are the connection_info data keys the table shows, in
// this order; -o json shows the whole response.
var attachTableKeys = []string{"uri", "host", "port", "export_name", "read_only"}

func newVolumeAttachCmd(a *app) *cobra.Command {
	var host, snapshot, protocol, initiator string
	var af arrayFlags
	var rf replicaFlags
	cmd := &cobra.Command{
		Use:   "attach ID --host HOST [--snapshot SNAPID] | attach ID --at BACKEND_ID [--snapshot NAME|latest] | attach VOLUME --protocol iscsi --initiator IQN --array ADDR",
		Short: "Authorise a host to attach a volume over NBD (InitializeConnection) or iSCSI",
		Long: `Authorise HOST to attach volume ID, or with --snapshot its snapshot SNAPID
read-only, and print where to connect: an NBD URI whose export name is a secret
for this attachment. Attaching the same volume to the same host again returns
the same export. 'volrep volume detach' revokes it.

Any NBD client can use the URI, for example:
  qemu-img convert -n -f raw -O raw image.raw nbd://HOST:PORT/EXPORT
  nbdcopy nbd://HOST:PORT/EXPORT backup.raw

With --protocol iscsi it talks to the array (--array, --array-token): it maps
the array's volume VOLUME (a Cinder volume's is volume-<ID>-cinder) as a LUN of
the host that has initiator IQN, creating that host (named --host, or after the
initiator) if there is none, and prints the target, its portals, the LUN and
the host's CHAP credentials, for example for iscsiadm:
  iscsiadm -m discovery -t st -p PORTAL
  iscsiadm -m node -T TARGET -o update -n node.session.auth.authmethod -v CHAP ...

With --at BACKEND_ID it attaches, read-only, a replicated snapshot of the
volume at that replication target (a replication_device backend_id of the
backend), for a DR test without a failover: --snapshot names one (as
'volrep replication info' reports it) or is latest (the default). Nothing at
the target becomes writable, replication carries on, and the target keeps
the snapshot until 'volrep volume detach ID --at BACKEND_ID'. --host
defaults to dr-test; a target serving iSCSI needs --initiator.`,
		Example: `  volrep volume attach vol-1 --host compute-1
  volrep volume attach vol-1 --at site-b --snapshot latest
  volrep -o json volume attach vol-1 --host backup-1 --snapshot snap-1
  volrep volume attach volume-1-cinder --protocol iscsi --initiator iqn.1993-08.org.debian:01:8f3e2a --array 127.0.0.1:7401`,
		Args: exactIDs(1, "a volume ID"),
		RunE: a.runE(func(cmd *cobra.Command, args []string) error {
			id := args[0]
			if rf.at != "" {
				return rf.attach(a, cmd, id, snapshot, host, initiator)
			}
			switch protocol {
			case "iscsi":
				if initiator == "" {
					return usageErrorf("--initiator must name the attaching host's IQN with --protocol iscsi")
				}
				return af.call(a, cmd, func(ctx context.Context, c arrayv1.HostServiceClient) error {
					return attachISCSI(ctx, a, c, id, snapshot, initiator, host)
				})
			case "nbd":
			default:
				return usageErrorf("--protocol must be nbd or iscsi, got %q", protocol)
			}
			if host == "" {
				return usageErrorf("--host must name the attaching host")
			}
			return a.callBackend(cmd, func(ctx context.Context, c driverv1.DriverServiceClient, backend string) error {
				resp, err := c.InitializeConnection(ctx, &driverv1.InitializeConnectionRequest{
					Backend:    backend,
					VolumeId:   id,
					Connector:  &driverv1.Connector{Host: host},
					SnapshotId: snapshot,
				})
				if err != nil {
					return rpcError(fmt.Sprintf("attach %s to host %q", attachObject(id, snapshot), host), err)
				}
				return a.render(resp, func(w io.Writer) {
					ci := resp.GetConnectionInfo()
					row(w, "driver_volume_type", dash(ci.GetDriverVolumeType()))
					for _, k := range attachTableKeys {
						row(w, k, dash(ci.GetData()[k]))
					}
				})
			})
		}),
	}
	cmd.Flags().StringVar(&host, "host", "", "the attaching host (the connector's host; required for nbd; for iscsi the host to create)")
	cmd.Flags().StringVar(&snapshot, "snapshot", "", "attach this snapshot of the volume, read-only (with --at: a replicated snapshot's name, or latest)")
	cmd.Flags().StringVar(&protocol, "protocol", "nbd", "nbd (through the driver) or iscsi (through the array)")
	cmd.Flags().StringVar(&initiator, "initiator", "", "the attaching host's initiator IQN (with --protocol iscsi, or --at a target serving iSCSI)")
	af.add(cmd)
	rf.add(cmd, "attach at this replication target")
	return cmd
}

func newVolumeDetachCmd(a *app) *cobra.Command {
	var host, snapshot, protocol, initiator string
	var af arrayFlags
	var rf replicaFlags
	cmd := &cobra.Command{
		Use:   "detach ID [--host HOST] [--snapshot SNAPID] [--at BACKEND_ID]",
		Short: "Revoke NBD attachments of a volume (TerminateConnection)",
		Long: `Revoke HOST's attachment of volume ID (or, with --snapshot, of its snapshot
SNAPID). Without --host every attachment is revoked (force detach). The export
name stops working at once: new connections are refused, and connections that
are still open fail their next request. With --at BACKEND_ID it revokes
replica attachments at that replication target ('volume attach --at'):
--snapshot's, or every replicated snapshot's; the target's retention may
then prune the snapshot.`,
		Example: `  volrep volume detach vol-1 --host compute-1
  volrep volume detach vol-1 --at site-b
  volrep volume detach vol-1`,
		Args: exactIDs(1, "a volume ID"),
		RunE: a.runE(func(cmd *cobra.Command, args []string) error {
			id := args[0]
			if rf.at != "" {
				return rf.detach(a, cmd, id, snapshot, host, initiator)
			}
			switch protocol {
			case "iscsi":
				if initiator == "" {
					return usageErrorf("--initiator must name the host's IQN with --protocol iscsi")
				}
				return af.call(a, cmd, func(ctx context.Context, c arrayv1.HostServiceClient) error {
					return detachISCSI(ctx, a, c, id, snapshot, initiator)
				})
			case "nbd":
			default:
				return usageErrorf("--protocol must be nbd or iscsi, got %q", protocol)
			}
			if cmd.Flags().Changed("host") && host == "" {
				return usageErrorf("--host is empty; leave it out to detach every host")
			}
			from, done := "from every host", "from every host"
			if host != "" {
				from, done = fmt.Sprintf("from host %q", host), "from host "+host
			}
			return a.callBackend(cmd, func(ctx context.Context, c driverv1.DriverServiceClient, backend string) error {
				req := &driverv1.TerminateConnectionRequest{Backend: backend, VolumeId: id, SnapshotId: snapshot}
				if host != "" {
					req.Connector = &driverv1.Connector{Host: host}
				}
				resp, err := c.TerminateConnection(ctx, req)
				if err != nil {
					return rpcError("detach "+attachObject(id, snapshot)+" "+from, err)
				}
				return a.render(resp, func(w io.Writer) {
					if snapshot != "" {
						fmt.Fprintf(w, "detached snapshot %s of volume %s %s\n", snapshot, id, done)
						return
					}
					fmt.Fprintf(w, "detached volume %s %s\n", id, done)
				})
			})
		}),
	}
	cmd.Flags().StringVar(&host, "host", "", "the host whose attachment to revoke (default: every host)")
	cmd.Flags().StringVar(&snapshot, "snapshot", "", "revoke attachments of this snapshot of the volume instead")
	cmd.Flags().StringVar(&protocol, "protocol", "nbd", "nbd (through the driver) or iscsi (through the array: disconnect the LUN)")
	cmd.Flags().StringVar(&initiator, "initiator", "", "the host's initiator IQN (with --protocol iscsi)")
	af.add(cmd)
	rf.add(cmd, "revoke attachments at this replication target")
	return cmd
}

// attachObject names what an attachment is of: `volume "v"` or
// `snapshot "s" of volume "v"`.
func attachObject(volume, snapshot string) string {
	if snapshot != "" {
		return fmt.Sprintf("snapshot %q of volume %q", snapshot, volume)
	}
	return fmt.Sprintf("volume %q", volume)
}
