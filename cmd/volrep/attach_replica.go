package main

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	driverv1 "github.com/volrep/volrep/proto/volrep/driver/v1"
)

// Replica access at a replication target (AttachReplica, DetachReplica):
// `volume attach VOL --at BACKEND_ID` and `volume detach VOL --at BACKEND_ID`.

// drHost is the connector host of a replica attachment made without
// --host: a DR test's reader.
const drHost = "dr-test"

// replicaFlags are the --at flags of attach and detach.
type replicaFlags struct {
	at string
}

func (f *replicaFlags) add(cmd *cobra.Command, what string) {
	cmd.Flags().StringVar(&f.at, "at", "", what+" (a replication_device backend_id): a replicated snapshot there, read-only; --snapshot NAME|latest (default latest)")
}

// attachReplica attaches a volume's replicated snapshot read-only at the
// replication target rf.at.
func (rf *replicaFlags) attach(a *app, cmd *cobra.Command, id, snapshot, host, initiator string) error {
	if cmd.Flags().Changed("protocol") {
		return usageErrorf("--protocol does not go with --at: the replication target's array decides (volrep_protocol, or iSCSI where it serves it)")
	}
	if cmd.Flags().Changed("host") && host == "" {
		return usageErrorf("--host must name the attaching host")
	}
	if host == "" {
		host = drHost
	}
	if snapshot == "" {
		snapshot = "latest"
	}
	return a.callBackend(cmd, func(ctx context.Context, c driverv1.DriverServiceClient, backend string) error {
		resp, err := c.AttachReplica(ctx, &driverv1.AttachReplicaRequest{Backend: backend, VolumeId: id, BackendId: rf.at,
			Snapshot: snapshot, Connector: &driverv1.Connector{Host: host, Initiator: initiator}})
		if err != nil {
			return rpcError(fmt.Sprintf("attach the replica of volume %q at %q (snapshot %s) to host %q", id, rf.at, snapshot, host), err)
		}
		return a.render(resp, func(w io.Writer) {
			ci := resp.GetConnectionInfo()
			row(w, "driver_volume_type", dash(ci.GetDriverVolumeType()))
			row(w, "snapshot", dash(resp.GetSnapshot()))
			created := ""
			if resp.GetSnapshotCreated() != nil {
				created = resp.GetSnapshotCreated().AsTime().Format(time.RFC3339)
			}
			row(w, "snapshot_created", dash(created))
			row(w, "access_mode", dash(ci.GetData()["access_mode"]))
			if t := ci.GetIscsi(); t != nil {
				for i, p := range t.GetPaths() {
					row(w, "portal", p.GetPortal(), p.GetIqn(), "lun "+strconv.FormatInt(p.GetLun(), 10))
					if i == 0 && !t.GetMultipath() {
						break
					}
				}
				row(w, "chap_username", dash(t.GetChapUsername()))
				return
			}
			for _, k := range attachTableKeys {
				row(w, k, dash(ci.GetData()[k]))
			}
		})
	})
}

// detach revokes replica attachments at rf.at: one host's or every
// host's, one snapshot's or every replicated snapshot's.
func (rf *replicaFlags) detach(a *app, cmd *cobra.Command, id, snapshot, host, initiator string) error {
	if cmd.Flags().Changed("protocol") {
		return usageErrorf("--protocol does not go with --at: the replication target's array decides")
	}
	if cmd.Flags().Changed("host") && host == "" {
		return usageErrorf("--host is empty; leave it out to detach every host")
	}
	return a.callBackend(cmd, func(ctx context.Context, c driverv1.DriverServiceClient, backend string) error {
		req := &driverv1.DetachReplicaRequest{Backend: backend, VolumeId: id, BackendId: rf.at, Snapshot: snapshot}
		if host != "" || initiator != "" {
			req.Connector = &driverv1.Connector{Host: host, Initiator: initiator}
		}
		from := "every host"
		if host != "" {
			from = "host " + host
		}
		what := "every replicated snapshot"
		if snapshot != "" {
			what = "snapshot " + snapshot
		}
		resp, err := c.DetachReplica(ctx, req)
		if err != nil {
			return rpcError(fmt.Sprintf("detach the replica of volume %q at %q from %s", id, rf.at, from), err)
		}
		return a.render(resp, func(w io.Writer) {
			fmt.Fprintf(w, "detached %s of volume %s at %s from %s\n", what, id, rf.at, from)
		})
	})
}
