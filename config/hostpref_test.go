package config

import (
	"reflect"
	"testing"
)

// TestHostPreferences: the entries are read in order, and the first whose
// pattern matches a connector's host name gives its array.
func TestHostPreferences(t *testing.T) {
	cfg, err := Parse("t.conf", conf(
		"[DEFAULT]",
		"enabled_backends = b1",
		"[b1]",
		"san_ip = 10.0.0.10",
		"pure_api_token = tok-primary-0001",
		"replication_device = backend_id:site-b,san_ip:10.0.0.20,api_token:tok-s1-000001,type:sync",
		"volrep_host_preferred_arrays = compute-b-* : site-b,db-[0-9]:site-b,  *:primary",
	))
	if err != nil || len(cfg.Problems) > 0 {
		t.Fatalf("Parse: %v %v", err, cfg.Problems)
	}
	prefs := cfg.Backends[0].HostPreferences
	want := []HostPreference{{"compute-b-*", "site-b"}, {"db-[0-9]", "site-b"}, {"*", "primary"}}
	if !reflect.DeepEqual(prefs, want) {
		t.Fatalf("HostPreferences = %+v, want %+v", prefs, want)
	}
	for host, want := range map[string]string{"compute-b-7": "site-b", "db-3": "site-b", "db-30": "primary", "compute-a-1": "primary", "": ""} {
		got, ok := PreferenceOf(prefs, host)
		if got != want || ok != (want != "") {
			t.Errorf("PreferenceOf(%q) = %q, %v; want %q", host, got, ok, want)
		}
	}
	if got, ok := PreferenceOf(want[:1], "compute-a-1"); ok {
		t.Errorf("a host no entry matches prefers %q", got)
	}
}
