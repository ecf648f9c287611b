package iscsi

// Tests with real iSCSI initiators (libiscsi's iscsi-test-cu and iscsi-ls,
// qemu-img and qemu-io through qemu's libiscsi block driver), and Debian's
// tgtd as the reference target, run as subprocesses against loopback
// listeners.

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/volrep/volrep/internal/cunit"
	"github.com/volrep/volrep/internal/testenv"
)

const (
	testIQN       = "iqn.2024-01.org.volrep.test:vol"
	suiteInit1    = "iqn.2007-10.com.github:sahlberg:libiscsi:iscsi-test"
	suiteInit2    = "iqn.2007-10.com.github:sahlberg:libiscsi:iscsi-test-2"
	qemuBlockISCI = "/usr/lib/x86_64-linux-gnu/qemu/block-iscsi.so"
)

// runTool runs a client with extra environment and returns its combined
// output.
func runTool(t *testing.T, timeout time.Duration, env []string, name string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = t.TempDir()
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	t.Logf("$ %s %s\n%s", name, strings.Join(args, " "), truncate(string(out), 3000))
	return string(out), err
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "...(truncated)"
}

func mustRun(t *testing.T, env []string, name string, args ...string) string {
	t.Helper()
	out, err := runTool(t, 2*time.Minute, env, name, args...)
	if err != nil {
		t.Fatalf("%s failed: %v\n%s", name, err, out)
	}
	return out
}

// runSuite runs iscsi-test-cu for one family against urls.
func runSuite(t *testing.T, env []string, family string, urls ...string) cunit.Result {
	t.Helper()
	args := append([]string{"--dataloss", "--test=" + family}, urls...)
	out, err := runTool(t, 10*time.Minute, env, "iscsi-test-cu", args...)
	r, perr := cunit.Parse(out)
	if perr != nil {
		t.Fatalf("iscsi-test-cu %s: %v (exit %v)\n%s", family, perr, err, truncate(out, 8000))
	}
	return r
}

// knownSuiteArtefacts are failures that come from the suite, not the
// target: iSCSIDataSnInvalid corrupts the DataSN of Data-Out PDUs, but
// after the first case the target (rightly, at ErrorRecoveryLevel 0)
// drops the connection, and libiscsi's reconnect sends the next case's
// single block as immediate data, so there is no Data-Out to corrupt and
// the write succeeds. tgtd fails all four of its cases.
//
// GetLBAStatus.UnmapSingle (libiscsi 1.19) asks for the status at LBA
// i+1 and requires the first descriptor to start at i+8 (its loop's
// physical block step), where SBC-3 5.8 requires the first descriptor to
// start at the requested LBA. tgtd does not implement GET LBA STATUS, so
// it skips the test.
var knownSuiteArtefacts = map[string]bool{
	"iSCSIdatasn.iSCSIDataSnInvalid": true,
	"GetLBAStatus.UnmapSingle":       true,
}

// TestConformanceLibiscsi runs libiscsi's iscsi-test-cu families iSCSI,
// LINUX and SCSI against this server (the LINUX family with CHAP) and
// against Debian's tgtd over the same kind of file, and requires no
// failure here and at least tgtd's pass counts.
func TestConformanceLibiscsi(t *testing.T) {
	testenv.Tool(t, "iscsi-test-cu")
	testenv.Tool(t, "tgtd")
	testenv.Tool(t, "tgtadm")
	const size = 128 << 20

	dev := newFileDevice(t, size, 1)
	tt := newTestTargets()
	tt.add(testIQN, suiteInit1, Auth{}, 0, dev)
	tt.add(testIQN, suiteInit2, Auth{}, 0, dev)
	ts := startServer(t, tt, Options{})
	chapDev := newFileDevice(t, size, 2)
	chapIQN := testIQN + "-chap"
	chap := Auth{User: "suite", Secret: "suite-secret-1234"}
	tt.add(chapIQN, suiteInit1, chap, 0, chapDev)
	tt.add(chapIQN, suiteInit2, chap, 0, chapDev)

	tgtURL := startTgtd(t, size)

	families := []string{"iSCSI", "LINUX", "SCSI"}
	ours := map[string]cunit.Result{}
	theirs := map[string]cunit.Result{}
	for _, fam := range families {
		url := ts.url("", "", testIQN, 0)
		if fam == "LINUX" {
			url = ts.url(chap.User, chap.Secret, chapIQN, 0)
		}
		urls := []string{url}
		if fam == "SCSI" {
			urls = append(urls, url) // a second path, for MultipathIO
		}
		ours[fam] = runSuite(t, nil, fam, urls...)
		tgtURLs := []string{tgtURL}
		if fam == "SCSI" {
			tgtURLs = append(tgtURLs, tgtURL)
		}
		theirs[fam] = runSuite(t, nil, fam, tgtURLs...)
	}
	var skipped []string
	for _, fam := range families {
		o, g := ours[fam], theirs[fam]
		t.Logf("%-6s volrep: %d/%d passed (%d failed %v); tgtd: %d/%d passed (%d failed %v)",
			fam, o.Passed, o.Ran, o.Failed, o.Failures, g.Passed, g.Ran, g.Failed, g.Failures)
		for _, f := range o.Failures {
			if !knownSuiteArtefacts[f] {
				t.Errorf("%s: %s failed against volrep", fam, f)
			}
		}
		if o.Failed != len(o.Failures) {
			t.Errorf("%s: the summary counts %d failures, the parser found %v", fam, o.Failed, o.Failures)
		}
		if o.Passed < g.Passed {
			t.Errorf("%s: volrep passes %d tests, tgtd %d", fam, o.Passed, g.Passed)
		}
		if o.Ran == 0 {
			t.Errorf("%s: no test ran", fam)
		}
		for _, s := range o.Skipped {
			skipped = append(skipped, fam+"."+s)
		}
	}
	// Persistent reservations (SCSI family, with the second path as the
	// other I_T nexus): every test ran against them.
	t.Logf("persistent reservation tests passed against volrep: %d (%d of them for want of reservations); against tgtd: %d",
		ours["SCSI"].Reservations, ours["SCSI"].Unreserved, theirs["SCSI"].Reservations)
	if o := ours["SCSI"]; o.Reservations < 20 || o.Unreserved != 0 {
		t.Errorf("persistent reservations: %d tests passed, %d of them without reservations; want at least 20, none without",
			o.Reservations, o.Unreserved)
	}
	sort.Strings(skipped)
	t.Logf("tests that skipped against volrep (%d):\n%s", len(skipped), strings.Join(skipped, "\n"))
	if dev.writes.Load() == 0 || chapDev.writes.Load() == 0 || dev.zeroes.Load() == 0 {
		t.Errorf("the suites did not reach the devices: %d and %d writes, %d zeroes",
			dev.writes.Load(), chapDev.writes.Load(), dev.zeroes.Load())
	}
	if !strings.Contains(ts.logs.String(), "initiator="+suiteInit1) {
		t.Error("logins are not logged with the initiator name")
	}
	if strings.Contains(ts.logs.String(), chap.Secret) {
		t.Error("the CHAP secret reached the log")
	}
}

// freePort returns a loopback port nobody listens on now.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// startTgtd runs Debian's tgtd on a loopback port with one LUN (1) over a
// sparse file of size bytes and returns its libiscsi URL.
func startTgtd(t *testing.T, size int64) string {
	t.Helper()
	if os.Geteuid() != 0 {
		testenv.Skip(t, "tgtd needs root for its control socket under /var/run/tgtd")
	}
	dir := t.TempDir()
	img := filepath.Join(dir, "tgt.img")
	if err := os.WriteFile(img, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, size); err != nil {
		t.Fatal(err)
	}
	port := freePort(t)
	ctl := strconv.Itoa(100 + port%800) // control socket index
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, "tgtd", "-f", "-C", ctl, "--iscsi", fmt.Sprintf("portal=127.0.0.1:%d", port))
	var logs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	waited := make(chan struct{})
	go func() {
		cmd.Wait()
		close(waited)
	}()
	t.Cleanup(func() {
		cancel()
		<-waited
	})
	iqn := "iqn.2024-01.org.volrep.test:tgt"
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := runTool(t, 10*time.Second, nil, "tgtadm", "-C", ctl, "--lld", "iscsi", "--op", "new", "--mode", "target", "--tid", "1", "-T", iqn)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("tgtd did not come up: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	mustRun(t, nil, "tgtadm", "-C", ctl, "--lld", "iscsi", "--op", "new", "--mode", "logicalunit", "--tid", "1", "--lun", "1", "--backing-store", img, "--bstype", "rdwr")
	mustRun(t, nil, "tgtadm", "-C", ctl, "--lld", "iscsi", "--op", "bind", "--mode", "target", "--tid", "1", "-I", "ALL")
	return fmt.Sprintf("iscsi://127.0.0.1:%d/%s/1", port, iqn)
}

// TestIscsiLsDiscoveryAndMutualCHAP: iscsi-ls discovers only the targets
// Targets.Discover returns for the initiator, and logs in with mutual
// CHAP; a wrong target secret (what the initiator expects back) fails.
func TestIscsiLsDiscoveryAndMutualCHAP(t *testing.T) {
	testenv.Tool(t, "iscsi-ls")
	const init = "iqn.2024-01.org.volrep.test:ls"
	dev := newFileDevice(t, 16<<20, 3)
	tt := newTestTargets()
	auth := Auth{User: "host1", Secret: "host1-secret-12", MutualUser: "array", MutualSecret: "array-secret-12"}
	tt.add(testIQN, init, auth, 0, dev)
	tt.discoveryAuth[init] = auth
	tt.add(testIQN+"-other", "iqn.2024-01.org.volrep.test:someone-else", Auth{}, 0, newFileDevice(t, 1<<20, 4))
	ts := startServer(t, tt, Options{})
	env := []string{"LIBISCSI_CHAP_TARGET_USERNAME=" + auth.MutualUser, "LIBISCSI_CHAP_TARGET_PASSWORD=" + auth.MutualSecret}
	out := mustRun(t, env, "iscsi-ls", "-i", init, "-s", fmt.Sprintf("iscsi://%s%%%s@%s", auth.User, auth.Secret, ts.addr))
	if !strings.Contains(out, "Target:"+testIQN+" Portal:"+ts.addr+",1") {
		t.Errorf("iscsi-ls does not list %s at %s", testIQN, ts.addr)
	}
	if strings.Contains(out, testIQN+"-other") {
		t.Error("discovery lists a target the initiator is not mapped to")
	}
	if !strings.Contains(out, "Lun:0") || !strings.Contains(out, "DIRECT_ACCESS") {
		t.Error("iscsi-ls -s does not show LUN 0 as a disk")
	}
	// The target proves itself: a wrong mutual secret makes libiscsi
	// refuse the target.
	bad := []string{"LIBISCSI_CHAP_TARGET_USERNAME=" + auth.MutualUser, "LIBISCSI_CHAP_TARGET_PASSWORD=not-the-secret"}
	if out, err := runTool(t, time.Minute, bad, "iscsi-ls", "-i", init, "-s",
		fmt.Sprintf("iscsi://%s%%%s@%s", auth.User, auth.Secret, ts.addr)); err == nil && strings.Contains(out, "Lun:0") {
		t.Error("libiscsi accepted the target with the wrong mutual CHAP secret")
	}
	// A wrong initiator secret is refused and logged without secrets.
	if out, err := runTool(t, time.Minute, nil, "iscsi-ls", "-i", init, "-s",
		fmt.Sprintf("iscsi://%s%%%s@%s", auth.User, "wrong-secret-99", ts.addr)); err == nil && strings.Contains(out, "Lun:0") {
		t.Error("a wrong CHAP secret logged in")
	}
	logs := ts.logs.String()
	if !strings.Contains(logs, "login refused") || !strings.Contains(logs, "remote=127.0.0.1:") {
		t.Errorf("the refusal is not logged with its remote address:\n%s", logs)
	}
	for _, secret := range []string{auth.Secret, auth.MutualSecret, "wrong-secret-99", "not-the-secret"} {
		if strings.Contains(logs, secret) {
			t.Errorf("a secret (%q) reached the log", secret)
		}
	}
}

// TestQemuImgConvertCompareCHAP copies random data in with qemu-img
// convert over iscsi:// with CHAP, compares it back with qemu-img compare,
// and discards a range with qemu-io, which must reach Device.Zero.
func TestQemuImgConvertCompareCHAP(t *testing.T) {
	testenv.Tool(t, "qemu-img")
	testenv.Tool(t, "qemu-io")
	if _, err := os.Stat(qemuBlockISCI); err != nil {
		testenv.Skip(t, "qemu's iSCSI block driver %s is missing; `make deps` installs qemu-block-extra", qemuBlockISCI)
	}
	const size = 32 << 20
	const init = "iqn.2024-01.org.volrep.test:qemu"
	dev := newFileDevice(t, size, 5)
	tt := newTestTargets()
	auth := Auth{User: "qemu", Secret: "qemu-secret-123"}
	tt.add(testIQN, init, auth, 0, dev)
	ts := startServer(t, tt, Options{})

	src := filepath.Join(t.TempDir(), "src.img")
	data := make([]byte, size)
	rand.Read(data[:size/2])
	rand.Read(data[size/2+1<<20:])
	if err := os.WriteFile(src, data, 0o600); err != nil {
		t.Fatal(err)
	}
	opts := "--image-opts"
	target := fmt.Sprintf("driver=raw,file.driver=iscsi,file.transport=tcp,file.portal=%s,file.target=%s,file.lun=0,file.user=%s,file.password-secret=sec0,file.initiator-name=%s",
		ts.addr, testIQN, auth.User, init)
	secret := "secret,id=sec0,data=" + auth.Secret
	t.Cleanup(func() {
		if t.Failed() {
			t.Log(ts.logs.String())
		}
	})
	mustRun(t, nil, "qemu-img", "convert", "-n", "-f", "raw", "--object", secret, "--target-image-opts", src, target)
	if sha256.Sum256(readFile(t, dev.path())) != sha256.Sum256(data) {
		t.Fatal("the device differs from the source after qemu-img convert")
	}
	out := mustRun(t, nil, "qemu-img", "compare", "--object", secret, opts, "driver=raw,file.driver=file,file.filename="+src, target)
	if !strings.Contains(out, "Images are identical") {
		t.Fatalf("qemu-img compare: %s", out)
	}
	before := dev.zeroes.Load()
	out = mustRun(t, nil, "qemu-io", "--object", secret, opts, target, "-c", "discard 0 4M", "-c", "read -P 0 0 4M")
	if !strings.Contains(out, "discard 4194304/4194304 bytes at offset 0") || !strings.Contains(out, "read 4194304/4194304 bytes at offset 0") {
		t.Fatalf("qemu-io discard/read failed:\n%s", out)
	}
	if dev.zeroes.Load() == before {
		t.Fatal("qemu-io discard did not reach Device.Zero")
	}
	if !bytes.Equal(readFile(t, dev.path())[:4<<20], make([]byte, 4<<20)) {
		t.Fatal("the discarded range does not read as zeros on the device")
	}
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestIscsiInqReportsALUA: libiscsi's iscsi-inq, a real initiator, reads
// implicit ALUA (TPGS 1) in standard INQUIRY and a target port group
// designator in VPD page 0x83, which is what makes a host's multipath ask
// REPORT TARGET PORT GROUPS (its values are checked in TestALUA).
func TestIscsiInqReportsALUA(t *testing.T) {
	testenv.Tool(t, "iscsi-inq")
	const init = "iqn.2024-01.org.volrep.test:inq"
	tt := newTestTargets()
	tt.add(testIQN, init, Auth{}, 0, newFileDevice(t, 16<<20, 5))
	ts := startServer(t, tt, Options{PortGroup: 7})
	url := fmt.Sprintf("iscsi://%s/%s/0", ts.addr, testIQN)
	if out := mustRun(t, nil, "iscsi-inq", "-i", init, url); !strings.Contains(out, "TPGS:1") {
		t.Errorf("iscsi-inq does not see implicit ALUA (TPGS:1):\n%s", out)
	}
	out := mustRun(t, nil, "iscsi-inq", "-i", init, "-e", "1", "-c", "131", url)
	for _, want := range []string{"TARGET_PORT_GROUP", "RELATIVE_TARGET_PORT", "NAA"} {
		if !strings.Contains(out, want) {
			t.Errorf("VPD 0x83 as iscsi-inq reads it has no %s designator:\n%s", want, out)
		}
	}
}
