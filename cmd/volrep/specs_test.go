package main

import (
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	driverv1 "github.com/volrep/volrep/proto/volrep/driver/v1"
)

func TestParseSpec(t *testing.T) {
	for _, tc := range []struct {
		arg, key, value string
	}{
		{"replication_enabled=<is> True", "replication_enabled", "<is> True"},
		{"replication_type=<in> async", "replication_type", "<in> async"},
		{"capabilities:qos=a=b=c", "capabilities:qos", "a=b=c"},
		{"k=  spaced  value ", "k", "  spaced  value "},
		{"k=a,b,c", "k", "a,b,c"},
		{"k=", "k", ""},
		{"k==", "k", "="},
	} {
		key, value, err := parseSpec(tc.arg)
		if err != nil {
			t.Errorf("parseSpec(%q): %v", tc.arg, err)
			continue
		}
		if key != tc.key || value != tc.value {
			t.Errorf("parseSpec(%q) = %q, %q; want %q, %q", tc.arg, key, value, tc.key, tc.value)
		}
	}
}

func TestParseSpecRejects(t *testing.T) {
	for _, arg := range []string{"", "novalue", "=value", "two words=x", "tab\tkey=x"} {
		if k, v, err := parseSpec(arg); err == nil {
			t.Errorf("parseSpec(%q) = %q, %q; want an error", arg, k, v)
		}
	}
}

func TestExtraSpecsFlag(t *testing.T) {
	var s extraSpecs
	for _, arg := range []string{"replication_enabled=<is> True", "b=x=y", "replication_enabled=<is> True"} {
		if err := s.Set(arg); err != nil {
			t.Fatalf("Set(%q): %v", arg, err)
		}
	}
	want := map[string]string{"replication_enabled": "<is> True", "b": "x=y"}
	if len(s.values) != len(want) {
		t.Fatalf("values = %q, want %q", s.values, want)
	}
	for k, v := range want {
		if s.values[k] != v {
			t.Errorf("values[%q] = %q, want %q", k, s.values[k], v)
		}
	}
	if got := s.String(); got != "replication_enabled=<is> True,b=x=y" {
		t.Errorf("String() = %q", got)
	}
	// The same key again with another value is a mistake, not an override.
	err := s.Set("replication_enabled=<is> False")
	if err == nil || !strings.Contains(err.Error(), "given twice") {
		t.Errorf("Set of a conflicting duplicate: err = %v, want 'given twice'", err)
	}
	if s.values["replication_enabled"] != "<is> True" {
		t.Errorf("conflicting Set changed the value to %q", s.values["replication_enabled"])
	}
}

func TestVolumeTypeFlags(t *testing.T) {
	var none volumeTypeFlags
	if vt := none.volumeType(); vt != nil {
		t.Errorf("no type flags: volumeType() = %v, want nil", vt)
	}

	var onlySpecs volumeTypeFlags
	if err := onlySpecs.specs.Set("replication_enabled=<is> True"); err != nil {
		t.Fatal(err)
	}
	want := &driverv1.VolumeType{ExtraSpecs: map[string]string{"replication_enabled": "<is> True"}}
	if got := onlySpecs.volumeType(); !proto.Equal(got, want) {
		t.Errorf("specs only: volumeType() = %v, want %v", got, want)
	}

	named := volumeTypeFlags{name: "gold", id: "t-1"}
	want = &driverv1.VolumeType{Id: "t-1", Name: "gold"}
	if got := named.volumeType(); !proto.Equal(got, want) {
		t.Errorf("named: volumeType() = %v, want %v", got, want)
	}
}
