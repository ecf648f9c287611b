// Package replication runs an array's side of replication: links to peer
// arrays, and replicas that ship snapshots of local volumes and
// consistency groups to them on a schedule, with retention on both sides.
// Protection groups (Pure) and replicate_entity / replicate_cons_group
// (InfiniSDK) are both replicas here.
package replication

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"google.golang.org/grpc"

	"github.com/volrep/volrep/array"
	"github.com/volrep/volrep/array/store"
	"github.com/volrep/volrep/array/transfer"
	"github.com/volrep/volrep/clock"
	"github.com/volrep/volrep/errdefs"
)

// Labels the engine puts on the snapshots and remote volumes it makes.
const (
	LabelReplica      = transfer.LabelReplica
	LabelSourceVolume = "volrep.source_volume"
	LabelSourceArray  = "volrep.source_array"
)

const (
	recLinks    = "links"
	recReplicas = "replicas"
)

// Options configure an Engine.
type Options struct {
	Logger *slog.Logger
	Clock  clock.Clock
	// Dial connects to a peer array's API.
	Dial func(addr, token string) (*grpc.ClientConn, error)
	// LinkCheckInterval is how often links are checked.
	LinkCheckInterval time.Duration
	// RetryMin and RetryMax bound the backoff after a failed cycle.
	RetryMin, RetryMax time.Duration
	// OnCycle, if set, is told about every finished replication cycle.
	OnCycle func(Replica array.Replica, err error)
	// PodMediator are the etcd endpoints (host:port) of the mediator the
	// pods use whose spec names none; none means no mediator.
	PodMediator []string
	// MediatorTTL is the lease time of the pods' mediator keys (default
	// mediator.DefaultTTL).
	MediatorTTL time.Duration
	// OnPodState, if set, is told every change of a pod's state here
	// (array.PodOnline, PodResyncing, PodDegraded, PodStoppedByMediator).
	OnPodState func(pod, state string)
}

// Engine is one array's replication.
type Engine struct {
	s    *store.Store
	opts Options
	log  *slog.Logger
	id   string

	mu       sync.Mutex
	links    map[string]*link
	replicas map[string]*replica
	ops      map[string]*operation
	pods     map[string]*pod
	// owed are the pods with a release owed to their peer, as their
	// records in recPodReleases hold them (release.go).
	owed map[string]podReleaseRec
	// creating are the replicas and links being created (see reserve); a
	// second call for one waits for the first (closed when it is done).
	creating map[string]chan struct{}
	kick     chan struct{}
	// checkNow wakes the link checks before their interval ends.
	checkNow chan struct{}
	wg       sync.WaitGroup
	// runCtx bounds work started by API calls, such as snapshot
	// replication; it ends with Run.
	runCtx    context.Context
	cancelRun context.CancelFunc
}

var _ array.Replication = (*Engine)(nil)

// New loads the engine's links and replicas from the store.
func New(ctx context.Context, s *store.Store, opts Options) (*Engine, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Clock == nil {
		opts.Clock = clock.Real{}
	}
	if opts.LinkCheckInterval <= 0 {
		opts.LinkCheckInterval = 5 * time.Second
	}
	if opts.RetryMin <= 0 {
		opts.RetryMin = time.Second
	}
	if opts.RetryMax <= 0 {
		opts.RetryMax = time.Minute
	}
	info, err := s.Info(ctx)
	if err != nil {
		return nil, err
	}
	e := &Engine{s: s, opts: opts, log: opts.Logger, id: info.ID, links: map[string]*link{}, replicas: map[string]*replica{},
		ops: map[string]*operation{}, pods: map[string]*pod{}, creating: map[string]chan struct{}{}, kick: make(chan struct{}, 1),
		owed: map[string]podReleaseRec{}, checkNow: make(chan struct{}, 1)}
	e.runCtx, e.cancelRun = context.WithCancel(context.Background())
	if err := s.Records(ctx, recLinks, "", func(_ string, data []byte) error {
		var r linkRec
		if err := json.Unmarshal(data, &r); err != nil {
			return err
		}
		l, err := e.dialLink(r)
		if err != nil {
			return err
		}
		e.links[r.Name] = l
		return nil
	}); err != nil {
		e.Close()
		return nil, err
	}
	if err := s.Records(ctx, recReplicas, "", func(_ string, data []byte) error {
		var r replicaRec
		if err := json.Unmarshal(data, &r); err != nil {
			return err
		}
		e.replicas[r.Spec.Name] = &replica{rec: r}
		return nil
	}); err != nil {
		e.Close()
		return nil, err
	}
	if e.owed, err = e.loadReleases(ctx); err != nil {
		e.Close()
		return nil, err
	}
	// Pods mirror from the first write on: install them before the array
	// serves anything.
	for _, r := range e.replicas {
		if r.rec.Spec.Type == array.TypeSync {
			if err := e.addPod(ctx, r); err != nil {
				e.Close()
				return nil, fmt.Errorf("pod %s: %w", r.rec.Spec.Name, err)
			}
		}
	}
	s.ObserveGroups(func(group string) {
		e.mu.Lock()
		var ps []*pod
		for name, p := range e.pods {
			if r := e.replicas[name]; r != nil && r.rec.Spec.Kind == array.KindGroup && r.rec.Spec.Local == group {
				ps = append(ps, p)
			}
		}
		e.mu.Unlock()
		for _, p := range ps {
			if err := p.refresh(context.Background()); err != nil {
				e.log.Warn("pod membership", "pod", p.name, "err", err)
			}
		}
	})
	return e, nil
}

// reserve waits until no other call is creating what key names ("replica
// NAME", "link NAME"), then marks it being created until done is called.
// No lock is held while the creation waits on the network.
func (e *Engine) reserve(ctx context.Context, name string) (done func(), _ error) {
	e.mu.Lock()
	for {
		busy := e.creating[name]
		if busy == nil {
			break
		}
		e.mu.Unlock()
		select {
		case <-busy:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		e.mu.Lock()
	}
	ch := make(chan struct{})
	e.creating[name] = ch
	e.mu.Unlock()
	return func() {
		e.mu.Lock()
		delete(e.creating, name)
		e.mu.Unlock()
		close(ch)
	}, nil
}

func (e *Engine) addPod(ctx context.Context, r *replica) error {
	e.mu.Lock()
	running := e.pods[r.rec.Spec.Name] != nil
	e.mu.Unlock()
	if running {
		// A second pod would install its own mirrors over the first's
		// and send its own initial copy over the peer's, which drops the
		// writes the first one mirrored there.
		return errdefs.AlreadyExists("pod %q is already running", r.rec.Spec.Name)
	}
	if err := e.forgetRelease(ctx, r.rec.Spec.Name); err != nil {
		return err
	}
	p, err := e.startPod(ctx, r)
	if err != nil {
		return err
	}
	e.mu.Lock()
	e.pods[r.rec.Spec.Name] = p
	e.mu.Unlock()
	return nil
}

// removePod stops a pod deleted or made async; the caller has recorded
// the release owed to its peer (oweRelease), which the link checks
// deliver, starting now.
func (e *Engine) removePod(ctx context.Context, name string, p *pod) {
	p.stop(ctx)
	// The pod is gone from here on: its records go even if the caller
	// has given up meanwhile.
	ctx = context.WithoutCancel(ctx)
	// The pod's records go with it: the blocks its peer missed (a pod
	// begun again copies every member first) and the copies it left at
	// the peer (deleting the replica with its remote copies, or the
	// protection group it became, removes those).
	for _, bucket := range []string{recPodDirty, recPodLeft} {
		if err := e.s.DeleteRecords(ctx, bucket, name+"/"); err != nil {
			e.log.Warn("removing the records of a pod that is gone", "pod", name, "records", bucket, "err", err)
		}
	}
	e.mu.Lock()
	if e.pods[name] == p {
		delete(e.pods, name)
	}
	e.mu.Unlock()
	select {
	case e.checkNow <- struct{}{}:
	default:
	}
}

// setSynced records whether a pod member's peer copy is complete.
func (e *Engine) setSynced(ctx context.Context, name, member string, synced bool) {
	e.mu.Lock()
	r := e.replicas[name]
	if r == nil {
		e.mu.Unlock()
		return
	}
	has := slices.Contains(r.rec.SyncMembers, member)
	switch {
	case synced && !has:
		r.rec.SyncMembers = append(r.rec.SyncMembers, member)
		r.rec.Initialized = true
	case !synced && has:
		r.rec.SyncMembers = slices.DeleteFunc(r.rec.SyncMembers, func(m string) bool { return m == member })
	default:
		e.mu.Unlock()
		return
	}
	rec := r.rec
	e.mu.Unlock()
	if err := e.save(ctx, recReplicas, name, rec); err != nil {
		e.log.Error("saving pod membership", "pod", name, "err", err)
	}
}

// waitSynced waits until a pod's peer holds every acknowledged write.
func (e *Engine) waitSynced(ctx context.Context, name string, p *pod) (array.Replica, error) {
	if err := p.refresh(ctx); err != nil {
		return array.Replica{}, err
	}
	for {
		p.mu.Lock()
		synced := p.synced
		p.mu.Unlock()
		if synced {
			return e.GetReplica(ctx, name)
		}
		select {
		case <-ctx.Done():
			return array.Replica{}, ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// Run checks links and runs replication schedules until ctx ends, then
// waits for cycles in flight.
func (e *Engine) Run(ctx context.Context) {
	stop := context.AfterFunc(ctx, e.cancelRun)
	defer stop()
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		e.checkLinks(ctx)
	}()
	e.schedule(ctx)
	e.wg.Wait()
}

// Close releases the links' connections; call it after Run returns.
func (e *Engine) Close() {
	e.cancelRun()
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, l := range e.links {
		l.cc.Close()
	}
}

func (e *Engine) wake() {
	select {
	case e.kick <- struct{}{}:
	default:
	}
}

func (e *Engine) save(ctx context.Context, bucket, key string, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return e.s.PutRecord(ctx, bucket, key, data)
}
