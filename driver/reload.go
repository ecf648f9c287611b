package driver

import (
	"context"
	"reflect"

	"github.com/volrep/volrep/config"
)

// ReloadResult says what a reload did to each backend section.
type ReloadResult struct {
	Added, Changed, Removed, Unchanged []string
}

// Reload brings the running backends in line with cfgs: a backend whose
// section is unchanged keeps running untouched (its volumes, connections
// and replication carry on); a changed one is stopped and started afresh
// from its new configuration; sections no longer enabled stop. Calls in
// flight on a stopped backend fail as its connections close, which is what
// a restart would do to them too.
func (d *Driver) Reload(ctx context.Context, cfgs []config.Backend) (ReloadResult, error) {
	d.mu.Lock()
	old := d.byName
	list, byName := d.build(cfgs, old)
	var res ReloadResult
	for _, b := range list {
		prev, ok := old[b.cfg.Section]
		switch {
		case !ok:
			res.Added = append(res.Added, b.cfg.Section)
		case prev != b:
			res.Changed = append(res.Changed, b.cfg.Section)
		default:
			res.Unchanged = append(res.Unchanged, b.cfg.Section)
		}
	}
	var stopped []*Backend
	for _, b := range d.backends {
		if byName[b.cfg.Section] != b {
			stopped = append(stopped, b)
			if _, ok := byName[b.cfg.Section]; !ok {
				res.Removed = append(res.Removed, b.cfg.Section)
			}
		}
	}
	d.backends, d.byName = list, byName
	var waits []*runner
	for _, b := range stopped {
		if r, ok := d.running[b]; ok {
			r.cancel()
			waits = append(waits, r)
			delete(d.running, b)
		}
	}
	for _, b := range list {
		if _, ok := d.running[b]; !ok && d.runCtx != nil {
			// A replaced backend starts down: health must not go on
			// showing its predecessor's state.
			d.opts.OnState(b.State())
			d.start(b)
		}
	}
	d.mu.Unlock()

	for _, r := range waits {
		select {
		case <-r.done:
		case <-ctx.Done():
			return res, ctx.Err()
		}
	}
	for _, b := range stopped {
		b.close()
	}
	return res, nil
}

// sameConfig reports whether a backend section is unchanged in effect: a
// section that only moved in the file keeps running. One with problems is
// always rebuilt, so its reasons carry the new line numbers.
func sameConfig(a, b config.Backend) bool {
	if len(a.Problems) > 0 || len(b.Problems) > 0 {
		return false
	}
	a.Line, b.Line = 0, 0
	return reflect.DeepEqual(a, b)
}
