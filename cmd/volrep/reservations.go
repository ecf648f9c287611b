package main

import (
	"context"
	"fmt"
	"io"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/volrep/volrep/array/wire"
	arrayv1 "github.com/volrep/volrep/proto/volrep/array/v1"
)

func newHostReservationsCmd(a *app) *cobra.Command {
	var (
		af      arrayFlags
		doClear bool
	)
	cmd := &cobra.Command{
		Use:   "reservations VOLUME [--clear]",
		Short: "Show, or clear, the SCSI-3 persistent reservations hosts hold on a volume's LUN",
		Long: `Show the persistent reservations that hosts hold on VOLUME (the array's
volume name) through the array's iSCSI target: each registered initiator port
(the initiator's name and the session's ISID, so two paths of one host are
two), the target port it registered through, its key, and which holds the
reservation. It is what 'sg_persist --read-full-status' shows a host. A pod's
volume has one set, the same at both of its arrays.

--clear drops every registration and the reservation, at both arrays of a
pod, as a registrant's PERSISTENT RESERVE OUT CLEAR would: each host that was
registered gets a RESERVATIONS PREEMPTED unit attention, and the hosts the
reservation fenced can write again. Use it when a cluster died holding a
reservation and no node is left to release it; a live cluster loses its
fencing until its nodes register again.`,
		Example: `  volrep host reservations volume-7f3c --array 127.0.0.1:7401
  volrep host reservations volume-7f3c --clear --array 127.0.0.1:7401`,
		Args: exactIDs(1, "a volume name"),
		RunE: a.runE(func(cmd *cobra.Command, args []string) error {
			return af.call(a, cmd, func(ctx context.Context, c arrayv1.HostServiceClient) error {
				var (
					r   *arrayv1.VolumeReservations
					err error
				)
				if doClear {
					var resp *arrayv1.ClearVolumeReservationsResponse
					resp, err = c.ClearVolumeReservations(ctx, &arrayv1.ClearVolumeReservationsRequest{Volume: args[0]})
					r = resp.GetReservations()
				} else {
					var resp *arrayv1.GetVolumeReservationsResponse
					resp, err = c.GetVolumeReservations(ctx, &arrayv1.GetVolumeReservationsRequest{Volume: args[0]})
					r = resp.GetReservations()
				}
				if err != nil {
					verb := "read"
					if doClear {
						verb = "clear"
					}
					return rpcError(fmt.Sprintf("%s the reservations of volume %q", verb, args[0]), err)
				}
				return a.render(r, func(w io.Writer) { reservationsTable(w, args[0], r) })
			})
		}),
	}
	cmd.Flags().BoolVar(&doClear, "clear", false, "drop every registration and the reservation (at both arrays of a pod)")
	af.add(cmd)
	return cmd
}

// reservationsTable shows keys in hex, as sg_persist does.
func reservationsTable(w io.Writer, volume string, pb *arrayv1.VolumeReservations) {
	r := wire.ReservationsFromPB(pb)
	row(w, "volume", volume)
	row(w, "generation", strconv.FormatUint(uint64(r.Generation), 10))
	row(w, "reservation", r.Type.String())
	row(w, "aptpl", yesNo(r.APTPL))
	if len(r.Registrations) == 0 {
		row(w, "registrations", "none")
		return
	}
	row(w, "")
	row(w, "INITIATOR PORT", "TARGET", "REL PORT", "KEY", "HOLDER")
	for _, g := range r.Registrations {
		row(w, g.InitiatorPort, g.Target, strconv.Itoa(int(g.RelativeTargetPort)), fmt.Sprintf("%#x", g.Key), yesNo(g.Holder))
	}
}
