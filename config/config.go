// Package config reads and validates the cinder.conf-style file that volrepd
// runs from. Every problem is reported with its file and line, the section and
// key, and what to do, because a typo that Cinder would surface much later as
// a vaguely "down" backend should take one command to diagnose.
//
// The file is a real cinder.conf: unknown sections and unknown [DEFAULT] keys
// are other services' business and are ignored. Sections that volrep reads
// ([volrep], [array:NAME], [backend_defaults] and every backend named in
// enabled_backends) are checked strictly.
package config

import (
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Config is everything volrepd reads from one file.
type Config struct {
	File     string
	Daemon   Daemon    // [volrep]
	Arrays   []Array   // [array:NAME], in file order
	Backends []Backend // in enabled_backends order, including those with problems
	Problems Problems  // every problem in the file, sorted by line
}

// Daemon is the [volrep] section.
type Daemon struct {
	DriverListen string // host:port of the driver gRPC API
	// DriverListenSet is whether the file sets driver_listen. A process
	// with no backends opens the driver API only then, so array-only
	// processes on one host do not compete for the default port.
	DriverListenSet bool
	DriverAPIToken  Secret // when set, the driver API requires it
	MetricsListen   string // host:port, or "" for no metrics endpoint
	LogFormat       string // text, json or journal
	LogLevel        string // debug, info, warn or error
	StateDir        string // where the driver keeps its small state, such as the active backend
}

// Array is one [array:NAME] section: an array this process hosts.
type Array struct {
	Name    string
	DataDir string
	Listen  string // host:port of the array gRPC API
	// StreamPort is where, on Listen's host, the array serves the pod
	// streams without gRPC: 0 picks a free port, -1 serves none.
	StreamPort int
	NBDListen  string // host:port, or "" for no NBD export
	// NBDMaxConnections caps the NBD clients served at once.
	NBDMaxConnections int
	// NBDIdleTimeout closes NBD connections without a request for this
	// long; 0 means never.
	NBDIdleTimeout time.Duration
	// ISCSIListen are the portals ("host:port") the array serves iSCSI
	// on; none means it does not.
	ISCSIListen []string
	// ISCSITargetIQN is the array's iSCSI target name (set with
	// ISCSIListen only).
	ISCSITargetIQN string
	// ISCSIPortGroup is the array's ALUA target port group (set with
	// ISCSIListen only; iscsi_port_group).
	ISCSIPortGroup int
	APIToken       Secret
	Pools          []string // created at start
	// PodMediator are the etcd endpoints (host:port) this array's pods ask
	// when the pod's own spec names none (volrep_pod_mediator).
	PodMediator []string
	Line        int
	Problems    Problems // non-empty means the array must not be started
}

// Backend is one driver backend: a section named in enabled_backends, on top
// of [backend_defaults].
type Backend struct {
	Section            string
	VolumeBackendName  string
	VolumeDriver       string
	SanIP              string // host:port of the primary array
	APIToken           Secret
	ReplicationDevices []ReplicationDevice

	ReplicaInterval    time.Duration // pure_replica_interval_default
	RetentionShortTerm time.Duration // keep every replicated snapshot this long
	RetentionPerDay    int           // then keep this many a day
	RetentionDays      int           // for this many days

	PGName         string        // protection group for the async targets
	PodName        string        // pod for the sync targets
	Pool           string        // array pool new volumes go in
	SyncTimeout    time.Duration // how long a sync peer may take before the pod carries on without it
	PreferredArray string        // "primary" or the backend_id of a sync target
	// HostPreferences give the iSCSI hosts the driver creates their
	// preferred arrays (volrep_host_preferred_arrays), first match wins.
	HostPreferences []HostPreference
	// PodMediator are the etcd endpoints (host:port) of the pod's mediator
	// (volrep_pod_mediator); none means the pod carries on without its
	// peer unasked, as before there was a mediator.
	PodMediator []string
	// FailoverWait is how long failover and failback wait for an array
	// that does not answer yet (volrep_failover_wait, seconds).
	FailoverWait time.Duration
	// Protocol is how hosts attach volumes (volrep_protocol): ProtocolISCSI,
	// ProtocolNBD, or "" to use iSCSI when the primary array serves it.
	Protocol string

	ReservedPercentage       int
	MaxOverSubscriptionRatio float64 // 0 means "auto"

	// CinderOptions are the typed Cinder options of the section that
	// volrep does not use but checks (see cinderOpts), as oslo.config
	// converts them: "true"/"false", decimal numbers, or the choice.
	CinderOptions map[string]string

	Line     int      // the section header, or enabled_backends when there is no section
	Problems Problems // non-empty means the backend is down, for these reasons
}

// ReplicationDevice is one replication_device entry of a backend.
type ReplicationDevice struct {
	BackendID string
	SanIP     string // host:port
	APIToken  Secret
	Type      string // "async" or "sync"
	Line      int
}

// AsyncTargets returns the replication devices served by the protection group.
func (b Backend) AsyncTargets() []ReplicationDevice { return b.targets(typeAsync) }

// SyncTargets returns the replication devices served by the pod.
func (b Backend) SyncTargets() []ReplicationDevice { return b.targets(typeSync) }

// PodOf names the pod that replicates to the sync target backendID, at
// both arrays: "<pure_replication_pod_name>.<backend_id>".
func (b Backend) PodOf(backendID string) string { return b.PodName + "." + backendID }

func (b Backend) targets(typ string) []ReplicationDevice {
	var out []ReplicationDevice
	for _, d := range b.ReplicationDevices {
		if d.Type == typ {
			out = append(out, d)
		}
	}
	return out
}

// Load reads and checks the file at path. The error is only for a file that
// cannot be read; what is wrong inside it is in Config.Problems.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return Parse(path, data)
}

// Parse checks data as the contents of file, which names it in problems. It
// reads data as oslo.config does (see scan.go); the error is always nil, and
// stays for callers written when a file could be unreadable as a whole.
func Parse(file string, data []byte) (*Config, error) {
	ix := scan(data)
	p := &parser{file: file, ix: ix, listeners: map[string]value{}}
	for _, pr := range ix.problems {
		p.report(nil, pr.Line, pr.Section, pr.Key, "%s", pr.Message)
	}
	cfg := &Config{File: file}
	names := p.readDefault()
	cfg.Daemon = p.readDaemon()
	cfg.Arrays = p.readArrays()
	cfg.Backends = p.readBackends(names)
	p.checkUnknownSections(names)
	if len(names) == 0 && len(cfg.Arrays) == 0 {
		p.nothingToDo()
	}

	// Messages never quote a token on purpose; this catches the accidents,
	// such as a token pasted into san_ip.
	for i := range cfg.Backends {
		cfg.Backends[i].Problems = p.redact(cfg.Backends[i].Problems).sorted()
	}
	for i := range cfg.Arrays {
		cfg.Arrays[i].Problems = p.redact(cfg.Arrays[i].Problems).sorted()
	}
	cfg.Problems = p.redact(p.all).sorted()
	return cfg, nil
}

type parser struct {
	file      string
	ix        *index
	all       Problems
	secrets   []string
	redactor  *strings.Replacer // built from secrets once they are all known
	listeners map[string]value  // address -> where it was first set, to catch two servers on one port
}

// value is one occurrence of a key: its text as oslo.config gives it to
// Cinder and the line it is on.
type value struct {
	section, key, text string
	line               int
}

// values returns every occurrence of key in section, in file order, with
// oslo.config's templates applied: "$$" is a '$', and a "$name" reference,
// which oslo.config would replace with another option's value, is reported.
func (p *parser) values(section, key string) []value {
	var out []value
	for _, e := range p.ix.keys(section) {
		if e.key != key {
			continue
		}
		text, refs := template(e.value)
		for _, r := range refs {
			// Never quote the value: it may be a token.
			p.report(nil, e.line, section, key, "%s in [%s] refers to $%s, which oslo.config replaces with the value of option %s (and fails on if there is none); write $$ for a literal '$'",
				key, section, r, r)
		}
		out = append(out, value{section: section, key: key, line: e.line, text: text})
	}
	return out
}

// first returns key's value from the first of sections that has it (a
// backend section overrides [backend_defaults]); within a section the last
// occurrence wins, as in oslo.config, which also merges repeated sections.
func (p *parser) first(key string, sections ...string) (value, bool) {
	for _, s := range sections {
		if vs := p.values(s, key); len(vs) > 0 {
			v := vs[len(vs)-1]
			if strings.Contains(v.text, "\n") && !slices.Contains(multiLineKeys, key) {
				p.report(nil, v.line, s, key, "%s in [%s] goes on over the indented line(s) below it, which oslo.config joins into its value; remove their indentation if they are settings of their own",
					key, s)
			}
			return v, true
		}
	}
	return value{}, false
}

// multiLineKeys are lists, for which continuation lines are a way to write
// one item a line; any other value volrep reads is one line.
var multiLineKeys = []string{"enabled_backends", replicationDeviceKey, "pools"}

// number is first for an integer option of a backend: oslo.config reads an
// empty number as None, and Cinder then takes the value from the next layer
// ([backend_defaults]) or the default.
func (p *parser) number(key string, sections ...string) (value, bool) {
	for i, s := range sections {
		if v, ok := p.first(key, s); ok && (pyStrip(v.text) != "" || i == len(sections)-1) {
			return v, true
		}
	}
	return value{}, false
}

// report records a problem file-wide and, when to is not nil, against the
// backend or array it makes unusable.
func (p *parser) report(to *Problems, line int, section, key, format string, args ...any) {
	pr := Problem{File: p.file, Line: line, Section: section, Key: key, Message: fmt.Sprintf(format, args...)}
	p.all = append(p.all, pr)
	if to != nil {
		*to = append(*to, pr)
	}
}

func (p *parser) secret(s string) Secret {
	if s != "" {
		p.secrets = append(p.secrets, s)
	}
	return Secret(s)
}

func (p *parser) redact(ps Problems) Problems {
	if p.redactor == nil {
		// Longest first, so that a secret that starts with another is hidden whole.
		slices.SortFunc(p.secrets, func(a, b string) int { return len(b) - len(a) })
		var pairs []string
		for _, s := range p.secrets {
			// Shorter "secrets" are placeholders; hiding them would garble text.
			if len(s) >= 4 {
				pairs = append(pairs, s, redacted)
			}
		}
		p.redactor = strings.NewReplacer(pairs...)
	}
	out := make(Problems, len(ps))
	for i, pr := range ps {
		pr.Message = p.redactor.Replace(pr.Message)
		out[i] = pr
	}
	return out
}

// checkKeys reports keys of section that are unknown, repeated though not
// repeatable, or unreadable, each with the section's own advice.
func (p *parser) checkKeys(to *Problems, section string, known []string, repeatable string) {
	// Unreadable lines were reported file-wide; they count against the
	// section they sit in too, as they may well be a setting it lacks.
	if to != nil {
		for _, pr := range p.ix.problemsIn[section] {
			pr.File = p.file
			*to = append(*to, pr)
		}
	}
	first := map[string]int{}
	for _, e := range p.ix.keys(section) {
		switch {
		case !slices.Contains(known, e.key):
			p.report(to, e.line, section, e.key, "unknown key %q in [%s]%s", e.key, section,
				orRemove(suggestion(e.key, known)))
		case e.key == repeatable:
		case first[e.key] > 0:
			p.report(to, e.line, section, e.key, "duplicate key %q in [%s] (first set at line %d); only replication_device may repeat, and Cinder uses the last one, so delete the one you do not mean",
				e.key, section, first[e.key])
		default:
			first[e.key] = e.line
		}
	}
}

func orRemove(hint string) string {
	if hint != "" {
		return hint
	}
	return "; check the spelling or delete the line"
}

// readDefault returns the backend names in enabled_backends, checking that
// key and keys that look like misspellings of it.
func (p *parser) readDefault() []string {
	const key = "enabled_backends"
	for _, e := range p.ix.keys(defaultSection) {
		// [DEFAULT] holds hundreds of other services' keys: only a near miss
		// of enabled_backends is surely meant for us.
		if closest(e.key, []string{key}, 2) != "" {
			p.report(nil, e.line, defaultSection, e.key, "unknown key %q in [DEFAULT]; did you mean %q?", e.key, key)
		}
	}
	vs := p.values(defaultSection, key)
	for _, v := range vs[min(1, len(vs)):] {
		p.report(nil, v.line, defaultSection, key, "duplicate key %q in [DEFAULT] (first set at line %d); Cinder uses the last one: list every backend in one enabled_backends",
			key, vs[0].line)
	}
	v, ok := p.first(key, defaultSection)
	if !ok {
		return nil
	}
	names := osloList(v.text)
	if slices.Contains(names, "") {
		p.report(nil, v.line, defaultSection, key, "enabled_backends in [DEFAULT] has an empty name between two commas, which Cinder would start as a backend; remove the extra comma")
		names = slices.DeleteFunc(names, func(n string) bool { return n == "" })
	}
	return names
}

// osloList is oslo.config's types.List of strings: trailing commas are
// dropped, and items are stripped but may be empty.
func osloList(s string) []string {
	s = strings.TrimRight(pyStrip(s), ",")
	if s == "" {
		return nil
	}
	items := strings.Split(s, ",")
	for i := range items {
		items[i] = pyStrip(items[i])
	}
	return items
}

func (p *parser) nothingToDo() {
	v, ok := p.first("enabled_backends", defaultSection)
	if !ok {
		p.report(nil, p.ix.headerLine(defaultSection), defaultSection, "enabled_backends",
			"[DEFAULT] has no enabled_backends and there is no [array:NAME] section, so volrepd has nothing to run; list the backend sections in enabled_backends or add an [array:NAME] section")
		return
	}
	p.report(nil, v.line, defaultSection, v.key,
		"enabled_backends in [DEFAULT] is empty and there is no [array:NAME] section, so volrepd has nothing to run; list the backend sections in enabled_backends or add an [array:NAME] section")
}

// checkUnknownSections points out sections that are almost one of volrep's
// own: other unknown sections belong to other services, but [volrepp] or
// [arary:a] is volrep config that would silently not apply.
func (p *parser) checkUnknownSections(backends []string) {
	enabled := map[string]bool{}
	for _, b := range backends {
		enabled[normSection(b)] = true
	}
	for _, s := range p.ix.sections {
		if s == defaultSection || isOwnSection(s) || enabled[s] {
			continue
		}
		if s == strings.ToLower(defaultSection) {
			// oslo.config folds every section name but DEFAULT.
			p.report(nil, p.ix.headerLine(s), s, "", "[%s] is not [DEFAULT]: only DEFAULT is written in capitals, and Cinder and volrepd ignore [%s]; write [DEFAULT]",
				p.ix.spelling[s], p.ix.spelling[s])
			continue
		}
		meant := closest(strings.TrimSpace(s), []string{volrepSection, backendDefaultsSection}, -1)
		if prefix, name, ok := strings.Cut(s, ":"); ok && meant == "" && closest(prefix, []string{"array"}, 1) != "" {
			meant = arrayPrefix + name
		}
		if meant != "" {
			p.report(nil, p.ix.headerLine(s), s, "", "unknown section [%s] is ignored; did you mean [%s]?", p.ix.spelling[s], meant)
		}
	}
}

const (
	volrepSection          = "volrep"
	backendDefaultsSection = "backend_defaults"
	arrayPrefix            = "array:"
)

func isOwnSection(s string) bool {
	return s == volrepSection || s == backendDefaultsSection || strings.HasPrefix(s, arrayPrefix)
}

// checkInt reads an integer setting from the first of sections that has it.
// what completes "must be ..." in the message.
func (p *parser) checkInt(to *Problems, key string, def, lo, hi int, what string, sections ...string) int {
	v, ok := p.number(key, sections...)
	if !ok || pyStrip(v.text) == "" {
		// oslo.config's None: Cinder's default.
		return def
	}
	n, ok := pyInt(v.text)
	if ok && n > hi {
		p.report(to, v.line, v.section, key, "%s in [%s] must be at most %d; got %s", key, v.section, hi, shown(v.text))
		return def
	}
	if !ok || n < lo {
		p.report(to, v.line, v.section, key, "%s in [%s] must be %s; got %s", key, v.section, what, shown(v.text))
		return def
	}
	return n
}

// checkChoice reads a setting that must be one of choices.
func (p *parser) checkChoice(to *Problems, key, def string, choices []string, sections ...string) string {
	v, ok := p.first(key, sections...)
	if !ok {
		return def
	}
	if !slices.Contains(choices, v.text) {
		p.report(to, v.line, v.section, key, "%s in [%s] must be one of %s; got %s%s", key, v.section,
			strings.Join(choices, ", "), shown(v.text), suggestion(v.text, choices))
		return def
	}
	return v.text
}

// checkAddr reads an optional host[:port] setting; see addr.
func (p *parser) checkAddr(to *Problems, key, def, defPort string, listen bool, sections ...string) string {
	v, ok := p.first(key, sections...)
	if !ok {
		return def
	}
	if v.text == "" {
		p.report(to, v.line, v.section, key, "%s in [%s] is empty; set it or delete the line", key, v.section)
		return def
	}
	return p.addr(to, v, defPort, listen)
}

// addr checks a host[:port] value (see hostPort) and, for listen addresses,
// remembers it, so that two servers of this process on one address are
// caught here rather than as a bind error later.
func (p *parser) addr(to *Problems, v value, defPort string, listen bool) string {
	addr, err := hostPort(v.text, defPort)
	if err != nil {
		p.report(to, v.line, v.section, v.key, "%s in [%s] %s; got %s%s", v.key, v.section, err, shown(v.text), inlineCommentHint(v.text))
		return ""
	}
	if listen && !strings.HasSuffix(addr, ":0") {
		if prev, dup := p.listeners[addr]; dup {
			p.report(to, v.line, v.section, v.key, "%s in [%s] is %s, which %s in [%s] already uses (line %d); give each server its own port",
				v.key, v.section, addr, prev.key, prev.section, prev.line)
		} else {
			p.listeners[addr] = v
		}
	}
	return addr
}

// required returns the first non-empty occurrence of key, reporting it
// missing (at the section header of owner) or empty; what completes "set it
// to ...".
func (p *parser) required(to *Problems, owner, key, what string, sections ...string) (value, bool) {
	v, ok := p.first(key, sections...)
	switch {
	case !ok:
		p.report(to, p.ix.headerLine(owner), owner, key, "[%s] has no %s; set it to %s", owner, key, what)
	case v.text == "":
		p.report(to, v.line, v.section, key, "%s in [%s] is empty; set it to %s", key, v.section, what)
	default:
		return v, true
	}
	return value{}, false
}

// shown quotes a value for a message. Of a value that goes on over
// continuation lines only the first line is shown: the lines below were
// likely meant as settings of their own, and may hold a token.
func shown(text string) string {
	first, rest, multi := strings.Cut(text, "\n")
	if !multi {
		return strconv.Quote(text)
	}
	return fmt.Sprintf("%q and %d more line(s)", first, strings.Count(rest, "\n")+1)
}

// inlineCommentHint explains the commonest reason a good-looking address is
// rejected: oslo.config (and so this reader) has no end-of-line comments.
func inlineCommentHint(s string) string {
	if strings.Contains(s, " #") || strings.Contains(s, " ;") {
		return " (comments must be on their own line in cinder.conf)"
	}
	return ""
}

// checkName reads a setting naming an array object (pool, protection group,
// pod). The rule mirrors array.CheckName, so a bad name is caught at start-up
// rather than at the first create_volume.
func (p *parser) checkName(to *Problems, key, def string, sections ...string) string {
	v, ok := p.first(key, sections...)
	if !ok {
		return def
	}
	if !validName(v.text) {
		p.report(to, v.line, v.section, key, "%s in [%s] must be 1-128 letters, digits, '.', '_', ':' or '-', starting with a letter or digit; got %s",
			key, v.section, shown(v.text))
		return def
	}
	return v.text
}

func validName(s string) bool {
	if s == "" || len(s) > 128 {
		return false
	}
	for i, c := range s {
		alnum := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
		if !alnum && (i == 0 || !strings.ContainsRune("._:-", c)) {
			return false
		}
	}
	return true
}
