package config

import "time"

// View is what volrepd read from a file, for `volrepd --check-config -o
// json`: every [volrep], [array:NAME] and backend setting as volrepd uses
// it, named as in cinder.conf, and every problem. Values are the effective
// ones (defaults filled in, the last of repeated keys, a backend's section
// over [backend_defaults]); addresses carry the port volrepd adds. Tokens
// and passwords are fully masked: "****" when set, "" when not, so the
// output can be pasted into a bug report.
type View struct {
	File     string        `json:"file"`
	Daemon   DaemonView    `json:"volrep"`
	Arrays   []ArrayView   `json:"arrays"`
	Backends []BackendView `json:"backends"`
	Problems []ProblemView `json:"problems"`
}

// DaemonView is the [volrep] section.
type DaemonView struct {
	DriverListen   string `json:"driver_listen"`
	DriverAPIToken Secret `json:"driver_api_token"`
	MetricsListen  string `json:"metrics_listen"`
	LogFormat      string `json:"log_format"`
	LogLevel       string `json:"log_level"`
	StateDir       string `json:"state_dir"`
}

// ArrayView is one [array:NAME] section.
type ArrayView struct {
	Name              string   `json:"name"`
	Line              int      `json:"line"`
	DataDir           string   `json:"data_dir"`
	Listen            string   `json:"listen"`
	StreamPort        int      `json:"stream_port"`
	APIToken          Secret   `json:"api_token"`
	NBDListen         string   `json:"nbd_listen"`
	NBDMaxConnections int      `json:"nbd_max_connections"`
	NBDIdleTimeout    int64    `json:"nbd_idle_timeout"` // seconds
	ISCSIListen       []string `json:"iscsi_listen"`
	ISCSITargetIQN    string   `json:"iscsi_target_iqn"`
	ISCSIPortGroup    int      `json:"iscsi_port_group,omitempty"`
	Pools             []string `json:"pools"`
	PodMediator       []string `json:"volrep_pod_mediator,omitempty"` // etcd host:port endpoints
	Problems          int      `json:"problems"`
}

// BackendView is one backend of enabled_backends.
type BackendView struct {
	Section                  string                  `json:"section"`
	Line                     int                     `json:"line"`
	VolumeBackendName        string                  `json:"volume_backend_name"`
	VolumeDriver             string                  `json:"volume_driver"`
	SanIP                    string                  `json:"san_ip"`
	APIToken                 Secret                  `json:"pure_api_token"`
	ReplicationDevices       []ReplicationDeviceView `json:"replication_device"`
	ReplicaInterval          int64                   `json:"pure_replica_interval_default"`                    // seconds
	RetentionShortTerm       int64                   `json:"pure_replica_retention_short_term_default"`        // seconds
	RetentionPerDay          int                     `json:"pure_replica_retention_long_term_per_day_default"` // snapshots
	RetentionDays            int                     `json:"pure_replica_retention_long_term_default"`         // days
	PGName                   string                  `json:"pure_replication_pg_name"`
	PodName                  string                  `json:"pure_replication_pod_name"`
	Pool                     string                  `json:"volrep_pool"`
	SyncTimeout              int64                   `json:"volrep_sync_timeout"` // milliseconds
	PreferredArray           string                  `json:"volrep_preferred_array"`
	HostPreferredArrays      string                  `json:"volrep_host_preferred_arrays,omitempty"` // PATTERN:ARRAY, ...
	PodMediator              []string                `json:"volrep_pod_mediator,omitempty"`          // etcd host:port endpoints
	FailoverWait             int64                   `json:"volrep_failover_wait"`                   // seconds
	Protocol                 string                  `json:"volrep_protocol,omitempty"`              // "" means iSCSI when the primary serves it
	ReservedPercentage       int                     `json:"reserved_percentage"`
	MaxOverSubscriptionRatio any                     `json:"max_over_subscription_ratio"` // "auto" or a number
	CinderOptions            map[string]string       `json:"cinder_options,omitempty"`
	Problems                 int                     `json:"problems"`
}

// ReplicationDeviceView is one replication_device line.
type ReplicationDeviceView struct {
	BackendID string `json:"backend_id"`
	SanIP     string `json:"san_ip"`
	APIToken  Secret `json:"api_token"`
	Type      string `json:"type"`
	Line      int    `json:"line"`
}

// ProblemView is one Problem.
type ProblemView struct {
	File    string `json:"file"`
	Line    int    `json:"line"`
	Section string `json:"section,omitempty"`
	Key     string `json:"key,omitempty"`
	Message string `json:"message"`
}

// View returns what c read; see View.
func (c *Config) View() View {
	d := c.Daemon
	v := View{
		File: c.File,
		Daemon: DaemonView{DriverListen: d.DriverListen, DriverAPIToken: d.DriverAPIToken, MetricsListen: d.MetricsListen,
			LogFormat: d.LogFormat, LogLevel: d.LogLevel, StateDir: d.StateDir},
		Arrays:   []ArrayView{},
		Backends: []BackendView{},
		Problems: []ProblemView{},
	}
	for _, a := range c.Arrays {
		v.Arrays = append(v.Arrays, ArrayView{Name: a.Name, Line: a.Line, DataDir: a.DataDir, Listen: a.Listen, StreamPort: a.StreamPort, APIToken: a.APIToken,
			NBDListen: a.NBDListen, NBDMaxConnections: a.NBDMaxConnections, NBDIdleTimeout: int64(a.NBDIdleTimeout / time.Second),
			ISCSIListen: append([]string{}, a.ISCSIListen...), ISCSITargetIQN: a.ISCSITargetIQN,
			ISCSIPortGroup: a.ISCSIPortGroup, Pools: a.Pools, PodMediator: a.PodMediator, Problems: len(a.Problems)})
	}
	for _, b := range c.Backends {
		bv := BackendView{Section: b.Section, Line: b.Line, VolumeBackendName: b.VolumeBackendName, VolumeDriver: b.VolumeDriver,
			SanIP: b.SanIP, APIToken: b.APIToken, ReplicationDevices: []ReplicationDeviceView{},
			ReplicaInterval: int64(b.ReplicaInterval / time.Second), RetentionShortTerm: int64(b.RetentionShortTerm / time.Second),
			RetentionPerDay: b.RetentionPerDay, RetentionDays: b.RetentionDays, PGName: b.PGName, PodName: b.PodName, Pool: b.Pool,
			SyncTimeout: int64(b.SyncTimeout / time.Millisecond), PreferredArray: b.PreferredArray, PodMediator: b.PodMediator,
			HostPreferredArrays: hostPreferencesText(b.HostPreferences),
			FailoverWait:        int64(b.FailoverWait / time.Second), Protocol: b.Protocol, ReservedPercentage: b.ReservedPercentage,
			MaxOverSubscriptionRatio: b.MaxOverSubscriptionRatio, CinderOptions: b.CinderOptions, Problems: len(b.Problems)}
		if b.MaxOverSubscriptionRatio == 0 {
			bv.MaxOverSubscriptionRatio = "auto"
		}
		for _, r := range b.ReplicationDevices {
			bv.ReplicationDevices = append(bv.ReplicationDevices, ReplicationDeviceView(r))
		}
		v.Backends = append(v.Backends, bv)
	}
	for _, p := range c.Problems {
		v.Problems = append(v.Problems, ProblemView(p))
	}
	return v
}
