package config

import (
	"fmt"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// How oslo.config turns the text of a value into what Cinder gets
// (oslo_config/cfg.py and types.py), for the types volrep reads. The
// differential test (oslo_diff_test.go) holds these to Debian's
// python3-oslo.config.

// template resolves oslo.config's string templates the way
// ConfigOpts._substitute does before any type conversion: "\$" and "$$" are a
// literal '$', and "$name" or "${name}" is replaced by the value of option
// name (or group.name). volrep does not resolve references: refs lists them,
// and the caller reports them. A '$' that starts no name stays as it is.
func template(s string) (text string, refs []string) {
	if !strings.Contains(s, "$") {
		return s, nil
	}
	s = strings.ReplaceAll(s, `\$`, "$$")
	var b strings.Builder
	for {
		i := strings.IndexByte(s, '$')
		if i < 0 {
			b.WriteString(s)
			return b.String(), refs
		}
		b.WriteString(s[:i])
		s = s[i:]
		switch {
		case strings.HasPrefix(s, "$$"):
			b.WriteByte('$')
			s = s[2:]
		case strings.HasPrefix(s, "${"):
			if m := templateName.FindString(s[2:]); m != "" && strings.HasPrefix(s[2+len(m):], "}") {
				refs = append(refs, m)
				b.WriteString(s[:3+len(m)])
				s = s[3+len(m):]
			} else {
				b.WriteByte('$')
				s = s[1:]
			}
		default:
			if m := templateName.FindString(s[1:]); m != "" {
				refs = append(refs, m)
				b.WriteString(s[:1+len(m)])
				s = s[1+len(m):]
			} else {
				b.WriteByte('$')
				s = s[1:]
			}
		}
	}
}

// templateName is ConfigOpts.Template.idpattern; string.Template matches it
// ignoring case.
var templateName = regexp.MustCompile(`^(?i)[_a-z][._a-z0-9]*`)

// pyInt parses an integer as Python's int(str) does for the values a
// cinder.conf holds: surrounding whitespace, a sign, leading zeros and
// single underscores between digits. Digits other than ASCII, which Python
// also takes, are refused here.
func pyInt(s string) (int, bool) {
	s = pyStrip(s)
	sign := ""
	if s != "" && (s[0] == '+' || s[0] == '-') {
		sign, s = s[:1], s[1:]
	}
	if s == "" || s[0] == '_' || s[len(s)-1] == '_' || strings.Contains(s, "__") {
		return 0, false
	}
	digits := strings.ReplaceAll(s, "_", "")
	for _, c := range digits {
		if c < '0' || c > '9' {
			return 0, false
		}
	}
	n, err := strconv.ParseInt(sign+digits, 10, 64)
	if err != nil {
		// Out of range: Python has no limit, and any bound here is smaller.
		if sign == "-" {
			return math.MinInt64, true
		}
		return math.MaxInt64, true
	}
	return int(n), true
}

// pyBool is oslo.config's types.Boolean: no whitespace is stripped.
func pyBool(s string) (bool, bool) {
	switch strings.ToLower(s) {
	case "true", "1", "on", "yes":
		return true, true
	case "false", "0", "off", "no":
		return false, true
	}
	return false, false
}

// osloDict is oslo.config's types.Dict of strings, which replication_device
// items are: "key:value" pairs separated by ','. A pair without ':' is not
// an error at once: Dict joins it to the next pair with its comma and tries
// again, so "a,b:c" is the key "a,b". What is left without a ':' at the end,
// an empty key and a repeated key are errors, and Cinder's driver does not
// start; err is the first, in oslo.config's words. After an empty or
// repeated key, where oslo.config stops, osloDict goes on (keeping a key's
// first value) so that the caller can say what else is wrong.
func osloDict(s string) (items []dictItem, err string) {
	s = pyStrip(s)
	if s == "" {
		return nil, ""
	}
	pairs := strings.Split(s, ",")
	seen := map[string]bool{}
	fail := func(msg string) {
		if err == "" {
			err = msg
		}
	}
	for len(pairs) > 0 {
		pair := pairs[0]
		pairs = pairs[1:]
		for !strings.Contains(pair, ":") {
			if len(pairs) == 0 {
				fail(`Value should be NAME:VALUE pairs separated by ","`)
				return items, err
			}
			pair += "," + pairs[0]
			pairs = pairs[1:]
		}
		k, v, _ := strings.Cut(pair, ":")
		k, v = pyStrip(k), pyStrip(v)
		switch {
		case k == "":
			fail("Key name should not be empty")
		case seen[k]:
			fail("Duplicate key " + k)
		default:
			seen[k] = true
			items = append(items, dictItem{k, v})
		}
	}
	return items, err
}

type dictItem struct{ key, val string }

// ratioPattern is max_over_subscription_ratio's regex in Cinder.
var ratioPattern = regexp.MustCompile(`^(auto|[0-9]*\.[0-9]+|[0-9]+)$`)

// cinderOpt is the type of a backend option that volrep does not use but
// Cinder does: a value of the wrong type makes Cinder fail where it reads
// it, so volrep checks it as oslo.config would convert it.
type cinderOpt struct {
	kind     string // "bool", "int", "float" or "choice"
	min, max float64
	choices  []string
}

// cinderOpts are the typed options among ignoredBackendKeys, as Cinder, the
// Pure driver and volrep's driver register them (the differential test
// compares this table with the registered options).
var cinderOpts = map[string]cinderOpt{
	"use_multipath_for_image_xfer":              {kind: "bool"},
	"enforce_multipath_for_image_xfer":          {kind: "bool"},
	"use_chap_auth":                             {kind: "bool"},
	"san_thin_provision":                        {kind: "bool"},
	"driver_ssl_cert_verify":                    {kind: "bool"},
	"suppress_requests_ssl_warnings":            {kind: "bool"},
	"image_volume_cache_enabled":                {kind: "bool"},
	"report_discard_supported":                  {kind: "bool"},
	"pure_eradicate_on_delete":                  {kind: "bool"},
	"pure_automatic_max_oversubscription_ratio": {kind: "bool"},
	"image_volume_cache_max_size_gb":            {kind: "int", min: math.Inf(-1), max: math.Inf(1)},
	"image_volume_cache_max_count":              {kind: "int", min: math.Inf(-1), max: math.Inf(1)},
	"volume_clear_size":                         {kind: "int", min: math.Inf(-1), max: 1024},
	"volume_copy_bps_limit":                     {kind: "int", min: math.Inf(-1), max: math.Inf(1)},
	"target_port":                               {kind: "int", min: 0, max: 65535},
	"volrep_timeout":                            {kind: "float", min: 1, max: math.Inf(1)},
	"volume_clear":                              {kind: "choice", choices: []string{"none", "zero"}},
	"target_helper":                             {kind: "choice", choices: []string{"tgtadm", "lioadm", "scstadmin", "iscsictl", "ietadm", "nvmet", "spdk-nvmeof", "fake"}},
	"target_protocol":                           {kind: "choice", choices: []string{"iscsi", "iser", "nvmet_rdma", "nvmet_tcp"}},
	"pure_host_personality":                     {kind: "choice", choices: []string{"aix", "esxi", "hitachi-vsp", "hpux", "oracle-vm-server", "solaris", "vms"}},
	"pure_nvme_transport":                       {kind: "choice", choices: []string{"roce"}},
}

// convert reads text as oslo.config converts it to the option's type. The
// result is the canonical text ("true"/"false", decimal numbers), "" for
// oslo.config's None (an empty number), and why it is refused otherwise.
func (o cinderOpt) convert(text string) (string, error) {
	switch o.kind {
	case "bool":
		b, ok := pyBool(text)
		if !ok {
			return "", fmt.Errorf("must be true or false (or yes/no, on/off, 1/0, in any case)")
		}
		return strconv.FormatBool(b), nil
	case "int", "float":
		if pyStrip(text) == "" {
			return "", nil
		}
		var f float64
		if o.kind == "int" {
			n, ok := pyInt(text)
			if !ok {
				return "", fmt.Errorf("must be a whole number")
			}
			f = float64(n)
		} else {
			var err error
			// Python's float() takes what ParseFloat does, less hex and
			// underscores.
			t := pyStrip(text)
			if f, err = strconv.ParseFloat(t, 64); err != nil || strings.ContainsAny(t, "_xX") || math.IsNaN(f) {
				return "", fmt.Errorf("must be a number")
			}
		}
		if f < o.min || f > o.max {
			return "", fmt.Errorf("must be from %g to %g", o.min, o.max)
		}
		return strconv.FormatFloat(f, 'f', -1, 64), nil
	default:
		if !slices.Contains(o.choices, text) {
			return "", fmt.Errorf("must be one of %s", strings.Join(o.choices, ", "))
		}
		return text, nil
	}
}
