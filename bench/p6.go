package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"strings"
	"time"

	driverv1 "github.com/volrep/volrep/proto/volrep/driver/v1"
)

// P6: the control plane. ghz drives CreateVolume, then DeleteVolume of
// the same ids, at 16 concurrent calls against a running volrepd, and
// grpc.health.v1 Check on the same daemon in the same run is the
// baseline: the cost of a volume's metadata (durable, fsynced) against the
// cost of a call that does nothing.
func init() {
	register("P6", "control-plane", controlPlane)
}

type ghzReport struct {
	Count   int64            `json:"count"`
	Total   time.Duration    `json:"total"`
	RPS     float64          `json:"rps"`
	Status  map[string]int64 `json:"statusCodeDistribution"`
	Errors  map[string]int64 `json:"errorDistribution"`
	Latency []ghzLatency     `json:"latencyDistribution"`
}

type ghzLatency struct {
	Percentage int           `json:"percentage"`
	Latency    time.Duration `json:"latency"`
}

func (r ghzReport) p99() time.Duration {
	for _, l := range r.Latency {
		if l.Percentage == 99 {
			return l.Latency
		}
	}
	return 0
}

// ghz runs n calls of method with data (a ghz template) at concurrency c
// and fails unless every call returned OK.
func ghz(ctx context.Context, addr, method, data string, n, c int) (ghzReport, error) {
	out, err := exec.CommandContext(ctx, "ghz", "--insecure", "--call", method, "-d", data,
		"-n", fmt.Sprint(n), "-c", fmt.Sprint(c), "--connections", "1", "--format", "json", addr).Output()
	var r ghzReport
	if err != nil {
		return r, fmt.Errorf("ghz %s: %v\n%s", method, err, out)
	}
	if err := json.Unmarshal(out, &r); err != nil {
		return r, fmt.Errorf("ghz %s output: %v", method, err)
	}
	if r.Count != int64(n) || r.Status["OK"] != int64(n) || len(r.Errors) > 0 {
		return r, fmt.Errorf("ghz %s: %d calls, status %v, errors %v; want %d OK", method, r.Count, r.Status, r.Errors, n)
	}
	return r, nil
}

func controlPlane(ctx context.Context, env *Env) ([]Row, error) {
	d, err := startDaemon(ctx, env, "p6", gib, "")
	if err != nil {
		return nil, err
	}
	defer d.stop()
	n, reps := 2000, 3
	if env.Quick {
		n, reps = 500, 1
	}
	var healthRate, volRate []float64
	var healthP99, volP99 []float64
	for rep := range reps {
		h, err := ghz(ctx, d.addr, "grpc.health.v1.Health.Check", `{"service":""}`, n, 16)
		if err != nil {
			return nil, err
		}
		ids := fmt.Sprintf(`{"backend":"bench","volume_id":"p6-%d-{{.RequestNumber}}"`, rep)
		cr, err := ghz(ctx, d.addr, "volrep.driver.v1.DriverService.CreateVolume", ids+`,"size_gb":1}`, n, 16)
		if err != nil {
			return nil, err
		}
		// The row counts only if the creates made volumes.
		if got, err := countVolumes(ctx, d.drv, fmt.Sprintf("p6-%d-", rep)); err != nil || got != n {
			return nil, fmt.Errorf("after %d CreateVolume calls the backend lists %d of them (%v)", n, got, err)
		}
		dr, err := ghz(ctx, d.addr, "volrep.driver.v1.DriverService.DeleteVolume", ids+`}`, n, 16)
		if err != nil {
			return nil, err
		}
		if got, err := countVolumes(ctx, d.drv, fmt.Sprintf("p6-%d-", rep)); err != nil || got != 0 {
			return nil, fmt.Errorf("after %d DeleteVolume calls the backend still lists %d of them (%v)", n, got, err)
		}
		healthRate = append(healthRate, h.RPS)
		healthP99 = append(healthP99, float64(h.p99())/1e6)
		volRate = append(volRate, float64(2*n)/(cr.Total+dr.Total).Seconds())
		volP99 = append(volP99, float64(max(cr.p99(), dr.p99()))/1e6)
	}
	note := fmt.Sprintf("ghz -c 16, %d CreateVolume then %d DeleteVolume of the same ids (all OK, checked by ListVolumes) vs grpc.health.v1 Check, x%d, median; goal ratio >= 0.25", n, n, reps)
	return []Row{
		{ID: "P6", Name: "control-plane-create-delete", Volrep: medianF(volRate), Baseline: medianF(healthRate), Unit: "req/s", HigherIsBetter: true, Note: note},
		{ID: "P6p99", Name: "control-plane-p99", Volrep: medianF(volP99), Baseline: medianF(healthP99), Unit: "ms",
			Note: "the slower of CreateVolume's and DeleteVolume's p99 vs health Check's p99, same runs; goal: volrep <= 20 ms"},
	}, nil
}

func countVolumes(ctx context.Context, drv driverv1.DriverServiceClient, prefix string) (int, error) {
	n, token := 0, ""
	for {
		r, err := drv.ListVolumes(ctx, &driverv1.ListVolumesRequest{Backend: "bench", PageSize: 1000, PageToken: token})
		if err != nil {
			return 0, err
		}
		for _, v := range r.GetVolumes() {
			if strings.HasPrefix(v.GetId(), prefix) {
				n++
			}
		}
		if token = r.GetNextPageToken(); token == "" {
			return n, nil
		}
	}
}
