package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health/grpc_health_v1"

	driverv1 "github.com/volrep/volrep/proto/volrep/driver/v1"
	"github.com/volrep/volrep/server"
)

// P3: volrep's NBD data path, served by a real volrepd process, against
// nbdkit's file plugin serving a plain file in the same scratch directory.
// Both are driven by the same clients (nbdcopy, fio's nbd engine) over TCP
// loopback, interleaved, in the same run.
func init() {
	register("P3ab", "nbd-sequential", nbdSequential)
	register("P3cd", "nbd-random-write", nbdRandomWrite)
}

// nbdTarget is one NBD server under test.
type nbdTarget struct {
	name string // "volrep" or "nbdkit"
	uri  string
	stop func()
}

// p3Size is the volume (and file) size: 2 GiB, or 1 GiB with -quick.
func p3Size(env *Env) int64 {
	if env.Quick {
		return gib
	}
	return 2 * gib
}

// p3Targets starts volrepd with a volume of size bytes attached, and
// nbdkit serving a sparse file of the same size, both under env.Dir.
func p3Targets(ctx context.Context, env *Env, tag string, size int64) (vr, kit *nbdTarget, err error) {
	for _, tool := range []string{"nbdkit", "nbdcopy", "fio"} {
		if _, err := exec.LookPath(tool); err != nil {
			return nil, nil, fmt.Errorf("%s is not installed (make deps installs it)", tool)
		}
	}
	if vr, err = startVolrepd(ctx, env, tag, size); err != nil {
		return nil, nil, err
	}
	if kit, err = startNbdkit(ctx, env, tag, size); err != nil {
		vr.stop()
		return nil, nil, err
	}
	return vr, kit, nil
}

var (
	volrepdOnce sync.Once
	volrepdPath string
	volrepdErr  error
)

// buildVolrepd builds the daemon (without the race detector) into env.Dir.
func buildVolrepd(ctx context.Context, env *Env) (string, error) {
	volrepdOnce.Do(func() {
		volrepdPath = filepath.Join(env.Dir, "volrepd")
		out, err := exec.CommandContext(ctx, "go", "build", "-o", volrepdPath, "github.com/volrep/volrep/cmd/volrepd").CombinedOutput()
		if err != nil {
			volrepdErr = fmt.Errorf("go build volrepd: %v\n%s", err, out)
		}
	})
	return volrepdPath, volrepdErr
}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

const p3Conf = `[DEFAULT]
enabled_backends = bench

[volrep]
driver_listen = %[1]s
log_level = warn
state_dir = %[4]s/driver

[array:bench]
data_dir = %[4]s/array
listen = %[2]s
nbd_listen = %[3]s
api_token = bench-token
%[5]s

[bench]
san_ip = %[2]s
pure_api_token = bench-token
`

// startVolrepd runs volrepd as its own process with one array and one
// backend, creates a volume and attaches it over NBD through the driver API.
// VOLREP_PPROF in the environment reaches the daemon, for profiling.
func startVolrepd(ctx context.Context, env *Env, tag string, size int64) (*nbdTarget, error) {
	d, err := startDaemon(ctx, env, tag, size, "")
	if err != nil {
		return nil, err
	}
	resp, err := d.drv.InitializeConnection(ctx, &driverv1.InitializeConnectionRequest{
		Backend: "bench", VolumeId: tag, Connector: &driverv1.Connector{Host: "bench"}})
	if err != nil {
		d.stop()
		return nil, fmt.Errorf("InitializeConnection: %w", err)
	}
	return &nbdTarget{name: "volrep", uri: resp.GetConnectionInfo().GetData()["uri"], stop: d.stop}, nil
}

// daemon is a volrepd process with the backend "bench" and a volume.
type daemon struct {
	drv       driverv1.DriverServiceClient
	addr      string // the driver API
	arrayAddr string // the array API (token bench-token)
	pid       int
	stop      func()
}

// startDaemon runs volrepd with one array (extra adds lines to its
// section) and the backend "bench", and creates the volume tag of size
// bytes.
func startDaemon(ctx context.Context, env *Env, tag string, size int64, extra string) (*daemon, error) {
	bin, err := buildVolrepd(ctx, env)
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(env.Dir, tag+"-volrep")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	var addrs [3]string
	for i := range addrs {
		if addrs[i], err = freeAddr(); err != nil {
			return nil, err
		}
	}
	conf := filepath.Join(dir, "volrep.conf")
	if err := os.WriteFile(conf, fmt.Appendf(nil, p3Conf, addrs[0], addrs[1], addrs[2], dir, extra), 0o600); err != nil {
		return nil, err
	}
	logf, err := os.Create(filepath.Join(dir, "volrepd.log"))
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "--config", conf)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, err
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); logf.Close(); close(exited) }()
	var cc *grpc.ClientConn
	stop := func() {
		if cc != nil {
			cc.Close()
		}
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(20 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
		os.RemoveAll(dir)
	}
	fail := func(err error) (*daemon, error) {
		stop()
		return nil, err
	}

	if cc, err = server.Dial(addrs[0], ""); err != nil {
		return fail(err)
	}
	health := grpc_health_v1.NewHealthClient(cc)
	for deadline := time.Now().Add(30 * time.Second); ; {
		select {
		case <-exited:
			log, _ := os.ReadFile(filepath.Join(dir, "volrepd.log"))
			return fail(fmt.Errorf("volrepd exited during start-up:\n%s", log))
		default:
		}
		c, cancel := context.WithTimeout(ctx, time.Second)
		r, err := health.Check(c, &grpc_health_v1.HealthCheckRequest{Service: "backend/bench"})
		cancel()
		if err == nil && r.GetStatus() == grpc_health_v1.HealthCheckResponse_SERVING {
			break
		}
		if time.Now().After(deadline) {
			return fail(errors.New("volrepd did not become ready in 30s"))
		}
		time.Sleep(50 * time.Millisecond)
	}
	drv := driverv1.NewDriverServiceClient(cc)
	if _, err := drv.CreateVolume(ctx, &driverv1.CreateVolumeRequest{Backend: "bench", VolumeId: tag, SizeGb: size / gib}); err != nil {
		return fail(fmt.Errorf("CreateVolume: %w", err))
	}
	return &daemon{drv: drv, addr: addrs[0], arrayAddr: addrs[1], pid: cmd.Process.Pid, stop: stop}, nil
}

// startNbdkit serves a sparse file of size bytes with nbdkit's file plugin.
func startNbdkit(ctx context.Context, env *Env, tag string, size int64) (*nbdTarget, error) {
	dir := filepath.Join(env.Dir, tag+"-nbdkit")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	file := filepath.Join(dir, "disk.raw")
	if err := os.Truncate(file, 0); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	f, err := os.Create(file)
	if err != nil {
		return nil, err
	}
	err = f.Truncate(size)
	f.Close()
	if err != nil {
		return nil, err
	}
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	_, port, _ := net.SplitHostPort(addr)
	cmd := exec.Command("nbdkit", "-f", "--exit-with-parent", "-i", "127.0.0.1", "-p", port, "file", "file="+file)
	out, err := os.Create(filepath.Join(dir, "nbdkit.log"))
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		out.Close()
		return nil, err
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); out.Close(); close(exited) }()
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
	for deadline := time.Now().Add(10 * time.Second); ; {
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			break
		}
		select {
		case <-exited:
			log, _ := os.ReadFile(filepath.Join(dir, "nbdkit.log"))
			stop()
			return nil, fmt.Errorf("nbdkit exited during start-up:\n%s", log)
		default:
		}
		if time.Now().After(deadline) {
			stop()
			return nil, errors.New("nbdkit did not listen within 10s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	return &nbdTarget{name: "nbdkit", uri: "nbd://" + addr + "/", stop: stop}, nil
}

var (
	sourceMu   sync.Mutex
	sourceFile = map[int64]string{}
)

// p3Source returns a file of size random bytes in env.Dir, made once per run.
func p3Source(env *Env, size int64) (string, error) {
	sourceMu.Lock()
	defer sourceMu.Unlock()
	if p, ok := sourceFile[size]; ok {
		return p, nil
	}
	p := filepath.Join(env.Dir, fmt.Sprintf("p3-source-%d.raw", size))
	f, err := os.Create(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	r := rand.NewChaCha8([32]byte{'p', '3'})
	w := bufio.NewWriterSize(f, 4*mib)
	buf := make([]byte, mib)
	for left := size; left > 0; left -= mib {
		r.Read(buf)
		w.Write(buf)
	}
	if err := w.Flush(); err != nil {
		return "", err
	}
	if err := f.Sync(); err != nil {
		return "", err
	}
	sourceFile[size] = p
	return p, f.Close()
}

// timed runs a command and returns how long it took.
func timed(ctx context.Context, name string, args ...string) (time.Duration, error) {
	start := time.Now()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		return 0, fmt.Errorf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return time.Since(start), nil
}

func medianF(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}

// interleaved runs fn reps times for each target, alternating which goes
// first, and returns each target's results in target order.
func interleaved[T any](reps int, targets []T, fn func(t T) (float64, error)) ([][]float64, error) {
	res := make([][]float64, len(targets))
	for i := range reps {
		for j := range targets {
			k := (i + j) % len(targets)
			v, err := fn(targets[k])
			if err != nil {
				return nil, err
			}
			res[k] = append(res[k], v)
		}
	}
	return res, nil
}

func figs(xs []float64) string {
	parts := make([]string, len(xs))
	for i, x := range xs {
		parts[i] = fig(x)
	}
	return strings.Join(parts, " ")
}

// nbdSequential is P3a (write) and P3b (read): nbdcopy of a 2 GiB random
// file into each export (with --flush, so the time includes making it
// durable), then from each export to null:, reps times interleaved.
func nbdSequential(ctx context.Context, env *Env) ([]Row, error) {
	size := p3Size(env)
	reps := 7
	if env.Quick {
		reps = 2
	}
	src, err := p3Source(env, size)
	if err != nil {
		return nil, err
	}
	vr, kit, err := p3Targets(ctx, env, "p3ab", size)
	if err != nil {
		return nil, err
	}
	defer vr.stop()
	defer kit.stop()
	targets := []*nbdTarget{vr, kit}
	mibps := func(d time.Duration) float64 { return float64(size) / mib / d.Seconds() }

	writes, err := interleaved(reps, targets, func(t *nbdTarget) (float64, error) {
		d, err := timed(ctx, "nbdcopy", "--flush", src, t.uri)
		return mibps(d), err
	})
	if err != nil {
		return nil, err
	}
	reads, err := interleaved(reps, targets, func(t *nbdTarget) (float64, error) {
		d, err := timed(ctx, "nbdcopy", t.uri, "null:")
		return mibps(d), err
	})
	if err != nil {
		return nil, err
	}
	for i, t := range targets {
		fmt.Fprintf(os.Stderr, "  P3a %s write MiB/s: %s\n  P3b %s read MiB/s: %s\n", t.name, figs(writes[i]), t.name, figs(reads[i]))
	}
	note := fmt.Sprintf("median of %d, interleaved; %d GiB random data; nbdcopy defaults (4 conns)", reps, size/gib)
	return []Row{
		{ID: "P3a", Name: "nbd-seq-write", Volrep: medianF(writes[0]), Baseline: medianF(writes[1]), Unit: "MiB/s", HigherIsBetter: true,
			Note: note + ", --flush; baseline nbdkit file"},
		{ID: "P3b", Name: "nbd-seq-read", Volrep: medianF(reads[0]), Baseline: medianF(reads[1]), Unit: "MiB/s", HigherIsBetter: true,
			Note: note + " to null:, page cache warm for both; baseline nbdkit file"},
	}, nil
}

// fioResult is the part of fio's JSON output we read.
type fioResult struct {
	Jobs []struct {
		Write struct {
			IOPS   float64 `json:"iops"`
			ClatNS struct {
				Mean       float64            `json:"mean"`
				Percentile map[string]float64 `json:"percentile"`
			} `json:"clat_ns"`
			LatNS struct {
				Mean       float64            `json:"mean"`
				Percentile map[string]float64 `json:"percentile"`
			} `json:"lat_ns"`
			IOBytes int64 `json:"io_bytes"`
		} `json:"write"`
	} `json:"jobs"`
}

// fioStats are the figures of one fio run, latencies in µs.
type fioStats struct {
	IOPS, ClatMean, ClatP50, LatMean float64
}

// runFio runs 4 KiB random writes at iodepth qd over the first region
// bytes of uri for runtime.
func runFio(ctx context.Context, env *Env, uri string, qd int, region int64, runtime time.Duration) (fioStats, error) {
	out := filepath.Join(env.Dir, "fio.json")
	args := []string{"--name=p3", "--ioengine=nbd", "--uri=" + uri, "--rw=randwrite", "--bs=4k",
		fmt.Sprintf("--iodepth=%d", qd), fmt.Sprintf("--size=%d", region),
		fmt.Sprintf("--runtime=%d", int(runtime.Seconds())), "--time_based", "--ramp_time=1",
		"--randrepeat=0", "--norandommap", "--output-format=json", "--output=" + out}
	if _, err := timed(ctx, "fio", args...); err != nil {
		return fioStats{}, err
	}
	b, err := os.ReadFile(out)
	if err != nil {
		return fioStats{}, err
	}
	var r fioResult
	if err := json.Unmarshal(b, &r); err != nil || len(r.Jobs) != 1 {
		return fioStats{}, fmt.Errorf("fio output: %v\n%s", err, b)
	}
	w := r.Jobs[0].Write
	return fioStats{IOPS: w.IOPS, ClatMean: w.ClatNS.Mean / 1e3, ClatP50: w.ClatNS.Percentile["50.000000"] / 1e3,
		LatMean: w.LatNS.Mean / 1e3}, nil
}

// nbdRandomWrite is P3c (QD1 latency) and P3d (QD16 IOPS): fio's nbd
// engine writing random 4 KiB blocks over a 1 GiB region of each export,
// which is first filled (untimed) so that both overwrite allocated space.
// P3c's figure is fio's mean total latency (lat: from the start of the
// submission to the completion), not clat (from the end of the submission):
// over loopback the reply often arrives while the submitting call is still
// running, which clat does not see (with nbdkit about a third of clat
// samples are 1.5 µs). The note gives clat's mean and median too.
func nbdRandomWrite(ctx context.Context, env *Env) ([]Row, error) {
	size := p3Size(env)
	reps, runtime, region := 3, 5*time.Second, int64(gib)
	if env.Quick {
		reps, runtime, region = 1, 2*time.Second, 256*mib
	}
	src, err := p3Source(env, size)
	if err != nil {
		return nil, err
	}
	vr, kit, err := p3Targets(ctx, env, "p3cd", size)
	if err != nil {
		return nil, err
	}
	defer vr.stop()
	defer kit.stop()
	targets := []*nbdTarget{vr, kit}
	for _, t := range targets {
		if _, err := timed(ctx, "nbdcopy", "--flush", src, t.uri); err != nil {
			return nil, err
		}
	}
	var clat, p50 [2][]float64
	lat, err := interleaved(reps, targets, func(t *nbdTarget) (float64, error) {
		st, err := runFio(ctx, env, t.uri, 1, region, runtime)
		i := 1
		if t == vr {
			i = 0
		}
		clat[i] = append(clat[i], st.ClatMean)
		p50[i] = append(p50[i], st.ClatP50)
		return st.LatMean, err
	})
	if err != nil {
		return nil, err
	}
	iops, err := interleaved(reps, targets, func(t *nbdTarget) (float64, error) {
		st, err := runFio(ctx, env, t.uri, 16, region, runtime)
		return st.IOPS, err
	})
	if err != nil {
		return nil, err
	}
	for i, t := range targets {
		fmt.Fprintf(os.Stderr, "  P3c %s QD1 lat mean µs: %s (clat mean %s, p50 %s)\n  P3d %s QD16 IOPS: %s\n",
			t.name, figs(lat[i]), figs(clat[i]), figs(p50[i]), t.name, figs(iops[i]))
	}
	note := fmt.Sprintf("fio nbd engine, 4 KiB randwrite over %d MiB, %s x%d interleaved, median", region/mib, runtime, reps)
	return []Row{
		{ID: "P3c", Name: "nbd-randwrite-qd1-latency", Volrep: medianF(lat[0]), Baseline: medianF(lat[1]), Unit: "µs",
			Note: fmt.Sprintf("%s; mean total latency (clat mean %s vs %s µs, p50 %s vs %s); baseline nbdkit file", note,
				fig(medianF(clat[0])), fig(medianF(clat[1])), fig(medianF(p50[0])), fig(medianF(p50[1])))},
		{ID: "P3d", Name: "nbd-randwrite-qd16-iops", Volrep: medianF(iops[0]), Baseline: medianF(iops[1]), Unit: "IOPS", HigherIsBetter: true,
			Note: note + "; baseline nbdkit file"},
	}, nil
}
