package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	driverv1 "github.com/volrep/volrep/proto/volrep/driver/v1"
)

// extraSpecs is the value of a repeatable --spec key=value flag. Only the
// first "=" separates key from value, and the value is kept byte for byte, so
// --spec replication_enabled='<is> True' and --spec a=b=c keep their spaces,
// "<is>" operators and later "=" signs. (A StringSlice flag would also split
// values on commas; this does not.)
type extraSpecs struct {
	keys   []string // in the order given, for messages
	values map[string]string
}

func (s *extraSpecs) Type() string { return "key=value" }

func (s *extraSpecs) String() string {
	parts := make([]string, len(s.keys))
	for i, k := range s.keys {
		parts[i] = k + "=" + s.values[k]
	}
	return strings.Join(parts, ",")
}

func (s *extraSpecs) Set(arg string) error {
	key, value, err := parseSpec(arg)
	if err != nil {
		return err
	}
	if s.values == nil {
		s.values = map[string]string{}
	}
	if old, dup := s.values[key]; dup && old != value {
		return fmt.Errorf("extra spec %q given twice (%q and %q)", key, old, value)
	} else if !dup {
		s.keys = append(s.keys, key)
	}
	s.values[key] = value
	return nil
}

// parseSpec splits "key=value" at the first "=". The key may not be empty or
// contain whitespace; the value may be anything, including empty.
func parseSpec(arg string) (key, value string, err error) {
	key, value, ok := strings.Cut(arg, "=")
	switch {
	case !ok:
		return "", "", fmt.Errorf("want key=value, e.g. replication_enabled='<is> True'")
	case key == "":
		return "", "", fmt.Errorf("empty key in %q", arg)
	case strings.ContainsAny(key, " \t\r\n"):
		return "", "", fmt.Errorf("key %q contains whitespace", key)
	}
	return key, value, nil
}

// volumeTypeFlags are the flags that describe a volume type: its name and
// extra specs, as the volume manager would pass them.
type volumeTypeFlags struct {
	name  string
	id    string
	specs extraSpecs
}

func (v *volumeTypeFlags) add(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringVar(&v.name, "type", "", "volume type name")
	f.StringVar(&v.id, "type-id", "", "volume type ID")
	f.Var(&v.specs, "spec", "volume type extra spec, repeatable: --spec replication_enabled='<is> True' --spec replication_type='<in> async'")
}

// volumeType returns the VolumeType to send, or nil when none was described.
func (v *volumeTypeFlags) volumeType() *driverv1.VolumeType {
	if v.name == "" && v.id == "" && len(v.specs.values) == 0 {
		return nil
	}
	vt := &driverv1.VolumeType{Id: v.id, Name: v.name}
	if len(v.specs.values) > 0 {
		vt.ExtraSpecs = make(map[string]string, len(v.specs.values))
		for k, val := range v.specs.values {
			vt.ExtraSpecs[k] = val
		}
	}
	return vt
}
