package main

import (
	"bytes"
	"encoding/json"
	"regexp"
	"strings"
	"testing"

	"github.com/volrep/volrep/config"
)

const checkConf = `[DEFAULT]
enabled_backends = b1

[volrep]
driver_api_token = tok-driver-secret-01

[array:a]
data_dir = /srv/a
listen = 127.0.0.1:7401
api_token = tok-array-secret-02
iscsi_listen = 127.0.0.1:3260, 127.0.0.2

[b1]
san_ip = 127.0.0.1
pure_api_token = tok-primary-secret-03
replication_device = backend_id:r1,
    san_ip:127.0.0.2:7402,
    api_token:tok-target-secret-04
pure_replica_interval_default = 600
use_multipath_for_image_xfer = Yes
pure_replication_pg_name = bad name
`

// -o json shows what volrepd read, with every token masked, and the
// problems with their file and line; text shows the problems only.
func TestCheckConfigJSON(t *testing.T) {
	cfg, err := config.Parse("c.conf", []byte(checkConf))
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := printCheck(&out, cfg, "json"); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out.String(), "secret") {
		t.Fatalf("a token leaked into the JSON:\n%s", out.String())
	}
	var v config.View
	if err := json.Unmarshal(out.Bytes(), &v); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	if v.Daemon.DriverAPIToken != "****" || len(v.Arrays) != 1 || v.Arrays[0].APIToken != "****" || v.Arrays[0].Listen != "127.0.0.1:7401" {
		t.Errorf("daemon %+v, arrays %+v", v.Daemon, v.Arrays)
	}
	if a := v.Arrays[0]; len(a.ISCSIListen) != 2 || a.ISCSIListen[0] != "127.0.0.1:3260" || a.ISCSIListen[1] != "127.0.0.2:3260" ||
		a.ISCSITargetIQN != "iqn.2026-12.io.volrep:a" {
		t.Errorf("iSCSI of array a = %v %q", a.ISCSIListen, a.ISCSITargetIQN)
	}
	if len(v.Backends) != 1 {
		t.Fatalf("backends = %+v", v.Backends)
	}
	b := v.Backends[0]
	wantDev := []config.ReplicationDeviceView{{BackendID: "r1", SanIP: "127.0.0.2:7402", APIToken: "****", Type: "async", Line: 16}}
	if b.SanIP != "127.0.0.1:7401" || b.APIToken != "****" || b.ReplicaInterval != 600 || b.PGName != "cinder-group" ||
		b.CinderOptions["use_multipath_for_image_xfer"] != "true" || b.Problems != 1 ||
		len(b.ReplicationDevices) != 1 || b.ReplicationDevices[0] != wantDev[0] {
		t.Errorf("backend = %+v", b)
	}
	if len(v.Problems) != 1 || v.Problems[0].File != "c.conf" || v.Problems[0].Line != 21 || v.Problems[0].Key != "pure_replication_pg_name" {
		t.Errorf("problems = %+v", v.Problems)
	}

	out.Reset()
	if err := printCheck(&out, cfg, "text"); err != nil {
		t.Fatal(err)
	}
	if got := out.String(); !strings.HasPrefix(got, "c.conf:21: pure_replication_pg_name in [b1]") || strings.Count(got, "\n") != 1 {
		t.Errorf("text output = %q", got)
	}
}

// -o ini writes the effective configuration, tokens masked, and the file
// it writes is one volrepd reads back without problems.
func TestCheckConfigINI(t *testing.T) {
	cfg, err := config.Parse("c.conf", []byte(strings.Replace(checkConf, "bad name", "gold", 1)))
	if err != nil || len(cfg.Problems) > 0 {
		t.Fatal(err, cfg.Problems)
	}
	var out bytes.Buffer
	if err := printCheck(&out, cfg, "ini"); err != nil {
		t.Fatal(err)
	}
	text := out.String()
	if strings.Contains(text, "secret") {
		t.Fatalf("a token leaked into the ini:\n%s", text)
	}
	// ini.v1 aligns the '=' of a section's keys.
	compact := regexp.MustCompile(` += `).ReplaceAllString(text, " = ")
	for _, want := range []string{"[DEFAULT]\nenabled_backends = b1\n", "\n[array:a]\n", "\niscsi_target_iqn = iqn.2026-12.io.volrep:a\n",
		"\nreplication_device = backend_id:r1,san_ip:127.0.0.2:7402,api_token:****,type:async\n",
		"\npure_replication_pg_name = gold\n", "\nuse_multipath_for_image_xfer = true\n"} {
		if !strings.Contains(compact, want) {
			t.Errorf("the ini lacks %q:\n%s", want, text)
		}
	}
	back, err := config.Parse("effective.conf", out.Bytes())
	if err != nil || len(back.Problems) > 0 {
		t.Fatalf("reading it back: %v %v", err, back.Problems)
	}
}
