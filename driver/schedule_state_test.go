package driver

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/volrep/volrep/config"
)

func scheduleBackend(t *testing.T, dir string, interval time.Duration, logs *bytes.Buffer) *Backend {
	cfg := config.Backend{Section: "pure-a", ReplicaInterval: interval, RetentionShortTerm: time.Hour, RetentionPerDay: 3, RetentionDays: 7}
	return &Backend{cfg: cfg, conf: cfg, opts: Options{StateDir: dir}, log: slog.New(slog.NewTextHandler(logs, nil))}
}

func TestScheduleOverrideKeptWhileCinderConfUnchanged(t *testing.T) {
	dir := t.TempDir()
	var logs bytes.Buffer
	b := scheduleBackend(t, dir, time.Hour, &logs)
	at := time.Date(2026, 12, 4, 18, 0, 0, 0, time.UTC)
	set := scheduleConf{Interval: 5 * time.Minute, ShortTerm: 2 * time.Hour, PerDay: 4, Days: 2}
	if err := b.updateState(func(st *backendState) {
		st.Schedule = &scheduleOverride{SetAt: at, Set: set, Conf: confSchedule(b.conf)}
	}); err != nil {
		t.Fatal(err)
	}
	// A restart with cinder.conf unchanged: the run-time schedule is in force.
	r := scheduleBackend(t, dir, time.Hour, &logs)
	st, err := r.loadState()
	if err != nil {
		t.Fatal(err)
	}
	if err := r.applyScheduleOverride(st); err != nil {
		t.Fatal(err)
	}
	if confSchedule(r.cfg) != set || r.conf.ReplicaInterval != time.Hour {
		t.Fatalf("in force %+v, conf %v", confSchedule(r.cfg), r.conf.ReplicaInterval)
	}
	if !strings.Contains(logs.String(), "set at run time at 2026-12-04T18:00:00Z (interval 5m0s), cinder.conf unchanged") {
		t.Fatalf("log: %s", logs.String())
	}
	if st, _ := r.loadState(); st.Schedule == nil {
		t.Fatal("the override was dropped though cinder.conf is unchanged")
	}
	// cinder.conf now says 30m: it wins and the override is dropped.
	logs.Reset()
	c := scheduleBackend(t, dir, 30*time.Minute, &logs)
	st, _ = c.loadState()
	if err := c.applyScheduleOverride(st); err != nil {
		t.Fatal(err)
	}
	if c.cfg.ReplicaInterval != 30*time.Minute || c.cfg.RetentionPerDay != 3 {
		t.Fatalf("in force after cinder.conf changed: %+v", confSchedule(c.cfg))
	}
	if !strings.Contains(logs.String(), "cinder.conf wins (interval 30m0s) and the run-time schedule (interval 5m0s) is dropped") {
		t.Fatalf("log: %s", logs.String())
	}
	if st, _ := c.loadState(); st.Schedule != nil {
		t.Fatalf("the override is still recorded: %+v", st.Schedule)
	}
}

// Recording the active backend after a failover keeps the schedule.
func TestSetActiveKeepsScheduleOverride(t *testing.T) {
	var logs bytes.Buffer
	b := scheduleBackend(t, t.TempDir(), time.Hour, &logs)
	if err := b.updateState(func(st *backendState) { st.Schedule = &scheduleOverride{Set: scheduleConf{Interval: time.Minute}} }); err != nil {
		t.Fatal(err)
	}
	if err := b.updateState(func(st *backendState) { st.ActiveBackendID = "b" }); err != nil {
		t.Fatal(err)
	}
	st, err := b.loadState()
	if err != nil || st.ActiveBackendID != "b" || st.Schedule == nil || st.Schedule.Set.Interval != time.Minute {
		t.Fatalf("%+v %v", st, err)
	}
}
