package driver

import (
	"context"
	"slices"

	"github.com/volrep/volrep/array"
	"github.com/volrep/volrep/config"
	"github.com/volrep/volrep/errdefs"
)

// Hosts' preferred arrays (volrep_host_preferred_arrays): the hosts the
// driver creates for connectors an entry matches get that array's name
// as their preferred array at every array of the pod, so their multipath
// sees the preferred array's paths to pod volumes as active/optimized and
// the other's as active/non-optimized. An entry that matches a host owns
// its preference: the driver sets it on each attach when it differs, and
// deletes the idle host as any it made. A host no entry matches is the
// operator's to set ('volrep host set-preferred-arrays'), and the driver
// neither changes its preference nor deletes it while it has one.

// hostPreference returns the preferred arrays (array names) the
// configuration gives the connector's host; ok is false when no entry
// matches it.
func (b *Backend) hostPreference(ctx context.Context, host string) (names []string, ok bool, err error) {
	id, ok := config.PreferenceOf(b.cfg.HostPreferences, host)
	if !ok {
		return nil, false, nil
	}
	name, err := b.arrayName(ctx, id)
	if err != nil {
		return nil, true, err
	}
	return []string{name}, true, nil
}

// arrayName is the name of the array behind "primary" or a sync target's
// backend_id, as hosts' preferred arrays name it; asked once, then kept.
func (b *Backend) arrayName(ctx context.Context, id string) (string, error) {
	if n, ok := b.arrayNames.Load(id); ok {
		return n.(string), nil
	}
	c := b.primary
	if id != "primary" {
		t, ok := b.targets[id]
		if !ok {
			return "", errdefs.FailedPrecondition("volrep_host_preferred_arrays names %s, which is no replication_device of backend %s", id, b.cfg.Section)
		}
		c = t
	}
	if c.Array == nil {
		return "", errdefs.Unavailable("no connection to array %s of backend %s", id, b.cfg.Section)
	}
	ctx, cancel := context.WithTimeout(ctx, peerTimeout)
	defer cancel()
	info, err := c.Array.Info(ctx)
	if err != nil {
		return "", err
	}
	b.arrayNames.Store(id, info.Name)
	return info.Name, nil
}

// preferenceFor is the preference a host the driver creates for c gets,
// or nil; an array that cannot be named now costs the host its
// preference until a later attach sets it, never the attach.
func (b *Backend) preferenceFor(ctx context.Context, c Connector) []string {
	names, _, err := b.hostPreference(ctx, c.Host)
	if err != nil {
		b.log.Warn("host created without its preferred array (volrep_host_preferred_arrays): the array's name is unknown; the next attach sets it",
			"host", c.Host, "err", err)
		return nil
	}
	return names // nil when no entry matches
}

// matchPreference sets the configured preference on a host the driver
// created when it differs (the setting changed, or the array could not be
// named when the host was created).
func (b *Backend) matchPreference(ctx context.Context, a array.Array, h array.Host, c Connector) error {
	if h.Labels[labelHostCreator] != hostCreator {
		return nil
	}
	want, ok, err := b.hostPreference(ctx, c.Host)
	if !ok || err != nil || slices.Equal(want, h.PreferredArrays) {
		return nil // an unnamed array is retried at the next attach
	}
	if _, err := a.SetHostPreferredArrays(ctx, h.Name, want); err != nil {
		return err
	}
	b.log.Info("host's preferred arrays set (volrep_host_preferred_arrays)", "host", h.Name, "preferred_arrays", want, "were", h.PreferredArrays)
	return nil
}

// keepIdleHost says an idle host the driver created keeps living: it has
// a preference that no entry of the configuration owns, so the operator
// set it, and deleting the host would drop it.
func (b *Backend) keepIdleHost(h array.Host) bool {
	if len(h.PreferredArrays) == 0 {
		return false
	}
	_, owned := config.PreferenceOf(b.cfg.HostPreferences, h.Labels[labelConnectorHost])
	return !owned
}
