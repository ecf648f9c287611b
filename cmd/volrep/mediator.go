package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"strings"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/volrep/volrep/array/mediator"
	"github.com/volrep/volrep/errdefs"
	"github.com/volrep/volrep/errdefs/errgrpc"
)

// The mediator commands talk to the pods' etcd directly, not to volrepd:
// they are for when an array is gone, and with it, maybe, the daemon an
// operator would ask.
func newMediatorCmd(a *app) *cobra.Command {
	cmd := groupCmd("mediator", "Show and repair a sync pod's keys at its mediator (etcd), without volrepd")
	cmd.AddCommand(newMediatorShowCmd(a), newMediatorForgetMarkCmd(a))
	return cmd
}

// mediatorFlags is the --mediator flag of the mediator commands.
type mediatorFlags struct{ endpoints string }

func (f *mediatorFlags) add(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.endpoints, "mediator", "", "the pods' mediator as in volrep_pod_mediator: etcd://host[:port][,host[:port]...]")
}

// call runs fn with a client of the mediator and a context bounded by
// --timeout.
func (f *mediatorFlags) call(a *app, cmd *cobra.Command, fn func(context.Context, *mediator.Client) error) error {
	c, err := f.client()
	if err != nil {
		return err
	}
	defer c.Close()
	ctx, cancel := a.context(cmd)
	defer cancel()
	return fn(ctx, c)
}

// client connects to the mediator; the caller closes it.
func (f *mediatorFlags) client() (*mediator.Client, error) {
	v := strings.TrimPrefix(strings.TrimSpace(f.endpoints), "etcd://")
	if v == "" {
		return nil, usageErrorf("--mediator must name the pods' etcd, as volrep_pod_mediator does, for example etcd://10.0.0.30:2379")
	}
	var eps []string
	for _, ep := range strings.Split(v, ",") {
		ep = strings.TrimSpace(ep)
		if _, _, err := net.SplitHostPort(ep); err != nil {
			ep = net.JoinHostPort(strings.Trim(ep, "[]"), "2379")
		}
		eps = append(eps, ep)
	}
	c, err := mediator.New(eps, mediator.Options{})
	if err != nil {
		return nil, &cliError{What: "connect to the mediator", Err: err}
	}
	return c, nil
}

// mediatorError reports a failed call to the mediator with the exit
// status of its kind, as volrepd's answers get theirs.
func mediatorError(what string, err error) error {
	ce := &cliError{What: what, Err: errgrpc.ToStatus(err)}
	if errdefs.IsUnavailable(err) {
		ce.Hint = "check that this host reaches the mediator's etcd (--mediator)"
	}
	return ce
}

func newMediatorShowCmd(a *app) *cobra.Command {
	var mf mediatorFlags
	cmd := &cobra.Command{
		Use:   "show POD --mediator etcd://HOST:PORT",
		Short: "Show which array holds a pod's key and which array's mark stands on it",
		Long: `Show pod POD at its mediator: the array that holds its key (it takes the
pod's writes alone when the arrays cannot see each other), and the array whose
mark stands (it acknowledged writes the other array's copy lacks). Arrays are
named by their array ids, as 'volrep replication info' shows them.

POD is the pod's name at the mediator: PRIMARY_ARRAY_ID/POD_NAME, scoped by the
array that orders the pod's writes so that pods of one name on other arrays
sharing the mediator do not contend for one key (the array API's
Replica.mediator_name, and the pods' log records, give it whole); a pod begun
before volrep scoped the names, or while its peer ran an older volrep, keeps
its name alone.`,
		Example: `  volrep mediator show 8d068176-bb96-474d-9a7b-8f659a6b088a/cinder-pod.pure2-sync --mediator etcd://10.0.0.30:2379`,
		Args:    exactIDs(1, "a pod's name at the mediator"),
		RunE: a.runE(func(cmd *cobra.Command, args []string) error {
			return mf.call(a, cmd, func(ctx context.Context, c *mediator.Client) error {
				holder, err := c.Holder(ctx, args[0])
				if err != nil {
					return mediatorError("read pod "+args[0]+"'s key", err)
				}
				marked, err := c.Ahead(ctx, args[0])
				if err != nil {
					return mediatorError("read pod "+args[0]+"'s mark", err)
				}
				msg, err := structpb.NewStruct(map[string]any{"pod": args[0], "holder": holder, "marked": marked})
				if err != nil {
					return &cliError{What: "encode the answer", Err: err}
				}
				return a.render(msg, func(w io.Writer) {
					row(w, "POD", "KEY_HELD_BY", "MARKED_BY")
					row(w, args[0], dash(holder), dash(marked))
				})
			})
		}),
	}
	mf.add(cmd)
	return cmd
}

func newMediatorForgetMarkCmd(a *app) *cobra.Command {
	var (
		mf     mediatorFlags
		lost   string
		accept bool
	)
	cmd := &cobra.Command{
		Use:   "forget-mark POD --array ARRAY_ID --accept-data-loss --mediator etcd://HOST:PORT",
		Short: "Give a lost array up: drop its mark on a pod so the other array takes the pod",
		Long: `An array that carried pod POD alone marked it at the mediator: its copy holds
writes it acknowledged that the other array's copy lacks, so the other array
does not take the pod until that array is back and has handed them over. If
the marked array is lost for good, forget-mark drops its mark; the other array
then takes the pod with its own copy at its next look, and the writes the lost
array acknowledged while it carried the pod are gone.

The mark goes only while it still names --array and no array holds the pod's
key (an array that holds it is alive and carries the pod), checked and
deleted in one etcd transaction. POD is the pod's name at the mediator, as for
'volrep mediator show'.`,
		Example: `  volrep mediator forget-mark 8d068176-.../cinder-pod.pure2-sync --array 2f6c0a4e-... --accept-data-loss \
      --mediator etcd://10.0.0.30:2379`,
		Args: exactIDs(1, "a pod's name at the mediator"),
		RunE: a.runE(func(cmd *cobra.Command, args []string) error {
			if lost == "" {
				return usageErrorf("--array must name the lost array whose mark to drop (the id in the pod's message, or in 'volrep mediator show')")
			}
			if !accept {
				return usageErrorf("the writes array %s acknowledged while it carried pod %s are lost with its mark; pass --accept-data-loss if that array is gone for good", lost, args[0])
			}
			return mf.call(a, cmd, func(ctx context.Context, c *mediator.Client) error {
				if err := c.ForgetMark(ctx, args[0], lost); err != nil {
					return mediatorError(fmt.Sprintf("forget array %s's mark on pod %s", lost, args[0]), err)
				}
				fmt.Fprintf(a.stdout, "array %s's mark on pod %s is gone; the pod's other array takes the pod with its own copy within seconds\n", lost, args[0])
				return nil
			})
		}),
	}
	mf.add(cmd)
	cmd.Flags().StringVar(&lost, "array", "", "the id of the lost array whose mark to drop")
	cmd.Flags().BoolVar(&accept, "accept-data-loss", false, "confirm that the writes the lost array acknowledged alone are given up")
	return cmd
}
