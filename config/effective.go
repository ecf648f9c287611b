package config

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"gopkg.in/ini.v1"
)

// iniDefaults sets ini.v1's package-wide writing options once: oslo.config
// refuses keys above the first header, so [DEFAULT] must be written even
// though ini.v1 leaves it out by default.
var iniDefaults sync.Once

// WriteINI writes the configuration volrepd uses, as a cinder.conf-style
// file (`volrepd --check-config -o ini`): every setting with its effective
// value, defaults filled in, the last of repeated keys, each backend's
// section merged over [backend_defaults], ports added to addresses, and
// tokens masked. volrepd and oslo.config read it back to the same
// settings, tokens aside, so two hosts or two versions can be compared
// with diff. Sections or backends with problems are written as read.
func (c *Config) WriteINI(w io.Writer) error {
	iniDefaults.Do(func() { ini.DefaultHeader = true })
	// IgnoreInlineComment: oslo.config takes '#' and ';' inside a value
	// literally, so ini.v1 must not quote such values with backticks,
	// which oslo.config would keep.
	f := ini.Empty(ini.LoadOptions{AllowShadows: true, IgnoreInlineComment: true})
	s := section{f: f}
	names := make([]string, 0, len(c.Backends))
	for _, b := range c.Backends {
		names = append(names, b.Section)
	}
	s.name = ini.DefaultSection
	s.set("enabled_backends", strings.Join(names, ","))

	d := c.Daemon
	s.name = "volrep"
	s.set("driver_listen", d.DriverListen)
	s.secret("driver_api_token", d.DriverAPIToken)
	s.setIf("metrics_listen", d.MetricsListen)
	s.set("log_format", d.LogFormat)
	s.set("log_level", d.LogLevel)
	s.setIf("state_dir", d.StateDir)

	for _, a := range c.Arrays {
		s.name = arrayPrefix + a.Name
		s.set("data_dir", a.DataDir)
		s.set("listen", a.Listen)
		s.secret("api_token", a.APIToken)
		s.set("stream_port", strconv.Itoa(a.StreamPort))
		if a.NBDListen != "" {
			s.set("nbd_listen", a.NBDListen)
			s.set("nbd_max_connections", strconv.Itoa(a.NBDMaxConnections))
			s.set("nbd_idle_timeout", seconds(a.NBDIdleTimeout))
		}
		if len(a.ISCSIListen) > 0 {
			s.set("iscsi_listen", strings.Join(a.ISCSIListen, ", "))
			s.set("iscsi_target_iqn", a.ISCSITargetIQN)
			s.set("iscsi_port_group", strconv.Itoa(a.ISCSIPortGroup))
		}
		s.set("pools", strings.Join(a.Pools, ", "))
		s.setIf(mediatorKey, mediatorURL(a.PodMediator))
	}

	for _, b := range c.Backends {
		s.name = b.Section
		s.set("volume_backend_name", b.VolumeBackendName)
		s.setIf("volume_driver", b.VolumeDriver)
		s.set("san_ip", b.SanIP)
		s.secret("pure_api_token", b.APIToken)
		for _, r := range b.ReplicationDevices {
			tok := ""
			if r.APIToken != "" {
				tok = redacted
			}
			s.set(replicationDeviceKey, fmt.Sprintf("backend_id:%s,san_ip:%s,api_token:%s,type:%s", r.BackendID, r.SanIP, tok, r.Type))
		}
		s.set("pure_replica_interval_default", seconds(b.ReplicaInterval))
		s.set("pure_replica_retention_short_term_default", seconds(b.RetentionShortTerm))
		s.set("pure_replica_retention_long_term_per_day_default", strconv.Itoa(b.RetentionPerDay))
		s.set("pure_replica_retention_long_term_default", strconv.Itoa(b.RetentionDays))
		s.set("pure_replication_pg_name", b.PGName)
		s.set("pure_replication_pod_name", b.PodName)
		s.set("volrep_pool", b.Pool)
		s.set("volrep_sync_timeout", strconv.FormatInt(b.SyncTimeout.Milliseconds(), 10))
		s.setIf("volrep_preferred_array", b.PreferredArray)
		s.setIf(hostPrefKey, hostPreferencesText(b.HostPreferences))
		s.setIf(mediatorKey, mediatorURL(b.PodMediator))
		s.set("volrep_failover_wait", seconds(b.FailoverWait))
		s.setIf("volrep_protocol", b.Protocol)
		s.set("reserved_percentage", strconv.Itoa(b.ReservedPercentage))
		ratio := "auto"
		if b.MaxOverSubscriptionRatio != 0 {
			ratio = strconv.FormatFloat(b.MaxOverSubscriptionRatio, 'g', -1, 64)
		}
		s.set("max_over_subscription_ratio", ratio)
		for _, k := range slices.Sorted(maps.Keys(b.CinderOptions)) {
			s.set(k, b.CinderOptions[k])
		}
	}
	if s.err != nil {
		return s.err
	}
	_, err := f.WriteTo(w)
	return err
}

// section adds keys to one section of f, keeping the first error.
type section struct {
	f    *ini.File
	name string
	err  error
}

func (s *section) set(key, value string) {
	if s.err != nil {
		return
	}
	// A value oslo.config would read differently from what ini.v1 writes
	// (ini.v1 wraps these in """, which oslo.config keeps) is refused
	// rather than written wrong.
	if strings.ContainsAny(value, "\r\n`") {
		s.err = fmt.Errorf("%s in [%s] holds a line break or a backtick, which a cinder.conf-style file cannot carry; write the file by hand", key, s.name)
		return
	}
	sec, err := s.f.GetSection(s.name)
	if err != nil {
		if sec, err = s.f.NewSection(s.name); err != nil {
			s.err = err
			return
		}
	}
	if k, err := sec.GetKey(key); err == nil {
		s.err = k.AddShadow(value)
		return
	}
	_, s.err = sec.NewKey(key, value)
}

func (s *section) setIf(key, value string) {
	if value != "" {
		s.set(key, value)
	}
}

// secret writes a token as masked: its presence matters to the reader,
// its value must not leave the host.
func (s *section) secret(key string, v Secret) { s.setIf(key, v.String()) }

func seconds(d time.Duration) string { return strconv.FormatInt(int64(d/time.Second), 10) }

func mediatorURL(endpoints []string) string {
	if len(endpoints) == 0 {
		return ""
	}
	return mediatorScheme + strings.Join(endpoints, ",")
}
