// Package testenv is what every volrep test uses to decide whether it can
// run: the one place a test may skip, and the registry of the external
// commands tests run. Under `make test` (VOLREP_E2E_REQUIRE=1) nothing may
// skip, so a missing tool or privilege is a failure there, and a tool that
// `make deps` does not install shows up on a fresh machine as a red test
// rather than a quiet skip.
package testenv

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"sync"
	"syscall"
	"testing"
)

// RequireEnv is the variable `make test` sets so that nothing may skip.
const RequireEnv = "VOLREP_E2E_REQUIRE"

// Required reports whether skipping is forbidden in this run.
func Required() bool { return os.Getenv(RequireEnv) != "" }

// Skip skips the test with a loud reason, or fails it under `make test`.
// Every skip in the Go tests goes through here, so that VOLREP_E2E_REQUIRE
// cannot miss one.
func Skip(t testing.TB, format string, args ...any) {
	t.Helper()
	reason := fmt.Sprintf(format, args...)
	if Required() {
		t.Fatalf("%s is set and this test cannot run: %s", RequireEnv, reason)
	}
	t.Skipf("!!!!!!!! SKIPPED: %s !!!!!!!!", reason)
}

// Source says how `make` installs a command.
type Source struct {
	// Deb is the Debian package `make deps` installs for the command; the
	// Makefile's DEB_TOOLS must pair the two.
	Deb string
	// GoTool is true for commands `make tools` installs into .bin.
	GoTool bool
	// Base is true for commands every machine that can run `make test`
	// has: Debian's essential packages and the Go toolchain itself.
	Base bool
}

// Tools is every external command a test, benchmark or helper runs.
// TestToolsAreInstalledByMake keeps it equal to the Makefile's lists, and
// TestSourcesRunOnlyRegisteredTools fails on a command run by name that is
// missing here, so a new tool cannot reach a test without reaching
// `make deps` too.
var Tools = map[string]Source{
	"qemu-img":        {Deb: "qemu-utils"},
	"qemu-io":         {Deb: "qemu-utils"},
	"nbdinfo":         {Deb: "libnbd-bin"},
	"nbdcopy":         {Deb: "libnbd-bin"},
	"nbdkit":          {Deb: "nbdkit"},
	"fio":             {Deb: "fio"},
	"rsync":           {Deb: "rsync"},
	"systemd-analyze": {Deb: "systemd"},
	"journalctl":      {Deb: "systemd"},
	"promtool":        {Deb: "prometheus"},
	"ip":              {Deb: "iproute2"},
	"nft":             {Deb: "nftables"},
	"python3":         {Deb: "python3"},
	"git":             {Deb: "git"},
	// The pod mediator's coordination service (array/mediator).
	"etcd": {Deb: "etcd-server"},
	// iSCSI: libiscsi's conformance suite and discovery, Debian's tgtd as
	// the reference target, and qemu's iSCSI block driver (a module, not a
	// command: DEB_TOOLS names its file, which `command -v` accepts).
	"iscsi-test-cu": {Deb: "libiscsi-bin"},
	"iscsi-ls":      {Deb: "libiscsi-bin"},
	"iscsi-inq":     {Deb: "libiscsi-bin"},
	"tgtd":          {Deb: "tgt"},
	"tgtadm":        {Deb: "tgt"},
	"/usr/lib/x86_64-linux-gnu/qemu/block-iscsi.so": {Deb: "qemu-block-extra"},
	// The lab's real Cinder (make lab; the Makefile's DEB_LAB).
	"rabbitmq-server":   {Deb: "rabbitmq-server"},
	"cinder-api":        {Deb: "cinder-api"},
	"cinder-scheduler":  {Deb: "cinder-scheduler"},
	"cinder-volume":     {Deb: "cinder-volume"},
	"glance-api":        {Deb: "glance-api"},
	"openstack":         {Deb: "python3-openstackclient"},
	"cinder":            {Deb: "python3-cinderclient"},
	"grpcurl":           {GoTool: true},
	"grpc-health-probe": {GoTool: true},
	"ghz":               {GoTool: true},
	"sh":                {Base: true},
	"cp":                {Base: true},
	"go":                {Base: true},
}

// Names returns the registered commands, sorted.
func Names() []string {
	var names []string
	for n := range Tools {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Tool returns the path of a registered command: on PATH, or in the .bin
// that `make tools` fills. A command missing from Tools fails the test at
// once, whatever the environment: register it (and add it to the Makefile)
// first. A registered command that is not installed skips, or fails under
// `make test`.
func Tool(t testing.TB, name string) string {
	t.Helper()
	src, ok := Tools[name]
	if !ok {
		t.Fatalf("command %q is not in testenv.Tools: register it there and in the Makefile's DEB_TOOLS (or tools target) so `make deps` installs it", name)
	}
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	if root, err := ModuleRoot(); err == nil {
		if p, err := exec.LookPath(filepath.Join(root, ".bin", name)); err == nil {
			return p
		}
	}
	how := "`make deps` installs it (Debian package " + src.Deb + ")"
	if src.GoTool {
		how = "`make tools` installs it into .bin"
	}
	Skip(t, "%s is not installed; %s", name, how)
	return ""
}

// ModuleRoot finds the directory holding go.mod, from the working
// directory up: a test runs in its package's directory.
func ModuleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod above the working directory")
		}
		dir = parent
	}
}

// Buffer is a bytes.Buffer that goroutines may write and read at once:
// the sink for a daemon's output or a logger that a test reads while the
// code under test still writes to it.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

// String returns everything written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// StartChild runs the test binary again as a child process that runs only
// test, with env added, for a test that kills a real process (SIGKILL)
// and checks what survives. The child's stderr is the parent's; its
// stdout is returned for what it reports.
func StartChild(t testing.TB, test string, env ...string) (*exec.Cmd, io.ReadCloser) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^"+test+"$")
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return cmd, out
}

// KillChild ends a child with SIGKILL, as a crash would, and reaps it.
func KillChild(t testing.TB, cmd *exec.Cmd) {
	t.Helper()
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
}
