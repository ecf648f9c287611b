package config

import (
	"reflect"
	"strings"
	"testing"
)

// conf joins lines so that a test's line numbers are positions in its list.
func conf(lines ...string) []byte { return []byte(strings.Join(lines, "\n") + "\n") }

func problemLines(ps Problems) []string {
	var out []string
	for _, p := range ps {
		out = append(out, p.String())
	}
	return out
}

// TestRules checks that each rule yields exactly the expected lines: line
// numbers, wording and suggestions.
func TestRules(t *testing.T) {
	tests := []struct {
		name string
		conf []byte
		want []string
	}{
		{
			name: "a minimal backend and generic Cinder keys are accepted",
			conf: conf(
				"[DEFAULT]",
				"enabled_backends = b1",
				"[b1]",
				"san_ip = 10.0.0.10",
				"pure_api_token = tok-primary-0001",
				"use_multipath_for_image_xfer = True",
				"image_volume_cache_enabled = True",
				"pure_host_personality = esxi",
				"reserved_percentage = 10",
				"max_over_subscription_ratio = auto",
			),
		},
		{
			name: "unknown backend keys, with and without a suggestion",
			conf: conf(
				"[DEFAULT]",
				"enabled_backends = b1",
				"[b1]",
				"san_ip = 10.0.0.10",
				"pure_api_token = tok-primary-0001",
				"pure_replica_intreval_default = 60",
				"frobnicate = yes",
			),
			want: []string{
				`t.conf:6: unknown key "pure_replica_intreval_default" in [b1]; did you mean "pure_replica_interval_default"?`,
				`t.conf:7: unknown key "frobnicate" in [b1]; check the spelling or delete the line`,
			},
		},
		{
			name: "replication_device keys: unknown, missing, unknown type, repeated",
			conf: conf(
				"[DEFAULT]",
				"enabled_backends = b1",
				"[b1]",
				"san_ip = 10.0.0.10",
				"pure_api_token = tok-primary-0001",
				"replication_device = bakend_id:r1,san_ip:10.0.0.20,api_token:tok-r1-000001",
				"replication_device = type:sync",
				"replication_device = backend_id:r3,san_ip:10.0.0.30:7401,api_token:tok-r3-000003,type:Sync",
				"replication_device = backend_id:r4,san_ip:10.0.0.40,api_token:tok-r4-000004,colour:red,san_ip:10.0.0.41",
				"replication_device = backend_id:r5,san_ip=10.0.0.50,api_token:tok-r5-000005,tok-r5-000005",
				"replication_device =",
			),
			want: []string{
				`t.conf:6: unknown key "bakend_id" in replication_device of [b1]; did you mean "backend_id"?`,
				`t.conf:7: replication_device of [b1] has no backend_id; add backend_id:NAME`,
				`t.conf:7: replication_device of [b1] has no san_ip; add san_ip:HOST[:PORT]`,
				`t.conf:7: replication_device of [b1] has no api_token; add api_token:TOKEN`,
				`t.conf:8: type "Sync" in replication_device "r3" of [b1] is not one of async, sync; did you mean "sync"?`,
				`t.conf:9: unknown key "colour" in replication_device "r4" of [b1]; the keys are backend_id, san_ip, api_token, type`,
				`t.conf:9: replication_device "r4" of [b1] sets san_ip more than once, which oslo.config refuses, so Cinder's driver does not start; keep one`,
				`t.conf:10: replication_device "r5" of [b1]: write san_ip:VALUE, with a colon, not san_ip=VALUE`,
				`t.conf:10: replication_device "r5" of [b1]: item 4 is not key:value; separate each key from its value with ':' and the items with ','`,
				`t.conf:11: replication_device in [b1] is empty; write backend_id:NAME,san_ip:HOST[:PORT],api_token:TOKEN[,type:async|sync] or delete the line`,
			},
		},
		{
			// ini.v1 drops empty values; the line numbers must not shift.
			// oslo.config keeps empty values, and the last san_ip wins.
			name: "empty occurrences keep their place",
			conf: conf(
				"[DEFAULT]",
				"enabled_backends = b1",
				"[b1]",
				"san_ip =",
				"san_ip = 10.0.0.10",
				"pure_api_token = tok-primary-0001",
				"replication_device =",
				"replication_device = backend_id:r1,san_ip:10.0.0.20,api_token:tok-r1-000001",
				"replication_device = backend_id:r1,san_ip:10.0.0.20,api_token:tok-r1-000001",
			),
			want: []string{
				`t.conf:5: duplicate key "san_ip" in [b1] (first set at line 4); only replication_device may repeat, and Cinder uses the last one, so delete the one you do not mean`,
				`t.conf:7: replication_device in [b1] is empty; write backend_id:NAME,san_ip:HOST[:PORT],api_token:TOKEN[,type:async|sync] or delete the line`,
				`t.conf:9: duplicate backend_id "r1" in [b1] (first used at line 8); give each replication_device its own backend_id`,
			},
		},
		{
			name: "duplicate and reserved backend_id, and a target that is the primary",
			conf: conf(
				"[DEFAULT]",
				"enabled_backends = b1",
				"[b1]",
				"san_ip = 10.0.0.10",
				"pure_api_token = tok-primary-0001",
				"replication_device = backend_id:r1,san_ip:10.0.0.20,api_token:tok-r1-000001",
				"replication_device = backend_id:r1,san_ip:10.0.0.21,api_token:tok-r1-000002",
				"replication_device = backend_id:default,san_ip:10.0.0.22,api_token:tok-r1-000003",
				"replication_device = backend_id:r4,san_ip:10.0.0.10:7401,api_token:tok-r1-000004",
			),
			want: []string{
				`t.conf:7: duplicate backend_id "r1" in [b1] (first used at line 6); give each replication_device its own backend_id`,
				`t.conf:8: backend_id "default" in replication_device of [b1] is reserved: failover_host uses it to mean the primary array; choose another name`,
				`t.conf:9: replication_device "r4" of [b1] has san_ip 10.0.0.10:7401, the primary array itself; give the address of the target array`,
			},
		},
		{
			name: "missing san_ip and pure_api_token are reported at the section header",
			conf: conf(
				"[DEFAULT]",
				"enabled_backends = b1, b2",
				"[b1]",
				"volume_driver = cinder.volume.drivers.pure.PureISCSIDriver",
				"[b2]",
				"san_ip =",
				"pure_api_token =",
			),
			want: []string{
				`t.conf:3: [b1] has no san_ip; set it to the primary array's address (host or host:port)`,
				`t.conf:3: [b1] has no pure_api_token; set it to the primary array's API token`,
				`t.conf:6: san_ip in [b2] is empty; set it to the primary array's address (host or host:port)`,
				`t.conf:7: pure_api_token in [b2] is empty; set it to the primary array's API token`,
			},
		},
		{
			name: "numbers: non-numeric, negative, zero interval, out of range",
			conf: conf(
				"[DEFAULT]",
				"enabled_backends = b1",
				"[b1]",
				"san_ip = 10.0.0.10",
				"pure_api_token = tok-primary-0001",
				"pure_replica_interval_default = 0",
				"pure_replica_retention_short_term_default = 1h",
				"pure_replica_retention_long_term_per_day_default = -1",
				"pure_replica_retention_long_term_default = 7 days",
				"volrep_sync_timeout = 99999999999",
				"reserved_percentage = 101",
				"max_over_subscription_ratio = 0.5",
			),
			want: []string{
				`t.conf:6: pure_replica_interval_default in [b1] must be a whole number of seconds greater than 0; got "0"`,
				`t.conf:7: pure_replica_retention_short_term_default in [b1] must be a whole number of seconds, 0 or more; got "1h"`,
				`t.conf:8: pure_replica_retention_long_term_per_day_default in [b1] must be a whole number of snapshots per day, 0 or more; got "-1"`,
				`t.conf:9: pure_replica_retention_long_term_default in [b1] must be a whole number of days, 0 or more; got "7 days"`,
				`t.conf:10: volrep_sync_timeout in [b1] must be at most 2147483647; got "99999999999"`,
				`t.conf:11: reserved_percentage in [b1] must be at most 100; got "101"`,
				`t.conf:12: max_over_subscription_ratio in [b1] must be "auto" or a number of at least 1.0; got "0.5"`,
			},
		},
		{
			name: "enabled_backends names without a section, twice, or a volrep section",
			conf: conf(
				"[DEFAULT]",
				"enabled_backends = pure-1, b1, b1, nothing-like-it, volrep",
				"[pure_1]",
				"[b1]",
				"san_ip = 10.0.0.10",
				"pure_api_token = tok-primary-0001",
				"[volrep]",
			),
			want: []string{
				`t.conf:2: enabled_backends in [DEFAULT] lists "pure-1" but there is no [pure-1] section; did you mean "pure_1"?`,
				`t.conf:2: enabled_backends in [DEFAULT] lists "b1" twice; list each backend once`,
				`t.conf:2: enabled_backends in [DEFAULT] lists "nothing-like-it" but there is no [nothing-like-it] section; add a [nothing-like-it] section or remove the name`,
				`t.conf:2: enabled_backends in [DEFAULT] lists "volrep", which is a volrep section, not a backend; remove it from the list`,
			},
		},
		{
			name: "addresses",
			conf: conf(
				"[DEFAULT]",
				"enabled_backends = b1",
				"[b1]",
				"san_ip = 10.0.0.10 # primary",
				"pure_api_token = tok-primary-0001",
				"replication_device = backend_id:r1,san_ip:10.0.0.20:http,api_token:tok-r1-000001",
				"[volrep]",
				"driver_listen = 127.0.0.1",
				"metrics_listen = 127.0.0.1:9100",
				"[array:a]",
				"data_dir = /tmp/a",
				"listen = 127.0.0.1:9100",
				"api_token = tok-array-a-01",
				"nbd_listen = 127.0.0.1:10809",
			),
			want: []string{
				`t.conf:4: san_ip in [b1] has a host that is neither an IP address nor a valid host name; got "10.0.0.10 # primary" (comments must be on their own line in cinder.conf)`,
				`t.conf:6: san_ip of replication_device "r1" of [b1] has a bad port; use a number from 1 to 65535; got "10.0.0.20:http"`,
				`t.conf:8: driver_listen in [volrep] needs host:port, e.g. 127.0.0.1:7400; got "127.0.0.1"`,
				`t.conf:12: listen in [array:a] is 127.0.0.1:9100, which metrics_listen in [volrep] already uses (line 9); give each server its own port`,
			},
		},
		{
			name: "NBD limits: bounds, and no effect without nbd_listen",
			conf: conf(
				"[array:a]",
				"data_dir = /tmp/a",
				"listen = 127.0.0.1:7401",
				"api_token = tok-array-a-01",
				"nbd_listen = 127.0.0.1:10809",
				"nbd_max_connections = 0",
				"nbd_idle_timeout = -5",
				"[array:b]",
				"data_dir = /tmp/b",
				"listen = 127.0.0.1:7402",
				"api_token = tok-array-b-01",
				"nbd_listen = 127.0.0.1:10810",
				"nbd_max_connections = 100000",
				"nbd_idle_timeout = 10m",
				"[array:c]",
				"data_dir = /tmp/c",
				"listen = 127.0.0.1:7403",
				"api_token = tok-array-c-01",
				"nbd_max_connections = 10",
				"nbd_idle_timeout = 60",
			),
			want: []string{
				`t.conf:6: nbd_max_connections in [array:a] must be a whole number of connections from 1 to 65536; got "0"`,
				`t.conf:7: nbd_idle_timeout in [array:a] must be a whole number of seconds, 0 for none; got "-5"`,
				`t.conf:13: nbd_max_connections in [array:b] must be at most 65536; got "100000"`,
				`t.conf:14: nbd_idle_timeout in [array:b] must be a whole number of seconds, 0 for none; got "10m"`,
				`t.conf:19: nbd_max_connections in [array:c] has no effect without nbd_listen; set nbd_listen or delete the line`,
				`t.conf:20: nbd_idle_timeout in [array:c] has no effect without nbd_listen; set nbd_listen or delete the line`,
			},
		},
		{
			name: "iSCSI portals and target name",
			conf: conf(
				"[array:a]",
				"data_dir = /tmp/a",
				"listen = 127.0.0.1:7401",
				"api_token = tok-array-a-01",
				"iscsi_listen = 127.0.0.1,,127.0.0.2",
				"[array:b]",
				"data_dir = /tmp/b",
				"listen = 127.0.0.1:7402",
				"api_token = tok-array-b-01",
				"iscsi_listen = 127.0.0.1:7401, 10.0.0.1:iscsi, 127.0.0.1:3260, 127.0.0.1",
				"iscsi_target_iqn = iqn.2026-12.io.volrep_b",
				"[array:c]",
				"data_dir = /tmp/c",
				"listen = 127.0.0.1:7403",
				"api_token = tok-array-c-01",
				"iscsi_target_iqn = iqn.2026-12.io.volrep:c",
				"[array:d]",
				"data_dir = /tmp/d",
				"listen = 127.0.0.1:7404",
				"api_token = tok-array-d-01",
				"iscsi_listen =",
			),
			want: []string{
				`t.conf:5: iscsi_listen in [array:a] has an empty portal; separate host[:port] portals with single commas; got "127.0.0.1,,127.0.0.2"`,
				`t.conf:10: iscsi_listen in [array:b] is 127.0.0.1:7401, which listen in [array:a] already uses (line 3); give each server its own port`,
				`t.conf:10: iscsi_listen in [array:b] has a bad port; use a number from 1 to 65535; got "10.0.0.1:iscsi"`,
				`t.conf:10: iscsi_listen in [array:b] is 127.0.0.1:3260, which iscsi_listen in [array:b] already uses (line 10); give each server its own port`,
				`t.conf:11: iscsi_target_iqn in [array:b] is not an iSCSI qualified name (RFC 3720 3.2.6.3.1); use iqn.YYYY-MM.reversed.domain[:name] with letters, digits, '-', '.' and ':', for example iqn.2026-12.io.volrep:b, or delete the line for that default; got "iqn.2026-12.io.volrep_b"`,
				`t.conf:16: iscsi_target_iqn in [array:c] has no effect without iscsi_listen; set iscsi_listen or delete the line`,
				`t.conf:21: iscsi_listen in [array:d] is empty; set one or more host[:port] portals separated by commas, or delete the line`,
			},
		},
		{
			name: "[volrep] choices, unknown keys and an empty state_dir",
			conf: conf(
				"[DEFAULT]",
				"[volrep]",
				"log_format = yaml",
				"log_level = warning",
				"log_levle = info",
				"state_dir =",
				"[array:a]",
				"data_dir = /tmp/a",
				"listen = 127.0.0.1:7401",
				"api_token = tok-array-a-01",
			),
			want: []string{
				`t.conf:3: log_format in [volrep] must be one of auto, text, json, journal; got "yaml"`,
				`t.conf:4: log_level in [volrep] must be one of debug, info, warn, error; got "warning"`,
				`t.conf:5: unknown key "log_levle" in [volrep]; did you mean "log_level"?`,
				`t.conf:6: state_dir in [volrep] is empty; set a directory or delete the line for /var/lib/volrep/driver`,
			},
		},
		{
			name: "arrays: missing keys, bad names and pools, shared data_dir",
			conf: conf(
				"[array:a]",
				"data_dir = /tmp/a",
				"listen = 127.0.0.1:7401",
				"api_token = tok-array-a-01",
				"pools = cinder, bad/pool",
				"dat_dir = /tmp/x",
				"[array:b]",
				"data_dir = /tmp/a",
				"pools = ,",
				"[array:b@c]",
				"data_dir = /tmp/c",
				"listen = 127.0.0.1:7403",
				"api_token = tok-array-c-01",
			),
			want: []string{
				`t.conf:5: pools in [array:a] lists "bad/pool"; a pool name must be 1-128 letters, digits, '.', '_', ':' or '-', starting with a letter or digit`,
				`t.conf:6: unknown key "dat_dir" in [array:a]; did you mean "data_dir"?`,
				`t.conf:7: [array:b] has no listen; set it to the host:port the array API serves on`,
				`t.conf:7: [array:b] has no api_token; set it to the token that clients of this array must present`,
				`t.conf:8: data_dir in [array:b] is also the data_dir of [array:a] (line 2); give each array its own directory`,
				`t.conf:9: pools in [array:b] names no pool; list pool names or delete the line for cinder`,
				`t.conf:10: [array:b@c]: an array name must be 1-128 letters, digits, '.', '_', ':' or '-', starting with a letter or digit`,
			},
		},
		{
			name: "keys repeated where only replication_device may repeat",
			conf: conf(
				"[DEFAULT]",
				"enabled_backends = b1",
				"[b1]",
				"san_ip = 10.0.0.10",
				"pure_api_token = tok-primary-0001",
				"san_ip = 10.0.0.11",
				"[volrep]",
				"log_level = info",
				"log_level = debug",
				"[DEFAULT]",
				"enabled_backends = b2",
			),
			// The last enabled_backends wins, so b1 is not a backend at all.
			want: []string{
				`t.conf:9: duplicate key "log_level" in [volrep] (first set at line 8); only replication_device may repeat, and Cinder uses the last one, so delete the one you do not mean`,
				`t.conf:11: duplicate key "enabled_backends" in [DEFAULT] (first set at line 2); Cinder uses the last one: list every backend in one enabled_backends`,
				`t.conf:11: enabled_backends in [DEFAULT] lists "b2" but there is no [b2] section; did you mean "b1"?`,
			},
		},
		{
			name: "nothing to do: empty enabled_backends and no array",
			conf: conf(
				"[DEFAULT]",
				"enabled_backends =",
			),
			want: []string{
				`t.conf:2: enabled_backends in [DEFAULT] is empty and there is no [array:NAME] section, so volrepd has nothing to run; list the backend sections in enabled_backends or add an [array:NAME] section`,
			},
		},
		{
			name: "nothing to do: no enabled_backends at all",
			conf: conf(
				"# cinder.conf",
				"[DEFAULT]",
				"debug = True",
			),
			want: []string{
				`t.conf:2: [DEFAULT] has no enabled_backends and there is no [array:NAME] section, so volrepd has nothing to run; list the backend sections in enabled_backends or add an [array:NAME] section`,
			},
		},
		{
			name: "an array-only process needs no backend",
			conf: conf(
				"[DEFAULT]",
				"enabled_backends =",
				"[array:site-b]",
				"data_dir = /var/lib/volrep/site-b",
				"listen = 0.0.0.0:7401",
				"api_token = tok-array-b-01",
			),
		},
		{
			name: "typos of enabled_backends and of volrep's section names; other keys and sections are not ours",
			conf: conf(
				"[DEFAULT]",
				"enabled_backend = b1",
				"enable_backends = b1",
				"default_volume_type = pure",
				"[volrepd]",
				"[backend_default]",
				"[aray:x]",
				"[keystone_authtoken]",
				"auth_url = http://keystone/",
				"[oslo_concurrency]",
				"no delimiter here is still a syntax error",
			),
			want: []string{
				`t.conf:1: [DEFAULT] has no enabled_backends and there is no [array:NAME] section, so volrepd has nothing to run; list the backend sections in enabled_backends or add an [array:NAME] section`,
				`t.conf:2: unknown key "enabled_backend" in [DEFAULT]; did you mean "enabled_backends"?`,
				`t.conf:3: unknown key "enable_backends" in [DEFAULT]; did you mean "enabled_backends"?`,
				`t.conf:5: unknown section [volrepd] is ignored; did you mean [volrep]?`,
				`t.conf:6: unknown section [backend_default] is ignored; did you mean [backend_defaults]?`,
				`t.conf:7: unknown section [aray:x] is ignored; did you mean [array:x]?`,
				`t.conf:11: line is neither "key = value" nor a [section] header; cinder-volume (oslo.config) fails to start on this line: fix it or comment it out with '#'`,
			},
		},
		{
			// oslo.config has no quoted keys or multi-line quotes: the quotes
			// are part of the key or value.
			name: "syntax problems in sections we read; odd quoting elsewhere is not ours",
			conf: conf(
				"[DEFAULT]",
				"enabled_backends = b1",
				"[other]",
				"weird = `multi",
				"line`",
				"[b1]",
				"san_ip = 10.0.0.10",
				"pure_api_token = tok-primary-0001",
				`"volrep_pool" = p`,
				`volume_backend_name = """pure`,
				"[unclosed",
			),
			want: []string{
				`t.conf:5: line is neither "key = value" nor a [section] header; cinder-volume (oslo.config) fails to start on this line: fix it or comment it out with '#'`,
				`t.conf:9: unknown key "\"volrep_pool\"" in [b1]; did you mean "volrep_pool"?`,
				`t.conf:11: section header has no closing ']'; cinder-volume (oslo.config) fails to start on this line: close it`,
			},
		},
		{
			name: "volrep_preferred_array names the primary, or a sync target when the pod has a mediator",
			conf: conf(
				"[DEFAULT]",
				"enabled_backends = b1, b2",
				"[b1]",
				"san_ip = 10.0.0.10",
				"pure_api_token = tok-primary-0001",
				"replication_device = backend_id:s1,san_ip:10.0.0.20,api_token:tok-s1-000001,type:sync",
				"volrep_preferred_array = s1",
				"[b2]",
				"san_ip = 10.0.0.10",
				"pure_api_token = tok-primary-0001",
				"replication_device = backend_id:a1,san_ip:10.0.0.20,api_token:tok-a1-000001",
				"volrep_preferred_array = a1",
			),
			want: []string{
				`t.conf:7: volrep_preferred_array in [b1] is "s1": a pod prefers its sync target at a partition only with a mediator, which tells the target that the primary stopped; set volrep_pod_mediator in [b1] and in the target array's section, or set volrep_preferred_array to "primary"`,
				`t.conf:12: volrep_preferred_array in [b2] is "a1", which is neither "primary" nor the backend_id of a sync replication_device of [b2]; check the spelling or delete the line`,
			},
		},
		{
			name: "volrep_pod_mediator names etcd endpoints, and only where there is a pod",
			conf: conf(
				"[DEFAULT]",
				"enabled_backends = b1, b2, b3, b4, b5, b6",
				"[b1]",
				"san_ip = 10.0.0.10",
				"pure_api_token = tok-primary-0001",
				"replication_device = backend_id:s1,san_ip:10.0.0.20,api_token:tok-s1-000001,type:sync",
				"volrep_pod_mediator = 10.0.0.30:2379",
				"[b2]",
				"san_ip = 10.0.0.10",
				"pure_api_token = tok-primary-0001",
				"replication_device = backend_id:s1,san_ip:10.0.0.20,api_token:tok-s1-000001,type:sync",
				"volrep_pod_mediator = etcd://10.0.0.30:2379,,10.0.0.31",
				"[b3]",
				"san_ip = 10.0.0.10",
				"pure_api_token = tok-primary-0001",
				"replication_device = backend_id:s1,san_ip:10.0.0.20,api_token:tok-s1-000001,type:sync",
				"volrep_pod_mediator = etcd://10.0.0.30:99999",
				"[b4]",
				"san_ip = 10.0.0.10",
				"pure_api_token = tok-primary-0001",
				"replication_device = backend_id:a1,san_ip:10.0.0.20,api_token:tok-a1-000001",
				"volrep_pod_mediator = etcd://10.0.0.30:2379",
				"[b5]",
				"san_ip = 10.0.0.10",
				"pure_api_token = tok-primary-0001",
				"replication_device = backend_id:s1,san_ip:10.0.0.20,api_token:tok-s1-000001,type:sync",
				"volrep_pod_mediator = etcd://m1:2379,m1:2379",
				"[b6]",
				"san_ip = 10.0.0.10",
				"pure_api_token = tok-primary-0001",
				"replication_device = backend_id:s1,san_ip:10.0.0.20,api_token:tok-s1-000001,type:sync",
				"volrep_pod_mediator = etcd://10.0.0.30:2379,etcd://10.0.0.31:2379",
				"[array:a]",
				"data_dir = /tmp/a",
				"listen = 127.0.0.1:7401",
				"api_token = tok-array-0001",
				"volrep_pod_mediator = etcd://",
			),
			want: []string{
				`t.conf:7: volrep_pod_mediator in [b1] must start with etcd:// (the mediator is an etcd cluster), for example etcd://10.0.0.30:2379,10.0.0.31:2379; got "10.0.0.30:2379"`,
				`t.conf:12: volrep_pod_mediator in [b2] has an empty endpoint; list host:port entries separated by commas, for example etcd://10.0.0.30:2379,10.0.0.31:2379; got "etcd://10.0.0.30:2379,,10.0.0.31"`,
				`t.conf:17: volrep_pod_mediator in [b3]: endpoint "10.0.0.30:99999" has a bad port; use a number from 1 to 65535`,
				`t.conf:22: volrep_pod_mediator in [b4] has no effect: backend [b4] has no sync replication_device (type:sync), so it has no pod to mediate; add one or delete the line`,
				`t.conf:27: volrep_pod_mediator in [b5] lists m1:2379 twice; list each etcd member once`,
				`t.conf:32: volrep_pod_mediator in [b6] has endpoint "etcd://10.0.0.31:2379" with a path or a second scheme; write each endpoint as host:port after one etcd://, for example etcd://10.0.0.30:2379,10.0.0.31:2379`,
				`t.conf:37: volrep_pod_mediator in [array:a] has an empty endpoint; list host:port entries separated by commas, for example etcd://10.0.0.30:2379,10.0.0.31:2379; got "etcd://"`,
			},
		},
		{
			name: "array object names",
			conf: conf(
				"[DEFAULT]",
				"enabled_backends = b1",
				"[b1]",
				"san_ip = 10.0.0.10",
				"pure_api_token = tok-primary-0001",
				"pure_replication_pg_name = my group",
				"pure_replication_pod_name =",
				"volrep_pool = -pool",
			),
			want: []string{
				`t.conf:6: pure_replication_pg_name in [b1] must be 1-128 letters, digits, '.', '_', ':' or '-', starting with a letter or digit; got "my group"`,
				`t.conf:7: pure_replication_pod_name in [b1] must be 1-128 letters, digits, '.', '_', ':' or '-', starting with a letter or digit; got ""`,
				`t.conf:8: volrep_pool in [b1] must be 1-128 letters, digits, '.', '_', ':' or '-', starting with a letter or digit; got "-pool"`,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := Parse("t.conf", tt.conf)
			if err != nil {
				t.Fatal(err)
			}
			if got := problemLines(cfg.Problems); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("problems:\n got %s\nwant %s", strings.Join(got, "\n     "), strings.Join(tt.want, "\n     "))
			}
		})
	}
}
