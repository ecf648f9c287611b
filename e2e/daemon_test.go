package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/volrep/volrep/array"
	driverv1 "github.com/volrep/volrep/proto/volrep/driver/v1"
)

// TestGrpcurl lists both APIs through reflection and creates a volume the
// way an operator would from a shell.
func TestGrpcurl(t *testing.T) {
	grpcurl := tool(t, "grpcurl")
	d := NewDaemon(t)
	d.Start()

	out, _ := run(t, false, grpcurl, "-plaintext", d.DriverAddr, "list")
	for _, svc := range []string{"volrep.driver.v1.DriverService", "grpc.health.v1.Health"} {
		if !strings.Contains(out, svc) {
			t.Fatalf("driver API does not list %s:\n%s", svc, out)
		}
	}
	// The array API needs its token even for reflection-driven calls.
	auth := "authorization: Bearer " + d.TokenA
	out, _ = run(t, false, grpcurl, "-plaintext", "-H", auth, d.ArrayA, "list")
	for _, svc := range []string{"volrep.array.v1.ArrayService", "volrep.array.v1.VolumeService"} {
		if !strings.Contains(out, svc) {
			t.Fatalf("array API does not list %s:\n%s", svc, out)
		}
	}
	out, _ = run(t, false, grpcurl, "-plaintext", "-d", `{"backend":"demo","volume_id":"vol-grpcurl","size_gb":2}`,
		d.DriverAddr, "volrep.driver.v1.DriverService/CreateVolume")
	var resp struct {
		ModelUpdate struct {
			ProviderID        string `json:"providerId"`
			ReplicationStatus string `json:"replicationStatus"`
		} `json:"modelUpdate"`
	}
	if err := json.Unmarshal([]byte(out), &resp); err != nil {
		t.Fatalf("CreateVolume output: %v\n%s", err, out)
	}
	if resp.ModelUpdate.ProviderID != "volume-vol-grpcurl-cinder" || resp.ModelUpdate.ReplicationStatus != "REPLICATION_STATUS_DISABLED" {
		t.Fatalf("model update = %+v", resp.ModelUpdate)
	}
	// The volume is really on the primary array, with the size asked for.
	v, err := d.Array("a").GetVolume(t.Context(), "volume-vol-grpcurl-cinder")
	if err != nil || v.SizeBytes != 2<<30 {
		t.Fatalf("array volume = %+v, %v", v, err)
	}
	// A wrong token on the array API is UNAUTHENTICATED.
	out, err = run(t, true, grpcurl, "-plaintext", "-H", "authorization: Bearer nope", d.ArrayA, "volrep.array.v1.ArrayService/ListPools")
	if err == nil || !strings.Contains(out, "Unauthenticated") {
		t.Fatalf("wrong token accepted: %v\n%s", err, out)
	}
	// A bad request names its field.
	out, err = run(t, true, grpcurl, "-plaintext", "-d", `{"backend":"demo","volume_id":"x","size_gb":0}`,
		d.DriverAddr, "volrep.driver.v1.DriverService/CreateVolume")
	if err == nil || !strings.Contains(out, "InvalidArgument") || !strings.Contains(out, "size_gb") {
		t.Fatalf("size_gb 0 not refused by name: %v\n%s", err, out)
	}
}

// TestHealthProbe checks the per-backend health statuses with
// grpc-health-probe, the tool Kubernetes and operators use.
func TestHealthProbe(t *testing.T) {
	probe := tool(t, "grpc-health-probe")
	d := NewDaemon(t)
	d.Start()
	if out, err := run(t, true, probe, "-addr", d.DriverAddr); err != nil {
		t.Fatalf("overall health: %v\n%s", err, out)
	}
	if out, err := run(t, true, probe, "-addr", d.DriverAddr, "-service", "backend/demo"); err != nil {
		t.Fatalf("backend/demo health: %v\n%s", err, out)
	}
	out, err := run(t, true, probe, "-addr", d.DriverAddr, "-service", "backend/nope")
	if err == nil {
		t.Fatalf("unknown backend reported healthy:\n%s", out)
	}
}

// TestTypoDrill is the seed's troubleshooting story: a misspelled key in
// a replication_device. The daemon serves, and the backend is down with
// the file, line and a suggestion in ListBackends, health, the log and
// `volrep doctor`. Fixing the file and sending SIGHUP brings the backend
// up without a restart.
func TestTypoDrill(t *testing.T) {
	probe := tool(t, "grpc-health-probe")
	grpcurl := tool(t, "grpcurl")
	d := NewDaemon(t)
	d.WriteConfig(fmt.Sprintf("replication_device = bakend_id:site-b,san_ip:%s,api_token:%s,type:async", d.ArrayB, d.TokenB), "")
	d.WaitFor("")
	d.Start()
	pid := d.cmd.Process.Pid

	out, _ := run(t, false, grpcurl, "-plaintext", d.DriverAddr, "volrep.driver.v1.DriverService/ListBackends")
	want := regexp.MustCompile(`volrep\.conf:\d+: .*bakend_id.*did you mean \\"backend_id\\"`)
	if !want.MatchString(out) || strings.Contains(out, `"up": true`) {
		t.Fatalf("ListBackends does not report the typo with file:line and a suggestion:\n%s", out)
	}
	if _, err := run(t, true, probe, "-addr", d.DriverAddr, "-service", "backend/demo"); err == nil {
		t.Fatal("backend with a config typo reported SERVING")
	}
	if !strings.Contains(d.Logs(), "bakend_id") {
		t.Fatalf("the log does not name the typo:\n%s", d.Logs())
	}
	if strings.Contains(out+d.Logs(), d.TokenB) || strings.Contains(out+d.Logs(), d.TokenA) {
		t.Fatal("a token appears in ListBackends or the log")
	}
	dout, code := doctor(t, "--config", d.Conf)
	if code == 0 || !regexp.MustCompile(`volrep\.conf:\d+: .*bakend_id.*did you mean "backend_id"`).MatchString(dout) ||
		!strings.Contains(dout, "FAIL   [demo]: down") {
		t.Fatalf("doctor exit %d does not report the down backend and the typo:\n%s", code, dout)
	}

	// The fix: correct the key and reload, as `systemctl reload volrepd` does.
	d.WriteConfig(d.DefaultBackend(), "")
	if err := d.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	d.WaitFor("backend/demo")
	d.waitServing()
	if d.cmd.Process.Pid != pid || !strings.Contains(d.Logs(), "configuration reloaded") {
		t.Fatalf("backend not brought up by a reload of the same process:\n%s", d.Logs())
	}
	if out, err := run(t, true, probe, "-addr", d.DriverAddr, "-service", "backend/demo"); err != nil {
		t.Fatalf("backend/demo after the fix: %v\n%s", err, out)
	}
	// The fixed backend really replicates: its link to site-b connects.
	waitLink(t, d, "site-b", array.LinkConnected)
	if dout, code := doctor(t, "--config", d.Conf); code != 0 {
		t.Fatalf("doctor after the fix: exit %d\n%s", code, dout)
	}
}

// TestReloadKeepsWhatItCannotApply: a reload that cannot read the file
// keeps the running configuration; one that changes a listener says a
// restart is needed; an unchanged backend keeps running untouched.
func TestReloadKeepsWhatItCannotApply(t *testing.T) {
	d := NewDaemon(t)
	d.Start()
	c := driverClient(t, d)
	createVolume(t, c, "vol-reload", 1)
	hup := func(wantLog string) {
		t.Helper()
		n := strings.Count(d.Logs(), wantLog)
		if err := d.cmd.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		waitFor(t, func() bool { return strings.Count(d.Logs(), wantLog) > n })
	}

	conf, err := os.ReadFile(d.Conf)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(d.Conf); err != nil {
		t.Fatal(err)
	}
	hup("previous configuration stays in force")
	if err := os.WriteFile(d.Conf, bytes.Replace(conf, []byte("driver_listen = "+d.DriverAddr), []byte("driver_listen = 127.0.0.1:1"), 1), 0o600); err != nil {
		t.Fatal(err)
	}
	hup("configuration reloaded")
	if !strings.Contains(d.Logs(), "needs a restart") || !strings.Contains(d.Logs(), "[volrep] driver_listen") {
		t.Fatalf("a changed driver_listen is not named as needing a restart:\n%s", d.Logs())
	}
	if !regexp.MustCompile(`configuration reloaded.*unchanged="?\[demo\]`).MatchString(d.Logs()) {
		t.Fatalf("the unchanged backend was not kept:\n%s", d.Logs())
	}
	// Still served on the old address, by the same backend.
	if _, err := c.GetVolume(t.Context(), &driverv1.GetVolumeRequest{Backend: "demo", VolumeId: "vol-reload"}); err != nil {
		t.Fatalf("GetVolume after the reloads: %v", err)
	}
}

// TestCheckConfig runs --check-config on a file with one of each typo.
func TestCheckConfig(t *testing.T) {
	volrepd, _ := binaries(t)
	dir := t.TempDir()
	conf := filepath.Join(dir, "cinder.conf")
	os.WriteFile(conf, []byte(`[DEFAULT]
enabled_backends = pure1, pure2, missing

[pure1]
volume_backend_name = pure1
san_ip = 10.0.0.1
pure_api_token = t1
pure_replica_intreval_default = 3600
replication_device = bakend_id:b1,san_ip:10.0.0.2,api_token:t2,type:async
replication_device = backend_id:b2,san_ip:10.0.0.3,api_token:t3,type:asink
replication_device = backend_id:b3,san_ip:10.0.0.4,api_token:t4,type:async
replication_device = backend_id:b3,san_ip:10.0.0.5,api_token:t5,type:sync
replication_device = backend_id:default,san_ip:10.0.0.6,api_token:t6
pure_replica_retention_short_term_default = -5
pure_replica_retention_long_term_default = seven

[pure2]
volume_backend_name = pure2
`), 0o600)
	cmd := exec.Command(volrepd, "--config", conf, "--check-config")
	var stdout bytes.Buffer
	cmd.Stdout = &stdout
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 {
		t.Fatalf("exit = %v, want 2\n%s", err, stdout.String())
	}
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	for _, want := range []string{
		`cinder.conf:2: .*"missing"`,
		`cinder.conf:8: .*pure_replica_intreval_default.*did you mean "pure_replica_interval_default"`,
		`cinder.conf:9: .*bakend_id.*did you mean "backend_id"`,
		`cinder.conf:10: .*asink`,
		`cinder.conf:12: .*b3`,
		`cinder.conf:13: .*default`,
		`cinder.conf:14: .*pure_replica_retention_short_term_default`,
		`cinder.conf:15: .*pure_replica_retention_long_term_default`,
		`cinder.conf:17: .*san_ip`,
		`cinder.conf:17: .*pure_api_token`,
	} {
		re := regexp.MustCompile(`^` + regexp.QuoteMeta(conf[:len(conf)-len("cinder.conf")]) + want)
		found := false
		for _, l := range lines {
			found = found || re.MatchString(l)
		}
		if !found {
			t.Errorf("no line matches %q in:\n%s", want, stdout.String())
		}
	}
	for _, tok := range []string{"t1", "t2", "t5"} {
		if regexp.MustCompile(`\b` + tok + `\b`).MatchString(stdout.String()) {
			t.Errorf("token %q printed", tok)
		}
	}
	// The seed lab configuration, addresses filled in, is valid.
	os.WriteFile(conf, []byte(`[DEFAULT]
enabled_backends = puredriver-1

[puredriver-1]
volume_backend_name = puredriver-1
volume_driver = cinder.volume.drivers.pure.PureISCSIDriver
san_ip = 10.0.0.10
pure_api_token = xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx
use_multipath_for_image_xfer = True
replication_device = backend_id:pure2-async,san_ip:10.0.0.20,api_token:xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx,type:async
pure_replica_interval_default = 3600
pure_replica_retention_short_term_default = 86400
pure_replica_retention_long_term_per_day_default = 5
pure_replica_retention_long_term_default = 7
`), 0o600)
	if out, err := exec.Command(volrepd, "--config", conf, "--check-config").CombinedOutput(); err != nil {
		t.Fatalf("seed lab config refused: %v\n%s", err, out)
	}
}

// TestCrashSIGKILL writes through the array API, flushes, kills volrepd
// with SIGKILL, restarts it, and reads every acknowledged byte back.
func TestCrashSIGKILL(t *testing.T) {
	d := NewDaemon(t)
	d.Start()
	ctx := t.Context()
	a := d.Array("a")
	if _, err := a.CreateVolume(ctx, array.VolumeSpec{Name: "crash", Pool: "cinder", SizeBytes: 64 << 20}); err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(1, 1))
	want := make([]byte, 64<<20)
	for i := 0; i < 40; i++ {
		off := r.IntN(len(want) - 300000)
		n := 1 + r.IntN(300000)
		p := make([]byte, n)
		for j := range p {
			p[j] = byte(r.Uint32())
		}
		if err := a.WriteVolume(ctx, "crash", int64(off), p, i%10 == 9); err != nil {
			t.Fatal(err)
		}
		copy(want[off:], p)
		if i == 20 {
			if _, err := a.CreateSnapshot(ctx, "crash", "mid", nil); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := a.FlushVolume(ctx, "crash"); err != nil {
		t.Fatal(err)
	}
	d.Kill()
	d.Start()
	a = d.Array("a")
	got := make([]byte, len(want))
	if err := a.ReadVolume(ctx, "crash", 0, got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("flush-acknowledged data lost after SIGKILL and restart")
	}
	if _, err := a.GetSnapshot(ctx, "crash", "mid"); err != nil {
		t.Fatalf("snapshot lost after SIGKILL: %v", err)
	}
}

// TestCreateDeleteSurviveSIGKILL: creates and deletes acknowledged while
// many run at once (their metadata commits are batched) are all on disk
// when volrepd is killed right after: every created volume is there after
// the restart, with its data, and no deleted one is.
func TestCreateDeleteSurviveSIGKILL(t *testing.T) {
	d := NewDaemon(t)
	d.Start()
	ctx := t.Context()
	a := d.Array("a")
	const workers, per = 16, 12
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range per {
				name := fmt.Sprintf("kv-%d-%d", w, i)
				if _, err := a.CreateVolume(ctx, array.VolumeSpec{Name: name, Pool: "cinder", SizeBytes: 1 << 20}); err != nil {
					errs <- err
					return
				}
				if i%3 == 2 {
					if err := a.DeleteVolume(ctx, name); err != nil {
						errs <- err
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	// One volume written and flushed: its lazily created file survives too.
	p := bytes.Repeat([]byte{0x5a}, 8192)
	if err := a.WriteVolume(ctx, "kv-0-0", 4096, p, false); err != nil {
		t.Fatal(err)
	}
	if err := a.FlushVolume(ctx, "kv-0-0"); err != nil {
		t.Fatal(err)
	}
	d.Kill()
	d.Start()
	a = d.Array("a")
	vols, err := a.ListVolumes(ctx, "cinder")
	if err != nil {
		t.Fatal(err)
	}
	have := map[string]bool{}
	for _, v := range vols {
		have[v.Name] = true
	}
	for w := range workers {
		for i := range per {
			name := fmt.Sprintf("kv-%d-%d", w, i)
			if want := i%3 != 2; have[name] != want {
				t.Errorf("after SIGKILL, %s exists=%v; its acknowledged create/delete says %v", name, have[name], want)
			}
		}
	}
	got := make([]byte, len(p))
	if err := a.ReadVolume(ctx, "kv-0-0", 4096, got); err != nil || !bytes.Equal(got, p) {
		t.Fatalf("flushed data of a new volume after SIGKILL: %v", err)
	}
}

// TestSystemdNotifyProtocol runs volrepd the way systemd does, with
// NOTIFY_SOCKET and WATCHDOG_USEC, on a socket the test owns: READY=1 once
// serving, WATCHDOG=1 pings, and on SIGHUP the notify-reload sequence
// RELOADING=1 with MONOTONIC_USEC, then READY=1 again.
func TestSystemdNotifyProtocol(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	msgs := make(chan string, 256)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				close(msgs)
				return
			}
			msgs <- string(buf[:n])
		}
	}()
	next := func(want string) string {
		t.Helper()
		deadline := time.After(20 * time.Second)
		for {
			select {
			case m, ok := <-msgs:
				if !ok {
					t.Fatalf("notify socket closed waiting for %q", want)
				}
				if strings.Contains(m, want) {
					return m
				}
			case <-deadline:
				t.Fatalf("no %q on the notify socket", want)
			}
		}
	}
	d := NewDaemon(t)
	d.Env = []string{"NOTIFY_SOCKET=" + sock, "WATCHDOG_USEC=400000"}
	d.Start()
	next("READY=1")
	next("WATCHDOG=1")
	next("WATCHDOG=1")
	if err := d.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	m := next("RELOADING=1")
	if !regexp.MustCompile(`MONOTONIC_USEC=\d+`).MatchString(m) {
		t.Fatalf("RELOADING=1 without MONOTONIC_USEC: %q", m)
	}
	next("READY=1")
	d.Stop()
	next("STOPPING=1")
}
