// Package mediator decides, through etcd, which array keeps a sync pod
// online when the two arrays cannot see each other. Each pod has one key,
// /volrep/pods/<pod>/online, attached to a lease: the array whose lease
// holds the key may carry on without its peer; an array that does not
// hold it (or cannot prove it still does, because etcd stopped answering)
// must stop taking the pod's writes, so the two copies never diverge.
//
// Whether a claim is held is a local, non-blocking question (Held): the
// claim knows until when its lease is alive at the latest, counted from
// before the last keep-alive was sent, so the answer never outlives the
// lease at etcd, even while etcd cannot be reached.
//
// Next to the key, /volrep/pods/<pod>/ahead names the side that has
// acknowledged writes the other side's copy lacks: the preferred array
// sets it (Mark) before its first write acknowledged without its peer,
// a peer that takes the pod over sets it when it takes the key
// (ClaimToCarry). No side takes the key while the other side's mark
// stands, so a side never carries on from a copy that misses
// acknowledged writes; each side clears its own mark once the copies
// agree again (Unmark, Release).
//
// A pod's name at the mediator is scoped by the array that orders its
// writes (Scoped): arrays of several sites may share one mediator, and
// two pods of the same name on different pairs of arrays (two clouds'
// backends of the same name, say) must not contend for one key. Pods
// begun before names were scoped keep the pod's name alone, as both of
// their arrays recorded it.
package mediator

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/volrep/volrep/errdefs"
)

const (
	// DefaultTTL is the lease time of a pod's key: how long an array that
	// lost etcd keeps the pod after its last keep-alive. etcd counts whole
	// seconds and grants at least about 2.
	DefaultTTL = 3 * time.Second
	keyPrefix  = "/volrep/pods/"
)

// Options tune a Client; zero values take the defaults.
type Options struct {
	// TTL is the lease time of the keys this client holds.
	TTL time.Duration
	// PreferDelay is how long a side that is not the pod's preferred array
	// waits before it asks for a free key, so that the preferred side wins
	// when both ask at once. Default TTL/2.
	PreferDelay time.Duration
}

// Client is a connection to the mediator's etcd cluster.
type Client struct {
	cli         *clientv3.Client
	endpoints   string
	ttl         time.Duration
	preferDelay time.Duration
}

// New connects to etcd at endpoints ("host:port"). It does not wait for
// etcd: a mediator that is down now is reported by the claims' health.
func New(endpoints []string, opts Options) (*Client, error) {
	if len(endpoints) == 0 {
		return nil, errdefs.InvalidArgument("endpoints", "the mediator needs at least one etcd endpoint (host:port)")
	}
	if opts.TTL <= 0 {
		opts.TTL = DefaultTTL
	}
	if opts.TTL < time.Second {
		return nil, errdefs.InvalidArgument("ttl", "the mediator's lease time is %s; etcd counts whole seconds, give at least 1s", opts.TTL)
	}
	if opts.PreferDelay <= 0 {
		opts.PreferDelay = opts.TTL / 2
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: endpoints, Logger: zap.NewNop(),
		// Calls are bounded by their contexts; keep the gRPC dial lazy.
		DialKeepAliveTime: opts.TTL, DialKeepAliveTimeout: opts.TTL})
	if err != nil {
		return nil, errdefs.WithKind(errdefs.KindInvalidArgument, fmt.Errorf("mediator at %s: %w", strings.Join(endpoints, ","), err))
	}
	return &Client{cli: cli, endpoints: strings.Join(endpoints, ","), ttl: opts.TTL, preferDelay: opts.PreferDelay}, nil
}

// Close ends the connection. Claims must be closed first.
func (c *Client) Close() error { return c.cli.Close() }

// TTL is the lease time of the keys this client holds.
func (c *Client) TTL() time.Duration { return c.ttl }

// Scoped is the name at the mediator of pod, whose writes array (its id)
// orders.
func Scoped(array, pod string) string { return array + "/" + pod }

// Key is the mediator key of a pod.
func Key(pod string) string { return keyPrefix + pod + "/online" }

// AheadKey is the key naming the side whose copy of a pod holds
// acknowledged writes the other's lacks.
func AheadKey(pod string) string { return keyPrefix + pod + "/ahead" }

// Holder returns who holds a pod's key ("" when nobody does).
func (c *Client) Holder(ctx context.Context, pod string) (string, error) {
	return c.value(ctx, Key(pod))
}

// Ahead returns the side whose mark stands on pod: it acknowledged
// writes the other side's copy lacks ("" when none).
func (c *Client) Ahead(ctx context.Context, pod string) (string, error) {
	return c.value(ctx, AheadKey(pod))
}

// ForgetMark drops owner's mark on pod, for an operator who has given
// the array owner up for lost: the writes it acknowledged while it
// carried the pod alone are then lost, and the pod's other array may take
// the pod with its own copy. It deletes the mark only while it still
// names owner and no array holds the pod's key, in one transaction: an
// owner that holds the key is alive and carries the pod, and must hand it
// back instead. Anything else is a FailedPrecondition saying what stands.
func (c *Client) ForgetMark(ctx context.Context, pod, owner string) error {
	key, ahead := Key(pod), AheadKey(pod)
	r, err := c.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.Value(ahead), "=", owner), clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
		Then(clientv3.OpDelete(ahead)).
		Else(clientv3.OpGet(keyPrefix+pod+"/", clientv3.WithPrefix())).Commit()
	if err != nil {
		return c.unreachable(err)
	}
	if r.Succeeded {
		return nil
	}
	var holder, marked string
	for _, kv := range r.Responses[0].GetResponseRange().GetKvs() {
		switch string(kv.Key) {
		case key:
			holder = string(kv.Value)
		case ahead:
			marked = string(kv.Value)
		}
	}
	switch {
	case marked == "":
		return errdefs.FailedPrecondition("pod %s has no mark at the mediator: no array holds writes the other lacks, so there is nothing to forget", pod)
	case marked != owner:
		return errdefs.FailedPrecondition("pod %s is marked by array %q, not %q: check which array is lost, and name that one", pod, marked, owner)
	default:
		return errdefs.FailedPrecondition("array %q holds pod %s's key at the mediator: it is alive and carries the pod; "+
			"reconnect the arrays so it hands the pod back, or stop it for good and wait a few seconds for its lease to end", holder, pod)
	}
}

// value reads key ("" when it is not there).
func (c *Client) value(ctx context.Context, key string) (string, error) {
	r, err := c.cli.Get(ctx, key)
	if err != nil {
		return "", c.unreachable(err)
	}
	if len(r.Kvs) == 0 {
		return "", nil
	}
	return string(r.Kvs[0].Value), nil
}

func (c *Client) unreachable(err error) error {
	var typed *errdefs.Error
	if errors.As(err, &typed) || errors.Is(err, context.Canceled) {
		return err
	}
	return errdefs.WithKind(errdefs.KindUnavailable, fmt.Errorf("the mediator (etcd at %s) did not answer: %w", c.endpoints, err))
}

// Status is what a claim knows of its key and of the mediator.
type Status struct {
	Held bool
	// Reachable says the last call to etcd succeeded.
	Reachable bool
	// Holder is who held the key at the last look, when not this side.
	Holder string
	Err    error // the last failed call, while not reachable
	// Yielding says this side gave the key up for the other (Yield) and
	// does not ask for it again before the time Yield set.
	Yielding bool
}

// Claim keeps one side's hold on one pod's key: it takes the key when it
// is free and keeps its lease alive, until Close. A key held by the other
// side is never taken from it; it becomes free when that side's lease ends.
type Claim struct {
	c         *Client
	pod       string
	owner     string
	preferred bool
	// carry: taking the key is taking the pod over from the preferred
	// array, so the same transaction sets this side's mark.
	carry  bool
	notify func(Status)
	kick   chan struct{}
	cancel context.CancelFunc
	done   chan struct{}

	mu        sync.Mutex
	lease     clientv3.LeaseID
	heldUntil time.Time // zero when not held
	reachable bool
	holder    string
	lastErr   error
	// heldAt is the store's revision at which Acquire last found the key
	// held by the other side (0: it did not); freed says that hold has
	// since ended, seen by sleep.
	heldAt int64
	freed  bool
	// yieldUntil: Yield gave the key up, and it is not asked for again
	// before then; yielded is the lease Yield dropped, for the claim's
	// goroutine to revoke.
	yieldUntil time.Time
	yielded    clientv3.LeaseID
}

// Claim starts holding pod's key for owner (this side's name). preferred
// says owner is the pod's preferred array. notify, if set, is called (from
// the claim's goroutine, with no lock held) when Held or Reachable changes.
func (c *Client) Claim(pod, owner string, preferred bool, notify func(Status)) *Claim {
	return c.claim(&Claim{pod: pod, owner: owner, preferred: preferred, notify: notify})
}

// ClaimToCarry is Claim for the pod's non-preferred array, whose
// preferred array is gone: it takes the key only while no mark stands
// but its own, and sets its mark in the same transaction, since from then
// on it acknowledges writes the preferred array's copy lacks. Release
// gives both up.
//
// preferred says this side is the one that carries the pod on at a
// partition (the pod prefers its peer): it asks without deference.
func (c *Client) ClaimToCarry(pod, owner string, preferred bool, notify func(Status)) *Claim {
	return c.claim(&Claim{pod: pod, owner: owner, carry: true, preferred: preferred, notify: notify})
}

// SetPreferred changes whether this side is the pod's preferred side when
// both ask for the key at once.
func (cl *Claim) SetPreferred(preferred bool) {
	cl.mu.Lock()
	cl.preferred = preferred
	cl.mu.Unlock()
}

// Yield gives the key up for the other side to take: Held is false when
// it returns, the claim's goroutine revokes the lease (so the key is free
// at once, not when the lease ends), and the key is asked for again only
// after d, then without deference, the other side having had its turn.
// It does nothing unless this side holds the key. It never blocks.
func (cl *Claim) Yield(d time.Duration) bool {
	cl.mu.Lock()
	if !cl.heldLocked() {
		cl.mu.Unlock()
		return false
	}
	cl.yielded, cl.lease, cl.heldUntil = cl.lease, 0, time.Time{}
	cl.yieldUntil = time.Now().Add(d)
	cl.mu.Unlock()
	cl.Kick()
	return true
}

// yieldingLocked says Yield's wait is not over. Called with cl.mu held.
func (cl *Claim) yieldingLocked() bool {
	return !cl.yieldUntil.IsZero() && time.Now().Before(cl.yieldUntil)
}

func (c *Client) claim(cl *Claim) *Claim {
	ctx, cancel := context.WithCancel(context.Background())
	cl.c, cl.kick, cl.cancel, cl.done = c, make(chan struct{}, 1), cancel, make(chan struct{})
	go cl.run(ctx)
	return cl
}

// Pod is the pod's name at the mediator, as the claim asks for it.
func (cl *Claim) Pod() string { return cl.pod }

// Mark records at the mediator that this side's copy holds writes the
// other's lacks, before the first is acknowledged. Only the key's holder
// may: a side whose lease ended gets FailedPrecondition, and must not
// acknowledge the write.
func (cl *Claim) Mark(ctx context.Context) error {
	cl.mu.Lock()
	lease := cl.lease
	held := cl.heldLocked()
	cl.mu.Unlock()
	if !held {
		return errdefs.FailedPrecondition("pod %s: this array does not hold the pod's key at the mediator", cl.pod)
	}
	r, err := cl.c.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.Value(Key(cl.pod)), "=", cl.owner), clientv3.Compare(clientv3.LeaseValue(Key(cl.pod)), "=", lease)).
		Then(clientv3.OpPut(AheadKey(cl.pod), cl.owner)).Commit()
	if err != nil {
		return cl.c.unreachable(err)
	}
	if !r.Succeeded {
		return errdefs.FailedPrecondition("pod %s: this array's lease on the pod's key ended", cl.pod)
	}
	return nil
}

// Unmark clears this side's mark, once the other side's copy holds every
// acknowledged write again. Another side's mark is left alone.
func (cl *Claim) Unmark(ctx context.Context) error { return cl.c.Unmark(ctx, cl.pod, cl.owner) }

// Unmark clears owner's mark on pod, and leaves another side's alone.
func (c *Client) Unmark(ctx context.Context, pod, owner string) error {
	_, err := c.cli.Txn(ctx).If(clientv3.Compare(clientv3.Value(AheadKey(pod)), "=", owner)).
		Then(clientv3.OpDelete(AheadKey(pod))).Commit()
	if err != nil {
		return c.unreachable(err)
	}
	return nil
}

// Release ends a carrying claim once the preferred array holds every
// write this side took: this side's mark goes first, then the key.
func (cl *Claim) Release(ctx context.Context) error {
	if err := cl.Unmark(ctx); err != nil {
		return err
	}
	cl.Close(ctx)
	return nil
}

// Held says this side holds the key now: its lease is alive at etcd at
// least until a time that has not passed. It never blocks.
func (cl *Claim) Held() bool {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	return cl.heldLocked()
}

func (cl *Claim) heldLocked() bool {
	return !cl.heldUntil.IsZero() && time.Now().Before(cl.heldUntil)
}

// Status reports the claim and the mediator's health.
func (cl *Claim) Status() Status {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	return cl.statusLocked()
}

func (cl *Claim) statusLocked() Status {
	s := Status{Held: cl.heldLocked(), Reachable: cl.reachable, Holder: cl.holder, Yielding: cl.yieldingLocked()}
	if !cl.reachable {
		s.Err = cl.lastErr
	}
	return s
}

// Kick asks the claim to look at the key now rather than at its next tick.
func (cl *Claim) Kick() {
	select {
	case cl.kick <- struct{}{}:
	default:
	}
}

// Close stops the claim and gives the key up (best effort, bounded by ctx)
// so the other side need not wait for the lease to end.
func (cl *Claim) Close(ctx context.Context) {
	cl.cancel()
	<-cl.done
	cl.mu.Lock()
	lease := cl.lease
	cl.lease, cl.heldUntil = 0, time.Time{}
	cl.mu.Unlock()
	if lease != 0 {
		ctx, cancel := context.WithTimeout(ctx, cl.c.ttl)
		defer cancel()
		_, _ = cl.c.cli.Revoke(ctx, lease)
	}
}

func (cl *Claim) run(ctx context.Context) {
	defer close(cl.done)
	tick := cl.c.ttl / 3
	last := cl.Status()
	report := func() {
		if s := cl.Status(); s.Held != last.Held || s.Reachable != last.Reachable {
			last = s
			if cl.notify != nil {
				cl.notify(s)
			}
		}
	}
	for {
		// Before the step too: a lease that ran out while etcd was away
		// is reported even when the step then takes the key again.
		report()
		cl.step(ctx)
		if ctx.Err() != nil {
			return
		}
		report()
		// Wake at the lease's end too, so a lost hold is reported on time.
		wait := tick
		cl.mu.Lock()
		heldAt := cl.heldAt
		cl.heldAt = 0
		if cl.heldLocked() {
			wait = min(wait, time.Until(cl.heldUntil)+time.Millisecond)
		}
		if cl.yieldingLocked() {
			wait = min(wait, time.Until(cl.yieldUntil)+time.Millisecond)
		}
		cl.mu.Unlock()
		if !cl.sleep(ctx, wait, heldAt) {
			return
		}
	}
}

// sleep waits for the next step: wait, a Kick, or, when the other side
// held the key at the store's revision heldAt (non-zero), the end of
// that hold, so the key is asked for the moment it is free rather than
// up to a tick later. It reports false when ctx ended.
func (cl *Claim) sleep(ctx context.Context, wait time.Duration, heldAt int64) bool {
	wctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	var released clientv3.WatchChan // nil (never ready) unless heldAt is set
	if heldAt != 0 {
		released = cl.c.cli.Watch(wctx, Key(cl.pod), clientv3.WithRev(heldAt+1))
	}
	for {
		select {
		case <-ctx.Done():
			return false
		case <-wctx.Done():
			return true
		case <-cl.kick:
			return true
		case resp, ok := <-released:
			if !ok || resp.Err() != nil {
				released = nil // wait out the tick
				continue
			}
			for _, ev := range resp.Events {
				if ev.Type == clientv3.EventTypeDelete {
					cl.mu.Lock()
					cl.freed = true
					cl.mu.Unlock()
					return true
				}
			}
		}
	}
}

// step keeps the lease alive when the claim has one, or asks for the key
// (after revoking the lease Yield gave up, and only once its wait is over).
func (cl *Claim) step(ctx context.Context) {
	cl.mu.Lock()
	lease, yielded, yielding := cl.lease, cl.yielded, cl.yieldingLocked()
	cl.yielded = 0
	cl.mu.Unlock()
	if yielded != 0 {
		rctx, cancel := context.WithTimeout(ctx, cl.c.ttl/3)
		_, err := cl.c.cli.Revoke(rctx, yielded)
		cancel()
		if err != nil && !isLeaseGone(err) && ctx.Err() == nil {
			// The lease then ends by itself, within the TTL.
			cl.mu.Lock()
			cl.reachable, cl.lastErr = false, cl.c.unreachable(err)
			cl.mu.Unlock()
		}
	}
	if yielding {
		return
	}
	if lease != 0 && cl.keepAlive(ctx, lease) {
		return
	}
	if err := cl.Acquire(ctx); err != nil && !errdefs.IsFailedPrecondition(err) && ctx.Err() == nil {
		cl.mu.Lock()
		cl.reachable, cl.lastErr = false, err
		cl.mu.Unlock()
	}
}

// keepAlive renews the lease once. It says whether the claim may still
// hold the key (renewed, or etcd did not answer and the lease has not run
// out yet); false means the key must be asked for again.
func (cl *Claim) keepAlive(ctx context.Context, lease clientv3.LeaseID) bool {
	cctx, cancel := context.WithTimeout(ctx, cl.c.ttl/3)
	defer cancel()
	sent := time.Now()
	r, err := cl.c.cli.KeepAliveOnce(cctx, lease)
	cl.mu.Lock()
	defer cl.mu.Unlock()
	switch {
	case cl.lease != lease:
		// Yield gave this lease up meanwhile.
		return false
	case err == nil && r.TTL > 0:
		cl.heldUntil, cl.reachable, cl.holder = sent.Add(time.Duration(r.TTL)*time.Second), true, ""
		return true
	case err == nil || isLeaseGone(err):
		// etcd answered: the lease ended, and the key with it.
		cl.lease, cl.heldUntil, cl.reachable = 0, time.Time{}, true
		return false
	}
	// Unknown: Held turns false by itself when heldUntil passes.
	cl.reachable, cl.lastErr = false, cl.c.unreachable(err)
	if cl.heldLocked() {
		return true
	}
	cl.lease, cl.heldUntil = 0, time.Time{}
	return false
}

func isLeaseGone(err error) bool { return errors.Is(err, rpctypes.ErrLeaseNotFound) }

// Acquire asks for the pod's key once, and returns nil when this side
// holds it. A side that is not preferred, finding the key free, first
// gives the preferred one PreferDelay to ask, unless it saw the other
// side hold the key and let it go (its lease ran out: it had its turn).
// The key held by the other side, or the other side's mark, is a
// FailedPrecondition error naming it; etcd not answering is Unavailable.
func (cl *Claim) Acquire(ctx context.Context) error {
	if cl.Held() {
		return nil
	}
	k, err := cl.look(ctx)
	if err != nil {
		return err
	}
	cl.mu.Lock()
	if cl.yieldingLocked() {
		cl.mu.Unlock()
		return errdefs.FailedPrecondition("pod %s: this array gave the pod's key up for the other side and asks again later", cl.pod)
	}
	// A side whose Yield is over had its deference.
	freed := cl.freed || !cl.yieldUntil.IsZero()
	cl.freed, cl.yieldUntil = false, time.Time{}
	preferred := cl.preferred
	cl.mu.Unlock()
	if k.holder == "" && !preferred && !freed {
		t := time.NewTimer(cl.c.preferDelay)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		if k, err = cl.look(ctx); err != nil {
			return err
		}
	}
	actx, cancel := context.WithTimeout(ctx, cl.c.ttl/2)
	defer cancel()
	sent := time.Now()
	key, ahead := Key(cl.pod), AheadKey(cl.pod)
	g, err := cl.c.cli.Grant(actx, int64(cl.c.ttl/time.Second))
	if err != nil {
		return cl.c.unreachable(err)
	}
	ops := []clientv3.Op{clientv3.OpPut(key, cl.owner, clientv3.WithLease(g.ID))}
	if cl.carry {
		ops = append(ops, clientv3.OpPut(ahead, cl.owner))
	}
	// Write only if neither key changed since they were read: the key
	// free or still ours (a restart of this side or of etcd), and no mark
	// but ours.
	r, err := cl.c.cli.Txn(actx).
		If(clientv3.Compare(clientv3.ModRevision(key), "=", k.keyRev), clientv3.Compare(clientv3.ModRevision(ahead), "=", k.aheadRev)).
		Then(ops...).Commit()
	if err != nil || !r.Succeeded {
		rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), cl.c.ttl/2)
		_, _ = cl.c.cli.Revoke(rctx, g.ID)
		rcancel()
		if err != nil {
			return cl.c.unreachable(err)
		}
		return cl.refused("", errdefs.FailedPrecondition("pod %s: its keys at the mediator changed while this array asked; it asks again", cl.pod))
	}
	cl.mu.Lock()
	old := cl.lease
	cl.lease, cl.heldUntil, cl.reachable, cl.holder = g.ID, sent.Add(time.Duration(g.TTL)*time.Second), true, ""
	cl.mu.Unlock()
	if old != 0 && old != g.ID {
		_, _ = cl.c.cli.Revoke(actx, old)
	}
	return nil
}

// keys is what Acquire read of a pod's keys at the mediator.
type keys struct {
	keyRev, aheadRev int64 // 0 for a key that is not there
	holder           string
	rev              int64 // the store's revision at the read
}

// look reads the pod's key and mark, and refuses when either stands for
// the other side.
func (cl *Claim) look(ctx context.Context) (keys, error) {
	ctx, cancel := context.WithTimeout(ctx, cl.c.ttl/2)
	defer cancel()
	key, ahead := Key(cl.pod), AheadKey(cl.pod)
	got, err := cl.c.cli.Get(ctx, keyPrefix+cl.pod+"/", clientv3.WithPrefix())
	if err != nil {
		return keys{}, cl.c.unreachable(err)
	}
	k := keys{rev: got.Header.Revision}
	var marked string
	for _, kv := range got.Kvs {
		switch string(kv.Key) {
		case key:
			k.keyRev, k.holder = kv.ModRevision, string(kv.Value)
		case ahead:
			k.aheadRev, marked = kv.ModRevision, string(kv.Value)
		}
	}
	if k.holder != "" && k.holder != cl.owner {
		cl.mu.Lock()
		cl.heldAt = k.rev
		cl.mu.Unlock()
		return k, cl.refused(k.holder, errdefs.FailedPrecondition("pod %s is held at the mediator by %q; it is free again when that side's lease ends", cl.pod, k.holder))
	}
	if marked != "" && marked != cl.owner {
		return k, cl.refused(k.holder, errdefs.FailedPrecondition("pod %s: array %q acknowledged writes this array's copy lacks; "+
			"this array takes the pod only after %q is back and has resynced it (or, if %q is lost for good, after an operator gives its writes up: "+
			"volrep mediator forget-mark %s --array %s --accept-data-loss)",
			cl.pod, marked, marked, marked, cl.pod, marked))
	}
	return k, nil
}

// refused notes an answer from etcd that this side may not take the key.
func (cl *Claim) refused(holder string, err error) error {
	cl.mu.Lock()
	cl.holder, cl.reachable = holder, true
	cl.mu.Unlock()
	return err
}
