package config_test

import (
	"fmt"

	"github.com/volrep/volrep/config"
)

// What `volrepd --check-config` prints for testdata/typos.conf, one of each
// mistake; the Output block is the expected text, line numbers included.
func ExampleLoad_typos() {
	cfg, err := config.Load("testdata/typos.conf")
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, p := range cfg.Problems {
		fmt.Println(p)
	}
	for _, b := range cfg.Backends {
		fmt.Printf("[%s] is down with %d problem(s)\n", b.Section, len(b.Problems))
	}
	// Output:
	// testdata/typos.conf:5: enabled_backends in [DEFAULT] lists "puredriver-4" but there is no [puredriver-4] section; did you mean "puredriver_4"?
	// testdata/typos.conf:6: unknown key "enabled_backend" in [DEFAULT]; did you mean "enabled_backends"?
	// testdata/typos.conf:11: log_format in [volrep] must be one of auto, text, json, journal; got "jsno"; did you mean "json"?
	// testdata/typos.conf:12: unknown key "log_levle" in [volrep]; did you mean "log_level"?
	// testdata/typos.conf:16: listen in [array:site-a] has a bad port; use a number from 1 to 65535; got "127.0.0.1:74o1"
	// testdata/typos.conf:19: unknown section [arrays:site-b] is ignored; did you mean [array:site-b]?
	// testdata/typos.conf:23: pure_replica_retention_short_term_default in [backend_defaults] must be a whole number of seconds, 0 or more; got "-60"
	// testdata/typos.conf:24: unknown key "pure_eradicate_on_delet" in [backend_defaults]; did you mean "pure_eradicate_on_delete"?
	// testdata/typos.conf:30: unknown key "san_iq" in [puredriver-1]; did you mean "san_ip"?
	// testdata/typos.conf:31: unknown key "pure_replica_intreval_default" in [puredriver-1]; did you mean "pure_replica_interval_default"?
	// testdata/typos.conf:33: duplicate backend_id "pure2-async" in [puredriver-1] (first used at line 32); give each replication_device its own backend_id
	// testdata/typos.conf:34: unknown key "bakend_id" in replication_device of [puredriver-1]; did you mean "backend_id"?
	// testdata/typos.conf:35: backend_id "default" in replication_device of [puredriver-1] is reserved: failover_host uses it to mean the primary array; choose another name
	// testdata/typos.conf:36: type "asnyc" in replication_device "pure5" of [puredriver-1] is not one of async, sync; did you mean "async"?
	// testdata/typos.conf:37: replication_device "pure6" of [puredriver-1] has no api_token; add api_token:TOKEN
	// testdata/typos.conf:38: duplicate key "san_ip" in [puredriver-1] (first set at line 28); only replication_device may repeat, and Cinder uses the last one, so delete the one you do not mean
	// testdata/typos.conf:40: [puredriver-2] has no san_ip; set it to the primary array's address (host or host:port)
	// testdata/typos.conf:40: [puredriver-2] has no pure_api_token; set it to the primary array's API token
	// testdata/typos.conf:42: pure_replica_interval_default in [puredriver-2] must be a whole number of seconds greater than 0; got "hourly"
	// testdata/typos.conf:43: volrep_preferred_array in [puredriver-2] is "pure2-sync", which is neither "primary" nor the backend_id of a sync replication_device of [puredriver-2]; check the spelling or delete the line
	// testdata/typos.conf:44: line is neither "key = value" nor a [section] header; cinder-volume (oslo.config) fails to start on this line: fix it or comment it out with '#'
	// testdata/typos.conf:47: san_ip in [puredriver-3] is not a valid IP address; got "10.0.0.300"
	// testdata/typos.conf:49: pure_replica_interval_default in [puredriver-3] must be a whole number of seconds greater than 0; got "0"
	// [puredriver-1] is down with 10 problem(s)
	// [puredriver-2] is down with 7 problem(s)
	// [puredriver-3] is down with 4 problem(s)
	// [puredriver-4] is down with 1 problem(s)
}
