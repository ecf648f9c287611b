package logging

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/volrep/volrep/internal/testenv"
)

// The real-journald test runs systemd-journald as a journal namespace
// instance ("systemd-journald NAMESPACE", as systemd-journald@.service
// does), which needs no running systemd. The test binary re-executes
// itself in a private mount namespace (helperEnv set) so that journald's
// fixed paths, /run/systemd/journal.NAMESPACE and /var/log/journal, are
// directories of the test's own and nothing is left on the host.
const (
	helperEnv    = "VOLREP_TEST_JOURNALD_HELPER" // the test's directory
	helperNSEnv  = "VOLREP_TEST_JOURNALD_NAMESPACE"
	helperBinEnv = "VOLREP_TEST_JOURNALD_BINARY"
)

func TestMain(m *testing.M) {
	if dir := os.Getenv(helperEnv); dir != "" {
		err := execJournald(dir, os.Getenv(helperNSEnv), os.Getenv(helperBinEnv))
		fmt.Fprintf(os.Stderr, "journald helper: %v\n", err)
		os.Exit(3)
	}
	os.Exit(m.Run())
}

// execJournald runs in the child, already in its own mount namespace:
// it mounts the test's directories where journald looks and becomes
// journald. It returns only on failure.
func execJournald(dir, ns, bin string) error {
	runDir := "/run/systemd/journal." + ns
	steps := []struct {
		src, dst, fstype string
		flags            uintptr
		mkdir            string
	}{
		{src: "tmpfs", dst: "/run", fstype: "tmpfs"},
		{src: filepath.Join(dir, "run"), dst: runDir, flags: unix.MS_BIND, mkdir: runDir},
		{src: "tmpfs", dst: "/var/log", fstype: "tmpfs"},
		{src: filepath.Join(dir, "log"), dst: "/var/log/journal", flags: unix.MS_BIND, mkdir: "/var/log/journal"},
	}
	for _, s := range steps {
		if s.mkdir != "" {
			if err := os.MkdirAll(s.mkdir, 0o755); err != nil {
				return err
			}
		}
		if err := unix.Mount(s.src, s.dst, s.fstype, s.flags, ""); err != nil {
			return fmt.Errorf("mount %s on %s: %w", s.src, s.dst, err)
		}
	}
	return syscall.Exec(bin, []string{bin, ns}, []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"})
}

// realJournald is a journald instance of the test's own.
type realJournald struct {
	socket string
	dir    string // where its journal files are
	ns     string
}

// startJournald starts systemd-journald for the test, or skips (loudly)
// where it cannot run: not installed, not root, or no mount namespaces.
// Under `make test` (VOLREP_E2E_REQUIRE) each of those fails instead.
func startJournald(t *testing.T) *realJournald {
	t.Helper()
	var bin string
	for _, p := range []string{"/usr/lib/systemd/systemd-journald", "/lib/systemd/systemd-journald"} {
		if _, err := os.Stat(p); err == nil {
			bin = p
			break
		}
	}
	testenv.Tool(t, "journalctl")
	if bin == "" {
		testenv.Skip(t, "systemd-journald is not installed (Debian package systemd); the fake-journal tests still ran")
	}
	if os.Geteuid() != 0 {
		testenv.Skip(t, "running a private journald needs root (mount namespace); the fake-journal tests still ran")
	}
	if _, err := os.Stat("/etc/machine-id"); err != nil {
		testenv.Skip(t, "journald needs /etc/machine-id; the fake-journal tests still ran")
	}
	// Short: the socket path must fit in 108 bytes.
	dir, err := os.MkdirTemp("", "vjd")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	for _, d := range []string{"run", "log"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	ns := "volreptest" + strconv.Itoa(os.Getpid())
	var out bytes.Buffer
	cmd := exec.Command(os.Args[0])
	cmd.Env = []string{helperEnv + "=" + dir, helperNSEnv + "=" + ns, helperBinEnv + "=" + bin}
	cmd.Stdout, cmd.Stderr = &out, &out
	// Pdeathsig: journald must not outlive a test binary that dies.
	cmd.SysProcAttr = &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		testenv.Skip(t, "cannot start journald in a mount namespace here (%v); the fake-journal tests still ran", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-exited
			t.Errorf("journald did not stop on SIGTERM within 10s")
		}
	})
	sock := filepath.Join(dir, "run", "socket")
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat(sock); err == nil {
			break
		}
		select {
		case err := <-exited:
			exited <- err // for the cleanup
			if strings.Contains(out.String(), "journald helper: mount") {
				testenv.Skip(t, "no mount namespaces here: %s", out.String())
			}
			t.Fatalf("journald exited before opening its socket: %v\n%s", err, out.String())
		default:
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			err := <-exited
			exited <- err // for the cleanup
			t.Fatalf("journald did not open %s within 10s: %v\n%s", sock, err, out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	return &realJournald{socket: sock, dir: filepath.Join(dir, "log"), ns: ns}
}

// query runs journalctl on the instance's files with matches such as
// "BACKEND_ID=pure2-async" and returns the entries, waiting up to 10s for
// at least want of them: journald stores datagrams asynchronously, and
// makes its namespace's directory only as it stores the first.
func (j *realJournald) query(t *testing.T, want int, matches ...string) []entry {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	var files []string
	for {
		files, _ = filepath.Glob(filepath.Join(j.dir, "*."+j.ns))
		if len(files) > 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if len(files) != 1 {
		t.Fatalf("want one journal directory for namespace %s in %s within 10s, found %v", j.ns, j.dir, files)
	}
	for {
		args := append([]string{"-D", files[0], "-o", "json", "--all", "--no-pager"}, matches...)
		out, err := exec.Command(testenv.Tool(t, "journalctl"), args...).Output()
		if err != nil {
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				err = fmt.Errorf("%v: %s", err, ee.Stderr)
			}
			t.Fatalf("journalctl %s: %v", strings.Join(args, " "), err)
		}
		var entries []entry
		for _, line := range bytes.Split(bytes.TrimSpace(out), []byte("\n")) {
			if len(line) == 0 {
				continue
			}
			e, err := parseJournalJSON(line)
			if err != nil {
				t.Fatalf("journalctl output %q: %v", line, err)
			}
			entries = append(entries, e)
		}
		if len(entries) >= want || time.Now().After(deadline) {
			return entries
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// parseJournalJSON reads one line of `journalctl -o json`: a field is a
// string, an array of byte values (for binary data), or an array of
// either (for a field with several values).
func parseJournalJSON(line []byte) (entry, error) {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(line, &raw); err != nil {
		return nil, err
	}
	e := entry{}
	for k, v := range raw {
		var s string
		if json.Unmarshal(v, &s) == nil {
			e[k] = []string{s}
			continue
		}
		var b []byte
		var nums []int
		if json.Unmarshal(v, &nums) == nil {
			for _, n := range nums {
				b = append(b, byte(n))
			}
			e[k] = []string{string(b)}
			continue
		}
		var many []json.RawMessage
		if err := json.Unmarshal(v, &many); err != nil {
			return nil, fmt.Errorf("field %s: %w", k, err)
		}
		for _, m := range many {
			one, err := parseJournalJSON([]byte(`{"v":` + string(m) + `}`))
			if err != nil {
				return nil, err
			}
			e[k] = append(e[k], one["v"]...)
		}
	}
	return e, nil
}

// TestRealJournald sends the daemon's two most important kinds of record
// to a real systemd-journald and reads them back the way an operator
// would, with journalctl matches.
func TestRealJournald(t *testing.T) {
	jd := startJournald(t)
	h, err := NewJournalHandler(JournalOptions{Socket: jd.socket, Level: slog.LevelDebug})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	log := slog.New(h).With("backend", "pure2")
	logConfigTypo(log)
	logOutage(log)
	big := strings.Repeat("x", 300<<10) // goes as a memfd
	log.Info("large record", "dump", big, "backend_id", "big-one")

	// journalctl -u volrepd PRIORITY=3 is how an operator finds the typo.
	errs := jd.query(t, 1, "SYSLOG_IDENTIFIER=volrepd", "PRIORITY=3")
	if len(errs) != 1 {
		t.Fatalf("PRIORITY=3 matched %d entries, want the config problem alone: %v", len(errs), errs)
	}
	typo := errs[0]
	for k, v := range map[string]string{
		"MESSAGE": "config problem",
		"FILE":    "/etc/volrep/volrep.conf",
		"LINE":    "31",
		"SECTION": "pure2",
		"KEY":     "bakend_id",
		"BACKEND": "pure2",
		"PROBLEM": `unknown key "bakend_id" in replication_device of [pure2]; did you mean "backend_id"?`,
	} {
		if got := typo.one(t, k); got != v {
			t.Errorf("typo entry %s = %q, want %q", k, got, v)
		}
	}
	if f := typo.one(t, "CODE_FILE"); !strings.HasSuffix(f, "journal_test.go") {
		t.Errorf("CODE_FILE = %q", f)
	}
	if got := typo.one(t, "_TRANSPORT"); got != "journal" {
		t.Errorf("_TRANSPORT = %q, want journal (the native protocol)", got)
	}

	outages := jd.query(t, 1, "BACKEND_ID=pure2-async")
	if len(outages) != 1 {
		t.Fatalf("BACKEND_ID=pure2-async matched %d entries, want 1: %v", len(outages), outages)
	}
	for k, v := range map[string]string{
		"PRIORITY":          "4",
		"MESSAGE":           "replication failed; retrying with backoff",
		"SYSLOG_IDENTIFIER": "volrepd",
		"LINK":              "pure2-async",
		"REPLICA":           "cinder-group.pure2-async",
		"ARRAY":             "site-a",
		"ERR":               "peer array at 10.0.0.2:7401 is unreachable:\nconnection refused",
	} {
		if got := outages[0].one(t, k); got != v {
			t.Errorf("outage entry %s = %q, want %q", k, got, v)
		}
	}

	large := jd.query(t, 1, "BACKEND_ID=big-one")
	if len(large) != 1 || len(large[0].one(t, "DUMP")) != len(big) {
		t.Errorf("the large record did not arrive whole (%d entries)", len(large))
	}
}
