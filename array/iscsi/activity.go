package iscsi

import (
	"context"
	"sync"
	"sync/atomic"
)

// unit is what the server keeps of one logical unit (by NAA) across every
// session that sees it.
type unit struct {
	resets atomic.Uint64 // LOGICAL UNIT RESETs, here and at the other target of a shared unit
	// lastReset is the server's reset clock (Server.resetClock) at the
	// unit's last LOGICAL UNIT RESET, here or at the other target. A
	// command that arrived before it but had not begun to run, as a write
	// of another session still awaiting its Data-Out, is answered with
	// the reset's unit attention rather than run: the reset ended it, and
	// its host reissues it.
	lastReset atomic.Uint64
	running   activity
	pr        reservations
}

// resetAt records a reset at clock tick t; resets racing one another
// leave the latest tick.
func (u *unit) resetAt(t uint64) {
	for {
		old := u.lastReset.Load()
		if old >= t || u.lastReset.CompareAndSwap(old, t) {
			return
		}
	}
}

// endedByReset says whether a command that arrived at clock tick arrived
// (and begins now) was ended by a reset of the unit.
func (u *unit) endedByReset(arrived uint64) bool {
	return arrived < u.lastReset.Load()
}

// reset records a LOGICAL UNIT RESET of the unit, here or at the other
// target of a shared unit, at tick t of the server's reset clock. It
// returns the wait for the commands that were running when it came.
func (u *unit) reset(t uint64) (drain func(context.Context) error) {
	u.resetAt(t)
	u.resets.Add(1)
	return u.running.drainer(nil)
}

// activity tracks the commands running on a logical unit through this
// server, from every session, by I_T nexus, so that a LOGICAL UNIT RESET
// can wait for those that began before it, and a PREEMPT AND ABORT for
// those of the nexuses it preempted. SAM ends a reset only once every task of
// the unit, for every I_T nexus, is done: a host that sends I/O down
// several paths reissues what the reset cut short, and must not have an
// older write land after the new one.
type activity struct {
	mu      sync.Mutex
	next    uint64
	running map[uint64]nexus
	// ended is closed, and replaced, when a command ends while a drain
	// waits (waiters > 0), so commands cost no allocation otherwise.
	ended   chan struct{}
	waiters int
}

// begin counts a command of nexus from as running until end is called.
func (a *activity) begin(from nexus) (end func()) {
	a.mu.Lock()
	if a.running == nil {
		a.running = map[uint64]nexus{}
	}
	n := a.next
	a.next++
	a.running[n] = from
	a.mu.Unlock()
	return func() {
		a.mu.Lock()
		delete(a.running, n)
		if a.waiters > 0 {
			close(a.ended)
			a.ended = make(chan struct{})
		}
		a.mu.Unlock()
	}
}

// drain waits until every command of the nexuses only matches (nil:
// every nexus) begun before it was called has ended, or ctx is done.
func (a *activity) drain(ctx context.Context, only func(nexus) bool) error {
	return a.drainer(only)(ctx)
}

// drainer returns drain as of now: a wait for the commands running now,
// to be waited for later.
func (a *activity) drainer(only func(nexus) bool) func(context.Context) error {
	a.mu.Lock()
	upto := a.next
	a.mu.Unlock()
	return func(ctx context.Context) error { return a.drainTo(ctx, upto, only) }
}

// drainTo waits until every command of the nexuses only matches numbered
// below upto has ended, or ctx is done.
func (a *activity) drainTo(ctx context.Context, upto uint64, only func(nexus) bool) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	for {
		busy := false
		for n, from := range a.running {
			if n < upto && (only == nil || only(from)) {
				busy = true
				break
			}
		}
		if !busy {
			return nil
		}
		if a.ended == nil {
			a.ended = make(chan struct{})
		}
		ended := a.ended
		a.waiters++
		a.mu.Unlock()
		var err error
		select {
		case <-ended:
		case <-ctx.Done():
			err = ctx.Err()
		}
		a.mu.Lock()
		a.waiters--
		if err != nil {
			return err
		}
	}
}
