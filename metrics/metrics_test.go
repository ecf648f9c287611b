package metrics

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/volrep/volrep/array"
	"github.com/volrep/volrep/errdefs"
	"github.com/volrep/volrep/internal/testenv"
	"github.com/volrep/volrep/server"

	"github.com/volrep/volrep/internal/latency"
)

func promtool(t *testing.T) string { return testenv.Tool(t, "promtool") }

// serve runs ServeListener on a loopback port for the test and returns
// the /metrics URL; cleanup stops it and checks it stopped cleanly.
func serve(t *testing.T, reg *Registry) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ServeListener(ctx, lis, reg) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("ServeListener: %v", err)
		}
	})
	return "http://" + lis.Addr().String() + "/metrics"
}

func scrape(t *testing.T, url string) string {
	t.Helper()
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s\n%s", url, resp.Status, body)
	}
	return string(body)
}

func wantLines(t *testing.T, body string, lines ...string) {
	t.Helper()
	have := map[string]bool{}
	for _, l := range strings.Split(body, "\n") {
		have[l] = true
	}
	for _, l := range lines {
		if !have[l] {
			t.Errorf("scrape lacks the line\n  %s", l)
		}
	}
}

var now = time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)

// sampleReplicas is what an engine would list: one healthy protection
// group replica and one that has never reached its target.
func sampleReplicas() []array.Replica {
	ok := array.Replica{State: array.StateActive, RPOState: array.RPOOk, LastSynchronized: now.Add(-12500 * time.Millisecond),
		Lag: 12500 * time.Millisecond, LastSyncBytes: 4096, LastSyncDuration: 1500 * time.Millisecond, TotalBytesSent: 8192}
	ok.Name = "cinder-group.site-b"
	down := array.Replica{State: array.StateDegraded, RPOState: array.RPOLagging}
	down.Name = "cinder-group.site-c"
	return []array.Replica{ok, down}
}

// TestScrapeWithPromtool fills every kind of metric, scrapes /metrics over
// HTTP, checks the values, and has promtool lint the exposition.
func TestScrapeWithPromtool(t *testing.T) {
	reg := New()
	reg.Replicas("site-a", func(context.Context) ([]array.Replica, error) { return sampleReplicas(), nil })
	reg.AddSent("site-a", 1000)
	reg.AddReceived("site-b", 250)
	reg.AddReceived("site-b", -5) // ignored, not a panic
	reg.SetBackendUp("pure1", true)
	reg.SetBackendUp("pure2", false)
	var lat latency.Histograms
	lat.Observe(latency.Write, 80*time.Microsecond)
	lat.Observe(latency.Write, 3*time.Millisecond)
	lat.Observe(latency.Write, time.Minute)
	reg.DataPath("site-a", ISCSI, func() DataPathStats {
		return DataPathStats{ConnectionsActive: 2, ConnectionsAccepted: 5, Commands: 900, Errors: 3, BytesRead: 1 << 20, BytesWritten: 4096,
			TaskManagement: 4, Resets: 1, Conflicts: 6, Latency: lat.Snapshot()}
	})
	reg.DataPath("site-a", NBD, func() DataPathStats { return DataPathStats{Commands: 7} })

	// RPCs through a real server with the interceptors in its chain.
	srv := server.New(server.Options{Name: "driver", Logger: slog.New(slog.DiscardHandler),
		ExtraUnary:  []grpc.UnaryServerInterceptor{reg.UnaryServerInterceptor("driver")},
		ExtraStream: []grpc.StreamServerInterceptor{reg.StreamServerInterceptor("driver")}})
	srv.SetServingStatus("backend/pure1", true)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sctx, stop := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- srv.Serve(sctx, lis) }()
	defer func() { stop(); <-served }()
	cc, err := server.Dial(lis.Addr().String(), "")
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	h := healthpb.NewHealthClient(cc)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := h.Check(ctx, &healthpb.HealthCheckRequest{Service: "backend/pure1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := h.Check(ctx, &healthpb.HealthCheckRequest{Service: "backend/nope"}); !errdefs.IsNotFound(err) {
		t.Fatalf("Check of an unknown service: %v, want NOT_FOUND", err)
	}
	wctx, wcancel := context.WithCancel(ctx)
	w, err := h.Watch(wctx, &healthpb.HealthCheckRequest{Service: "backend/pure1"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Recv(); err != nil {
		t.Fatal(err)
	}
	wcancel()
	// The stream is observed when its handler returns, after the cancel
	// reaches the server.
	deadline := time.Now().Add(10 * time.Second)
	for rpcCount(t, reg, "driver", "/grpc.health.v1.Health/Watch", "Canceled") == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}

	body := scrape(t, serve(t, reg))
	wantLines(t, body,
		`volrep_replica_lag_seconds{array="site-a",replica="cinder-group.site-b"} 12.5`,
		`volrep_replica_last_sync_bytes{array="site-a",replica="cinder-group.site-b"} 4096`,
		`volrep_replica_last_sync_duration_seconds{array="site-a",replica="cinder-group.site-b"} 1.5`,
		`volrep_replica_rpo_breached{array="site-a",replica="cinder-group.site-b"} 0`,
		`volrep_replica_rpo_breached{array="site-a",replica="cinder-group.site-c"} 1`,
		`volrep_replica_state{array="site-a",replica="cinder-group.site-b",state="active"} 1`,
		`volrep_replica_state{array="site-a",replica="cinder-group.site-b",state="degraded"} 0`,
		`volrep_replica_state{array="site-a",replica="cinder-group.site-c",state="degraded"} 1`,
		`volrep_replica_state{array="site-a",replica="cinder-group.site-c",state="active"} 0`,
		`volrep_transfer_bytes_total{array="site-a",direction="sent"} 1000`,
		`volrep_transfer_bytes_total{array="site-b",direction="received"} 250`,
		`volrep_backend_up{backend="pure1"} 1`,
		`volrep_backend_up{backend="pure2"} 0`,
		`volrep_grpc_request_duration_seconds_count{code="OK",method="/grpc.health.v1.Health/Check",server="driver"} 1`,
		`volrep_grpc_request_duration_seconds_count{code="NotFound",method="/grpc.health.v1.Health/Check",server="driver"} 1`,
		`volrep_grpc_request_duration_seconds_count{code="Canceled",method="/grpc.health.v1.Health/Watch",server="driver"} 1`,
		`volrep_datapath_connections{array="site-a",protocol="iscsi"} 2`,
		`volrep_datapath_connections_accepted_total{array="site-a",protocol="iscsi"} 5`,
		`volrep_datapath_commands_total{array="site-a",protocol="iscsi"} 900`,
		`volrep_datapath_errors_total{array="site-a",protocol="iscsi"} 3`,
		`volrep_datapath_read_bytes_total{array="site-a",protocol="iscsi"} 1.048576e+06`,
		`volrep_datapath_written_bytes_total{array="site-a",protocol="iscsi"} 4096`,
		`volrep_datapath_task_management_total{array="site-a",protocol="iscsi"} 4`,
		`volrep_datapath_resets_total{array="site-a",protocol="iscsi"} 1`,
		`volrep_datapath_reservation_conflicts_total{array="site-a",protocol="iscsi"} 6`,
		`volrep_datapath_commands_total{array="site-a",protocol="nbd"} 7`,
		// Cumulative buckets: 80 µs is under 100 µs, 3 ms under 5 ms, a
		// minute only under +Inf.
		`volrep_datapath_command_duration_seconds_bucket{array="site-a",op="write",protocol="iscsi",le="5e-05"} 0`,
		`volrep_datapath_command_duration_seconds_bucket{array="site-a",op="write",protocol="iscsi",le="0.0001"} 1`,
		`volrep_datapath_command_duration_seconds_bucket{array="site-a",op="write",protocol="iscsi",le="0.0025"} 1`,
		`volrep_datapath_command_duration_seconds_bucket{array="site-a",op="write",protocol="iscsi",le="0.005"} 2`,
		`volrep_datapath_command_duration_seconds_bucket{array="site-a",op="write",protocol="iscsi",le="10"} 2`,
		`volrep_datapath_command_duration_seconds_bucket{array="site-a",op="write",protocol="iscsi",le="+Inf"} 3`,
		`volrep_datapath_command_duration_seconds_sum{array="site-a",op="write",protocol="iscsi"} 60.00308`,
		`volrep_datapath_command_duration_seconds_count{array="site-a",op="write",protocol="iscsi"} 3`,
		`volrep_datapath_command_duration_seconds_count{array="site-a",op="read",protocol="nbd"} 0`,
	)
	if strings.Contains(body, `volrep_datapath_resets_total{array="site-a",protocol="nbd"}`) {
		t.Errorf("NBD has no task management or resets to report")
	}
	for _, family := range []string{"go_goroutines", "process_resident_memory_bytes", "process_open_fds"} {
		if !strings.Contains(body, "\n"+family+" ") {
			t.Errorf("scrape lacks %s (Go and process collectors)", family)
		}
	}
	if strings.Contains(body, `volrep_replica_lag_seconds{array="site-a",replica="cinder-group.site-c"}`) {
		t.Errorf("a replica that never synced has no lag to report")
	}

	cmd := exec.Command(promtool(t), "check", "metrics")
	cmd.Stdin = strings.NewReader(body)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("promtool check metrics: %v\n%s", err, out)
	}
	t.Logf("promtool check metrics: ok %s", bytes.TrimSpace(out))
}

// promtool must be able to fail, or the check above proves nothing.
func TestPromtoolRejectsBadMetrics(t *testing.T) {
	cmd := exec.Command(promtool(t), "check", "metrics")
	cmd.Stdin = strings.NewReader("# TYPE volrep_requests counter\nvolrep_requests 1\n")
	if out, err := cmd.CombinedOutput(); err == nil {
		t.Fatalf("promtool accepted a counter without _total:\n%s", out)
	}
}

// sample finds the series of family name with exactly these labels and
// returns its value (counter or gauge) or its count (histogram); ok is
// false when there is no such series.
func sample(t *testing.T, reg *Registry, name string, labels map[string]string) (value float64, ok bool) {
	t.Helper()
	mfs, err := reg.Prometheus().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	series:
		for _, m := range mf.GetMetric() {
			if len(m.GetLabel()) != len(labels) {
				continue
			}
			for _, l := range m.GetLabel() {
				if v, ok := labels[l.GetName()]; !ok || v != l.GetValue() {
					continue series
				}
			}
			switch {
			case m.GetCounter() != nil:
				return m.GetCounter().GetValue(), true
			case m.GetGauge() != nil:
				return m.GetGauge().GetValue(), true
			case m.GetHistogram() != nil:
				return float64(m.GetHistogram().GetSampleCount()), true
			}
		}
	}
	return 0, false
}

// rpcCount returns how many calls the latency histogram has seen with
// these labels.
func rpcCount(t *testing.T, reg *Registry, server, method, code string) uint64 {
	t.Helper()
	n, _ := sample(t, reg, "volrep_grpc_request_duration_seconds", map[string]string{"server": server, "method": method, "code": code})
	return uint64(n)
}

func TestReplicationCycleCountsBytesOnce(t *testing.T) {
	reg := New()
	onCycle := reg.ReplicationCycle("site-a")
	sent := func() float64 {
		v, _ := sample(t, reg, "volrep_transfer_bytes_total", map[string]string{"array": "site-a", "direction": Sent})
		return v
	}
	cycles := func(result string) float64 {
		v, _ := sample(t, reg, "volrep_replication_cycles_total", map[string]string{"array": "site-a", "replica": "pg.b", "result": result})
		return v
	}
	rep := func(total, last int64) array.Replica {
		r := array.Replica{TotalBytesSent: total, LastSyncBytes: last}
		r.Name = "pg.b"
		return r
	}
	steps := []struct {
		r    array.Replica
		err  error
		want float64
	}{
		{rep(10_000, 300), nil, 300},                // first sight: this cycle's bytes
		{rep(10_500, 500), nil, 800},                // +500
		{rep(10_500, 500), errors.New("down"), 800}, // failed: nothing shipped
		{rep(10_500, 500), nil, 800},                // nothing new to ship
		{rep(11_000, 500), nil, 1300},               // +500
		{rep(100, 100), nil, 1300},                  // replica recreated: total went back
		{rep(150, 50), nil, 1350},                   // and counts from there
	}
	for i, s := range steps {
		onCycle(s.r, s.err)
		if got := sent(); got != s.want {
			t.Fatalf("after cycle %d: sent = %v, want %v", i, got, s.want)
		}
	}
	// A replica first seen failing counts nothing.
	other := rep(5000, 400)
	other.Name = "pg.c"
	onCycle(other, errors.New("unreachable"))
	if got := sent(); got != 1350 {
		t.Errorf("a failed first cycle added bytes: %v", got)
	}
	if got := cycles("error"); got != 1 {
		t.Errorf("error cycles of pg.b = %v, want 1", got)
	}
	if got := cycles("ok"); got != 6 {
		t.Errorf("ok cycles of pg.b = %v, want 6", got)
	}
}

// Replicas are read at scrape time, so a scrape sees the current state.
func TestReplicasAreCurrent(t *testing.T) {
	reg := New()
	var state atomic.Value // written here, read by the scrape's goroutine
	state.Store(array.StateInitializing)
	reg.Replicas("site-a", func(context.Context) ([]array.Replica, error) {
		r := array.Replica{State: state.Load().(string), RPOState: array.RPOLagging}
		r.Name = "v1"
		return []array.Replica{r}, nil
	})
	url := serve(t, reg)
	wantLines(t, scrape(t, url), `volrep_replica_state{array="site-a",replica="v1",state="initializing"} 1`)
	state.Store("resyncing") // a state this package does not know
	wantLines(t, scrape(t, url),
		`volrep_replica_state{array="site-a",replica="v1",state="initializing"} 0`,
		`volrep_replica_state{array="site-a",replica="v1",state="resyncing"} 1`)
	reg.Replicas("site-a", nil)
	if body := scrape(t, url); strings.Contains(body, "volrep_replica_state{") {
		t.Errorf("a removed source still reports replicas")
	}
}

// A failing replica list fails only its own part of the scrape.
func TestReplicaListError(t *testing.T) {
	reg := New()
	reg.Replicas("site-a", func(context.Context) ([]array.Replica, error) { return nil, errors.New("engine stuck") })
	reg.SetBackendUp("pure1", true)
	url := serve(t, reg)
	body := scrape(t, url)
	wantLines(t, body, `volrep_backend_up{backend="pure1"} 1`)
	if strings.Contains(body, "volrep_replica_") {
		t.Errorf("replica metrics reported although the list failed")
	}
	// The handler counts the failure after serving the scrape it hit.
	wantLines(t, scrape(t, url), `promhttp_metric_handler_errors_total{cause="gathering"} 1`)
}

func TestInterceptorMapsErrdefsCodes(t *testing.T) {
	reg := New()
	un := reg.UnaryServerInterceptor("array site-a")
	for _, c := range []struct {
		err  error
		code string
	}{
		{nil, "OK"},
		{errdefs.Unavailable("peer down"), "Unavailable"},
		{errdefs.FailedPrecondition("initializing"), "FailedPrecondition"},
		{status.Error(codes.Aborted, "busy"), "Aborted"},
	} {
		_, err := un(context.Background(), nil, &grpc.UnaryServerInfo{FullMethod: "/volrep.array.v1.ReplicaService/SyncReplica"},
			func(context.Context, any) (any, error) { return nil, c.err })
		if err != c.err {
			t.Errorf("the interceptor changed the error %v into %v", c.err, err)
		}
		if n := rpcCount(t, reg, "array site-a", "/volrep.array.v1.ReplicaService/SyncReplica", c.code); n != 1 {
			t.Errorf("error %v: %d calls counted with code %s, want 1", c.err, n, c.code)
		}
	}
}

func TestServe(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	reg := New()
	reg.SetBackendUp("demo", true)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, addr, reg) }()
	var body string
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := (&http.Client{Transport: &http.Transport{DisableKeepAlives: true}}).Get("http://" + addr + "/metrics")
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			body = string(b)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("metrics server did not answer: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	wantLines(t, body, `volrep_backend_up{backend="demo"} 1`)

	// A second server on the same address cannot listen, and says so.
	if err := Serve(context.Background(), addr, reg); err == nil || !strings.Contains(err.Error(), "metrics_listen") {
		t.Errorf("Serve on a busy address: %v", err)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Serve after cancel: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after its context ended")
	}
}

// Every change of a pod's state is counted by the state entered.
func TestPodStateChangesAreCounted(t *testing.T) {
	reg := New()
	note := reg.PodState("site-a")
	for _, s := range []string{array.PodDegraded, array.PodStoppedByMediator, array.PodResyncing, array.PodOnline, array.PodDegraded} {
		note("cinder-pod.b", s)
	}
	url := serve(t, reg)
	wantLines(t, scrape(t, url),
		`volrep_pod_state_changes_total{array="site-a",pod="cinder-pod.b",state="degraded"} 2`,
		`volrep_pod_state_changes_total{array="site-a",pod="cinder-pod.b",state="stopped_by_mediator"} 1`,
		`volrep_pod_state_changes_total{array="site-a",pod="cinder-pod.b",state="online"} 1`)
}
