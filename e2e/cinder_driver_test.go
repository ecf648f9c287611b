package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// cinderPython finds a python3 that can import Cinder and gRPC: Debian's
// /usr/bin/python3 with python3-cinder and python3-grpcio, which a pyenv or
// venv python3 earlier on PATH usually cannot see. Missing, it fails under
// `make test` (VOLREP_E2E_REQUIRE) and skips loudly otherwise.
func cinderPython(t *testing.T) string {
	t.Helper()
	candidates := []string{"/usr/bin/python3"}
	if p, err := exec.LookPath("python3"); err == nil {
		candidates = append(candidates, p)
	}
	for _, p := range candidates {
		if exec.Command(p, "-c", "import cinder.volume.driver, grpc, google.protobuf, eventlet").Run() == nil {
			return p
		}
	}
	const msg = "no python3 can import cinder and grpc; apt-get install python3-cinder python3-grpcio"
	if os.Getenv("VOLREP_E2E_REQUIRE") != "" {
		t.Fatal(msg)
	}
	t.Skip("SKIPPED: " + msg)
	return ""
}

// TestCinderDriver runs the Python suite deploy/cinder/tests against a real
// volrepd: the Cinder driver (deploy/cinder/volrep_cinder) driven through
// Cinder's own configuration, objects, VolumeManager (in-memory sqlite, fake
// messaging) and scheduler filters. The daemon's configuration file is also
// the suite's cinder.conf, as an operator shares one file, and its driver
// API wants a token, which the driver reads from that file.
func TestCinderDriver(t *testing.T) {
	python := cinderPython(t)
	d := NewDaemon(t)
	d.DriverToken = "driver-token-cinder"
	d.WriteConfig(d.DefaultBackend()+"\nvolume_driver = volrep_cinder.driver.VolrepDriver", "")
	d.Start()

	cinderLog := filepath.Join(t.TempDir(), "cinder.log")
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, python, "-m", "unittest", "discover", "-s", "../deploy/cinder/tests", "-v")
	cmd.Env = append(os.Environ(),
		"VOLREP_CONF="+d.Conf,
		"VOLREP_BACKEND=demo",
		"VOLREP_ADDR="+d.DriverAddr,
		"VOLREP_TOKEN="+d.DriverToken,
		"VOLREP_ARRAY_ADDR="+d.ArrayA,
		"VOLREP_ARRAY_TOKEN="+d.TokenA,
		"VOLREP_LOG_FILE="+cinderLog,
		// Keep __pycache__ out of the tree, and Cinder's deprecation noise
		// out of the output.
		"PYTHONDONTWRITEBYTECODE=1",
		"PYTHONWARNINGS=ignore",
	)
	out, err := cmd.CombinedOutput()
	if err != nil {
		logs, _ := os.ReadFile(cinderLog)
		t.Fatalf("python3 -m unittest discover -s deploy/cinder/tests: %v\n%s\n--- Cinder's log (%s), last 150 lines:\n%s\n--- volrepd, last 100 lines:\n%s",
			err, out, cinderLog, tail(string(logs), 150), tail(d.Logs(), 100))
	}
	t.Logf("%s", out)
	for _, m := range regexp.MustCompile(`(?m)^(test\S+) .*\.\.\. skipped (.*)$`).FindAllStringSubmatch(string(out), -1) {
		t.Logf("Python test %s skipped: %s", m[1], m[2])
	}
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
