package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	driverv1 "github.com/volrep/volrep/proto/volrep/driver/v1"
)

// P7: volrep's iSCSI target, served by a real volrepd process, against
// Debian's tgtd (bs=rdwr on a raw file in the same scratch directory),
// both driven by qemu's iSCSI initiator (libiscsi) over TCP loopback,
// interleaved, in the same run. volrep's LUN is reached as Cinder would:
// a host for the initiator's IQN, with CHAP.
func init() {
	register("P7ab", "iscsi-sequential", iscsiSequential)
	register("P7c", "iscsi-randwrite-qd16", iscsiRandWrite)
}

const benchInitiator = "iqn.2026-12.io.volrep.bench:initiator"

// iscsiTarget is one iSCSI target under test, as qemu block options.
type iscsiTarget struct {
	name   string
	object []string // qemu --object arguments (the CHAP secret)
	opts   string   // the LUN as --image-opts, without the format layer
	secret string   // the CHAP secret, for tools without --object
	stop   func()
}

// inline names the LUN with the CHAP secret in the options, for qemu-img
// bench, which takes no --object (a benchmark's throwaway secret).
func (t *iscsiTarget) inline() []string {
	opts := strings.Replace(t.opts, "password-secret=chap0", "password="+t.secret, 1)
	return []string{"--image-opts", "driver=raw,file." + strings.ReplaceAll(opts, ",", ",file.")}
}

// args names the LUN for qemu-img as --image-opts.
func (t *iscsiTarget) args() []string {
	return append(append([]string{}, t.object...), "--image-opts", "driver=raw,file."+strings.ReplaceAll(t.opts, ",", ",file."))
}

func p7Targets(ctx context.Context, env *Env, tag string, size int64) (vr, tgt *iscsiTarget, err error) {
	for _, tool := range []string{"qemu-img", "tgtd", "tgtadm"} {
		if _, err := exec.LookPath(tool); err != nil {
			return nil, nil, fmt.Errorf("%s is not installed (make deps installs it)", tool)
		}
	}
	if vr, err = startVolrepISCSI(ctx, env, tag, size); err != nil {
		return nil, nil, err
	}
	if tgt, err = startTgtd(ctx, env, tag, size); err != nil {
		vr.stop()
		return nil, nil, err
	}
	return vr, tgt, nil
}

// startVolrepISCSI runs volrepd with an iSCSI portal, creates a volume and
// attaches it for benchInitiator through the driver API, as Cinder does.
func startVolrepISCSI(ctx context.Context, env *Env, tag string, size int64) (*iscsiTarget, error) {
	portal, err := freeAddr()
	if err != nil {
		return nil, err
	}
	d, err := startDaemon(ctx, env, tag, size, "iscsi_listen = "+portal)
	if err != nil {
		return nil, err
	}
	resp, err := d.drv.InitializeConnection(ctx, &driverv1.InitializeConnectionRequest{
		Backend: "bench", VolumeId: tag, Connector: &driverv1.Connector{Host: "bench", Initiator: benchInitiator}})
	if err != nil {
		d.stop()
		return nil, fmt.Errorf("InitializeConnection: %w", err)
	}
	is := resp.GetConnectionInfo().GetIscsi()
	if resp.GetConnectionInfo().GetDriverVolumeType() != "iscsi" || len(is.GetPaths()) == 0 || is.GetChapSecret() == "" {
		d.stop()
		return nil, fmt.Errorf("InitializeConnection did not give an iSCSI attachment with CHAP: %v", resp.GetConnectionInfo())
	}
	p := is.GetPaths()[0]
	return &iscsiTarget{name: "volrep",
		object: []string{"--object", "secret,id=chap0,data=" + is.GetChapSecret()}, secret: is.GetChapSecret(),
		opts: fmt.Sprintf("driver=iscsi,transport=tcp,portal=%s,target=%s,lun=%d,user=%s,password-secret=chap0,initiator-name=%s",
			p.GetPortal(), p.GetIqn(), p.GetLun(), is.GetChapUsername(), benchInitiator),
		stop: d.stop}, nil
}

// startTgtd runs tgtd in the foreground with its own control socket,
// serving one LUN over a sparse raw file of size bytes with bs=rdwr (the
// page cache, as volrep's layer files).
func startTgtd(ctx context.Context, env *Env, tag string, size int64) (*iscsiTarget, error) {
	dir := filepath.Join(env.Dir, tag+"-tgtd")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	img := filepath.Join(dir, "disk.raw")
	if err := os.WriteFile(img, nil, 0o600); err != nil {
		return nil, err
	}
	if err := os.Truncate(img, size); err != nil {
		return nil, err
	}
	portal, err := freeAddr()
	if err != nil {
		return nil, err
	}
	_, port, _ := strings.Cut(portal, ":")
	n, _ := strconv.Atoi(port)
	ctl := strconv.Itoa(100 + n%800) // tgtd's control socket index
	var logs bytes.Buffer
	cmd := exec.Command("tgtd", "-f", "-C", ctl, "--iscsi", "portal="+portal)
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	stop := func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
		os.RemoveAll(dir)
	}
	adm := func(args ...string) error {
		out, err := exec.CommandContext(ctx, "tgtadm", append([]string{"-C", ctl, "--lld", "iscsi"}, args...)...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("tgtadm %s: %v: %s", strings.Join(args, " "), err, out)
		}
		return nil
	}
	const iqn = "iqn.2026-12.io.volrep.bench:tgt"
	for deadline := time.Now().Add(10 * time.Second); ; {
		err := adm("--op", "new", "--mode", "target", "--tid", "1", "-T", iqn)
		if err == nil {
			break
		}
		select {
		case <-exited:
			return nil, fmt.Errorf("tgtd exited during start-up:\n%s", logs.String())
		default:
		}
		if time.Now().After(deadline) {
			stop()
			return nil, fmt.Errorf("tgtd did not come up in 10s: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, args := range [][]string{
		{"--op", "new", "--mode", "logicalunit", "--tid", "1", "--lun", "1", "--backing-store", img, "--bstype", "rdwr"},
		{"--op", "bind", "--mode", "target", "--tid", "1", "-I", "ALL"},
	} {
		if err := adm(args...); err != nil {
			stop()
			return nil, err
		}
	}
	return &iscsiTarget{name: "tgtd",
		opts: fmt.Sprintf("driver=iscsi,transport=tcp,portal=%s,target=%s,lun=1,initiator-name=%s", portal, iqn, benchInitiator),
		stop: stop}, nil
}

// iscsiSequential is P7a (write) and P7b (read): qemu-img convert of a
// random raw file onto each LUN (-W -m 16: 16 requests in flight, out of
// order), then from each LUN to qemu's null driver, interleaved.
func iscsiSequential(ctx context.Context, env *Env) ([]Row, error) {
	size := p3Size(env)
	reps := 5
	if env.Quick {
		reps = 2
	}
	src, err := p3Source(env, size)
	if err != nil {
		return nil, err
	}
	vr, tgt, err := p7Targets(ctx, env, "p7ab", size)
	if err != nil {
		return nil, err
	}
	defer vr.stop()
	defer tgt.stop()
	targets := []*iscsiTarget{vr, tgt}
	mibps := func(d time.Duration) float64 { return float64(size) / mib / d.Seconds() }
	writes, err := interleaved(reps, targets, func(t *iscsiTarget) (float64, error) {
		args := append([]string{"convert", "-n", "-f", "raw", "-W", "-m", "16"}, t.object...)
		d, err := timed(ctx, "qemu-img", append(args, "--target-image-opts", src, "driver=raw,file."+strings.ReplaceAll(t.opts, ",", ",file."))...)
		return mibps(d), err
	})
	if err != nil {
		return nil, err
	}
	// The row is only a write row if the data arrived: compare each LUN
	// with the source once.
	for _, t := range targets {
		// qemu-img compare takes --image-opts for both images or neither.
		args := append([]string{"compare"}, t.object...)
		args = append(args, "--image-opts", "driver=raw,file.driver=file,file.filename="+src, "driver=raw,file."+strings.ReplaceAll(t.opts, ",", ",file."))
		if _, err := timed(ctx, "qemu-img", args...); err != nil {
			return nil, fmt.Errorf("%s's LUN does not hold what was written: %w", t.name, err)
		}
	}
	reads, err := interleaved(reps, targets, func(t *iscsiTarget) (float64, error) {
		args := append([]string{"convert", "-n", "-W", "-m", "16"}, t.args()...)
		d, err := timed(ctx, "qemu-img", append(args, "--target-image-opts", fmt.Sprintf("driver=null-co,size=%d", size))...)
		return mibps(d), err
	})
	if err != nil {
		return nil, err
	}
	for i, t := range targets {
		fmt.Fprintf(os.Stderr, "  P7a %s write MiB/s: %s\n  P7b %s read MiB/s: %s\n", t.name, figs(writes[i]), t.name, figs(reads[i]))
	}
	note := fmt.Sprintf("median of %d, interleaved; %d GiB random data; qemu-img convert -W -m 16; volrep with CHAP, data compared", reps, size/gib)
	return []Row{
		{ID: "P7a", Name: "iscsi-seq-write", Volrep: medianF(writes[0]), Baseline: medianF(writes[1]), Unit: "MiB/s", HigherIsBetter: true,
			Note: note + "; baseline tgtd rdwr"},
		{ID: "P7b", Name: "iscsi-seq-read", Volrep: medianF(reads[0]), Baseline: medianF(reads[1]), Unit: "MiB/s", HigherIsBetter: true,
			Note: note + "; to null-co, page cache warm for both; baseline tgtd rdwr"},
	}, nil
}

// iscsiRandWrite is P7c: qemu-img bench of 4 KiB writes at queue depth 16,
// cache=none. qemu-img bench has no random mode, so the writes stride
// through the LUN by 1 MiB + 4 KiB (wrapping at the end): no two
// consecutive writes are adjacent, and every one lands on a block not
// written before, as random writes to a fresh thin LUN do.
func iscsiRandWrite(ctx context.Context, env *Env) ([]Row, error) {
	size := p3Size(env)
	count, reps := 50000, 5
	if env.Quick {
		count, reps = 10000, 2
	}
	vr, tgt, err := p7Targets(ctx, env, "p7c", size)
	if err != nil {
		return nil, err
	}
	defer vr.stop()
	defer tgt.stop()
	targets := []*iscsiTarget{vr, tgt}
	iops, err := interleaved(reps, targets, func(t *iscsiTarget) (float64, error) {
		args := append([]string{"bench", "-w", "-t", "none", "-c", strconv.Itoa(count), "-d", "16", "-s", "4096",
			"-S", strconv.Itoa(mib + 4096), "--pattern", "165"}, t.inline()...)
		d, err := timed(ctx, "qemu-img", args...)
		return float64(count) / d.Seconds(), err
	})
	if err != nil {
		return nil, err
	}
	// The writes must have landed: the pattern byte (0xa5) is at the
	// first stride of each LUN.
	for _, t := range targets {
		args := append([]string{"-c", fmt.Sprintf("read -P 165 %d 4096", mib+4096)}, t.args()...)
		if out, err := exec.CommandContext(ctx, "qemu-io", args...).CombinedOutput(); err != nil || bytes.Contains(out, []byte("Pattern verification failed")) {
			return nil, errors.Join(fmt.Errorf("%s's LUN does not hold the benchmark's writes: %s", t.name, out), err)
		}
	}
	for i, t := range targets {
		fmt.Fprintf(os.Stderr, "  P7c %s IOPS: %s\n", t.name, figs(iops[i]))
	}
	return []Row{{ID: "P7c", Name: "iscsi-randwrite-qd16", Volrep: medianF(iops[0]), Baseline: medianF(iops[1]), Unit: "IOPS", HigherIsBetter: true,
		Note: fmt.Sprintf("median of %d, interleaved; qemu-img bench -w -t none -d 16 -s 4096, %d writes strided 1 MiB + 4 KiB; volrep with CHAP; baseline tgtd rdwr", reps, count)}}, nil
}
