package replication

import (
	"context"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"
	"google.golang.org/grpc"
	"google.golang.org/grpc/connectivity"

	"github.com/volrep/volrep/array"
	"github.com/volrep/volrep/array/client"
	"github.com/volrep/volrep/array/store"
	"github.com/volrep/volrep/errdefs"
	arrayv1 "github.com/volrep/volrep/proto/volrep/array/v1"
	"github.com/volrep/volrep/server"
	"github.com/volrep/volrep/server/rawstream"
)

// linkRec is stored with the peer's token, which the array needs to act
// on the peer; it is never returned by the API.
type linkRec struct {
	Name           string `json:"name"`
	Address        string `json:"address"`
	Token          string `json:"token"`
	BandwidthLimit int64  `json:"bandwidth_limit,omitempty"`
	Compression    bool   `json:"compression,omitempty"`
}

type link struct {
	rec     linkRec
	cc      *grpc.ClientConn
	peer    *client.Client
	xfer    arrayv1.TransferServiceClient
	limiter *rate.Limiter

	mu                   sync.Mutex
	state, lastErr       string
	remoteName, remoteID string
	// features: the protocol features the peer reported when a pod
	// stream was last opened to it.
	features []string
	checked  time.Time
	skew     time.Duration
}

func (e *Engine) dialLink(r linkRec) (*link, error) {
	cc, err := e.opts.Dial(r.Address, r.Token)
	if err != nil {
		return nil, err
	}
	l := &link{rec: r, cc: cc, peer: client.New(cc), xfer: arrayv1.NewTransferServiceClient(cc), state: array.LinkUnreachable, lastErr: "not checked yet"}
	if r.BandwidthLimit > 0 {
		l.limiter = rate.NewLimiter(rate.Limit(r.BandwidthLimit), int(max(r.BandwidthLimit/10, 256<<10)))
	}
	return l, nil
}

// has says whether the peer reported protocol feature f when a pod
// stream was last opened to it.
func (l *link) has(f string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Contains(l.features, f)
}

func (l *link) view() array.Link {
	l.mu.Lock()
	defer l.mu.Unlock()
	return array.Link{Name: l.rec.Name, Address: l.rec.Address, State: l.state, RemoteArrayName: l.remoteName,
		RemoteArrayID: l.remoteID, LastError: l.lastErr, LastChecked: l.checked, ClockSkew: l.skew,
		BandwidthLimit: l.rec.BandwidthLimit, Compression: l.rec.Compression}
}

// check asks the peer who it is: reachability, token and clock in one call.
func (e *Engine) check(ctx context.Context, l *link) {
	cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	sent := e.opts.Clock.Now()
	info, err := l.peer.Info(cctx)
	now := e.opts.Clock.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	prev := l.state
	l.checked = now
	switch {
	case err == nil:
		l.state, l.lastErr = array.LinkConnected, ""
		l.remoteName, l.remoteID = info.Name, info.ID
		l.skew = info.Now.Sub(sent.Add(now.Sub(sent) / 2))
	case errdefs.IsUnauthenticated(err):
		l.state, l.lastErr = array.LinkUnauthorized, "the peer refused the token: "+err.Error()
	default:
		l.state, l.lastErr = array.LinkUnreachable, err.Error()
	}
	if prev != l.state && ctx.Err() == nil {
		if l.state == array.LinkConnected {
			e.log.Info("link connected", "link", l.rec.Name, "address", l.rec.Address, "remote_array", l.remoteName)
		} else {
			e.log.Warn("link down", "link", l.rec.Name, "address", l.rec.Address, "state", l.state, "err", l.lastErr)
		}
	}
}

func (e *Engine) checkLinks(ctx context.Context) {
	failed := map[string]string{}
	for {
		e.mu.Lock()
		ls := make([]*link, 0, len(e.links))
		for _, l := range e.links {
			ls = append(ls, l)
		}
		e.mu.Unlock()
		for _, l := range ls {
			e.check(ctx, l)
		}
		e.deliverReleases(ctx, failed)
		select {
		case <-ctx.Done():
			return
		case <-e.checkNow:
		case <-time.After(e.opts.LinkCheckInterval):
		}
	}
}

// CreateLink connects to a peer. The same name and address again updates
// the token and options.
func (e *Engine) CreateLink(ctx context.Context, spec array.LinkSpec) (array.Link, error) {
	if err := array.CheckName("name", spec.Name); err != nil {
		return array.Link{}, err
	}
	if spec.Address == "" {
		return array.Link{}, errdefs.InvalidArgument("address", "is required: the peer array's API host:port")
	}
	if spec.BandwidthLimit < 0 {
		return array.Link{}, errdefs.InvalidArgument("bandwidth_limit", "must not be negative")
	}
	// One call at a time per name: two would each dial a connection, and
	// the one replaced in e.links would stay open, unused and unclosed.
	done, err := e.reserve(ctx, "link "+spec.Name)
	if err != nil {
		return array.Link{}, err
	}
	defer done()
	e.mu.Lock()
	old := e.links[spec.Name]
	e.mu.Unlock()
	if old != nil && old.rec.Address != spec.Address {
		return array.Link{}, errdefs.AlreadyExists("link %q already points at %s; delete it first to point it elsewhere", spec.Name, old.rec.Address)
	}
	r := linkRec{Name: spec.Name, Address: spec.Address, Token: spec.Token, BandwidthLimit: spec.BandwidthLimit, Compression: spec.Compression}
	if old != nil && old.rec == r {
		return old.view(), nil
	}
	l, err := e.dialLink(r)
	if err != nil {
		return array.Link{}, errdefs.InvalidArgument("address", "%v", err)
	}
	if err := e.save(ctx, recLinks, r.Name, r); err != nil {
		l.cc.Close()
		return array.Link{}, err
	}
	e.check(ctx, l)
	e.mu.Lock()
	e.links[r.Name] = l
	e.mu.Unlock()
	if old != nil {
		old.cc.Close()
	}
	e.log.Info("link configured", "link", r.Name, "address", r.Address, "state", l.view().State)
	return l.view(), nil
}

func (e *Engine) linkLocked(name string) (*link, error) {
	l, ok := e.links[name]
	if !ok {
		names := make([]string, 0, len(e.links))
		for n := range e.links {
			names = append(names, n)
		}
		slices.Sort(names)
		return nil, errdefs.NotFound("link %q not found; links: [%s]", name, strings.Join(names, ", "))
	}
	return l, nil
}

// GetLink returns a link and its state as last checked.
func (e *Engine) GetLink(ctx context.Context, name string) (array.Link, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	l, err := e.linkLocked(name)
	if err != nil {
		return array.Link{}, err
	}
	return e.viewLocked(l), nil
}

// viewLocked is what the API shows of a link. Called with e.mu held.
func (e *Engine) viewLocked(l *link) array.Link {
	v := l.view()
	v.PodsOwedRelease = e.owedOverLocked(l.rec.Name)
	return v
}

// ListLinks lists links by name.
func (e *Engine) ListLinks(ctx context.Context) ([]array.Link, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := []array.Link{}
	for _, l := range e.links {
		out = append(out, e.viewLocked(l))
	}
	slices.SortFunc(out, func(a, b array.Link) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// DeleteLink removes a link no replica uses.
func (e *Engine) DeleteLink(ctx context.Context, name string) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	l, err := e.linkLocked(name)
	if err != nil {
		return err
	}
	for _, r := range e.replicas {
		if r.rec.Spec.Link == name {
			return errdefs.FailedPrecondition("link %q is used by replica %q; delete the replica first", name, r.rec.Spec.Name)
		}
	}
	if err := e.s.DeleteRecord(ctx, recLinks, name); err != nil {
		return err
	}
	delete(e.links, name)
	l.cc.Close()
	return nil
}

// reconnect makes one fresh connection attempt now, instead of waiting out
// gRPC's own reconnect backoff, which knows nothing of our schedule, and
// waits for that attempt's outcome (at most a few seconds).
func (l *link) reconnect(ctx context.Context) {
	server.Reconnect(l.cc)
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	tried := false
	for {
		s := l.cc.GetState()
		switch s {
		case connectivity.Ready:
			return
		case connectivity.Connecting:
			tried = true
		case connectivity.TransientFailure, connectivity.Shutdown:
			if tried {
				return
			}
		}
		if !l.cc.WaitForStateChange(ctx, s) {
			return
		}
	}
}

// peerTooOld is a peer refused for a protocol feature it lacks.
type peerTooOld struct{ err error }

func (e *peerTooOld) Error() string { return e.err.Error() }
func (e *peerTooOld) Unwrap() error { return e.err }

// openPodStream opens one of a pod's streams to the peer. A peer that
// serves raw streams (array.Info.StreamPort) gets it there, on the host
// of its API address; otherwise, or when that port cannot be reached, it
// goes over gRPC. The peer is asked each time: its port changes when it
// restarts on a free one. A peer without the protocol feature need (none
// when empty) is refused as FAILED_PRECONDITION.
func openPodStream[Req, Res any](ctx context.Context, l *link, log *slog.Logger, method, need string, timeout time.Duration,
	overGRPC func(context.Context) (grpc.BidiStreamingClient[Req, Res], error)) (grpc.BidiStreamingClient[Req, Res], error) {
	ictx, cancel := context.WithTimeout(ctx, timeout)
	info, err := l.peer.Info(ictx)
	cancel()
	if err != nil {
		return nil, err
	}
	l.mu.Lock()
	l.features = info.Features
	l.mu.Unlock()
	if need != "" && !info.Has(need) {
		return nil, &peerTooOld{errdefs.FailedPrecondition("array %s (volrep %s) lacks the protocol feature %q that this stream needs; upgrade it to this array's version (volrep %s)",
			info.Name, info.Version, need, store.Version)}
	}
	if info.StreamPort <= 0 {
		return overGRPC(ctx)
	}
	host, _, err := net.SplitHostPort(l.rec.Address)
	if err != nil {
		return overGRPC(ctx)
	}
	addr := net.JoinHostPort(host, strconv.Itoa(info.StreamPort))
	cs, err := rawstream.Open[Req, Res](ctx, addr, l.rec.Token, method, timeout, server.DefaultMaxMsgSize)
	if err == nil || !errdefs.IsUnavailable(err) {
		return cs, err
	}
	log.Warn("the peer's stream port cannot be reached; this stream uses gRPC, with more latency per write: open the port between the arrays",
		"link", l.rec.Name, "address", addr, "err", err)
	return overGRPC(ctx)
}
