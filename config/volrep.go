package config

import (
	"hash/fnv"
	"net"
	"slices"
	"strings"
	"time"

	"github.com/volrep/volrep/array"
)

// Keys of volrep's own sections.
var (
	daemonKeys = []string{"driver_listen", "driver_api_token", "metrics_listen", "log_format", "log_level", "state_dir"}
	arrayKeys  = []string{"data_dir", "listen", "api_token", "nbd_listen", "nbd_max_connections", "nbd_idle_timeout",
		"iscsi_listen", "iscsi_target_iqn", "iscsi_port_group", "pools", "stream_port", mediatorKey}
)

func (p *parser) readDaemon() Daemon {
	s := volrepSection
	p.checkKeys(nil, s, daemonKeys, "")
	d := Daemon{
		DriverListen:  p.checkAddr(nil, "driver_listen", "127.0.0.1:7400", "", true, s),
		MetricsListen: p.checkAddr(nil, "metrics_listen", "", "", true, s),
		// auto: journald when stderr is the journal (under systemd), else text.
		LogFormat: p.checkChoice(nil, "log_format", "auto", []string{"auto", "text", "json", "journal"}, s),
		LogLevel:  p.checkChoice(nil, "log_level", "info", []string{"debug", "info", "warn", "error"}, s),
		StateDir:  "/var/lib/volrep/driver",
	}
	_, d.DriverListenSet = p.first("driver_listen", s)
	// An empty token means what leaving it out means: no token required.
	if v, ok := p.first("driver_api_token", s); ok {
		d.DriverAPIToken = p.secret(v.text)
	}
	if v, ok := p.first("state_dir", s); ok {
		if v.text == "" {
			p.report(nil, v.line, s, v.key, "state_dir in [%s] is empty; set a directory or delete the line for %s", s, d.StateDir)
		} else {
			d.StateDir = v.text
		}
	}
	return d
}

func (p *parser) readArrays() []Array {
	var arrays []Array
	dataDirs := map[string]value{}
	portGroups := map[int]string{}
	for _, s := range p.ix.sections {
		if !strings.HasPrefix(s, arrayPrefix) {
			continue
		}
		a := Array{Name: p.ix.spelling[s][len(arrayPrefix):], Line: p.ix.headerLine(s), Pools: []string{"cinder"}}
		to := &a.Problems
		p.checkKeys(to, s, arrayKeys, "")
		if !validName(a.Name) {
			p.report(to, a.Line, s, "", "[%s]: an array name must be 1-128 letters, digits, '.', '_', ':' or '-', starting with a letter or digit", s)
		}
		if v, ok := p.required(to, s, "data_dir", "the directory that holds the array's data", s); ok {
			a.DataDir = v.text
			// Two engines in one directory would corrupt each other's data.
			if prev, dup := dataDirs[v.text]; dup {
				p.report(to, v.line, s, v.key, "data_dir in [%s] is also the data_dir of [%s] (line %d); give each array its own directory",
					s, prev.section, prev.line)
			} else {
				dataDirs[v.text] = v
			}
		}
		if v, ok := p.required(to, s, "listen", "the host:port the array API serves on", s); ok {
			a.Listen = p.addr(to, v, "", true)
		}
		if v, ok := p.required(to, s, "api_token", "the token that clients of this array must present", s); ok {
			a.APIToken = p.secret(v.text)
		}
		a.StreamPort = p.checkInt(to, "stream_port", 0, -1, 65535,
			"a port number on the host of listen, 0 for any free port, or -1 for none (pod streams then use gRPC)", s)
		a.NBDListen = p.checkAddr(to, "nbd_listen", "", "", true, s)
		a.NBDMaxConnections = p.checkInt(to, "nbd_max_connections", 1024, 1, maxNBDConnections,
			"a whole number of connections from 1 to 65536", s)
		a.NBDIdleTimeout = time.Second * time.Duration(p.checkInt(to, "nbd_idle_timeout", 0, 0, maxNBDIdleTimeout,
			"a whole number of seconds, 0 for none", s))
		if a.NBDListen == "" {
			// A setting that does nothing must not pass silently.
			for _, key := range []string{"nbd_max_connections", "nbd_idle_timeout"} {
				if v, ok := p.first(key, s); ok {
					p.report(to, v.line, s, key, "%s in [%s] has no effect without nbd_listen; set nbd_listen or delete the line", key, s)
				}
			}
		}
		a.ISCSIListen = p.portals(to, s)
		if len(a.ISCSIListen) > 0 {
			a.ISCSITargetIQN = array.DefaultTargetIQN(a.Name)
		}
		if v, ok := p.first("iscsi_target_iqn", s); ok {
			switch {
			case len(a.ISCSIListen) == 0:
				p.report(to, v.line, s, v.key, "iscsi_target_iqn in [%s] has no effect without iscsi_listen; set iscsi_listen or delete the line", s)
			case array.CheckIQN(v.key, v.text) != nil:
				p.report(to, v.line, s, v.key, "iscsi_target_iqn in [%s] is not an iSCSI qualified name (RFC 3720 3.2.6.3.1); use iqn.YYYY-MM.reversed.domain[:name] "+
					"with letters, digits, '-', '.' and ':', for example %s, or delete the line for that default; got %q%s",
					s, array.DefaultTargetIQN(a.Name), v.text, inlineCommentHint(v.text))
			default:
				a.ISCSITargetIQN = v.text
			}
		}
		a.ISCSIPortGroup = p.portGroup(to, a, s, portGroups)
		if v, ok := p.first("pools", s); ok {
			a.Pools = p.pools(to, v)
		}
		a.PodMediator = p.podMediator(to, s)
		arrays = append(arrays, a)
	}
	return arrays
}

// portGroup reads iscsi_port_group: the array's ALUA target port group.
// The two arrays of a pod must differ, so the default is taken from the
// array's name, and two arrays of one file may not share one.
func (p *parser) portGroup(to *Problems, a Array, s string, seen map[int]string) int {
	v, set := p.first("iscsi_port_group", s)
	if set && len(a.ISCSIListen) == 0 {
		p.report(to, v.line, s, v.key, "iscsi_port_group in [%s] has no effect without iscsi_listen; set iscsi_listen or delete the line", s)
		return 0
	}
	if len(a.ISCSIListen) == 0 {
		return 0
	}
	def := DefaultPortGroup(a.Name)
	n := p.checkInt(to, "iscsi_port_group", def, 1, 65535, "a whole number from 1 to 65535, different on the two arrays of a pod", s)
	if other, dup := seen[n]; dup {
		line, how := a.Line, "its default, taken from the array's name,"
		if set {
			line, how = v.line, "it"
		}
		p.report(to, line, s, "iscsi_port_group", "iscsi_port_group of [%s] is %d, the same as [%s]'s; %s must differ, or a host's multipath "+
			"takes both arrays' paths for one ALUA group; set iscsi_port_group in one of them", s, n, other, how)
		return n
	}
	seen[n] = s
	return n
}

// DefaultPortGroup is the ALUA target port group of an array that sets
// none: from 1 to 65535, taken from its name so that two arrays named
// differently almost never share one.
func DefaultPortGroup(name string) int {
	h := fnv.New32a()
	h.Write([]byte(name))
	return int(h.Sum32()%65535) + 1
}

// iSCSIPort is the port of a portal that names none (RFC 7143's).
const iSCSIPort = "3260"

// portals reads iscsi_listen: one or more comma-separated host[:port]
// portals, each a listen address of its own.
func (p *parser) portals(to *Problems, s string) []string {
	v, ok := p.first("iscsi_listen", s)
	if !ok {
		return nil
	}
	if strings.TrimSpace(v.text) == "" {
		p.report(to, v.line, s, v.key, "iscsi_listen in [%s] is empty; set one or more host[:port] portals separated by commas, or delete the line", s)
		return nil
	}
	parts := strings.Split(v.text, ",")
	for i, part := range parts {
		if parts[i] = strings.TrimSpace(part); parts[i] == "" {
			p.report(to, v.line, s, v.key, "iscsi_listen in [%s] has an empty portal; separate host[:port] portals with single commas; got %q", s, v.text)
			return nil
		}
	}
	var out []string
	for _, part := range parts {
		one := v
		one.text = part
		// An explicit port may be 0 (any free port, for tests).
		def := iSCSIPort
		if _, _, err := net.SplitHostPort(part); err == nil {
			def = ""
		}
		if addr := p.addr(to, one, def, true); addr != "" {
			out = append(out, addr)
		}
	}
	return out
}

// Bounds of the NBD settings: more connections than file descriptors a
// process commonly gets make no sense, and an idle timeout over a week is
// better said as 0 (none).
const (
	maxNBDConnections = 65536
	maxNBDIdleTimeout = 7 * 24 * 3600
)

func (p *parser) pools(to *Problems, v value) []string {
	var pools []string
	for _, name := range strings.Split(v.text, ",") {
		name = strings.TrimSpace(name)
		switch {
		case name == "":
		case !validName(name):
			p.report(to, v.line, v.section, v.key, "pools in [%s] lists %q; a pool name must be 1-128 letters, digits, '.', '_', ':' or '-', starting with a letter or digit",
				v.section, name)
		case !slices.Contains(pools, name):
			pools = append(pools, name)
		}
	}
	if len(pools) == 0 {
		p.report(to, v.line, v.section, v.key, "pools in [%s] names no pool; list pool names or delete the line for cinder", v.section)
		return []string{"cinder"}
	}
	return pools
}
