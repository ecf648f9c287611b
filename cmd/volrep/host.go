package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/volrep/volrep/array/wire"
	"github.com/volrep/volrep/paging"
	arrayv1 "github.com/volrep/volrep/proto/volrep/array/v1"
	"github.com/volrep/volrep/server"
)

// Hosts and their LUNs are the array's, not a driver backend's: these
// commands talk to an array's API (--array / VOLREP_ARRAY_ADDR, with its
// api_token), as purehost does on a FlashArray.
const (
	envArrayAddr  = "VOLREP_ARRAY_ADDR"
	envArrayToken = "VOLREP_ARRAY_TOKEN"
)

// arrayFlags are where an array command connects.
type arrayFlags struct {
	addr, token string
}

func (f *arrayFlags) add(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.addr, "array", "", "address of the array's API, host:port (env "+envArrayAddr+"; the listen of its [array:NAME] section)")
	cmd.Flags().StringVar(&f.token, "array-token", "", "the array's api_token (env "+envArrayToken+")")
}

// call runs fn with the array's host service.
func (f *arrayFlags) call(a *app, cmd *cobra.Command, fn func(ctx context.Context, c arrayv1.HostServiceClient) error) error {
	return f.dial(a, cmd, func(ctx context.Context, cc *grpc.ClientConn) error {
		return fn(ctx, arrayv1.NewHostServiceClient(cc))
	})
}

// dial runs fn with a connection to the array's API.
func (f *arrayFlags) dial(a *app, cmd *cobra.Command, fn func(ctx context.Context, cc *grpc.ClientConn) error) error {
	if f.addr == "" {
		f.addr = a.getenv(envArrayAddr)
	}
	if f.token == "" {
		f.token = strings.TrimSpace(a.getenv(envArrayToken))
	}
	if f.addr == "" {
		return usageErrorf("name the array with --array or %s (its API's host:port)", envArrayAddr)
	}
	cc, err := server.Dial(f.addr, f.token)
	if err != nil {
		return &cliError{What: fmt.Sprintf("bad --array %q", f.addr), Err: err, Exit: exitUsage}
	}
	defer cc.Close()
	ctx, cancel := a.context(cmd)
	defer cancel()
	return fn(ctx, cc)
}

func newHostCmd(a *app) *cobra.Command {
	cmd := groupCmd("host", "Create, list and delete an array's iSCSI hosts (initiators, CHAP and preferred arrays); show and clear a LUN's persistent reservations")
	cmd.AddCommand(newHostCreateCmd(a), newHostListCmd(a), newHostDeleteCmd(a), newHostSetPreferredArraysCmd(a), newHostReservationsCmd(a))
	return cmd
}

func newHostCreateCmd(a *app) *cobra.Command {
	var (
		af        arrayFlags
		iqns      []string
		mutual    bool
		preferred []string
	)
	cmd := &cobra.Command{
		Use:   "create NAME --iqn IQN [--iqn IQN ...] [--preferred-array ARRAY ...]",
		Short: "Create a host: initiator names that volumes can be connected to",
		Long: `Create host NAME on the array with one or more initiator names (the
InitiatorName in /etc/iscsi/initiatorname.iscsi). The array generates the CHAP
secret the host's logins must present; 'volrep volume attach --protocol iscsi'
prints it. Creating the same host again is a no-op, and keeps the host's
preferred arrays: 'volrep host set-preferred-arrays' changes them.`,
		Example: `  volrep host create compute-1 --iqn iqn.1993-08.org.debian:01:8f3e2a --array 127.0.0.1:7401`,
		Args:    exactIDs(1, "a host name"),
		RunE: a.runE(func(cmd *cobra.Command, args []string) error {
			if len(iqns) == 0 {
				return usageErrorf("--iqn must name the host's initiator at least once")
			}
			return af.call(a, cmd, func(ctx context.Context, c arrayv1.HostServiceClient) error {
				resp, err := c.CreateHost(ctx, &arrayv1.CreateHostRequest{Name: args[0], Iqns: iqns, MutualChap: mutual, PreferredArrays: preferred})
				if err != nil {
					return rpcError(fmt.Sprintf("create host %q", args[0]), err)
				}
				return a.render(resp, func(w io.Writer) { hostTable(w, resp.GetHost()) })
			})
		}),
	}
	af.add(cmd)
	cmd.Flags().StringArrayVar(&iqns, "iqn", nil, "an initiator name of the host (repeat for several)")
	cmd.Flags().BoolVar(&mutual, "mutual-chap", false, "the array authenticates itself to the host too")
	cmd.Flags().StringArrayVar(&preferred, "preferred-array", nil, "an array whose paths to pod volumes are active/optimized for the host (repeat for several)")
	return cmd
}

func newHostSetPreferredArraysCmd(a *app) *cobra.Command {
	var af arrayFlags
	cmd := &cobra.Command{
		Use:   "set-preferred-arrays NAME [ARRAY ...]",
		Short: "Set the arrays whose paths to pod volumes are active/optimized for a host",
		Long: `Replace host NAME's preferred arrays, as 'purehost setattr --preferred-array'
does on a FlashArray: for a volume in a pod, the paths through a preferred
array are active/optimized for the host and those through the pod's other
array active/non-optimized, so a host at the peer's site sends its I/O to the
peer. With no ARRAY the preference is cleared and each array reports its own
state. A side the pod has stopped stays unavailable whatever the host prefers.

The setting is per array: each array decides the ALUA state of its own paths
only, so set the same list at both arrays of a pod. Sessions already open see
the new state from their next command, after one ASYMMETRIC ACCESS STATE
CHANGED unit attention; the host need not log in again.`,
		Example: `  volrep host set-preferred-arrays compute-b1 site-b --array 127.0.0.1:7401
  volrep host set-preferred-arrays compute-b1 site-b --array 127.0.0.1:7402
  volrep host set-preferred-arrays compute-b1 --array 127.0.0.1:7401`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return fmt.Errorf("%q takes a host name and the arrays it prefers (none to clear), got 0 arguments", cmd.CommandPath())
			}
			return nil
		},
		RunE: a.runE(func(cmd *cobra.Command, args []string) error {
			return af.dial(a, cmd, func(ctx context.Context, cc *grpc.ClientConn) error {
				c := arrayv1.NewHostServiceClient(cc)
				resp, err := c.SetHostPreferredArrays(ctx, &arrayv1.SetHostPreferredArraysRequest{Name: args[0], PreferredArrays: args[1:]})
				if err != nil {
					ce := &cliError{What: fmt.Sprintf("set the preferred arrays of host %q", args[0]), Err: err}
					if status.Code(err) == codes.NotFound {
						// The default hint names driver objects; hosts are the array's.
						ce.Hint = "'volrep host list' shows the array's hosts"
					}
					return ce
				}
				warnUnknownArrays(ctx, a, cc, args[1:])
				return a.render(resp, func(w io.Writer) { hostTable(w, resp.GetHost()) })
			})
		}),
	}
	af.add(cmd)
	return cmd
}

// warnUnknownArrays warns of a preferred array that is neither this array
// nor one at the other end of its links: most likely a typo, which the
// array cannot refuse (it may be set before the link exists, and a pod's
// non-preferred array has no link back), and which would leave the host
// with no optimized path to its pod volumes here.
func warnUnknownArrays(ctx context.Context, a *app, cc *grpc.ClientConn, names []string) {
	if len(names) == 0 {
		return
	}
	info, err := arrayv1.NewArrayServiceClient(cc).GetArrayInfo(ctx, &arrayv1.GetArrayInfoRequest{})
	if err != nil {
		return // the change is made; the check is only advice
	}
	known := []string{info.GetInfo().GetName()}
	links, err := paging.All(ctx, func(ctx context.Context, tok string) ([]*arrayv1.Link, string, error) {
		r, err := arrayv1.NewLinkServiceClient(cc).ListLinks(ctx, &arrayv1.ListLinksRequest{PageSize: paging.MaxPageSize, PageToken: tok})
		return r.GetLinks(), r.GetNextPageToken(), err
	})
	switch {
	case status.Code(err) == codes.Unimplemented:
		// No replication here, so no pod: only this array's name can apply.
	case err != nil:
		return
	case len(links) == 0:
		// A pod's non-preferred array needs no link back to the preferred
		// one, so with no links there is nothing to judge a name by.
		return
	}
	for _, l := range links {
		if n := l.GetRemoteArrayName(); n != "" {
			known = append(known, n)
		}
	}
	for _, n := range names {
		if !slices.Contains(known, n) {
			fmt.Fprintf(a.stderr, "volrep: warning: array %q is neither this array nor one it has a link to (%s); check the name, unless it is the preferred array of a pod that replicates to this one: "+
				"a host that prefers only other arrays is told this array's paths are non-optimized\n", n, strings.Join(known, ", "))
		}
	}
}

func hostTable(w io.Writer, h *arrayv1.Host) {
	row(w, "name", h.GetName())
	row(w, "iqns", listOrDash(h.GetIqns()))
	row(w, "chap_user", dash(h.GetChapUser()))
	row(w, "mutual_chap", yesNo(h.GetMutualChap()))
	row(w, "preferred_arrays", listOrDash(h.GetPreferredArrays()))
	row(w, "connections", formatInt(h.GetConnections()))
}

func newHostListCmd(a *app) *cobra.Command {
	var af arrayFlags
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List hosts, their initiators and the volumes connected to them (no secrets)",
		Args:  exactIDs(0, "no arguments"),
		RunE: a.runE(func(cmd *cobra.Command, _ []string) error {
			return af.call(a, cmd, func(ctx context.Context, c arrayv1.HostServiceClient) error {
				hosts, err := listHosts(ctx, c)
				if err != nil {
					return err
				}
				conns, err := paging.All(ctx, func(ctx context.Context, tok string) ([]*arrayv1.Connection, string, error) {
					r, err := c.ListConnections(ctx, &arrayv1.ListConnectionsRequest{PageSize: paging.MaxPageSize, PageToken: tok})
					return r.GetConnections(), r.GetNextPageToken(), err
				})
				if err != nil {
					return rpcError("list connections", err)
				}
				out, err := hostList(hosts, conns)
				if err != nil {
					return &cliError{What: "encode the hosts", Err: err}
				}
				return a.render(out, func(w io.Writer) {
					row(w, "HOST", "IQNS", "PREFERRED", "LUN", "VOLUME", "ACCESS", "ALUA")
					for _, h := range hosts {
						iqns, preferred := listOrDash(h.GetIqns()), listOrDash(h.GetPreferredArrays())
						n := 0
						for _, cn := range conns {
							if cn.GetHost() != h.GetName() {
								continue
							}
							vol := cn.GetVolume()
							if cn.GetSnapshot() != "" {
								vol += "@" + cn.GetSnapshot()
							}
							access := "rw"
							if cn.GetReadOnly() {
								access = "ro"
							}
							row(w, h.GetName(), iqns, preferred, strconv.FormatInt(cn.GetLun(), 10), vol, access, aluaText(cn))
							n++
						}
						if n == 0 {
							row(w, h.GetName(), iqns, preferred, "-", "-", "-", "-")
						}
					}
				})
			})
		}),
	}
	af.add(cmd)
	return cmd
}

// aluaText is the ALUA state the array reports to the host for the LUN,
// as "active/optimized,pref": what the host's multipath is told.
func aluaText(c *arrayv1.Connection) string {
	p := wire.ConnectionFromPB(c).Path
	if p == nil {
		return "-" // an array from before path states were reported
	}
	st := p.State.String()
	if p.Preferred {
		st += ",pref"
	}
	return st
}

// listHosts lists every host of the array.
func listHosts(ctx context.Context, c arrayv1.HostServiceClient) ([]*arrayv1.Host, error) {
	hosts, err := paging.All(ctx, func(ctx context.Context, tok string) ([]*arrayv1.Host, string, error) {
		r, err := c.ListHosts(ctx, &arrayv1.ListHostsRequest{PageSize: paging.MaxPageSize, PageToken: tok})
		return r.GetHosts(), r.GetNextPageToken(), err
	})
	if err != nil {
		return nil, rpcError("list hosts", err)
	}
	return hosts, nil
}

// hostList is host list's JSON: {"hosts": [...], "connections": [...]},
// each as the API's messages render.
func hostList(hosts []*arrayv1.Host, conns []*arrayv1.Connection) (*structpb.Struct, error) {
	toAny := func(ms []proto.Message) ([]any, error) {
		out := []any{}
		for _, m := range ms {
			b, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(m)
			if err != nil {
				return nil, err
			}
			var v any
			if err := json.Unmarshal(b, &v); err != nil {
				return nil, err
			}
			out = append(out, v)
		}
		return out, nil
	}
	hs := make([]proto.Message, len(hosts))
	for i, h := range hosts {
		hs[i] = h
	}
	cs := make([]proto.Message, len(conns))
	for i, c := range conns {
		cs[i] = c
	}
	h, err := toAny(hs)
	if err != nil {
		return nil, err
	}
	c, err := toAny(cs)
	if err != nil {
		return nil, err
	}
	return structpb.NewStruct(map[string]any{"hosts": h, "connections": c})
}

func newHostDeleteCmd(a *app) *cobra.Command {
	var (
		af    arrayFlags
		force bool
	)
	cmd := &cobra.Command{
		Use:   "delete NAME [--force]",
		Short: "Delete a host; with --force also when volumes are still connected to it",
		Args:  exactIDs(1, "a host name"),
		RunE: a.runE(func(cmd *cobra.Command, args []string) error {
			return af.call(a, cmd, func(ctx context.Context, c arrayv1.HostServiceClient) error {
				resp, err := c.DeleteHost(ctx, &arrayv1.DeleteHostRequest{Name: args[0], Force: force})
				if err != nil {
					return rpcError(fmt.Sprintf("delete host %q", args[0]), err)
				}
				return a.render(resp, func(w io.Writer) { fmt.Fprintf(w, "deleted host %s\n", args[0]) })
			})
		}),
	}
	af.add(cmd)
	cmd.Flags().BoolVar(&force, "force", false, "disconnect the host's volumes first (their sessions fail their next command)")
	return cmd
}

// attachISCSI connects a volume to the host of initiator over the array's
// API, creating the host (named host, or after the initiator) if no host
// has the initiator yet, and prints what an initiator needs to log in.
func attachISCSI(ctx context.Context, a *app, c arrayv1.HostServiceClient, volume, snapshot, initiator, host string) error {
	name, err := hostOfInitiator(ctx, c, initiator)
	if err != nil {
		return err
	}
	if name == "" {
		if name = host; name == "" {
			name = hostNameFor(initiator)
		}
		if _, err := c.CreateHost(ctx, &arrayv1.CreateHostRequest{Name: name, Iqns: []string{initiator}}); err != nil {
			return rpcError(fmt.Sprintf("create host %q for %s", name, initiator), err)
		}
	} else if host != "" && host != name {
		return usageErrorf("initiator %s belongs to host %q, not %q; leave --host out or delete that host", initiator, name, host)
	}
	resp, err := c.ConnectVolume(ctx, &arrayv1.ConnectVolumeRequest{Host: name, Volume: volume, Snapshot: snapshot})
	if err != nil {
		return rpcError(fmt.Sprintf("connect %s to host %q", attachObject(volume, snapshot), name), err)
	}
	return a.render(resp, func(w io.Writer) {
		cn := resp.GetConnection()
		row(w, "driver_volume_type", "iscsi")
		row(w, "host", cn.GetHost())
		row(w, "target_iqn", cn.GetTargetIqn())
		row(w, "target_portals", listOrDash(cn.GetPortals()))
		row(w, "target_lun", formatInt(cn.GetLun()))
		row(w, "auth_method", "CHAP")
		row(w, "auth_username", cn.GetChapUser())
		row(w, "auth_password", cn.GetChapSecret())
		if cn.GetMutualChapSecret() != "" {
			row(w, "mutual_username", cn.GetMutualChapUser())
			row(w, "mutual_password", cn.GetMutualChapSecret())
		}
		row(w, "wwn", cn.GetWwn())
		row(w, "read_only", strconv.FormatBool(cn.GetReadOnly()))
	})
}

// hostOfInitiator returns the host an initiator belongs to, or "".
func hostOfInitiator(ctx context.Context, c arrayv1.HostServiceClient, initiator string) (string, error) {
	hosts, err := listHosts(ctx, c)
	if err != nil {
		return "", err
	}
	for _, h := range hosts {
		for _, iqn := range h.GetIqns() {
			if strings.EqualFold(iqn, initiator) {
				return h.GetName(), nil
			}
		}
	}
	return "", nil
}

// hostNameFor names a host after its initiator: the part after the
// naming authority (iqn.1993-08.org.debian:01:abc → "01-abc"), in the
// characters host names allow.
func hostNameFor(initiator string) string {
	s := initiator
	if i := strings.Index(s, ":"); i >= 0 && i < len(s)-1 {
		s = s[i+1:]
	}
	out := []byte(s)
	for i, c := range out {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			out[i] = '-'
		}
	}
	name := strings.Trim(string(out), ".-_")
	if len(name) > 100 {
		name = name[:100]
	}
	return "host-" + name
}

// detachISCSI disconnects a volume from the host of initiator.
func detachISCSI(ctx context.Context, a *app, c arrayv1.HostServiceClient, volume, snapshot, initiator string) error {
	name, err := hostOfInitiator(ctx, c, initiator)
	if err != nil {
		return err
	}
	if name == "" {
		return &cliError{What: fmt.Sprintf("detach %s: initiator %s belongs to no host on the array", attachObject(volume, snapshot), initiator), Exit: exitNotFound}
	}
	resp, err := c.DisconnectVolume(ctx, &arrayv1.DisconnectVolumeRequest{Host: name, Volume: volume, Snapshot: snapshot})
	if err != nil {
		return rpcError(fmt.Sprintf("disconnect %s from host %q", attachObject(volume, snapshot), name), err)
	}
	return a.render(resp, func(w io.Writer) {
		fmt.Fprintf(w, "disconnected %s from host %s\n", attachObject(volume, snapshot), name)
	})
}
