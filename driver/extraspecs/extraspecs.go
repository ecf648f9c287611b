// Package extraspecs evaluates volume-type extra specs with the grammar of
// Cinder's scheduler (cinder/scheduler/filters/extra_specs_ops.py), and
// decides from them where a replicated volume goes.
package extraspecs

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/volrep/volrep/errdefs"
)

// Match reports whether a capability value satisfies a requirement, the
// way Cinder's scheduler does: the first word may be an operator
// (=, ==, !=, >=, <=, s==, s!=, s<, s<=, s>, s>=, <in>, <is>, <or>);
// without one the requirement must equal the value. Note that <in> is a
// substring test, so "<in> sync" is satisfied by "async".
func Match(value, req string) bool {
	words := strings.Fields(req)
	if len(words) == 0 {
		return value == req
	}
	op := words[0]
	if op == "<or>" {
		// "<or> v1 <or> v2 ...": every other word is an alternative.
		for i := 1; i < len(words); i += 2 {
			if words[i] == value {
				return true
			}
		}
		return false
	}
	method, ok := ops[op]
	if !ok {
		return value == req
	}
	if len(words) < 2 {
		return false
	}
	return method(value, words[1])
}

var ops = map[string]func(x, y string) bool{
	"=":    numeric(func(x, y float64) bool { return x >= y }),
	"==":   numeric(func(x, y float64) bool { return x == y }),
	"!=":   numeric(func(x, y float64) bool { return x != y }),
	">=":   numeric(func(x, y float64) bool { return x >= y }),
	"<=":   numeric(func(x, y float64) bool { return x <= y }),
	"<in>": strings.Contains,
	"<is>": func(x, y string) bool { return ParseBool(x) == ParseBool(y) },
	"s==":  func(x, y string) bool { return x == y },
	"s!=":  func(x, y string) bool { return x != y },
	"s<":   func(x, y string) bool { return x < y },
	"s<=":  func(x, y string) bool { return x <= y },
	"s>":   func(x, y string) bool { return x > y },
	"s>=":  func(x, y string) bool { return x >= y },
}

// numeric compares as floats; a value that is not a number fails the
// match, as Cinder's ValueError does.
func numeric(f func(x, y float64) bool) func(x, y string) bool {
	return func(x, y string) bool {
		a, err1 := strconv.ParseFloat(strings.TrimSpace(x), 64)
		b, err2 := strconv.ParseFloat(strings.TrimSpace(y), 64)
		return err1 == nil && err2 == nil && f(a, b)
	}
}

// ParseBool is oslo's bool_from_string with default False.
func ParseBool(s string) bool {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "1", "t", "true", "on", "y", "yes":
		return true
	}
	return false
}

// Spec keys the driver reads. Cinder's CapabilitiesFilter also accepts them
// with a "capabilities:" scope.
const (
	KeyReplicationEnabled = "replication_enabled"
	KeyReplicationType    = "replication_type"
	KeyGroupReplication   = "consistent_group_replication_enabled"
)

// Replication types.
const (
	None  = ""
	Async = "async"
	Sync  = "sync"
)

// Get returns a spec by key, scoped or not.
func Get(specs map[string]string, key string) (string, bool) {
	if v, ok := specs[key]; ok {
		return v, true
	}
	v, ok := specs["capabilities:"+key]
	return v, ok
}

// Enabled reports whether a boolean spec such as replication_enabled asks
// for the capability, evaluated against a backend that offers it.
func Enabled(specs map[string]string, key string) bool {
	v, ok := Get(specs, key)
	return ok && Match("True", v)
}

// ReplicationTypes returns the replication types a volume type accepts, in
// the order it lists them: none for an unreplicated type, async when
// replication is enabled without a type.
//
// Unlike the scheduler's substring <in>, the type must name exactly
// "async" or "sync": "<in> asnyc" is refused instead of silently giving an
// unreplicated volume, and "<in> sync" never means async.
func ReplicationTypes(specs map[string]string) ([]string, error) {
	if !Enabled(specs, KeyReplicationEnabled) {
		return nil, nil
	}
	raw, ok := Get(specs, KeyReplicationType)
	if !ok {
		return []string{Async}, nil
	}
	words := strings.Fields(raw)
	var tokens []string
	switch {
	case len(words) == 0:
		return nil, badType(raw, "it is empty")
	case words[0] == "<in>" || words[0] == "s==":
		if len(words) != 2 {
			return nil, badType(raw, fmt.Sprintf("%s takes exactly one value", words[0]))
		}
		tokens = words[1:]
	case words[0] == "<or>":
		for i, w := range words {
			if i%2 == 0 && w != "<or>" {
				return nil, badType(raw, "alternatives must be separated by <or>")
			}
			if i%2 == 1 {
				tokens = append(tokens, w)
			}
		}
		if len(tokens) == 0 {
			return nil, badType(raw, "<or> needs at least one value")
		}
	case len(words) == 1 && !strings.HasPrefix(words[0], "<"):
		tokens = words
	default:
		return nil, badType(raw, fmt.Sprintf("operator %q does not apply to replication_type", words[0]))
	}
	for _, t := range tokens {
		if t != Async && t != Sync {
			return nil, badType(raw, fmt.Sprintf("%q is not a replication type", t))
		}
	}
	return tokens, nil
}

func badType(raw, why string) error {
	return errdefs.InvalidArgument("volume_type.extra_specs.replication_type",
		"%q: %s; accepted values are '<in> async' and '<in> sync'", raw, why)
}
