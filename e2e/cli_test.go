package e2e

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/volrep/volrep/array/client"
	"github.com/volrep/volrep/server"
)

// volrep runs the CLI against d and returns stdout+stderr and the exit code.
func volrep(t *testing.T, d *Daemon, args ...string) (string, int) {
	t.Helper()
	_, cli := binaries(t)
	cmd := exec.Command(cli, append([]string{"--addr", d.DriverAddr}, args...)...)
	out, err := cmd.CombinedOutput()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return string(out), code
}

// TestCLI walks the volume and snapshot lifecycle with the volrep CLI.
func TestCLI(t *testing.T) {
	d := NewDaemon(t)
	d.Start()
	out, code := volrep(t, d, "backend", "list")
	if code != 0 || !strings.Contains(out, "demo") || !strings.Contains(out, "site-b(async)") {
		t.Fatalf("backend list (exit %d):\n%s", code, out)
	}
	if out, code = volrep(t, d, "volume", "create", "v1", "--size", "1"); code != 0 {
		t.Fatalf("volume create (exit %d):\n%s", code, out)
	}
	if out, code = volrep(t, d, "snapshot", "create", "s1", "--volume", "v1"); code != 0 {
		t.Fatalf("snapshot create (exit %d):\n%s", code, out)
	}
	if out, code = volrep(t, d, "volume", "from-snapshot", "v2", "--snapshot", "s1", "--source-volume", "v1", "--size", "2"); code != 0 {
		t.Fatalf("volume from-snapshot (exit %d):\n%s", code, out)
	}
	if out, code = volrep(t, d, "volume", "clone", "v3", "--from", "v1"); code != 0 {
		t.Fatalf("volume clone (exit %d):\n%s", code, out)
	}
	out, code = volrep(t, d, "-o", "json", "volume", "list")
	var list struct {
		Volumes []struct {
			ID     string `json:"id"`
			SizeGB string `json:"size_gb"`
			Source string `json:"source"`
		} `json:"volumes"`
	}
	if err := json.Unmarshal([]byte(out), &list); err != nil || code != 0 {
		t.Fatalf("volume list -o json (exit %d): %v\n%s", code, err, out)
	}
	got := map[string]string{}
	for _, v := range list.Volumes {
		got[v.ID] = v.SizeGB + " " + v.Source
	}
	if got["v1"] != "1 " || got["v2"] != "2 volume-v1-cinder@snapshot-s1" || !strings.HasPrefix(got["v3"], "1 volume-v1-cinder@clone-for-v3") {
		t.Fatalf("volumes = %v", got)
	}
	// Deleting a volume that still has snapshots is refused, readably.
	out, code = volrep(t, d, "volume", "delete", "v1")
	if code != 7 || !strings.Contains(out, "snapshots") || !strings.Contains(out, "FAILED_PRECONDITION") {
		t.Fatalf("delete with snapshots (exit %d):\n%s", code, out)
	}
	for _, args := range [][]string{{"snapshot", "delete", "s1", "--volume", "v1"}, {"volume", "delete", "v1"}, {"volume", "delete", "v1"}} {
		if out, code = volrep(t, d, args...); code != 0 {
			t.Fatalf("%v (exit %d):\n%s", args, code, out)
		}
	}
	// v2 and v3 keep their data after their source is gone.
	if out, code = volrep(t, d, "volume", "show", "v2"); code != 0 {
		t.Fatalf("show v2 (exit %d):\n%s", code, out)
	}
	out, code = volrep(t, d, "volume", "extend", "v2", "--size", "1")
	if code != 2 || !strings.Contains(out, "shrink") {
		t.Fatalf("shrinking extend (exit %d):\n%s", code, out)
	}
	out, code = volrep(t, d, "--addr", "127.0.0.1:1", "backend", "list")
	if code != 4 || !strings.Contains(out, "volrepd") {
		t.Fatalf("unreachable daemon (exit %d):\n%s", code, out)
	}
}

// TestSystemdUnitVerifies runs systemd-analyze verify on the shipped unit,
// in a scratch root holding the daemon where the unit expects it.
func TestSystemdUnitVerifies(t *testing.T) {
	analyze := tool(t, "systemd-analyze")
	volrepd, _ := binaries(t)
	root := t.TempDir()
	for _, dir := range []string{"usr/local/bin", "bin", "etc/systemd/system", "usr/lib/systemd"} {
		os.MkdirAll(filepath.Join(root, dir), 0o755)
	}
	cp := func(src, dst string) {
		if out, err := exec.Command("cp", "-a", src, filepath.Join(root, dst)).CombinedOutput(); err != nil {
			t.Fatalf("cp %s: %v %s", src, err, out)
		}
	}
	cp(volrepd, "usr/local/bin/volrepd")
	cp("/bin/kill", "bin/kill")
	cp("/usr/lib/systemd/system", "usr/lib/systemd/")
	cp("../deploy/systemd/volrepd.service", "etc/systemd/system/volrepd.service")
	out, err := exec.Command(analyze, "verify", "--root="+root, "/etc/systemd/system/volrepd.service").CombinedOutput()
	// verify exits 0 on mere warnings such as a misspelled key, so any
	// output at all is a failure.
	if err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
}

// TestCLIFailover fails a backend over and back with the CLI alone, as an
// operator would in a drill: no --volume, so volrepd finds the replicated
// volumes itself, and the failback prints what it sent.
func TestCLIFailover(t *testing.T) {
	d := NewDaemon(t)
	d.Start()
	repl := []string{"--spec", "replication_enabled=<is> True", "--spec", "replication_type=<in> async"}
	for _, args := range [][]string{
		append([]string{"volume", "create", "v-rep", "--size", "1"}, repl...),
		{"volume", "create", "v-plain", "--size", "1"},
	} {
		if out, code := volrep(t, d, args...); code != 0 {
			t.Fatalf("%v (exit %d):\n%s", args, code, out)
		}
	}
	a, b := d.Array("a"), d.Array("b")
	ctx := t.Context()
	if err := a.WriteVolume(ctx, "volume-v-rep-cinder", 0, pattern(0x11, 4<<20), true); err != nil {
		t.Fatal(err)
	}
	cc, err := server.Dial(d.ArrayA, d.TokenA)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	if _, err := client.NewReplication(cc).SyncReplica(ctx, "cinder-group.site-b", true); err != nil {
		t.Fatal(err)
	}

	out, code := volrep(t, d, "backend", "failover", "--to", "site-b")
	if code != 0 || !regexp.MustCompile(`ACTIVE\s+site-b`).MatchString(out) ||
		!regexp.MustCompile(`v-rep\s+-\s+failed-over`).MatchString(out) || strings.Contains(out, "v-plain") {
		t.Fatalf("backend failover (exit %d):\n%s", code, out)
	}
	if out, _ := volrep(t, d, "backend", "list"); !regexp.MustCompile(`demo\s+yes\s+site-b`).MatchString(out) {
		t.Fatalf("backend list after failover:\n%s", out)
	}
	out, code = volrep(t, d, "backend", "failover", "--to", "site-b")
	if code == 0 || !strings.Contains(out, "already serves") || !strings.Contains(out, "INVALID_ARGUMENT") {
		t.Fatalf("second failover (exit %d):\n%s", code, out)
	}
	// The promoted copy takes writes: 1 MiB of them go home on failback.
	if err := b.WriteVolume(ctx, "volume-v-rep-cinder", 8<<20, pattern(0x22, 1<<20), true); err != nil {
		t.Fatal(err)
	}
	out, code = volrep(t, d, "-o", "json", "backend", "failback")
	var resp struct {
		Active string `json:"active_backend_id"`
		Sent   string `json:"failback_bytes"`
	}
	if err := json.Unmarshal([]byte(out), &resp); err != nil || code != 0 || resp.Active != "default" {
		t.Fatalf("backend failback (exit %d): %v\n%s", code, err, out)
	}
	if sent, _ := strconv.ParseInt(resp.Sent, 10, 64); sent < 1<<20 || sent > 11<<20/10 {
		t.Fatalf("failback sent %s bytes for 1 MiB written since failover", resp.Sent)
	}
	got := make([]byte, 1<<20)
	if err := a.ReadVolume(ctx, "volume-v-rep-cinder", 8<<20, got); err != nil || !bytes.Equal(got, pattern(0x22, 1<<20)) {
		t.Fatalf("the write made while failed over is not on the primary: %v", err)
	}
}
