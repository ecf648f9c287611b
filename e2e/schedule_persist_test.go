package e2e

import (
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	driverv1 "github.com/volrep/volrep/proto/volrep/driver/v1"
)

// TestRunTimeScheduleSurvivesReloadAndRestart is the seed lab's task 5: a
// schedule set through the driver API stays in force across SIGHUP and a
// restart while cinder.conf is unchanged; once cinder.conf's interval
// changes, cinder.conf wins at the next reload. The log says which and why.
func TestRunTimeScheduleSurvivesReloadAndRestart(t *testing.T) {
	s := startSites(t, seedBackend)
	ctx := t.Context()
	dc := driverClient(t, s.a)
	reps := s.replicas(t)
	interval := func(want time.Duration) {
		t.Helper()
		var got time.Duration
		deadline := time.Now().Add(20 * time.Second)
		for time.Now().Before(deadline) {
			if r, err := reps.GetReplica(ctx, "cinder-group.pure2-async"); err == nil {
				if got = r.Interval; got == want {
					return
				}
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Fatalf("protection group interval %s, want %s\n%s", got, want, s.a.Logs())
	}
	interval(time.Hour)
	if _, err := dc.SetReplicationSchedule(ctx, &driverv1.SetReplicationScheduleRequest{Backend: "puredriver-1", IntervalSeconds: 600,
		RetentionShortTermSeconds: 86400, RetentionLongTermPerDay: 5, RetentionLongTermDays: 7}); err != nil {
		t.Fatal(err)
	}
	interval(10 * time.Minute)
	reload := func() {
		t.Helper()
		if err := s.a.cmd.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		waitFor(t, func() bool { return strings.Count(s.a.Logs(), "configuration reloaded") > 0 })
	}
	reload()
	time.Sleep(time.Second) // a rebuilt backend would re-apply cinder.conf's hour within this
	interval(10 * time.Minute)
	if !strings.Contains(s.a.Logs(), "(interval 10m0s), cinder.conf unchanged") {
		t.Fatalf("reload log does not say the run-time schedule stays in force:\n%s", s.a.Logs())
	}

	s.a.Stop()
	s.a.Start()
	waitFor(t, func() bool { return strings.Contains(s.a.Logs(), "set at run time at") })
	if !strings.Contains(s.a.Logs(), "replication schedule of backend puredriver-1: set at run time at") ||
		!strings.Contains(s.a.Logs(), "(interval 10m0s), cinder.conf unchanged") {
		t.Fatalf("restart log does not say the run-time schedule is in force:\n%s", s.a.Logs())
	}
	time.Sleep(time.Second)
	interval(10 * time.Minute)

	conf, err := os.ReadFile(s.a.Conf)
	if err != nil {
		t.Fatal(err)
	}
	changed := strings.Replace(string(conf), "pure_replica_interval_default = 3600", "pure_replica_interval_default = 1800", 1)
	if err := os.WriteFile(s.a.Conf, []byte(changed), 0o600); err != nil {
		t.Fatal(err)
	}
	reload()
	interval(30 * time.Minute)
	waitFor(t, func() bool { return strings.Contains(s.a.Logs(), "cinder.conf wins (interval 30m0s)") })
}
