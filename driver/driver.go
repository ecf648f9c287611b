package driver

import (
	"context"
	"slices"
	"strings"
	"sync"

	"github.com/volrep/volrep/config"
	"github.com/volrep/volrep/errdefs"
)

// Driver runs every enabled backend of one configuration. Reload swaps
// backends in and out while it runs.
type Driver struct {
	opts Options

	mu       sync.RWMutex
	backends []*Backend
	byName   map[string]*Backend
	// runCtx is Run's context once Run has started: backends started
	// later, by Reload, run under it too.
	runCtx  context.Context
	running map[*Backend]*runner
	wg      sync.WaitGroup
}

// runner is one backend's run loop.
type runner struct {
	cancel context.CancelFunc
	done   chan struct{}
}

// New creates the backends; Run brings them up.
func New(cfgs []config.Backend, opts Options) *Driver {
	opts.defaults()
	d := &Driver{opts: opts, running: map[*Backend]*runner{}}
	d.backends, d.byName = d.build(cfgs, nil)
	return d
}

// build makes the backends of cfgs, reusing those of old whose
// configuration is unchanged.
func (d *Driver) build(cfgs []config.Backend, old map[string]*Backend) ([]*Backend, map[string]*Backend) {
	list := make([]*Backend, 0, len(cfgs))
	byName := make(map[string]*Backend, len(cfgs))
	for _, c := range cfgs {
		b, ok := old[c.Section]
		if !ok || !sameConfig(b.conf, c) {
			// A rebuilt backend takes over its predecessor's journal: loading
			// it afresh would fail the operations still running.
			var j *opJournal
			if ok {
				j = b.journal
			}
			b = newBackend(c, d.opts, j)
		} else {
			b.logSchedule()
		}
		list = append(list, b)
		byName[c.Section] = b
	}
	return list, byName
}

// Run converges every backend and keeps them converged until ctx ends.
func (d *Driver) Run(ctx context.Context) {
	d.mu.Lock()
	d.runCtx = ctx
	for _, b := range d.backends {
		d.start(b)
	}
	d.mu.Unlock()
	<-ctx.Done()
	d.wg.Wait()
}

// start runs b under runCtx; d.mu is held.
func (d *Driver) start(b *Backend) {
	ctx, cancel := context.WithCancel(d.runCtx)
	r := &runner{cancel: cancel, done: make(chan struct{})}
	d.running[b] = r
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		defer close(r.done)
		b.run(ctx)
	}()
}

// follow journals operation id of b until it ends or the driver stops;
// without Run (no run context) the journal keeps the first record only.
func (d *Driver) follow(b *Backend, id string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.runCtx == nil || d.runCtx.Err() != nil {
		return
	}
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		b.follow(d.runCtx, id)
	}()
}

// spawn runs fn under the driver's run context, as a goroutine Run waits
// for; false if the driver is not running.
func (d *Driver) spawn(fn func(ctx context.Context)) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.runCtx == nil || d.runCtx.Err() != nil {
		return false
	}
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		fn(d.runCtx)
	}()
	return true
}

// Close releases the array connections; call it after Run returns.
func (d *Driver) Close() {
	d.mu.RLock()
	defer d.mu.RUnlock()
	for _, b := range d.backends {
		b.close()
	}
}

// Backend returns a backend by section or volume_backend_name.
func (d *Driver) Backend(name string) (*Backend, error) {
	d.mu.RLock()
	defer d.mu.RUnlock()
	if b, ok := d.byName[name]; ok {
		return b, nil
	}
	for _, b := range d.backends {
		if b.cfg.VolumeBackendName == name {
			return b, nil
		}
	}
	names := make([]string, 0, len(d.backends))
	for _, b := range d.backends {
		names = append(names, b.cfg.Section)
	}
	slices.Sort(names)
	return nil, errdefs.NotFound("backend %q is not configured; enabled backends: [%s]", name, strings.Join(names, ", "))
}

// States reports every backend, in enabled_backends order.
func (d *Driver) States() []State {
	d.mu.RLock()
	defer d.mu.RUnlock()
	out := make([]State, len(d.backends))
	for i, b := range d.backends {
		out[i] = b.State()
	}
	return out
}
