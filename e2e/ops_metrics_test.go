package e2e

import (
	"context"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestMetricsEndpoint starts volrepd with metrics_listen, replicates a
// volume, and scrapes /metrics the way Prometheus would: the backend is
// up, the protection group's replica is active, the driver's RPCs are
// timed, and promtool accepts the whole exposition.
func TestMetricsEndpoint(t *testing.T) {
	promtool := tool(t, "promtool")
	d := NewDaemon(t)
	d.WriteConfig(d.DefaultBackend(), "")
	metricsAddr := freePort(t)
	conf, err := os.ReadFile(d.Conf)
	if err != nil {
		t.Fatal(err)
	}
	conf = []byte(strings.Replace(string(conf), "[volrep]\n", "[volrep]\nmetrics_listen = "+metricsAddr+"\n", 1))
	d.WriteRaw(string(conf))
	d.Start()

	if out, code := volrep(t, d, "volume", "create", "m1", "--size", "1", "--type", "replicated",
		"--spec", "replication_enabled=<is> True", "--spec", "replication_type=<in> async"); code != 0 {
		t.Fatalf("volume create (exit %d):\n%s", code, out)
	}
	// 64 KiB written through the volume's NBD export, for the data path's
	// counters.
	nbdURI := attach(t, driverClient(t, d), "m1", "metrics-host", "").URI()
	run(t, false, tool(t, "qemu-io"), "-f", "raw", "-c", "write -P 0x5a 0 64k", nbdURI)

	url := "http://" + metricsAddr + "/metrics"
	scrape := func() string {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return ""
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			return ""
		}
		return string(b)
	}
	want := []string{
		`volrep_backend_up{backend="demo"} 1`,
		`volrep_replica_state{array="site-a",replica="cinder-group.site-b",state="active"} 1`,
		`volrep_replica_rpo_breached{array="site-a",replica="cinder-group.site-b"} 0`,
		`volrep_grpc_request_duration_seconds_count{code="OK",method="/volrep.driver.v1.DriverService/CreateVolume",server="driver"} 1`,
	}
	var body string
	deadline := time.Now().Add(30 * time.Second)
	for {
		body = scrape()
		missing := ""
		for _, w := range want {
			if !strings.Contains(body, "\n"+w+"\n") {
				missing = w
				break
			}
		}
		if missing == "" {
			break
		}
		if time.Now().After(deadline) {
			if body == "" {
				t.Fatalf("nothing serves %s; is metrics_listen wired in daemon.Run?\ndaemon log:\n%s", url, d.Logs())
			}
			t.Fatalf("scrape lacks %q within 30s:\n%s", missing, body)
		}
		time.Sleep(200 * time.Millisecond)
	}
	// The NBD server's own counts: the write's bytes at least, and the
	// iSCSI series only where an iSCSI listener runs.
	for _, c := range []struct {
		series string
		least  float64
	}{
		{`volrep_datapath_written_bytes_total{array="site-a",protocol="nbd"}`, 64 << 10},
		{`volrep_datapath_commands_total{array="site-a",protocol="nbd"}`, 1},
		{`volrep_datapath_connections_accepted_total{array="site-a",protocol="nbd"}`, 1},
		{`volrep_datapath_command_duration_seconds_count{array="site-a",op="write",protocol="nbd"}`, 1},
		{`volrep_datapath_command_duration_seconds_bucket{array="site-a",op="write",protocol="nbd",le="+Inf"}`, 1},
	} {
		if v, ok := seriesValue(body, c.series); !ok || v < c.least {
			t.Errorf("scrape has %s = %v (found %v); want at least %v", c.series, v, ok, c.least)
		}
	}
	if strings.Contains(body, `protocol="iscsi"`) {
		t.Errorf("a daemon without iscsi_listen reports iSCSI series")
	}
	for _, w := range []string{"volrep_replica_lag_seconds{", `volrep_grpc_request_duration_seconds_count{code="OK",method="/volrep.array.v1.TransferService/Receive",server="array site-b"}`, "go_goroutines ", "process_cpu_seconds_total "} {
		if !strings.Contains(body, w) {
			t.Errorf("scrape lacks %s", w)
		}
	}

	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = strings.NewReader(body)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("promtool check metrics: %v\n%s", err, out)
	}
}

// seriesValue returns the value of one series of a text exposition.
func seriesValue(body, series string) (float64, bool) {
	for _, l := range strings.Split(body, "\n") {
		if v, ok := strings.CutPrefix(l, series+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			return f, err == nil
		}
	}
	return 0, false
}
