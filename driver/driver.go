package driver

import (
	"context"
	"slices"
	"strings"
	"sync"

	"github.com/volrep/volrep/config"
	"github.com/volrep/volrep/errdefs"
)

// Driver runs every enabled backend of one configuration.
type Driver struct {
	opts     Options
	backends []*Backend
	byName   map[string]*Backend
	wg       sync.WaitGroup
}

// New creates the backends; Run brings them up.
func New(cfgs []config.Backend, opts Options) *Driver {
	opts.defaults()
	d := &Driver{opts: opts, byName: map[string]*Backend{}}
	for _, c := range cfgs {
		b := newBackend(c, opts)
		d.backends = append(d.backends, b)
		d.byName[c.Section] = b
	}
	return d
}

// Run converges every backend and keeps them converged until ctx ends.
func (d *Driver) Run(ctx context.Context) {
	for _, b := range d.backends {
		d.wg.Add(1)
		go func() {
			defer d.wg.Done()
			b.run(ctx)
		}()
	}
	d.wg.Wait()
}

// Close releases the array connections; call it after Run returns.
func (d *Driver) Close() {
	for _, b := range d.backends {
		b.close()
	}
}

// Backend returns a backend by section or volume_backend_name.
func (d *Driver) Backend(name string) (*Backend, error) {
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
	out := make([]State, len(d.backends))
	for i, b := range d.backends {
		out[i] = b.State()
	}
	return out
}
