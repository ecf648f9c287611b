package config

import (
	"strings"
	"testing"
	"time"
)

func TestFailoverWait(t *testing.T) {
	base := []string{"[DEFAULT]", "enabled_backends = b1", "[b1]", "san_ip = 10.0.0.10", "pure_api_token = tok-primary-0001"}
	for _, tc := range []struct {
		line    string
		want    time.Duration
		problem string
	}{
		{"", 30 * time.Second, ""},
		{"volrep_failover_wait = 0", 0, ""},
		{"volrep_failover_wait = 90", 90 * time.Second, ""},
		{"volrep_failover_wait = 3600", time.Hour, ""},
		{"volrep_failover_wait = 3601", 30 * time.Second, `t.conf:6: volrep_failover_wait in [b1] must be at most 3600; got "3601"`},
		{"volrep_failover_wait = -1", 30 * time.Second, `t.conf:6: volrep_failover_wait in [b1] must be a whole number of seconds from 0 to 3600; got "-1"`},
		{"volrep_failover_wait = 30s", 30 * time.Second, `t.conf:6: volrep_failover_wait in [b1] must be a whole number of seconds from 0 to 3600; got "30s"`},
	} {
		t.Run(tc.line, func(t *testing.T) {
			cfg := mustParse(t, conf(append(base, tc.line)...))
			if got := cfg.Backends[0].FailoverWait; got != tc.want {
				t.Errorf("FailoverWait = %v, want %v", got, tc.want)
			}
			if got := strings.Join(problemLines(cfg.Problems), "\n"); got != tc.problem {
				t.Errorf("problems:\n got %s\nwant %s", got, tc.problem)
			}
		})
	}
}

// TestDriverListenSet: an array-only process opens the driver API only
// when the file asks for it, so the parser must tell a default from a
// setting.
func TestDriverListenSet(t *testing.T) {
	arr := []string{"[array:a]", "data_dir = /tmp/a", "listen = 127.0.0.1:7401", "api_token = tok-array-a-01"}
	cfg := mustParse(t, conf(arr...))
	if cfg.Daemon.DriverListenSet || cfg.Daemon.DriverListen != "127.0.0.1:7400" {
		t.Errorf("without driver_listen: %+v", cfg.Daemon)
	}
	cfg = mustParse(t, conf(append([]string{"[volrep]", "driver_listen = 127.0.0.1:7500"}, arr...)...))
	if !cfg.Daemon.DriverListenSet || cfg.Daemon.DriverListen != "127.0.0.1:7500" {
		t.Errorf("with driver_listen: %+v", cfg.Daemon)
	}
}
