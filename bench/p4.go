package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"google.golang.org/grpc/health/grpc_health_v1"

	arrayv1 "github.com/volrep/volrep/proto/volrep/array/v1"
	driverv1 "github.com/volrep/volrep/proto/volrep/driver/v1"
	"github.com/volrep/volrep/server"
)

// P4: the cost of synchronous replication on the write path. fio's nbd
// engine writes random 4 KiB blocks at QD1 to a volume in a pod (every
// write mirrored to the second array before it is acknowledged) and to an
// unreplicated volume of the same backend, in the same run, interleaved.
func init() {
	register("P4", "sync-write-latency", syncWriteLatency)
	register("P4b", "sync-write-latency-peer", peerWriteLatency)
}

const p4Conf = `[DEFAULT]
enabled_backends = bench

[volrep]
driver_listen = %[1]s
metrics_listen = %[6]s
log_level = warn

[array:a]
data_dir = %[5]s/a
listen = %[2]s
nbd_listen = 127.0.0.1:0
api_token = ta

[array:b]
data_dir = %[5]s/b
listen = %[3]s
nbd_listen = %[4]s
api_token = tb

[bench]
san_ip = %[2]s
pure_api_token = ta
replication_device = backend_id:b,san_ip:%[3]s,api_token:tb,type:sync
volrep_sync_timeout = 5000
`

// p4Bench is a volrepd hosting both arrays of a pod, with the pod volume
// and an unreplicated one attached over NBD at array a.
type p4Bench struct {
	addrs [5]string // driver, array a, array b, array b's NBD, metrics
	uris  map[string]string
	stop  func()
}

func startP4(ctx context.Context, env *Env) (_ *p4Bench, err error) {
	bin, err := buildVolrepd(ctx, env)
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(env.Dir, "p4")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	b := &p4Bench{uris: map[string]string{}}
	var stops []func()
	b.stop = func() {
		for i := len(stops) - 1; i >= 0; i-- {
			stops[i]()
		}
	}
	defer func() {
		if err != nil {
			b.stop()
		}
	}()
	stops = append(stops, func() { os.RemoveAll(dir) })
	addrs := &b.addrs
	for i := range addrs {
		if addrs[i], err = freeAddr(); err != nil {
			return nil, err
		}
	}
	conf := filepath.Join(dir, "volrep.conf")
	if err := os.WriteFile(conf, fmt.Appendf(nil, p4Conf, addrs[0], addrs[1], addrs[2], addrs[3], dir, addrs[4]), 0o600); err != nil {
		return nil, err
	}
	logf, err := os.Create(filepath.Join(dir, "volrepd.log"))
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "--config", conf)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	stops = append(stops, func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
		logf.Close()
	})
	cc, err := server.Dial(addrs[0], "")
	if err != nil {
		return nil, err
	}
	stops = append(stops, func() { cc.Close() })
	health := grpc_health_v1.NewHealthClient(cc)
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		c, cancel := context.WithTimeout(ctx, time.Second)
		r, err := health.Check(c, &grpc_health_v1.HealthCheckRequest{Service: "backend/bench"})
		cancel()
		if err == nil && r.GetStatus() == grpc_health_v1.HealthCheckResponse_SERVING {
			break
		}
		if time.Now().After(deadline) {
			return nil, errors.New("volrepd did not become ready in 30s")
		}
	}
	drv := driverv1.NewDriverServiceClient(cc)
	uris := b.uris
	for _, v := range []struct {
		id string
		vt *driverv1.VolumeType
	}{
		{"plain", nil},
		{"pod", &driverv1.VolumeType{Name: "sync", ExtraSpecs: map[string]string{"replication_enabled": "<is> True", "replication_type": "<in> sync"}}},
	} {
		if _, err := drv.CreateVolume(ctx, &driverv1.CreateVolumeRequest{Backend: "bench", VolumeId: v.id, SizeGb: 1, VolumeType: v.vt}); err != nil {
			return nil, fmt.Errorf("CreateVolume %s: %w", v.id, err)
		}
		r, err := drv.InitializeConnection(ctx, &driverv1.InitializeConnectionRequest{Backend: "bench", VolumeId: v.id, Connector: &driverv1.Connector{Host: "bench"}})
		if err != nil {
			return nil, err
		}
		uris[v.id] = r.GetConnectionInfo().GetData()["uri"]
	}
	return b, nil
}

func syncWriteLatency(ctx context.Context, env *Env) ([]Row, error) {
	bench, err := startP4(ctx, env)
	if err != nil {
		return nil, err
	}
	defer bench.stop()
	addrs, uris := bench.addrs, bench.uris
	runtime := 10 * time.Second
	if env.Quick {
		runtime = 3 * time.Second
	}
	acc, err := server.Dial(addrs[1], "ta")
	if err != nil {
		return nil, err
	}
	defer acc.Close()
	pod := podWatch{c: arrayv1.NewReplicaServiceClient(acc)}
	if err := pod.check(ctx, 0); err != nil {
		return nil, fmt.Errorf("before the runs: %w", err)
	}
	var p50, p99, atArray [2][]float64
	var mirrored, written int64
	for rep := 0; rep < 2; rep++ {
		for i, id := range []string{"pod", "plain"} {
			before, err := bench.writeTime(ctx)
			if err != nil {
				return nil, err
			}
			a, b, n, err := fioLatency(ctx, env, uris[id], runtime)
			if err != nil {
				return nil, fmt.Errorf("fio on %s: %w", id, err)
			}
			after, err := bench.writeTime(ctx)
			if err != nil {
				return nil, err
			}
			atArray[i] = append(atArray[i], after.meanSince(before))
			if id == "pod" {
				before := pod.mirrored
				if err := pod.check(ctx, n); err != nil {
					return nil, fmt.Errorf("after fio run %d on the pod volume: %w", rep+1, err)
				}
				mirrored, written = mirrored+pod.mirrored-before, written+n
			}
			p50[i], p99[i] = append(p50[i], a), append(p99[i], b)
		}
	}
	note := fmt.Sprintf("fio nbd randwrite 4k QD1, total latency (lat), %s x2 interleaved, median; volrep=pod volume, baseline=unreplicated volume; "+
		"pod in sync with 0 dirty bytes and no resync before and after each run, peer acknowledged %d bytes for fio's %d; "+
		"the array's own mean time per write (volrep_datapath_command_duration_seconds): pod %.1f µs, unreplicated %.1f µs; goal ratio >= 0.67",
		runtime, mirrored, written, medianF(atArray[0]), medianF(atArray[1]))
	return []Row{
		{ID: "P4", Name: "sync-write-latency-p50", Volrep: medianF(p50[0]), Baseline: medianF(p50[1]), Unit: "us", Note: note},
		{ID: "P4p99", Name: "sync-write-latency-p99", Volrep: medianF(p99[0]), Baseline: medianF(p99[1]), Unit: "us", Note: "same runs, 99th percentile; goal ratio >= 0.5"},
	}, nil
}

// fioLatency runs fio's QD1 4 KiB random writes against uri and returns
// the total latency's (submission + completion) p50 and p99 in µs, and
// the bytes fio wrote (its ramp time included, which only adds writes).
func fioLatency(ctx context.Context, env *Env, uri string, runtime time.Duration) (p50, p99 float64, written int64, err error) {
	out := filepath.Join(env.Dir, "fio-p4.json")
	args := []string{"--name=p4", "--ioengine=nbd", "--uri=" + uri, "--rw=randwrite", "--bs=4k", "--iodepth=1",
		"--size=256m", fmt.Sprintf("--runtime=%d", int(runtime.Seconds())), "--time_based", "--ramp_time=1",
		"--randrepeat=0", "--norandommap", "--lat_percentiles=1", "--output-format=json", "--output=" + out}
	if _, err := timed(ctx, "fio", args...); err != nil {
		return 0, 0, 0, err
	}
	b, err := os.ReadFile(out)
	if err != nil {
		return 0, 0, 0, err
	}
	var r fioResult
	if err := json.Unmarshal(b, &r); err != nil || len(r.Jobs) != 1 {
		return 0, 0, 0, fmt.Errorf("fio output: %v", err)
	}
	w := r.Jobs[0].Write
	pc := w.LatNS.Percentile
	if pc["50.000000"] == 0 || w.IOBytes == 0 {
		return 0, 0, 0, fmt.Errorf("fio output has no total-latency percentiles or bytes: %s", out)
	}
	return pc["50.000000"] / 1e3, pc["99.000000"] / 1e3, w.IOBytes, nil
}

// writeCounts are array a's NBD writes so far and the seconds they took
// there, from volrepd's metrics.
type writeCounts struct{ count, sum float64 }

// meanSince is the mean time at the array, in µs, of the writes since w0.
func (w writeCounts) meanSince(w0 writeCounts) float64 {
	if w.count == w0.count {
		return 0
	}
	return (w.sum - w0.sum) / (w.count - w0.count) * 1e6
}

// writeTime scrapes array a's NBD write latency histogram's count and sum.
func (b *p4Bench) writeTime(ctx context.Context) (writeCounts, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+b.addrs[4]+"/metrics", nil)
	if err != nil {
		return writeCounts{}, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return writeCounts{}, err
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		return writeCounts{}, err
	}
	want := map[string]string{"array": "a", "op": "write", "protocol": "nbd"}
	for _, m := range fams["volrep_datapath_command_duration_seconds"].GetMetric() {
		labels := map[string]string{}
		for _, l := range m.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		if maps.Equal(labels, want) {
			h := m.GetHistogram()
			return writeCounts{count: float64(h.GetSampleCount()), sum: h.GetSampleSum()}, nil
		}
	}
	return writeCounts{}, fmt.Errorf("volrepd's metrics lack array a's NBD write latency")
}

// podWatch proves a P4 run measured mirrored writes: the pod stays in
// sync, nothing falls back to the dirty set or a resync, and the peer
// acknowledged at least the bytes fio wrote.
type podWatch struct {
	c        arrayv1.ReplicaServiceClient
	mirrored int64
	resynced int64
	started  bool
}

func (w *podWatch) check(ctx context.Context, written int64) error {
	r, err := w.c.ListReplicas(ctx, &arrayv1.ListReplicasRequest{})
	if err != nil {
		return err
	}
	var rep *arrayv1.Replica
	for _, x := range r.GetReplicas() {
		if x.GetReplicationType() == arrayv1.ReplicationType_REPLICATION_TYPE_SYNC {
			rep = x
		}
	}
	switch {
	case rep == nil:
		return errors.New("array a has no sync replica (pod)")
	case rep.GetSyncState() != arrayv1.SyncState_SYNC_STATE_IN_SYNC || rep.GetPeerState() != "online" || rep.GetDirtyBytes() != 0:
		return fmt.Errorf("pod %s is %s, peer %s, %d dirty bytes: a write fell back to the dirty set, the run does not count",
			rep.GetName(), rep.GetSyncState(), rep.GetPeerState(), rep.GetDirtyBytes())
	case w.started && rep.GetLastResyncBytes() != w.resynced:
		return fmt.Errorf("pod %s resynced during the run (%d bytes): the run does not count", rep.GetName(), rep.GetLastResyncBytes())
	case rep.GetMirroredBytes()-w.mirrored < written:
		return fmt.Errorf("the peer acknowledged %d bytes, fio wrote %d: writes were not all mirrored",
			rep.GetMirroredBytes()-w.mirrored, written)
	}
	w.mirrored, w.resynced, w.started = rep.GetMirroredBytes(), rep.GetLastResyncBytes(), true
	return nil
}

// P4b: the write latency at the pod's NON-preferred array (b), whose
// client writes go to the preferred array (a), which sequences them and
// mirrors them back before b answers: two round trips per write, against
// an unreplicated volume at a, in the same run, interleaved. After the
// runs the pod must be in sync and both copies hold the same bytes.
func peerWriteLatency(ctx context.Context, env *Env) ([]Row, error) {
	b, err := startP4(ctx, env)
	if err != nil {
		return nil, err
	}
	defer b.stop()
	bcc, err := server.Dial(b.addrs[2], "tb")
	if err != nil {
		return nil, err
	}
	defer bcc.Close()
	acc, err := server.Dial(b.addrs[1], "ta")
	if err != nil {
		return nil, err
	}
	defer acc.Close()
	const vol = "volume-pod-cinder"
	e, err := arrayv1.NewExportServiceClient(bcc).CreateExport(ctx, &arrayv1.CreateExportRequest{Volume: vol, AttachmentId: "bench-peer"})
	if err != nil {
		return nil, fmt.Errorf("exporting the pod's copy at array b: %w", err)
	}
	peerURI := fmt.Sprintf("nbd://%s/%s", b.addrs[3], e.GetExport().GetName())
	// The peer's copy takes writes once the preferred array's forward
	// stream is open and the pod in sync.
	bv := arrayv1.NewVolumeServiceClient(bcc)
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		_, err := bv.WriteVolume(ctx, &arrayv1.WriteVolumeRequest{Name: vol, Offset: 0, Data: make([]byte, 4096)})
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("the pod's copy at array b takes no writes: %w", err)
		}
	}
	runtime := 10 * time.Second
	if env.Quick {
		runtime = 3 * time.Second
	}
	pod := podWatch{c: arrayv1.NewReplicaServiceClient(acc)}
	if err := pod.check(ctx, 0); err != nil {
		return nil, fmt.Errorf("before the runs: %w", err)
	}
	var p50, p99 [2][]float64
	for rep := 0; rep < 2; rep++ {
		for i, uri := range []string{peerURI, b.uris["plain"]} {
			x, y, n, err := fioLatency(ctx, env, uri, runtime)
			if err != nil {
				return nil, fmt.Errorf("fio on %s: %w", uri, err)
			}
			if i == 0 {
				if err := pod.check(ctx, n); err != nil {
					return nil, fmt.Errorf("after fio run %d at the pod's peer: %w", rep+1, err)
				}
			}
			p50[i], p99[i] = append(p50[i], x), append(p99[i], y)
		}
	}
	if err := sameOnBoth(ctx, arrayv1.NewVolumeServiceClient(acc), bv, vol, 256<<20); err != nil {
		return nil, err
	}
	note := fmt.Sprintf("fio nbd randwrite 4k QD1 at the pod's non-preferred array (forwarded to the preferred one, mirrored back), total latency, %s x2 interleaved, median; "+
		"baseline=unreplicated volume at the preferred array; pod in sync after each run and both copies byte-identical after; goal ratio >= 0.5", runtime)
	return []Row{
		{ID: "P4b", Name: "sync-write-latency-peer-p50", Volrep: medianF(p50[0]), Baseline: medianF(p50[1]), Unit: "us", Note: note},
		{ID: "P4bp99", Name: "sync-write-latency-peer-p99", Volrep: medianF(p99[0]), Baseline: medianF(p99[1]), Unit: "us", Note: "same runs, 99th percentile; goal ratio >= 0.5"},
	}, nil
}

// sameOnBoth compares a volume's first size bytes at two arrays.
func sameOnBoth(ctx context.Context, a, b arrayv1.VolumeServiceClient, vol string, size int64) error {
	const step = 1 << 20
	for off := int64(0); off < size; off += step {
		x, err := a.ReadVolume(ctx, &arrayv1.ReadVolumeRequest{Name: vol, Offset: off, Length: step})
		if err != nil {
			return err
		}
		y, err := b.ReadVolume(ctx, &arrayv1.ReadVolumeRequest{Name: vol, Offset: off, Length: step})
		if err != nil {
			return err
		}
		if !bytes.Equal(x.GetData(), y.GetData()) {
			return fmt.Errorf("the pod's copies of %s differ in the MiB at %d", vol, off)
		}
	}
	return nil
}
