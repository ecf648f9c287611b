package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/volrep/volrep/array"
	"github.com/volrep/volrep/array/client"
	"github.com/volrep/volrep/server"
)

// cinderLab is a running `make lab` (deploy/lab/lab.sh) in a test's own
// directory: RabbitMQ, cinder-api, cinder-scheduler, cinder-volume with
// volrep's driver, glance-api and volrepd, from Debian's packages.
type cinderLab struct {
	t          *testing.T
	dir        string
	scriptPath string
	env        []string
	vars       map[string]string
}

const labHost = "lab@puredriver-1"

// startCinderLab runs `lab.sh up` and registers `lab.sh down`, which runs
// even when up fails half-way or the test fails.
func startCinderLab(t *testing.T) *cinderLab {
	t.Helper()
	for _, name := range []string{"cinder-api", "cinder-scheduler", "cinder-volume", "glance-api", "cinder", "openstack", "rabbitmq-server"} {
		tool(t, name)
	}
	volrepd, _ := binaries(t)
	script, err := filepath.Abs("../deploy/lab/lab.sh")
	if err != nil {
		t.Fatal(err)
	}
	l := &cinderLab{t: t, dir: filepath.Join(t.TempDir(), "lab"), scriptPath: script}
	// RabbitMQ runs as the rabbitmq user, which must reach its directory:
	// t.TempDir's parents are private to root.
	for d := filepath.Dir(l.dir); strings.HasPrefix(d, os.TempDir()) && d != os.TempDir(); d = filepath.Dir(d) {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		out, err := l.runScript(5*time.Minute, "down")
		if err != nil {
			t.Errorf("lab.sh down: %v\n%s", err, out)
		}
	})
	began := time.Now()
	out, err := l.runScript(10*time.Minute, "up", "VOLREPD="+volrepd)
	if err != nil {
		t.Fatalf("lab.sh up: %v\n%s\n%s", err, out, l.logTails())
	}
	t.Logf("the lab's stack (rabbitmq, volrepd, cinder-api, -scheduler, -volume, glance-api) took %s to start:\n%s",
		time.Since(began).Round(100*time.Millisecond), out)
	l.readEnv()
	return l
}

func (l *cinderLab) runScript(timeout time.Duration, verb string, env ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, l.scriptPath, verb)
	cmd.Env = append(append(os.Environ(), "VOLREP_LAB_DIR="+l.dir), env...)
	cmd.WaitDelay = 10 * time.Second
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// readEnv loads the OS_* and VOLREP_* variables lab.sh wrote for the CLIs.
func (l *cinderLab) readEnv() {
	f, err := os.Open(filepath.Join(l.dir, "env"))
	if err != nil {
		l.t.Fatal(err)
	}
	defer f.Close()
	l.vars = map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(strings.TrimPrefix(sc.Text(), "export "), "=")
		if ok && !strings.HasPrefix(k, "#") {
			l.vars[k] = v
			l.env = append(l.env, k+"="+v)
		}
	}
	if err := sc.Err(); err != nil {
		l.t.Fatal(err)
	}
}

// logTails is the end of every log of the lab, for a failure message.
func (l *cinderLab) logTails() string {
	logs, _ := filepath.Glob(filepath.Join(l.dir, "log", "*.log"))
	var b strings.Builder
	for _, p := range logs {
		data, _ := os.ReadFile(p)
		fmt.Fprintf(&b, "--- %s, last 30 lines:\n%s\n", p, tail(string(data), 30))
	}
	return b.String()
}

func (l *cinderLab) log(name string) string {
	data, _ := os.ReadFile(filepath.Join(l.dir, "log", name+".log"))
	return string(data)
}

// cli runs the openstack or cinder CLI against the lab.
func (l *cinderLab) cli(name string, args ...string) (string, error) {
	l.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(append(os.Environ(), l.env...), "PYTHONWARNINGS=ignore")
	out, err := cmd.Output()
	if ee, ok := err.(*exec.ExitError); ok {
		return string(out), fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, ee.Stderr)
	}
	return string(out), err
}

func (l *cinderLab) must(name string, args ...string) string {
	l.t.Helper()
	out, err := l.cli(name, args...)
	if err != nil {
		l.t.Fatalf("%v\n%s", err, l.logTails())
	}
	return out
}

// osJSON runs `openstack ARGS -f json` and decodes the result.
func (l *cinderLab) osJSON(v any, args ...string) {
	l.t.Helper()
	out := l.must("openstack", append(args, "-f", "json")...)
	if err := json.Unmarshal([]byte(out), v); err != nil {
		l.t.Fatalf("openstack %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// waitFor polls cond until it holds: these are state changes that go over
// the message bus, so there is nothing to block on but the API.
func (l *cinderLab) waitFor(what string, timeout time.Duration, cond func() (bool, string)) {
	l.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, state := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			l.t.Fatalf("%s: not after %s; last seen: %s\n%s", what, timeout, state, l.logTails())
		}
		time.Sleep(500 * time.Millisecond)
	}
}

type labVolume struct {
	ID                string            `json:"id"`
	Name              string            `json:"name"`
	Status            string            `json:"status"`
	Size              int               `json:"size"`
	Type              string            `json:"type"`
	ReplicationStatus string            `json:"replication_status"`
	Host              string            `json:"os-vol-host-attr:host"`
	Properties        map[string]string `json:"properties"`
}

func (l *cinderLab) volume(id string) labVolume {
	l.t.Helper()
	var v labVolume
	l.osJSON(&v, "volume", "show", id)
	return v
}

// waitVolume waits for a volume to reach status, failing at once on error.
func (l *cinderLab) waitVolume(id, status string) labVolume {
	l.t.Helper()
	var v labVolume
	l.waitFor("volume "+id+" "+status, 3*time.Minute, func() (bool, string) {
		v = l.volume(id)
		if strings.HasPrefix(v.Status, "error") && !strings.HasPrefix(status, "error") {
			l.t.Fatalf("volume %s went to %s (wanted %s); cinder message-list:\n%s\n%s", id, v.Status, status,
				l.must("cinder", "message-list"), l.logTails())
		}
		return v.Status == status, v.Status
	})
	return v
}

// create makes a volume with `cinder create` and returns its id. (OSC 6.0's
// `volume create` builds an SDK image client, which cinderclient's noauth
// plugin cannot drive.)
func (l *cinderLab) create(args ...string) string {
	l.t.Helper()
	return kvTable(l.must("cinder", append([]string{"create"}, args...)...))["id"]
}

// waitKV waits for a field of a cinderclient show table, failing at once
// on an error status.
func (l *cinderLab) waitKV(what string, show []string, field, want string) {
	l.t.Helper()
	l.waitFor(what+" "+field+" "+want, 2*time.Minute, func() (bool, string) {
		got := kvTable(l.must("cinder", show...))[field]
		if strings.HasPrefix(got, "error") {
			l.t.Fatalf("%s: %s %s\n%s", what, field, got, l.logTails())
		}
		return got == want, got
	})
}

// kvTable reads a cinderclient "| Property | Value |" table.
func kvTable(out string) map[string]string {
	m := map[string]string{}
	for _, line := range strings.Split(out, "\n") {
		cells := strings.Split(line, "|")
		if len(cells) == 4 {
			m[strings.TrimSpace(cells[1])] = strings.TrimSpace(cells[2])
		}
	}
	return m
}

// rows reads a cinderclient table into one map per row, keyed by header.
func rows(out string) []map[string]string {
	var header []string
	var rs []map[string]string
	for _, line := range strings.Split(out, "\n") {
		if !strings.HasPrefix(line, "|") {
			continue
		}
		cells := strings.Split(strings.Trim(line, "|"), "|")
		for i := range cells {
			cells[i] = strings.TrimSpace(cells[i])
		}
		if header == nil {
			header = cells
			continue
		}
		r := map[string]string{}
		for i, c := range cells {
			if i < len(header) {
				r[header[i]] = c
			}
		}
		rs = append(rs, r)
	}
	return rs
}

// volumeService is the cinder-volume row of `cinder service-list
// --withreplication` (microversion 3.49+: with Backend State).
func (l *cinderLab) volumeService() map[string]string {
	l.t.Helper()
	for _, r := range rows(l.must("cinder", "service-list", "--withreplication", "--binary", "cinder-volume")) {
		if r["Host"] == labHost {
			return r
		}
	}
	l.t.Fatalf("no cinder-volume %s in cinder service-list", labHost)
	return nil
}

// arrays are clients for pure1 and pure2's APIs.
func (l *cinderLab) array(name string) (array.Array, array.Replication) {
	l.t.Helper()
	up := strings.ToUpper(name)
	cc, err := server.Dial(l.vars["VOLREP_LAB_"+up], l.vars["VOLREP_LAB_"+up+"_TOKEN"])
	if err != nil {
		l.t.Fatal(err)
	}
	l.t.Cleanup(func() { cc.Close() })
	return client.New(cc), client.NewReplication(cc)
}

func providerName(id string) string { return "volume-" + id + "-cinder" }

// TestCinderLab is the seed lab (Pure's "Replication in OpenStack") through
// a real Cinder: the openstack and cinder CLIs, cinder-api, RabbitMQ,
// cinder-scheduler and cinder-volume loading volrep's driver, to volrepd
// and its arrays, each step checked on the API and on the arrays.
func TestCinderLab(t *testing.T) {
	l := startCinderLab(t)
	ctx := t.Context()
	pure1, repl1 := l.array("pure1")
	pure2, _ := l.array("pure2")

	// Task 1: the backend is up, with its replication capabilities.
	var services []map[string]string
	l.osJSON(&services, "volume", "service", "list")
	var found bool
	for _, s := range services {
		if s["Binary"] == "cinder-volume" && s["Host"] == labHost {
			found = true
			if s["State"] != "up" || s["Status"] != "enabled" {
				t.Fatalf("openstack volume service list: %s is %s/%s, want enabled/up", labHost, s["Status"], s["State"])
			}
		}
	}
	if !found {
		t.Fatalf("openstack volume service list has no cinder-volume %s: %v", labHost, services)
	}
	// lab.sh waited for the scheduler to have the backend's stats; the
	// API reads them from the scheduler over RPC, so allow it a moment.
	l.waitFor("backend up with replication enabled in cinder service-list", 30*time.Second, func() (bool, string) {
		s := l.volumeService()
		return s["Backend State"] == "up" && s["Replication Status"] == "enabled", fmt.Sprint(s)
	})
	pool := kvTable(l.must("cinder", "get-pools", "--detail"))
	for k, want := range map[string]string{
		"name":                labHost + "#puredriver-1",
		"backend_state":       "up",
		"replication_enabled": "True",
		"replication_count":   "2",
		"replication_targets": "['pure2-async', 'pure2-sync']",
		"replication_type":    "[['async', 'sync']]",
		"volume_backend_name": "puredriver-1",
	} {
		if pool[k] != want {
			t.Errorf("cinder get-pools --detail: %s = %q, want %q", k, pool[k], want)
		}
	}

	// Task 2: the protection group and the pod exist on pure1.
	for _, g := range []string{"cinder-group", "cinder-pod"} {
		if _, err := pure1.GetGroup(ctx, g); err != nil {
			t.Fatalf("pure1 has no %s: %v", g, err)
		}
	}
	// Task 5's starting point: the seed's interval and retention.
	pg, err := repl1.GetReplica(ctx, "cinder-group.pure2-async")
	if err != nil {
		t.Fatal(err)
	}
	if pg.Interval != time.Hour || pg.TargetRetention != (array.Retention{AllFor: 24 * time.Hour, PerDay: 5, Days: 7}) {
		t.Errorf("cinder-group.pure2-async: interval %s, retention %+v; want 1h, all for 24h then 5 a day for 7 days",
			pg.Interval, pg.TargetRetention)
	}

	// Task 3: the volume types, with the seed's extra specs.
	for typ, spec := range map[string]string{"pure-async": "<in> async", "pure-sync": "<in> sync"} {
		l.must("openstack", "volume", "type", "create", typ,
			"--property", "replication_enabled=<is> True", "--property", "replication_type="+spec)
		var vt struct {
			Properties map[string]string `json:"properties"`
		}
		l.osJSON(&vt, "volume", "type", "show", typ)
		if vt.Properties["replication_type"] != spec || vt.Properties["replication_enabled"] != "<is> True" {
			t.Fatalf("openstack volume type show %s: %v", typ, vt.Properties)
		}
	}

	// Task 4: a volume of each type, replicated, in the group or the pod.
	va := l.create("--volume-type", "pure-async", "--name", "va", "1")
	vs := l.create("--volume-type", "pure-sync", "--name", "vs", "1")
	for id, group := range map[string]string{va: "cinder-group", vs: "cinder-pod"} {
		v := l.waitVolume(id, "available")
		if v.ReplicationStatus != "enabled" || v.Host != labHost+"#puredriver-1" {
			t.Errorf("volume %s: replication_status %q on %q, want enabled on %s#puredriver-1", v.Name, v.ReplicationStatus, v.Host, labHost)
		}
		g, err := pure1.GetGroup(ctx, group)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Contains(g.Members, providerName(id)) {
			t.Errorf("pure1's %s has %v, want %s in it", group, g.Members, providerName(id))
		}
	}
	// The pod is stretched: its volume is on pure2 too.
	if _, err := pure2.GetVolume(ctx, providerName(vs)); err != nil {
		t.Errorf("pure2 does not have the sync volume %s: %v", providerName(vs), err)
	}

	t.Run("snapshot and clone", func(t *testing.T) {
		l := *l
		l.t = t
		snap := kvTable(l.must("cinder", "snapshot-create", "--name", "sa", va))["id"]
		l.waitFor("snapshot sa available", 2*time.Minute, func() (bool, string) {
			s := kvTable(l.must("cinder", "snapshot-show", snap))["status"]
			if s == "error" {
				t.Fatalf("snapshot sa went to error\n%s", l.logTails())
			}
			return s == "available", s
		})
		snaps, err := pure1.ListSnapshots(ctx, providerName(va))
		if err != nil || len(snaps) == 0 {
			t.Fatalf("pure1 has no snapshot of %s: %v %v", providerName(va), snaps, err)
		}
		fromSnap := l.create("--snapshot-id", snap, "--volume-type", "pure-async", "--name", "va-from-snap", "1")
		clone := l.create("--source-volid", va, "--volume-type", "pure-async", "--name", "va-clone", "1")
		for _, id := range []string{fromSnap, clone} {
			l.waitVolume(id, "available")
			if _, err := pure1.GetVolume(ctx, providerName(id)); err != nil {
				t.Errorf("pure1 has no %s: %v", providerName(id), err)
			}
		}
	})

	t.Run("volume from a Glance image", func(t *testing.T) {
		l := *l
		l.t = t
		labImages(t, &l, pure1)
	})

	t.Run("extend", func(t *testing.T) {
		l := *l
		l.t = t
		l.must("cinder", "extend", va, "2")
		l.waitFor("va extended to 2 GiB", 2*time.Minute, func() (bool, string) {
			v := l.volume(va)
			return v.Size == 2 && v.Status == "available", fmt.Sprintf("%s, %d GiB", v.Status, v.Size)
		})
		av, err := pure1.GetVolume(ctx, providerName(va))
		if err != nil || av.SizeBytes != 2<<30 {
			t.Fatalf("pure1's %s: %+v %v, want 2 GiB", providerName(va), av, err)
		}
	})

	t.Run("retype async to sync", func(t *testing.T) {
		l := *l
		l.t = t
		vr := l.create("--volume-type", "pure-async", "--name", "vr", "1")
		l.waitVolume(vr, "available")
		l.must("cinder", "retype", vr, "pure-sync")
		l.waitFor("vr retyped to pure-sync", 2*time.Minute, func() (bool, string) {
			v := l.volume(vr)
			return v.Type == "pure-sync" && v.Status == "available", v.Type + "/" + v.Status
		})
		pod, err := pure1.GetGroup(ctx, "cinder-pod")
		if err != nil || !slices.Contains(pod.Members, providerName(vr)) {
			t.Fatalf("pure1's cinder-pod: %v %v, want %s in it", pod.Members, err, providerName(vr))
		}
		pg, err := pure1.GetGroup(ctx, "cinder-group")
		if err != nil || slices.Contains(pg.Members, providerName(vr)) {
			t.Fatalf("pure1's cinder-group: %v %v, want %s out of it", pg.Members, err, providerName(vr))
		}
	})

	t.Run("failover-host and back", func(t *testing.T) {
		l := *l
		l.t = t
		l.must("cinder", "failover-host", labHost, "--backend_id", "pure2-async")
		l.waitFor("failed over to pure2-async", 3*time.Minute, func() (bool, string) {
			s := l.volumeService()
			return s["Replication Status"] == "failed-over" && s["Active Backend ID"] == "pure2-async", fmt.Sprint(s)
		})
		if v := l.volume(va); v.ReplicationStatus != "failed-over" {
			t.Errorf("va after failover: replication_status %q, want failed-over", v.ReplicationStatus)
		}
		l.must("cinder", "failover-host", labHost, "--backend_id", "default")
		l.waitFor("failed back", 3*time.Minute, func() (bool, string) {
			s := l.volumeService()
			// Back on the primary, Cinder clears active_backend_id.
			return s["Replication Status"] == "enabled" && s["Active Backend ID"] == "", fmt.Sprint(s)
		})
		if v := l.volume(va); v.ReplicationStatus != "enabled" {
			t.Errorf("va after failback: replication_status %q, want enabled", v.ReplicationStatus)
		}
	})

	t.Run("group create, snapshot, enable replication", func(t *testing.T) {
		l := *l
		l.t = t
		l.must("cinder", "group-type-create", "pure-group")
		l.must("cinder", "group-type-key", "pure-group", "set",
			"consistent_group_snapshot_enabled=<is> True", "consistent_group_replication_enabled=<is> True")
		g := kvTable(l.must("cinder", "group-create", "--name", "g1", "pure-group", "pure-async"))["id"]
		l.waitKV("group g1", []string{"group-show", g}, "status", "available")
		gv := l.create("--group-id", g, "--volume-type", "pure-async", "--name", "gv1", "1")
		l.waitVolume(gv, "available")
		cg := "consisgroup-" + g + "-cinder"
		if _, err := pure1.GetGroup(ctx, cg); err != nil {
			t.Fatalf("pure1 has no %s for group g1: %v", cg, err)
		}
		gs := kvTable(l.must("cinder", "group-snapshot-create", "--name", "gs1", g))["id"]
		l.waitKV("group snapshot gs1", []string{"group-snapshot-show", gs}, "status", "available")
		if _, err := pure1.GetSnapshot(ctx, providerName(gv), "snapshot-"+gs); err != nil {
			t.Errorf("pure1 has no group snapshot member snapshot-%s of %s: %v", gs, providerName(gv), err)
		}
		l.must("cinder", "group-enable-replication", g)
		l.waitKV("group g1 replication", []string{"group-show", g}, "replication_status", "enabled")
		// Replicating, the group is a protection group of its own: its
		// volume moved there from the backend's cinder-group.
		if got := members(t, pure1, cg); !slices.Equal(got, []string{providerName(gv)}) {
			t.Errorf("pure1's %s has %v once replicating, want [%s]", cg, got, providerName(gv))
		}
		if pg := members(t, pure1, "cinder-group"); slices.Contains(pg, providerName(gv)) {
			t.Errorf("pure1's cinder-group still has %s: %v", providerName(gv), pg)
		}
	})

	// A misspelt replication_type never reaches an array: volrep's
	// scheduler filter keeps the volume off the backend and says why, with
	// the accepted values, in the volume's properties and the scheduler's
	// log; Cinder's own user message says only that no backend was found.
	t.Run("misspelt replication_type", func(t *testing.T) {
		l := *l
		l.t = t
		l.must("openstack", "volume", "type", "create", "pure-asnyc",
			"--property", "replication_enabled=<is> True", "--property", "replication_type=<in> asnyc")
		before, err := pure1.ListVolumes(ctx, "")
		if err != nil {
			t.Fatal(err)
		}
		before2, err := pure2.ListVolumes(ctx, "")
		if err != nil {
			t.Fatal(err)
		}
		bad := l.create("--volume-type", "pure-asnyc", "--name", "vbad", "1")
		v := l.waitVolume(bad, "error")
		after, err := pure1.ListVolumes(ctx, "")
		if err != nil {
			t.Fatal(err)
		}
		after2, err := pure2.ListVolumes(ctx, "")
		if err != nil {
			t.Fatal(err)
		}
		if len(after) != len(before) || len(after2) != len(before2) {
			t.Errorf("pure1 had %d volumes before the misspelt type's volume and %d after, pure2 %d and %d",
				len(before), len(after), len(before2), len(after2))
		}
		if _, err := pure1.GetVolume(ctx, providerName(bad)); err == nil {
			t.Errorf("pure1 has %s", providerName(bad))
		}
		want := `replication_type '<in> asnyc' of volume type pure-asnyc: "asnyc" is not a replication type; ` +
			`volrep accepts '<in> async' and '<in> sync'`
		if got := v.Properties["volrep_error"]; got != want {
			t.Errorf("openstack volume show %s: properties volrep_error = %q, want %q", bad, got, want)
		}
		if !strings.Contains(l.log("cinder-scheduler"), want) {
			t.Errorf("cinder-scheduler's log does not say %q:\n%s", want, tail(l.log("cinder-scheduler"), 20))
		}
		msgs := l.must("cinder", "message-list", "--resource_uuid", bad)
		if !regexp.MustCompile(`(?i)no valid backend|weighted backend`).MatchString(msgs) {
			t.Errorf("cinder message-list for %s does not say why:\n%s", bad, msgs)
		}
		t.Logf("openstack volume show %s: status %s, properties %v; cinder message-list:\n%s", bad, v.Status, v.Properties, msgs)
		// As an operator would; it also gives the volume quota (10) back.
		l.must("cinder", "delete", bad)
	})

	// Task 5: the protection group's schedule, changed in cinder.conf and
	// applied by a reload of volrepd (the seed restarts c-vol instead).
	t.Run("protection group schedule from cinder.conf", func(t *testing.T) {
		l := *l
		l.t = t
		l.editConf(map[string]string{
			"pure_replica_interval_default = 3600":              "pure_replica_interval_default = 1800",
			"pure_replica_retention_short_term_default = 86400": "pure_replica_retention_short_term_default = 43200",
		})
		l.script(t, "reload")
		want := array.Retention{AllFor: 12 * time.Hour, PerDay: 5, Days: 7}
		l.waitFor("cinder-group.pure2-async rescheduled", time.Minute, func() (bool, string) {
			r, err := repl1.GetReplica(ctx, "cinder-group.pure2-async")
			if err != nil {
				return false, err.Error()
			}
			return r.Interval == 30*time.Minute && r.TargetRetention == want, fmt.Sprintf("%s %+v", r.Interval, r.TargetRetention)
		})
	})

	// The seed's troubleshooting: a typo in cinder.conf shows as a down
	// service, with the reason in the logs; the fixed file and a reload of
	// volrepd bring it up, with no restart of cinder-volume.
	t.Run("troubleshooting: bakend_id typo", func(t *testing.T) {
		l := *l
		l.t = t
		l.editConf(map[string]string{"backend_id:pure2-async": "bakend_id:pure2-async"})
		l.script(t, "restart", "volrepd")
		l.script(t, "restart", "cinder-volume")
		pid := l.pid("cinder-volume")
		downAt := l.waitServiceState("cinder-volume", labHost, "down")
		if !strings.Contains(l.log("volrepd"), `unknown key \"bakend_id\"`) {
			t.Errorf("volrepd's log does not name the typo:\n%s", tail(l.log("volrepd"), 20))
		}
		if !regexp.MustCompile(`volrep backend puredriver-1 is down: .*bakend_id`).MatchString(l.log("cinder-volume")) {
			t.Errorf("cinder-volume's log does not name the typo:\n%s", tail(l.log("cinder-volume"), 20))
		}

		l.editConf(map[string]string{"bakend_id:pure2-async": "backend_id:pure2-async"})
		l.script(t, "reload")
		upAt := l.waitServiceState("cinder-volume", labHost, "up")
		t.Logf("down %s after cinder-volume's restart with the typo; up %s after the fix and reload", downAt, upAt)
		l.waitFor("backend up in cinder service-list", time.Minute, func() (bool, string) {
			s := l.volumeService()
			return s["Backend State"] == "up", fmt.Sprint(s)
		})
		if p := l.pid("cinder-volume"); p != pid {
			t.Errorf("cinder-volume was restarted (pid %s, then %s)", pid, p)
		}
		if !strings.Contains(l.log("cinder-volume"), "volrep backend puredriver-1 is up again") {
			t.Errorf("cinder-volume's log does not say the backend is up again:\n%s", tail(l.log("cinder-volume"), 20))
		}
		v := l.create("--volume-type", "pure-async", "--name", "after-fix", "1")
		l.waitVolume(v, "available")
		if g, err := pure1.GetGroup(ctx, "cinder-group"); err != nil || !slices.Contains(g.Members, providerName(v)) {
			t.Errorf("pure1's cinder-group: %v %v, want %s in it", g.Members, err, providerName(v))
		}
	})

	// volrepd stopped under a running cinder-volume: the service goes down
	// (the driver's health check fails, so Cinder stops its heartbeats),
	// a create fails at the scheduler, and volrepd's return brings the
	// service back with no restart of cinder-volume.
	t.Run("volrepd stopped and started", func(t *testing.T) {
		l := *l
		l.t = t
		pid := l.pid("cinder-volume")
		// volrepd hosts the arrays too: count their volumes before it stops.
		before, err := pure1.ListVolumes(ctx, "")
		if err != nil {
			t.Fatal(err)
		}
		l.script(t, "stop", "volrepd")
		stopped := true
		defer func() {
			if stopped { // the subtest failed half-way: leave the lab whole
				l.script(t, "start", "volrepd")
			}
		}()
		downAt := l.waitServiceState("cinder-volume", labHost, "down")
		if line := regexp.MustCompile(`volrep backend puredriver-1 is down: volrepd at \S+: ListBackends: .*UNAVAILABLE.*`).FindString(l.log("cinder-volume")); line == "" {
			t.Errorf("cinder-volume's log does not say volrepd is unreachable:\n%s", tail(l.log("cinder-volume"), 20))
		} else {
			t.Logf("cinder-volume's log: %s", line)
		}
		down := l.create("--volume-type", "pure-async", "--name", "while-down", "1")
		l.waitVolume(down, "error")
		msgs := l.must("cinder", "message-list", "--resource_uuid", down)
		if !strings.Contains(msgs, "Could not find any available weighted backend") {
			t.Errorf("cinder message-list for %s does not say why:\n%s", down, msgs)
		}
		if !strings.Contains(l.log("cinder-scheduler"), "volume service is down. (host: "+labHost+")") {
			t.Errorf("cinder-scheduler's log does not say %s is down", labHost)
		}

		l.script(t, "start", "volrepd")
		stopped = false
		upAt := l.waitServiceState("cinder-volume", labHost, "up")
		// The scheduler still holds the stats the driver sent while volrepd
		// was away (no capacity, backend_state down) until the next
		// periodic report (backend_stats_polling_interval): a create before
		// then fails there, as it would for an operator.
		statsAt := time.Now()
		l.waitFor("the scheduler to have fresh stats (backend_state up)", 60*time.Second, func() (bool, string) {
			out, err := l.cli("cinder", "get-pools", "--detail")
			if err != nil {
				return false, out
			}
			pool := kvTable(out)
			return pool["backend_state"] == "up", fmt.Sprintf("backend_state %q, free_capacity_gb %q", pool["backend_state"], pool["free_capacity_gb"])
		})
		t.Logf("down %s after volrepd stopped; up %s after it started, fresh stats at the scheduler %s later; create while down: %s",
			downAt, upAt, time.Since(statsAt).Round(100*time.Millisecond), msgs)
		if p := l.pid("cinder-volume"); p != pid {
			t.Errorf("cinder-volume was restarted (pid %s, then %s)", pid, p)
		}
		l.must("cinder", "delete", down)
		if after, err := pure1.ListVolumes(ctx, ""); err != nil || len(after) != len(before) {
			t.Errorf("pure1 had %d volumes before the create while volrepd was down and %d after (%v)", len(before), len(after), err)
		}
		v := l.create("--volume-type", "pure-async", "--name", "after-volrepd", "1")
		l.waitVolume(v, "available")
		if _, err := pure1.GetVolume(ctx, providerName(v)); err != nil {
			t.Errorf("pure1 has no %s: %v", providerName(v), err)
		}
	})

	// RabbitMQ restarted (same node, same data): once cinder-scheduler and
	// cinder-volume have reconnected (lab.sh waits for their queues'
	// consumers), the next create goes through.
	t.Run("rabbitmq restarted", func(t *testing.T) {
		l := *l
		l.t = t
		began := time.Now()
		l.script(t, "restart", "rabbitmq")
		t.Logf("lab.sh restart rabbitmq (until both services consume again): %s", time.Since(began).Round(100*time.Millisecond))
		for _, svc := range [][2]string{{"cinder-scheduler", "lab"}, {"cinder-volume", labHost}} {
			l.waitServiceState(svc[0], svc[1], "up")
		}
		v := l.create("--volume-type", "pure-async", "--name", "after-rabbitmq", "1")
		l.waitVolume(v, "available")
		t.Logf("RabbitMQ restart to a created volume: %s", time.Since(began).Round(100*time.Millisecond))
		if _, err := pure1.GetVolume(ctx, providerName(v)); err != nil {
			t.Errorf("pure1 has no %s: %v", providerName(v), err)
		}
	})
}

// waitServiceState waits until `openstack volume service list` shows the
// service binary on host in state (up or down), and returns how long that
// took.
func (l *cinderLab) waitServiceState(binary, host, state string) time.Duration {
	l.t.Helper()
	began := time.Now()
	l.waitFor(binary+" "+host+" "+state+" in openstack volume service list", 2*time.Minute, func() (bool, string) {
		var services []map[string]string
		l.osJSON(&services, "volume", "service", "list", "--service", binary)
		for _, s := range services {
			if s["Host"] == host {
				return s["State"] == state, fmt.Sprint(s)
			}
		}
		return false, fmt.Sprintf("no %s %s in %v", binary, host, services)
	})
	return time.Since(began).Round(100 * time.Millisecond)
}

// script runs a lab.sh verb (reload, restart NAME), failing t on error.
func (l *cinderLab) script(t *testing.T, verb string, args ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, l.scriptPath, append([]string{verb}, args...)...)
	cmd.Env = append(os.Environ(), "VOLREP_LAB_DIR="+l.dir)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("lab.sh %s %s: %v\n%s\n%s", verb, strings.Join(args, " "), err, out, l.logTails())
	}
}

// pid is the pid lab.sh recorded for a service.
func (l *cinderLab) pid(name string) string {
	data, err := os.ReadFile(filepath.Join(l.dir, "run", name+".pid"))
	if err != nil {
		l.t.Fatal(err)
	}
	return strings.TrimSpace(string(data))
}

// editConf replaces text in the lab's cinder.conf, which volrepd and
// cinder-volume read, as an operator's editor would: a new file in place.
func (l *cinderLab) editConf(replace map[string]string) {
	l.t.Helper()
	path := filepath.Join(l.dir, "cinder.conf")
	data, err := os.ReadFile(path)
	if err != nil {
		l.t.Fatal(err)
	}
	text := string(data)
	for from, to := range replace {
		if !strings.Contains(text, from) {
			l.t.Fatalf("%s has no %q", path, from)
		}
		text = strings.ReplaceAll(text, from, to)
	}
	tmp := path + ".new"
	if err := os.WriteFile(tmp, []byte(text), 0o600); err != nil {
		l.t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		l.t.Fatal(err)
	}
}
