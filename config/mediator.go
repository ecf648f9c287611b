package config

import (
	"slices"
	"strings"
)

// mediatorKey names the pod mediator: the etcd cluster that decides which
// array keeps a sync pod online when the two arrays cannot see each other.
const mediatorKey = "volrep_pod_mediator"

// mediatorScheme is the only kind of mediator there is.
const mediatorScheme = "etcd://"

// defaultEtcdPort is etcd's client port, for an endpoint that names none.
const defaultEtcdPort = "2379"

// podMediator reads volrep_pod_mediator, etcd://host[:port][,host[:port]…],
// and returns its endpoints as host:port; none when it is not set.
func (p *parser) podMediator(to *Problems, sections ...string) []string {
	v, ok := p.first(mediatorKey, sections...)
	if !ok {
		return nil
	}
	example := "for example etcd://10.0.0.30:2379,10.0.0.31:2379"
	if !strings.HasPrefix(v.text, mediatorScheme) {
		p.report(to, v.line, v.section, v.key, "%s in [%s] must start with %s (the mediator is an etcd cluster), %s; got %s%s",
			v.key, v.section, mediatorScheme, example, shown(v.text), inlineCommentHint(v.text))
		return nil
	}
	var out []string
	for _, part := range strings.Split(strings.TrimPrefix(v.text, mediatorScheme), ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			p.report(to, v.line, v.section, v.key, "%s in [%s] has an empty endpoint; list host:port entries separated by commas, %s; got %s",
				v.key, v.section, example, shown(v.text))
			return nil
		}
		if strings.Contains(part, "/") {
			p.report(to, v.line, v.section, v.key, "%s in [%s] has endpoint %q with a path or a second scheme; write each endpoint as host:port after one etcd://, %s",
				v.key, v.section, part, example)
			return nil
		}
		addr, err := hostPort(part, defaultEtcdPort)
		if err != nil {
			p.report(to, v.line, v.section, v.key, "%s in [%s]: endpoint %q %s%s", v.key, v.section, part, err, inlineCommentHint(v.text))
			return nil
		}
		if slices.Contains(out, addr) {
			p.report(to, v.line, v.section, v.key, "%s in [%s] lists %s twice; list each etcd member once", v.key, v.section, addr)
			return nil
		}
		out = append(out, addr)
	}
	return out
}
