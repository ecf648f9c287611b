package e2e

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
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
