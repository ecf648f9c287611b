package driver

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/volrep/volrep/config"
)

// backendState is what the driver keeps of its own: which array serves a
// backend, so a restarted volrepd keeps serving from the secondary after
// a failover.
type backendState struct {
	ActiveBackendID string `json:"active_backend_id"`
	// Schedule is a replication schedule set at run time, if any.
	Schedule *scheduleOverride `json:"schedule,omitempty"`
}

// scheduleOverride is a schedule set by SetReplicationSchedule, with the
// cinder.conf values it overrode: while cinder.conf still says those, the
// override stays in force across restarts and reloads; once cinder.conf
// changes them, cinder.conf wins.
type scheduleOverride struct {
	SetAt time.Time    `json:"set_at"`
	Set   scheduleConf `json:"set"`
	Conf  scheduleConf `json:"conf"`
}

// scheduleConf is the pure_replica_* part of a backend's configuration.
type scheduleConf struct {
	Interval  time.Duration `json:"interval"`
	ShortTerm time.Duration `json:"retention_short_term"`
	PerDay    int           `json:"retention_per_day"`
	Days      int           `json:"retention_days"`
}

func confSchedule(c config.Backend) scheduleConf {
	return scheduleConf{Interval: c.ReplicaInterval, ShortTerm: c.RetentionShortTerm, PerDay: c.RetentionPerDay, Days: c.RetentionDays}
}

func (s scheduleConf) apply(c *config.Backend) {
	c.ReplicaInterval, c.RetentionShortTerm, c.RetentionPerDay, c.RetentionDays = s.Interval, s.ShortTerm, s.PerDay, s.Days
}

// updateState changes the persisted state with f; stateMu serialises
// the read-modify-write.
func (b *Backend) updateState(f func(*backendState)) error {
	b.stateMu.Lock()
	defer b.stateMu.Unlock()
	st, err := b.loadState()
	if err != nil {
		return err
	}
	f(&st)
	return b.saveState(st)
}

// logSchedule says, at a reload that keeps the backend, that a run-time
// schedule stays in force.
func (b *Backend) logSchedule() {
	st, err := b.loadState()
	if err != nil || st.Schedule == nil {
		return
	}
	b.logOverrideKept(st.Schedule)
}

func (b *Backend) logOverrideKept(o *scheduleOverride) {
	b.log.Info(fmt.Sprintf("replication schedule of backend %s: set at run time at %s (interval %s), cinder.conf unchanged",
		b.cfg.Section, o.SetAt.Format(time.RFC3339), o.Set.Interval), "retention_short_term", o.Set.ShortTerm,
		"retention_per_day", o.Set.PerDay, "retention_days", o.Set.Days)
}

// applyScheduleOverride puts a persisted run-time schedule in force
// unless cinder.conf changed the values it overrode; it logs which is in
// force and why.
func (b *Backend) applyScheduleOverride(st backendState) error {
	o := st.Schedule
	if o == nil {
		return nil
	}
	if o.Conf == confSchedule(b.cfg) {
		o.Set.apply(&b.cfg)
		b.logOverrideKept(o)
		return nil
	}
	b.log.Info(fmt.Sprintf("replication schedule of backend %s: cinder.conf's pure_replica_* values changed since the schedule was set at run time at %s; cinder.conf wins (interval %s) and the run-time schedule (interval %s) is dropped",
		b.cfg.Section, o.SetAt.Format(time.RFC3339), b.cfg.ReplicaInterval, o.Set.Interval))
	return b.updateState(func(st *backendState) { st.Schedule = nil })
}

func (b *Backend) statePath() string {
	if b.opts.StateDir == "" {
		return ""
	}
	return filepath.Join(b.opts.StateDir, "backends", b.cfg.Section+".json")
}

func (b *Backend) loadState() (backendState, error) {
	st := backendState{ActiveBackendID: "default"}
	path := b.statePath()
	if path == "" {
		return st, nil
	}
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return st, nil
	}
	if err != nil {
		return st, err
	}
	if err := json.Unmarshal(data, &st); err != nil {
		return st, fmt.Errorf("%s: %w", path, err)
	}
	return st, nil
}

// saveState writes the state durably: a temporary file, fsync, rename,
// and fsync of the directory, so a crash leaves the old or the new.
func (b *Backend) saveState(st backendState) error {
	path := b.statePath()
	if path == "" {
		return nil
	}
	data, err := json.Marshal(st)
	if err != nil {
		return err
	}
	return writeFileDurable(path, data)
}
