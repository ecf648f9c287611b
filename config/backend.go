package config

import (
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/volrep/volrep/validation"
)

const (
	typeAsync            = "async"
	typeSync             = "sync"
	replicationDeviceKey = "replication_device"
	// reservedBackendID is what failover_host is given to fail back to the
	// primary array, so no replication target may take the name.
	reservedBackendID = "default"
)

// DefaultFailoverWait is how long a failover or failback waits, by
// default, for an array that is coming back before it gives up.
const DefaultFailoverWait = 30 * time.Second

// maxFailoverWait bounds volrep_failover_wait: Cinder's RPC to the
// volume service times out long before an hour.
const maxFailoverWait = 3600

// backendKeys are the backend keys volrep reads.
var backendKeys = []string{
	"volume_backend_name", "volume_driver", "san_ip", "pure_api_token", replicationDeviceKey,
	"pure_replica_interval_default", "pure_replica_retention_short_term_default",
	"pure_replica_retention_long_term_per_day_default", "pure_replica_retention_long_term_default",
	"pure_replication_pg_name", "pure_replication_pod_name",
	"volrep_sync_timeout", "volrep_preferred_array", hostPrefKey, mediatorKey, "volrep_pool", "volrep_failover_wait", "volrep_protocol",
	"reserved_percentage", "max_over_subscription_ratio",
}

// ignoredBackendKeys are generic Cinder and Pure driver options that a
// cinder.conf written for the Pure driver carries. They mean nothing to volrep
// (it has no host data path, CHAP or image cache of its own), but rejecting
// them would keep one file from serving both.
var ignoredBackendKeys = []string{
	// The Cinder driver's own options (deploy/cinder), in a file both read.
	"volrep_address", "volrep_token", "volrep_timeout",
	"use_multipath_for_image_xfer", "enforce_multipath_for_image_xfer",
	"use_chap_auth", "chap_username", "chap_password",
	"san_login", "san_password", "san_thin_provision",
	"driver_ssl_cert_verify", "driver_ssl_cert_path", "suppress_requests_ssl_warnings",
	"image_volume_cache_enabled", "image_volume_cache_max_size_gb", "image_volume_cache_max_count",
	"volume_clear", "volume_clear_size", "volume_dd_blocksize", "volume_copy_bps_limit",
	"target_helper", "target_protocol", "target_ip_address", "target_port",
	"backend_availability_zone", "report_discard_supported", "filter_function", "goodness_function",
	"pure_eradicate_on_delete", "pure_automatic_max_oversubscription_ratio", "pure_host_personality",
	"pure_iscsi_cidr", "pure_iscsi_cidr_list", "pure_nvme_cidr", "pure_nvme_cidr_list", "pure_nvme_transport",
}

var knownBackendKeys = slices.Concat(backendKeys, ignoredBackendKeys)

var deviceKeys = []string{"backend_id", "san_ip", "api_token", "type"}

// deviceKeyHint is what to write for a missing replication_device key.
var deviceKeyHint = map[string]string{
	"backend_id": "backend_id:NAME",
	"san_ip":     "san_ip:HOST[:PORT]",
	"api_token":  "api_token:TOKEN",
}

func (p *parser) readBackends(names []string) []Backend {
	// [backend_defaults] is checked on its own as well, so that its mistakes
	// show even when every backend overrides them.
	if _, ok := p.ix.headers[backendDefaultsSection]; ok {
		p.readBackend(backendDefaultsSection, 0)
	}
	enabled, _ := p.first("enabled_backends", defaultSection)
	enabledSet := map[string]bool{}
	for _, n := range names {
		enabledSet[n] = true
	}
	// A misspelt name is most likely meant for a section nobody enabled.
	var candidates []string
	for _, s := range p.ix.sections {
		if s != defaultSection && !isOwnSection(s) && !enabledSet[s] {
			candidates = append(candidates, s)
		}
	}
	// Real files have a handful of sections; a generated one must not make
	// the suggestions quadratic.
	suggestions := 100
	if len(candidates) > 1000 {
		suggestions = 0
	}
	seen := map[string]bool{}
	var backends []Backend
	for _, name := range names {
		switch {
		case seen[name]:
			p.report(nil, enabled.line, defaultSection, enabled.key, "enabled_backends in [DEFAULT] lists %q twice; list each backend once", name)
		case name == defaultSection || isOwnSection(normSection(name)):
			b := newBackend(name, enabled.line)
			p.report(&b.Problems, enabled.line, defaultSection, enabled.key,
				"enabled_backends in [DEFAULT] lists %q, which is a volrep section, not a backend; remove it from the list", name)
			backends = append(backends, b)
		case p.ix.headers[normSection(name)] == 0:
			b := newBackend(name, enabled.line)
			hint := ""
			if suggestions > 0 {
				suggestions--
				hint = suggestion(name, candidates)
			}
			if hint == "" {
				hint = fmt.Sprintf("; add a [%s] section or remove the name", name)
			}
			p.report(&b.Problems, enabled.line, defaultSection, enabled.key,
				"enabled_backends in [DEFAULT] lists %q but there is no [%s] section%s", name, name, hint)
			backends = append(backends, b)
		default:
			backends = append(backends, p.readBackend(name, p.ix.headers[normSection(name)]))
		}
		seen[name] = true
	}
	return backends
}

func newBackend(name string, line int) Backend {
	return Backend{
		Section:                  name,
		VolumeBackendName:        name,
		ReplicaInterval:          3600 * time.Second,
		RetentionShortTerm:       14400 * time.Second,
		RetentionPerDay:          3,
		RetentionDays:            7,
		PGName:                   "cinder-group",
		PodName:                  "cinder-pod",
		Pool:                     "cinder",
		SyncTimeout:              5000 * time.Millisecond,
		FailoverWait:             DefaultFailoverWait,
		PreferredArray:           "primary",
		MaxOverSubscriptionRatio: 20,
		Line:                     line,
	}
}

// readBackend reads a backend section over [backend_defaults]. For
// [backend_defaults] itself it checks only what can be checked without a
// backend: nothing is required there.
func (p *parser) readBackend(name string, line int) Backend {
	b := newBackend(name, line)
	to := &b.Problems
	// oslo.config matches the group of enabled_backends' name to a
	// section case-insensitively.
	sec := normSection(name)
	layers := []string{sec}
	full := sec != backendDefaultsSection
	if full {
		layers = append(layers, backendDefaultsSection)
	}
	for _, s := range layers {
		p.checkKeys(to, s, knownBackendKeys, replicationDeviceKey)
	}
	for _, k := range []string{"chap_password", "san_password"} {
		if v, ok := p.first(k, layers...); ok {
			p.secret(v.text)
		}
	}

	if v, ok := p.first("volume_backend_name", layers...); ok && v.text != "" {
		b.VolumeBackendName = v.text
	}
	if v, ok := p.first("volume_driver", layers...); ok {
		b.VolumeDriver = v.text
	}
	if full {
		if v, ok := p.required(to, sec, "san_ip", "the primary array's address (host or host:port)", layers...); ok {
			b.SanIP = p.addr(to, v, defaultArrayPort, false)
		}
		if v, ok := p.required(to, sec, "pure_api_token", "the primary array's API token", layers...); ok {
			b.APIToken = p.secret(v.text)
		}
	} else {
		b.SanIP = p.checkAddr(to, "san_ip", "", defaultArrayPort, false, layers...)
		if v, ok := p.first("pure_api_token", layers...); ok {
			b.APIToken = p.secret(v.text)
		}
	}

	b.ReplicationDevices = p.readDevices(to, &b, layers)

	const maxInt = math.MaxInt32
	// The schedule goes to the arrays' API, which refuses more than these
	// (package validation), so a larger value is a config error here.
	b.ReplicaInterval = time.Second * time.Duration(p.checkInt(to, "pure_replica_interval_default", 3600, 1, int(validation.MaxIntervalSecs),
		"a whole number of seconds greater than 0", layers...))
	b.RetentionShortTerm = time.Second * time.Duration(p.checkInt(to, "pure_replica_retention_short_term_default", 14400, 0, int(validation.MaxRetainSecs),
		"a whole number of seconds, 0 or more", layers...))
	b.RetentionPerDay = p.checkInt(to, "pure_replica_retention_long_term_per_day_default", 3, 0, validation.MaxPerDay,
		"a whole number of snapshots per day, 0 or more", layers...)
	b.RetentionDays = p.checkInt(to, "pure_replica_retention_long_term_default", 7, 0, validation.MaxRetainDays,
		"a whole number of days, 0 or more", layers...)
	b.SyncTimeout = time.Millisecond * time.Duration(p.checkInt(to, "volrep_sync_timeout", 5000, 1, int(validation.MaxSyncTimeoutMs),
		fmt.Sprintf("a whole number of milliseconds from 1 to %d (10 minutes)", validation.MaxSyncTimeoutMs), layers...))
	b.FailoverWait = time.Second * time.Duration(p.checkInt(to, "volrep_failover_wait", int(DefaultFailoverWait/time.Second), 0, maxFailoverWait,
		fmt.Sprintf("a whole number of seconds from 0 to %d", maxFailoverWait), layers...))
	b.ReservedPercentage = p.checkInt(to, "reserved_percentage", 0, 0, 100, "a whole number from 0 to 100", layers...)
	b.MaxOverSubscriptionRatio = p.checkRatio(to, layers)
	b.PGName = p.checkName(to, "pure_replication_pg_name", b.PGName, layers...)
	b.PodName = p.checkName(to, "pure_replication_pod_name", b.PodName, layers...)
	b.Pool = p.checkName(to, "volrep_pool", b.Pool, layers...)
	// Unset, the driver picks: iSCSI when the primary array serves it.
	b.Protocol = p.checkChoice(to, "volrep_protocol", "", []string{ProtocolISCSI, ProtocolNBD}, layers...)
	b.CinderOptions = p.checkCinderOpts(to, layers)

	b.PodMediator = p.podMediator(to, layers...)
	if v, ok := p.first("volrep_preferred_array", layers...); ok && full {
		ids := []string{"primary"}
		for _, d := range b.SyncTargets() {
			ids = append(ids, d.BackendID)
		}
		switch {
		case v.text == "primary":
			b.PreferredArray = v.text
		case slices.Contains(ids, v.text) && len(b.PodMediator) > 0:
			b.PreferredArray = v.text
		case slices.Contains(ids, v.text):
			// Without a mediator the sync target cannot know that the
			// primary stopped, so it could never carry on safely.
			p.report(to, v.line, v.section, v.key,
				"volrep_preferred_array in [%s] is %q: a pod prefers its sync target at a partition only with a mediator, which tells the target that the primary stopped; "+
					"set volrep_pod_mediator in [%s] and in the target array's section, or set volrep_preferred_array to \"primary\"",
				v.section, v.text, v.section)
		default:
			p.report(to, v.line, v.section, v.key,
				"volrep_preferred_array in [%s] is %q, which is neither \"primary\" nor the backend_id of a sync replication_device of [%s]%s",
				v.section, v.text, name, orRemove(suggestion(v.text, ids)))
		}
	}
	if full {
		b.HostPreferences = p.hostPreferences(to, name, b, layers...)
	}
	if v, ok := p.first(mediatorKey, layers...); ok && full && len(b.PodMediator) > 0 && len(b.SyncTargets()) == 0 {
		// A setting that does nothing must not pass silently.
		p.report(to, v.line, v.section, v.key,
			"%s in [%s] has no effect: backend [%s] has no sync replication_device (type:sync), so it has no pod to mediate; add one or delete the line",
			v.key, v.section, name)
	}
	return b
}

// checkRatio reads max_over_subscription_ratio, which Cinder takes as "auto"
// or a float of at least 1.
func (p *parser) checkRatio(to *Problems, layers []string) float64 {
	v, ok := p.first("max_over_subscription_ratio", layers...)
	if !ok {
		return 20
	}
	if v.text == "auto" {
		return 0
	}
	// Cinder's regex first: it refuses "1e3" and "+2", which ParseFloat takes.
	f, err := strconv.ParseFloat(v.text, 64)
	if !ratioPattern.MatchString(v.text) || err != nil || math.IsInf(f, 0) || f < 1 {
		p.report(to, v.line, v.section, v.key, "max_over_subscription_ratio in [%s] must be \"auto\" or a number of at least 1.0; got %s", v.section, shown(v.text))
		return 20
	}
	return f
}

// checkCinderOpts converts the typed Cinder options a backend sets, as
// oslo.config would: Cinder fails where it reads a value it cannot convert.
func (p *parser) checkCinderOpts(to *Problems, layers []string) map[string]string {
	var out map[string]string
	for _, key := range slices.Sorted(maps.Keys(cinderOpts)) {
		opt := cinderOpts[key]
		get := p.first
		if opt.kind == "int" || opt.kind == "float" {
			get = p.number // empty is None: the next layer's value
		}
		v, ok := get(key, layers...)
		if !ok {
			continue
		}
		text, err := opt.convert(v.text)
		if err != nil {
			p.report(to, v.line, v.section, key, "%s in [%s] %s; got %s; Cinder fails when it reads it", key, v.section, err, shown(v.text))
			continue
		}
		if text == "" {
			continue
		}
		if out == nil {
			out = map[string]string{}
		}
		out[key] = text
	}
	return out
}

// readDevices reads the replication_device lines of the first layer that has
// any: a backend's own list replaces that of [backend_defaults].
func (p *parser) readDevices(to *Problems, b *Backend, layers []string) []ReplicationDevice {
	var lines []value
	for _, s := range layers {
		if lines = p.values(s, replicationDeviceKey); len(lines) > 0 {
			break
		}
	}
	var devs []ReplicationDevice
	firstLine := map[string]int{}
	for _, v := range lines {
		d := p.readDevice(to, v)
		switch id := d.BackendID; {
		case id == "":
		case strings.EqualFold(id, reservedBackendID):
			p.report(to, v.line, v.section, v.key,
				"backend_id %q in replication_device of [%s] is reserved: failover_host uses it to mean the primary array; choose another name", id, v.section)
		case firstLine[id] > 0:
			p.report(to, v.line, v.section, v.key,
				"duplicate backend_id %q in [%s] (first used at line %d); give each replication_device its own backend_id", id, v.section, firstLine[id])
		default:
			firstLine[id] = v.line
		}
		if d.SanIP != "" && d.SanIP == b.SanIP {
			p.report(to, v.line, v.section, v.key,
				"%s has san_ip %s, the primary array itself; give the address of the target array", deviceName(d.BackendID, v.section), d.SanIP)
		}
		devs = append(devs, d)
	}
	return devs
}

// readDevice parses one "key:value,key:value" replication_device. The raw
// value holds a token, so messages name keys and the backend_id, never items.
func (p *parser) readDevice(to *Problems, v value) ReplicationDevice {
	d := ReplicationDevice{Type: typeAsync, Line: v.line}
	if pyStrip(v.text) == "" {
		p.report(to, v.line, v.section, v.key,
			"replication_device in [%s] is empty; write backend_id:NAME,san_ip:HOST[:PORT],api_token:TOKEN[,type:async|sync] or delete the line", v.section)
		return d
	}
	// The values are what oslo.config's Dict gives Cinder; the items as
	// written are only for saying what is wrong with them.
	dict, dictErr := osloDict(v.text)
	fields := map[string]string{}
	for _, it := range dict {
		fields[it.key] = it.val
		if it.key == "api_token" || strings.HasSuffix(it.key, ",api_token") {
			p.secret(it.val)
		}
	}
	type item struct{ key, val string }
	var items []item
	var malformed []string
	meant := map[string]bool{} // keys the user evidently wrote, if wrongly
	parts := strings.Split(pyStrip(v.text), ",")
	for i, part := range parts {
		if part = pyStrip(part); part == "" {
			if i < len(parts)-1 && i > 0 {
				malformed = append(malformed, fmt.Sprintf("items %d and %d are separated by two commas, so oslo.config reads the second key with a ',' in front; remove one", i, i+1))
				if k, _, ok := strings.Cut(parts[i+1], ":"); ok {
					meant[pyStrip(k)] = true
				}
			}
			continue
		}
		// A port follows a colon too: only the first colon ends the key.
		k, val, ok := strings.Cut(part, ":")
		if !ok {
			if k, _, eq := strings.Cut(part, "="); eq && slices.Contains(deviceKeys, pyStrip(k)) {
				k = pyStrip(k)
				meant[k] = true
				malformed = append(malformed, fmt.Sprintf("write %s:VALUE, with a colon, not %s=VALUE", k, k))
			} else {
				malformed = append(malformed, fmt.Sprintf("item %d is not key:value; separate each key from its value with ':' and the items with ','", i+1))
			}
			// oslo.config reads it and the next item as one key.
			if i+1 < len(parts) {
				if k, _, ok := strings.Cut(parts[i+1], ":"); ok {
					meant[pyStrip(k)] = true
				}
			}
			continue
		}
		k, val = pyStrip(k), pyStrip(val)
		if k == "api_token" {
			p.secret(val)
		}
		items = append(items, item{k, val})
	}
	if dictErr != "" && len(malformed) == 0 && !strings.HasPrefix(dictErr, "Duplicate key") {
		// A trailing comma or ":VALUE": the items look fine one by one.
		malformed = append(malformed, fmt.Sprintf("oslo.config cannot read it (%s), so Cinder's driver does not start; remove a trailing ',' and give every value a key", dictErr))
	}
	d.BackendID = fields["backend_id"]
	where := deviceName(d.BackendID, v.section)
	for _, m := range malformed {
		p.report(to, v.line, v.section, v.key, "%s: %s", where, m)
	}
	counted := map[string]int{}
	for _, it := range items {
		counted[it.key]++
		switch {
		case !slices.Contains(deviceKeys, it.key):
			hint := suggestion(it.key, deviceKeys)
			if c := closest(it.key, deviceKeys, -1); c != "" {
				meant[c] = true
			} else {
				hint = "; the keys are " + strings.Join(deviceKeys, ", ")
			}
			p.report(to, v.line, v.section, v.key, "unknown key %q in %s%s", it.key, where, hint)
		case counted[it.key] == 2:
			p.report(to, v.line, v.section, v.key, "%s sets %s more than once, which oslo.config refuses, so Cinder's driver does not start; keep one", where, it.key)
		}
	}
	for _, k := range []string{"backend_id", "san_ip", "api_token"} {
		// A misspelt key was already reported with the right spelling.
		if fields[k] == "" && !meant[k] {
			p.report(to, v.line, v.section, v.key, "%s has no %s; add %s", where, k, deviceKeyHint[k])
		}
	}
	if s := fields["san_ip"]; s != "" {
		addr, err := hostPort(s, defaultArrayPort)
		if err != nil {
			p.report(to, v.line, v.section, v.key, "san_ip of %s %s; got %q", where, err, s)
		}
		d.SanIP = addr
	}
	d.APIToken = Secret(fields["api_token"])
	if t, ok := fields["type"]; ok {
		if t == typeAsync || t == typeSync {
			d.Type = t
		} else {
			p.report(to, v.line, v.section, v.key, "type %q in %s is not one of async, sync%s", t, where, suggestion(t, []string{typeAsync, typeSync}))
		}
	}
	return d
}

// deviceName names a replication_device in messages by its backend_id, since
// its raw text holds a token.
func deviceName(id, section string) string {
	if id == "" {
		return fmt.Sprintf("replication_device of [%s]", section)
	}
	return fmt.Sprintf("replication_device %q of [%s]", id, section)
}

// The attachment protocols of volrep_protocol.
const (
	ProtocolISCSI = "iscsi"
	ProtocolNBD   = "nbd"
)
