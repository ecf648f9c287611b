package config

import (
	"path"
	"slices"
	"strings"
)

// hostPrefKey maps the hosts the driver creates to their preferred arrays.
const hostPrefKey = "volrep_host_preferred_arrays"

// HostPreference is one entry of volrep_host_preferred_arrays: the iSCSI
// hosts the driver creates for connectors whose host name matches Pattern
// prefer Array's paths to pod volumes (active/optimized there,
// active/non-optimized at the pod's other array).
type HostPreference struct {
	// Pattern is a shell glob (path.Match) on the connector's host name,
	// as Nova reports it.
	Pattern string
	// Array is "primary" or the backend_id of a sync replication_device.
	Array string
}

// PreferenceOf returns the array the first entry that matches host
// names, and whether one does.
func PreferenceOf(prefs []HostPreference, host string) (string, bool) {
	if host == "" {
		return "", false
	}
	for _, p := range prefs {
		if ok, _ := path.Match(p.Pattern, host); ok {
			return p.Array, true
		}
	}
	return "", false
}

// hostPreferences reads volrep_host_preferred_arrays: comma-separated
// PATTERN:ARRAY entries, where ARRAY is "primary" or a sync target's
// backend_id. The first entry whose pattern matches a host applies.
func (p *parser) hostPreferences(to *Problems, name string, b Backend, sections ...string) []HostPreference {
	v, ok := p.first(hostPrefKey, sections...)
	if !ok || strings.TrimSpace(v.text) == "" {
		return nil
	}
	syncIDs := []string{}
	for _, d := range b.SyncTargets() {
		syncIDs = append(syncIDs, d.BackendID)
	}
	if len(syncIDs) == 0 {
		// A setting that does nothing must not pass silently.
		p.report(to, v.line, v.section, v.key,
			"%s in [%s] has no effect: backend [%s] has no sync replication_device (type:sync), so no volume of it has paths at two arrays; add one or delete the line",
			v.key, v.section, name)
		return nil
	}
	ids := append([]string{"primary"}, syncIDs...)
	const example = "for example compute-b-*:site-b, *:primary"
	var out []HostPreference
	for _, part := range strings.Split(v.text, ",") {
		part = strings.TrimSpace(part)
		i := strings.LastIndex(part, ":")
		if i <= 0 || i == len(part)-1 {
			p.report(to, v.line, v.section, v.key, "%s in [%s] has entry %s; write HOST_PATTERN:ARRAY entries separated by commas, %s%s",
				v.key, v.section, shown(part), example, inlineCommentHint(v.text))
			return nil
		}
		pattern, id := strings.TrimSpace(part[:i]), strings.TrimSpace(part[i+1:])
		if _, err := path.Match(pattern, ""); err != nil {
			p.report(to, v.line, v.section, v.key, "%s in [%s]: host pattern %s is not a valid glob (%v); use *, ? and [...] as in a shell",
				v.key, v.section, shown(pattern), err)
			return nil
		}
		if !slices.Contains(ids, id) {
			p.report(to, v.line, v.section, v.key, "%s in [%s]: entry %s names array %q, which is neither \"primary\" nor the backend_id of a sync replication_device of [%s]%s",
				v.key, v.section, shown(part), id, name, orRemove(suggestion(id, ids)))
			return nil
		}
		if slices.ContainsFunc(out, func(h HostPreference) bool { return h.Pattern == pattern }) {
			p.report(to, v.line, v.section, v.key, "%s in [%s] lists host pattern %s twice; the first entry would always apply, so delete the other",
				v.key, v.section, shown(pattern))
			return nil
		}
		out = append(out, HostPreference{Pattern: pattern, Array: id})
	}
	return out
}

// hostPreferencesText is the setting as the effective configuration shows it.
func hostPreferencesText(prefs []HostPreference) string {
	parts := make([]string, len(prefs))
	for i, h := range prefs {
		parts[i] = h.Pattern + ":" + h.Array
	}
	return strings.Join(parts, ", ")
}
