package e2e

// Helpers of the iSCSI tests: a daemon with an iSCSI portal, hosts and
// LUNs made through the array API, qemu's iSCSI image options, Debian's
// tgtd as the reference target, and iscsi-test-cu's output parser.

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/volrep/volrep/array"
	"github.com/volrep/volrep/internal/cunit"
	"github.com/volrep/volrep/internal/testenv"
)

// qemuBlockISCSI is qemu's iSCSI block driver module (qemu-block-extra).
const qemuBlockISCSI = "/usr/lib/x86_64-linux-gnu/qemu/block-iscsi.so"

// startISCSIDaemon runs volrepd with site-a serving iSCSI on the given
// number of portals.
func startISCSIDaemon(t *testing.T, portals int) *Daemon {
	t.Helper()
	d := NewDaemon(t)
	var ps []string
	for range portals {
		ps = append(ps, freePort(t))
	}
	d.ISCSIA = strings.Join(ps, ", ")
	d.Start()
	return d
}

// portals returns the daemon's iSCSI portals.
func (d *Daemon) portals() []string {
	var ps []string
	for _, p := range strings.Split(d.ISCSIA, ",") {
		ps = append(ps, strings.TrimSpace(p))
	}
	return ps
}

// lunOf is an iSCSI attachment: the array's answer to ConnectVolume with
// the initiator that may use it.
type lunOf struct {
	array.Connection
	Initiator string
}

// URL is the libiscsi URL of the LUN with the host's CHAP credentials.
func (l lunOf) URL() string {
	return fmt.Sprintf("iscsi://%s%%%s@%s/%s/%d", l.CHAPUser, l.CHAPSecret, l.Portals[0], l.TargetIQN, l.LUN)
}

// Portal is the LUN's first portal, without credentials.
func (l lunOf) Portal() string { return "iscsi://" + l.Portals[0] }

// QemuArgs are qemu-img/qemu-io arguments naming the LUN with CHAP, the
// secret passed as a qemu secret object, not on the URL.
func (l lunOf) QemuArgs() []string {
	return []string{"--object", "secret,id=sec0,data=" + l.CHAPSecret, "--image-opts",
		fmt.Sprintf("driver=raw,file.driver=iscsi,file.transport=tcp,file.portal=%s,file.target=%s,file.lun=%d,file.user=%s,file.password-secret=sec0,file.initiator-name=%s",
			l.Portals[0], l.TargetIQN, l.LUN, l.CHAPUser, l.Initiator)}
}

// QemuTarget is the --target-image-opts form of QemuArgs for qemu-img convert.
func (l lunOf) QemuTarget() (object, opts string) {
	a := l.QemuArgs()
	return a[1], a[3]
}

// hostWithLUN creates host (with initiators iqns) if needed, a volume of
// size bytes unless it exists, and connects the volume (or its snapshot)
// to the host.
func hostWithLUN(t *testing.T, a array.Array, host string, iqns []string, volume, snapshot string, size int64) lunOf {
	t.Helper()
	ctx := t.Context()
	if _, err := a.CreateHost(ctx, array.HostSpec{Name: host, IQNs: iqns}); err != nil {
		t.Fatalf("CreateHost %s: %v", host, err)
	}
	if size > 0 {
		if _, err := a.CreateVolume(ctx, array.VolumeSpec{Name: volume, Pool: "cinder", SizeBytes: size}); err != nil {
			t.Fatalf("CreateVolume %s: %v", volume, err)
		}
	}
	c, err := a.ConnectVolume(ctx, array.ConnectionSpec{Host: host, Volume: volume, Snapshot: snapshot})
	if err != nil {
		t.Fatalf("ConnectVolume %s to %s: %v", volume, host, err)
	}
	if c.CHAPSecret == "" || len(c.Portals) == 0 || c.TargetIQN == "" {
		t.Fatalf("ConnectVolume answers without CHAP, portals or target: %+v", c)
	}
	return lunOf{Connection: c, Initiator: iqns[0]}
}

// runEnv runs a command with extra environment and returns its combined
// output and error; the output is logged.
func runEnv(t *testing.T, timeout time.Duration, env []string, name string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	s := string(out)
	if len(s) > 3000 {
		s = s[:3000] + "...(truncated)"
	}
	t.Logf("$ %s %s (%v)\n%s", filepath.Base(name), strings.Join(args, " "), err, s)
	return string(out), err
}

// startTgtd runs Debian's tgtd in the foreground on a free loopback port,
// with its own control socket index, serving one LUN (1) over a sparse
// raw file of size bytes in dir, and returns its portal and target IQN.
// tgtd is stopped at cleanup.
func startTgtd(t *testing.T, dir string, size int64) (portal, iqn string) {
	t.Helper()
	tgtd, tgtadm := tool(t, "tgtd"), tool(t, "tgtadm")
	if os.Geteuid() != 0 {
		testenv.Skip(t, "tgtd needs root for its control socket under /var/run/tgtd")
	}
	img := filepath.Join(dir, "tgt.img")
	if err := os.WriteFile(img, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, size); err != nil {
		t.Fatal(err)
	}
	portal = freePort(t)
	releasePort(portal)
	_, port, _ := strings.Cut(portal, ":")
	n, _ := strconv.Atoi(port)
	ctl := strconv.Itoa(100 + n%800) // the control socket's index, unique per port
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, tgtd, "-f", "-C", ctl, "--iscsi", "portal="+portal)
	var logs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	waited := make(chan struct{})
	go func() { cmd.Wait(); close(waited) }()
	t.Cleanup(func() { cancel(); <-waited })
	iqn = "iqn.2024-01.org.volrep.e2e:tgt"
	adm := func(args ...string) error {
		_, err := runEnv(t, 10*time.Second, nil, tgtadm, append([]string{"-C", ctl, "--lld", "iscsi"}, args...)...)
		return err
	}
	deadline := time.Now().Add(10 * time.Second)
	for adm("--op", "new", "--mode", "target", "--tid", "1", "-T", iqn) != nil {
		if time.Now().After(deadline) {
			t.Fatalf("tgtd did not come up:\n%s", logs.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err := adm("--op", "new", "--mode", "logicalunit", "--tid", "1", "--lun", "1", "--backing-store", img, "--bstype", "rdwr"); err != nil {
		t.Fatal(err)
	}
	if err := adm("--op", "bind", "--mode", "target", "--tid", "1", "-I", "ALL"); err != nil {
		t.Fatal(err)
	}
	return portal, iqn
}

// runSuite runs one iscsi-test-cu family against urls as initiator (the
// suite's second initiator is initiator+"-2"): a LUN, or one device's
// paths for the multipath tests.
func runSuite(t *testing.T, family, initiator string, urls ...string) cunit.Result {
	t.Helper()
	return runSuiteAs(t, family, initiator, initiator+"-2", urls...)
}

// runSuiteAs is runSuite with the suite's second initiator named.
func runSuiteAs(t *testing.T, family, initiator, second string, urls ...string) cunit.Result {
	t.Helper()
	out, err := runEnv(t, 10*time.Minute, nil, tool(t, "iscsi-test-cu"), append([]string{"--dataloss", "--test=" + family,
		"--initiator-name=" + initiator, "--initiator-name-2=" + second}, urls...)...)
	r, perr := cunit.Parse(out)
	if perr != nil {
		t.Fatalf("iscsi-test-cu %s: %v (exit %v)\n%s", family, perr, err, out)
	}
	return r
}
