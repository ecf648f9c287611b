package config

import (
	"errors"
	"fmt"
	"io/fs"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

func mustParse(t *testing.T, data []byte) *Config {
	t.Helper()
	cfg, err := Parse("t.conf", data)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func TestSeedLab(t *testing.T) {
	cfg, err := Load("testdata/seed-lab.conf")
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Problems) != 0 {
		t.Fatalf("the seed lab config must load cleanly:\n%v", cfg.Problems)
	}
	if len(cfg.Backends) != 2 {
		t.Fatalf("got %d backends, want 2", len(cfg.Backends))
	}
	async, sync := cfg.Backends[0], cfg.Backends[1]
	want := ReplicationDevice{
		BackendID: "pure2-async", SanIP: "10.0.0.20:7401",
		APIToken: "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx", Type: "async", Line: 24,
	}
	if got := async.AsyncTargets(); !reflect.DeepEqual(got, []ReplicationDevice{want}) {
		t.Errorf("puredriver-1 async targets = %#v, want %#v", got, want)
	}
	if got := async.SyncTargets(); len(got) != 0 {
		t.Errorf("puredriver-1 sync targets = %v, want none", got)
	}
	if got := sync.SyncTargets(); len(got) != 1 || got[0].BackendID != "pure2-sync" || got[0].Type != "sync" {
		t.Errorf("puredriver-2 sync targets = %+v, want pure2-sync", got)
	}
	if async.VolumeDriver != "cinder.volume.drivers.pure.PureISCSIDriver" || async.SanIP != "10.0.0.10:7401" ||
		async.APIToken.Reveal() != "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx" {
		t.Errorf("puredriver-1 = %+v", async)
	}
	// The lab's values, not the defaults.
	if async.ReplicaInterval != time.Hour || async.RetentionShortTerm != 24*time.Hour ||
		async.RetentionPerDay != 5 || async.RetentionDays != 7 {
		t.Errorf("puredriver-1 schedule = %v %v %d %d", async.ReplicaInterval, async.RetentionShortTerm, async.RetentionPerDay, async.RetentionDays)
	}
}

func TestDefaults(t *testing.T) {
	cfg := mustParse(t, conf(
		"[DEFAULT]",
		"enabled_backends = b1",
		"[b1]",
		"san_ip = array.example.com",
		"pure_api_token = tok-primary-0001",
		"[array:a]",
		"data_dir = /tmp/a",
		"listen = 127.0.0.1:7401",
		"api_token = tok-array-a-01",
	))
	if len(cfg.Problems) != 0 {
		t.Fatal(cfg.Problems)
	}
	want := Backend{
		Section: "b1", VolumeBackendName: "b1", SanIP: "array.example.com:7401", APIToken: "tok-primary-0001",
		ReplicaInterval: 3600 * time.Second, RetentionShortTerm: 14400 * time.Second, RetentionPerDay: 3, RetentionDays: 7,
		PGName: "cinder-group", PodName: "cinder-pod", Pool: "cinder", SyncTimeout: 5 * time.Second, PreferredArray: "primary", FailoverWait: 30 * time.Second,
		ReservedPercentage: 0, MaxOverSubscriptionRatio: 20, Line: 3,
	}
	if got := cfg.Backends[0]; !reflect.DeepEqual(got, want) {
		t.Errorf("backend:\n got %#v\nwant %#v", got, want)
	}
	wantDaemon := Daemon{DriverListen: "127.0.0.1:7400", LogFormat: "auto", LogLevel: "info", StateDir: "/var/lib/volrep/driver"}
	if cfg.Daemon != wantDaemon {
		t.Errorf("daemon = %+v, want %+v", cfg.Daemon, wantDaemon)
	}
	wantArray := Array{Name: "a", DataDir: "/tmp/a", Listen: "127.0.0.1:7401", APIToken: "tok-array-a-01", Pools: []string{"cinder"}, Line: 6,
		NBDMaxConnections: 1024}
	if !reflect.DeepEqual(cfg.Arrays, []Array{wantArray}) {
		t.Errorf("arrays = %#v, want %#v", cfg.Arrays, wantArray)
	}
}

func TestSettingsAreRead(t *testing.T) {
	cfg := mustParse(t, conf(
		"[DEFAULT]",
		"enabled_backends = b1",
		"[volrep]",
		"driver_listen = :7400",
		"driver_api_token = tok-driver-01",
		"metrics_listen = 127.0.0.1:9100",
		"log_format = journal",
		"log_level = debug",
		"state_dir = /srv/volrep",
		"[array:a]",
		"data_dir = /tmp/a",
		"listen = 127.0.0.1:7401",
		"api_token = tok-array-a-01",
		"nbd_listen = 127.0.0.1:10809",
		"pools = gold, silver, gold",
		"[b1]",
		"volume_backend_name = pure-gold",
		"san_ip = [fd00::10]:7401",
		"pure_api_token = tok-primary-0001",
		"replication_device = backend_id:s1, san_ip:fd00::20 , api_token:tok-s1-000001, type:sync",
		"pure_replication_pg_name = pg1",
		"pure_replication_pod_name = pod1",
		"volrep_pool = gold",
		"volrep_sync_timeout = 250",
		"volrep_preferred_array = primary",
		"reserved_percentage = 5",
		"max_over_subscription_ratio = 2.5",
	))
	if len(cfg.Problems) != 0 {
		t.Fatal(cfg.Problems)
	}
	d := cfg.Daemon
	if d.DriverListen != ":7400" || d.DriverAPIToken.Reveal() != "tok-driver-01" || d.MetricsListen != "127.0.0.1:9100" ||
		d.LogFormat != "journal" || d.LogLevel != "debug" || d.StateDir != "/srv/volrep" {
		t.Errorf("daemon = %+v", d)
	}
	a := cfg.Arrays[0]
	if a.NBDListen != "127.0.0.1:10809" || !reflect.DeepEqual(a.Pools, []string{"gold", "silver"}) {
		t.Errorf("array = %+v", a)
	}
	b := cfg.Backends[0]
	wantDev := []ReplicationDevice{{BackendID: "s1", SanIP: "[fd00::20]:7401", APIToken: "tok-s1-000001", Type: "sync", Line: 20}}
	if b.VolumeBackendName != "pure-gold" || b.SanIP != "[fd00::10]:7401" || !reflect.DeepEqual(b.ReplicationDevices, wantDev) ||
		b.PGName != "pg1" || b.PodName != "pod1" || b.Pool != "gold" || b.SyncTimeout != 250*time.Millisecond ||
		b.PreferredArray != "primary" || b.ReservedPercentage != 5 || b.MaxOverSubscriptionRatio != 2.5 {
		t.Errorf("backend = %+v", b)
	}
}

func TestBackendDefaults(t *testing.T) {
	cfg := mustParse(t, conf(
		"[DEFAULT]",
		"enabled_backends = b1, b2",
		"[backend_defaults]",
		"san_ip = 10.0.0.10",
		"pure_api_token = tok-shared-0001",
		"pure_replica_interval_default = 600",
		"replication_device = backend_id:r1,san_ip:10.0.0.20,api_token:tok-r1-000001",
		"use_chap_auth = True",
		"[b1]",
		"pure_replica_interval_default = 60",
		"[b2]",
		"san_ip = 10.0.0.11",
		"replication_device = backend_id:r2,san_ip:10.0.0.21,api_token:tok-r2-000002,type:sync",
	))
	if len(cfg.Problems) != 0 {
		t.Fatal(cfg.Problems)
	}
	b1, b2 := cfg.Backends[0], cfg.Backends[1]
	if b1.SanIP != "10.0.0.10:7401" || b1.APIToken.Reveal() != "tok-shared-0001" || b1.ReplicaInterval != time.Minute {
		t.Errorf("b1 = %+v: want san_ip and token inherited, interval overridden", b1)
	}
	if len(b1.ReplicationDevices) != 1 || b1.ReplicationDevices[0].BackendID != "r1" || b1.ReplicationDevices[0].Line != 7 {
		t.Errorf("b1 devices = %+v, want r1 from [backend_defaults] line 7", b1.ReplicationDevices)
	}
	if b2.SanIP != "10.0.0.11:7401" || b2.APIToken.Reveal() != "tok-shared-0001" || b2.ReplicaInterval != 10*time.Minute {
		t.Errorf("b2 = %+v: want san_ip overridden, token and interval inherited", b2)
	}
	// A backend's own replication_device list replaces the default list.
	if len(b2.ReplicationDevices) != 1 || b2.ReplicationDevices[0].BackendID != "r2" {
		t.Errorf("b2 devices = %+v, want only r2", b2.ReplicationDevices)
	}
}

func TestBackendDefaultsProblems(t *testing.T) {
	cfg := mustParse(t, conf(
		"[DEFAULT]",
		"enabled_backends = b1, b2",
		"[backend_defaults]",
		"pure_replica_interval_default = never",
		"pure_api_tokn = tok-shared-0001",
		"[b1]",
		"san_ip = 10.0.0.10",
		"pure_api_token = tok-primary-0001",
		"[b2]",
		"san_ip = 10.0.0.11",
		"pure_api_token = tok-primary-0002",
		"pure_replica_interval_default = 60",
	))
	interval := `t.conf:4: pure_replica_interval_default in [backend_defaults] must be a whole number of seconds greater than 0; got "never"`
	unknown := `t.conf:5: unknown key "pure_api_tokn" in [backend_defaults]; did you mean "pure_api_token"?`
	// Reported once file-wide, and against each backend it reaches: b2
	// overrides the interval but may have lost the misspelt key.
	check := func(what string, got Problems, want ...string) {
		t.Helper()
		if g := problemLines(got); !reflect.DeepEqual(g, want) {
			t.Errorf("%s:\n got %q\nwant %q", what, g, want)
		}
	}
	check("file", cfg.Problems, interval, unknown)
	check("b1", cfg.Backends[0].Problems, interval, unknown)
	check("b2", cfg.Backends[1].Problems, unknown)

	// And checked when no backend uses them at all.
	cfg = mustParse(t, conf("[backend_defaults]", "pure_replica_interval_default = 0", "[array:a]", "data_dir = /a", "listen = :1", "api_token = tok-array-a-01"))
	check("unused defaults", cfg.Problems,
		`t.conf:2: pure_replica_interval_default in [backend_defaults] must be a whole number of seconds greater than 0; got "0"`)
}

// TestScheduleDefaultsWithinTheAPIBounds: the schedule defaults go to the
// arrays' API, which refuses more than a year between cycles, ten years of
// retention or more than a snapshot a minute; the config says so at start
// instead of a backend failing later (issue 12, item 10).
func TestScheduleDefaultsWithinTheAPIBounds(t *testing.T) {
	cfg := mustParse(t, conf("[backend_defaults]",
		"pure_replica_interval_default = 31536001",
		"pure_replica_retention_short_term_default = 315360001",
		"pure_replica_retention_long_term_per_day_default = 1441",
		"pure_replica_retention_long_term_default = 3651",
		"[array:a]", "data_dir = /a", "listen = :1", "api_token = tok-array-a-01"))
	want := []string{
		`t.conf:2: pure_replica_interval_default in [backend_defaults] must be at most 31536000; got "31536001"`,
		`t.conf:3: pure_replica_retention_short_term_default in [backend_defaults] must be at most 315360000; got "315360001"`,
		`t.conf:4: pure_replica_retention_long_term_per_day_default in [backend_defaults] must be at most 1440; got "1441"`,
		`t.conf:5: pure_replica_retention_long_term_default in [backend_defaults] must be at most 3650; got "3651"`,
	}
	if got := problemLines(cfg.Problems); !reflect.DeepEqual(got, want) {
		t.Errorf("got %q\nwant %q", got, want)
	}
}

// A problem in one backend (or array) is its own: the others load and are
// usable, and the problem is attached where the daemon will report it.
func TestProblemsStayWithTheirBackend(t *testing.T) {
	cfg := mustParse(t, conf(
		"[DEFAULT]",
		"enabled_backends = bad, good, missing",
		"[bad]",
		"san_ip = 10.0.0.10",
		"pure_api_token = tok-primary-0001",
		"replication_device = backend_id:r1,san_ip:10.0.0.20,api_tokn:tok-r1-000001",
		"[good]",
		"san_ip = 10.0.0.11",
		"pure_api_token = tok-primary-0002",
		"replication_device = backend_id:r1,san_ip:10.0.0.21,api_token:tok-r1-000002",
		"[array:a]",
		"data_dir = /tmp/a",
		"listen = nowhere",
		"api_token = tok-array-a-01",
		"[array:b]",
		"data_dir = /tmp/b",
		"listen = 127.0.0.1:7402",
		"api_token = tok-array-b-01",
	))
	if len(cfg.Backends) != 3 {
		t.Fatalf("got %d backends, want all 3 including those with problems", len(cfg.Backends))
	}
	bad, good, missing := cfg.Backends[0], cfg.Backends[1], cfg.Backends[2]
	want := Problem{File: "t.conf", Line: 6, Section: "bad", Key: "replication_device",
		Message: `unknown key "api_tokn" in replication_device "r1" of [bad]; did you mean "api_token"?`}
	if !reflect.DeepEqual(bad.Problems, Problems{want}) {
		t.Errorf("bad.Problems = %#v, want %#v", bad.Problems, want)
	}
	if len(good.Problems) != 0 || good.SanIP != "10.0.0.11:7401" || len(good.AsyncTargets()) != 1 {
		t.Errorf("good = %+v, want usable", good)
	}
	if len(missing.Problems) != 1 || missing.Line != 2 || missing.Problems[0].Key != "enabled_backends" {
		t.Errorf("missing = %+v, want one problem at enabled_backends", missing)
	}
	if len(cfg.Arrays[0].Problems) != 1 || cfg.Arrays[0].Problems[0].Line != 13 || len(cfg.Arrays[1].Problems) != 0 {
		t.Errorf("arrays = %+v, want a problem in a only", cfg.Arrays)
	}
	if len(cfg.Problems) != 3 {
		t.Errorf("file-wide problems = %v, want the 3 above", cfg.Problems)
	}
}

func TestProblemsError(t *testing.T) {
	ps := Problems{{File: "f", Line: 2, Message: "b"}, {File: "f", Line: 10, Message: "a"}}
	if got := ps.Error(); got != "f:2: b\nf:10: a" {
		t.Errorf("Error() = %q", got)
	}
	if err := ps.Err(); err == nil || err.Error() != ps.Error() {
		t.Errorf("Err() = %v", err)
	}
	if err := (Problems{}).Err(); err != nil {
		t.Errorf("Err() of no problems = %v, want nil", err)
	}
	var one error = ps[0]
	if one.Error() != "f:2: b" {
		t.Errorf("Problem.Error() = %q", one)
	}
}

func TestLoad(t *testing.T) {
	_, err := Load("testdata/no-such.conf")
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Load of a missing file: err = %v, want not-exist", err)
	}
	cfg, err := Load("testdata/typos.conf")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.File != "testdata/typos.conf" || len(cfg.Problems) == 0 || !strings.HasPrefix(cfg.Problems[0].String(), "testdata/typos.conf:") {
		t.Errorf("Load(typos.conf): File %q, problems %v", cfg.File, cfg.Problems)
	}
}

func TestNBDLimitsAreRead(t *testing.T) {
	cfg := mustParse(t, conf(
		"[array:a]",
		"data_dir = /tmp/a",
		"listen = 127.0.0.1:7401",
		"api_token = tok-array-a-01",
		"nbd_listen = 127.0.0.1:10809",
		"nbd_max_connections = 64",
		"nbd_idle_timeout = 0",
		"[array:b]",
		"data_dir = /tmp/b",
		"listen = 127.0.0.1:7402",
		"api_token = tok-array-b-01",
		"nbd_listen = 127.0.0.1:10810",
		"nbd_idle_timeout = 90",
	))
	if len(cfg.Problems) != 0 {
		t.Fatal(cfg.Problems)
	}
	if a := cfg.Arrays[0]; a.NBDMaxConnections != 64 || a.NBDIdleTimeout != 0 {
		t.Errorf("[array:a]: max connections %d, idle timeout %v; want 64 and 0 (none)", a.NBDMaxConnections, a.NBDIdleTimeout)
	}
	if b := cfg.Arrays[1]; b.NBDMaxConnections != 1024 || b.NBDIdleTimeout != 90*time.Second {
		t.Errorf("[array:b]: max connections %d, idle timeout %v; want 1024 and 90s", b.NBDMaxConnections, b.NBDIdleTimeout)
	}
}

func TestISCSISettingsAreRead(t *testing.T) {
	cfg := mustParse(t, conf(
		"[array:site_A]",
		"data_dir = /tmp/a",
		"listen = 127.0.0.1:7401",
		"api_token = tok-array-a-01",
		"iscsi_listen = 127.0.0.1, 127.0.0.2:3261,[::1]:0",
		"[array:b]",
		"data_dir = /tmp/b",
		"listen = 127.0.0.1:7402",
		"api_token = tok-array-b-01",
		"iscsi_listen = 127.0.0.1:3262",
		"iscsi_target_iqn = iqn.2001-04.com.example:storage.b",
		"[array:c]",
		"data_dir = /tmp/c",
		"listen = 127.0.0.1:7403",
		"api_token = tok-array-c-01",
	))
	if len(cfg.Problems) != 0 {
		t.Fatal(cfg.Problems)
	}
	a, b, c := cfg.Arrays[0], cfg.Arrays[1], cfg.Arrays[2]
	if !reflect.DeepEqual(a.ISCSIListen, []string{"127.0.0.1:3260", "127.0.0.2:3261", "[::1]:0"}) || a.ISCSITargetIQN != "iqn.2026-12.io.volrep:site-a" {
		t.Errorf("array a: portals %q, target %q", a.ISCSIListen, a.ISCSITargetIQN)
	}
	if !reflect.DeepEqual(b.ISCSIListen, []string{"127.0.0.1:3262"}) || b.ISCSITargetIQN != "iqn.2001-04.com.example:storage.b" {
		t.Errorf("array b: portals %q, target %q", b.ISCSIListen, b.ISCSITargetIQN)
	}
	if len(c.ISCSIListen) != 0 {
		t.Errorf("array c serves iSCSI on %q without iscsi_listen", c.ISCSIListen)
	}
}

// TestISCSIPortGroup: the ALUA port group is the array's own when set,
// taken from its name when not, and two arrays of one file may not share
// one (a host's multipath would take both arrays' paths for one group).
func TestISCSIPortGroup(t *testing.T) {
	arr := func(name, extra string) []string {
		return []string{"[array:" + name + "]", "data_dir = /tmp/" + name, "listen = 127.0.0.1:0", "api_token = tok-array-0001",
			"iscsi_listen = 127.0.0.1:0", extra}
	}
	cfg := mustParse(t, conf(append(arr("a", "iscsi_port_group = 2"), arr("b", "")...)...))
	if len(cfg.Problems) != 0 {
		t.Fatal(cfg.Problems)
	}
	if a, b := cfg.Arrays[0].ISCSIPortGroup, cfg.Arrays[1].ISCSIPortGroup; a != 2 || b != DefaultPortGroup("b") || b == DefaultPortGroup("a") {
		t.Errorf("port groups %d and %d; want 2 and %d", a, b, DefaultPortGroup("b"))
	}
	for _, tc := range []struct {
		lines []string
		want  string
	}{
		{append(arr("a", "iscsi_port_group = 9"), arr("b", "iscsi_port_group = 9")...), "iscsi_port_group of [array:b] is 9, the same as [array:a]'s"},
		{arr("a", "iscsi_port_group = 0"), "must be a whole number from 1 to 65535"},
		{arr("a", "iscsi_port_group = 65536"), "must be at most 65535"},
		{[]string{"[array:a]", "data_dir = /tmp/a", "listen = 127.0.0.1:0", "api_token = tok-array-0001", "iscsi_port_group = 3"},
			"has no effect without iscsi_listen"},
	} {
		cfg := mustParse(t, conf(tc.lines...))
		if !strings.Contains(fmt.Sprint(cfg.Problems), tc.want) {
			t.Errorf("%q: problems %v, want one saying %q", tc.lines, cfg.Problems, tc.want)
		}
	}
}

func TestPodMediatorEndpoints(t *testing.T) {
	cfg, err := Parse("t.conf", []byte(strings.Join([]string{
		"[DEFAULT]",
		"enabled_backends = b1, b2",
		"[b1]",
		"san_ip = 10.0.0.10",
		"pure_api_token = tok-primary-0001",
		"replication_device = backend_id:s1,san_ip:10.0.0.20,api_token:tok-s1-000001,type:sync",
		"volrep_pod_mediator = etcd://10.0.0.30:2379, med-b ,[fd00::1]:12379",
		"[b2]",
		"san_ip = 10.0.0.10",
		"pure_api_token = tok-primary-0001",
		"[array:a]",
		"data_dir = /tmp/a",
		"listen = 127.0.0.1:7401",
		"api_token = tok-array-0001",
		"volrep_pod_mediator = etcd://127.0.0.1:2379",
	}, "\n")))
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Problems) > 0 {
		t.Fatalf("problems: %v", cfg.Problems)
	}
	want := []string{"10.0.0.30:2379", "med-b:2379", "[fd00::1]:12379"}
	if got := cfg.Backends[0].PodMediator; !slices.Equal(got, want) {
		t.Errorf("b1's mediator %v, want %v", got, want)
	}
	if got := cfg.Backends[1].PodMediator; got != nil {
		t.Errorf("b2 names no mediator but has %v", got)
	}
	if got := cfg.Arrays[0].PodMediator; !slices.Equal(got, []string{"127.0.0.1:2379"}) {
		t.Errorf("the array's mediator %v", got)
	}
}

// A pod with a mediator may prefer its sync target at a partition.
func TestPreferredArrayNamesTheSyncTargetWithAMediator(t *testing.T) {
	cfg := mustParse(t, conf(
		"[DEFAULT]",
		"enabled_backends = b1",
		"[b1]",
		"san_ip = 10.0.0.10",
		"pure_api_token = tok-primary-0001",
		"replication_device = backend_id:s1,san_ip:10.0.0.20,api_token:tok-s1-000001,type:sync",
		"volrep_pod_mediator = etcd://10.0.0.30:2379",
		"volrep_preferred_array = s1",
	))
	if len(cfg.Problems) != 0 {
		t.Fatal(cfg.Problems)
	}
	if b := cfg.Backends[0]; b.PreferredArray != "s1" || !reflect.DeepEqual(b.PodMediator, []string{"10.0.0.30:2379"}) {
		t.Fatalf("preferred array %q, mediator %v", b.PreferredArray, b.PodMediator)
	}
}
