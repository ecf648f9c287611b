package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/health/grpc_health_v1"

	driverv1 "github.com/volrep/volrep/proto/volrep/driver/v1"
	"github.com/volrep/volrep/server"
)

// TestFailoverServesAtOnceAndFailbackWaits: after a failover the backend
// serves from the target as soon as the call returns (issue 12 item 7);
// a failback asked while the primary is still down waits for it, and
// goes through promptly once it is back (item 6); every volume comes home
// with its own replication status (item 8).
func TestFailoverServesAtOnceAndFailbackWaits(t *testing.T) {
	s := startThreeSites(t)
	ctx := t.Context()
	dc := driverClient(t, s.d)
	const be = "puredriver-1"
	if _, err := dc.CreateVolume(ctx, &driverv1.CreateVolumeRequest{Backend: be, VolumeId: "av", SizeGb: 1, VolumeType: asyncType}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool {
		r, err := dc.GetReplicationInfo(ctx, &driverv1.GetReplicationInfoRequest{Backend: be, VolumeId: "av"})
		return err == nil && r.GetStatus() == driverv1.ReplicationHealth_REPLICATION_HEALTH_HEALTHY
	})

	s.a.Kill()
	// The driver notices: the backend is down while its primary is.
	up := func() bool {
		bl, err := dc.ListBackends(ctx, &driverv1.ListBackendsRequest{})
		return err == nil && bl.GetBackends()[0].GetUp()
	}
	waitFor(t, func() bool { return !up() })
	if _, err := dc.FailoverHost(ctx, &driverv1.FailoverHostRequest{Backend: be, SecondaryId: "site-b"}); err != nil {
		t.Fatal(err)
	}
	// Usable the moment the failover returns: no waiting for a check.
	if _, err := dc.ListVolumes(ctx, &driverv1.ListVolumesRequest{Backend: be}); err != nil {
		t.Fatalf("ListVolumes right after the failover: %v", err)
	}
	if !up() {
		t.Fatal("the backend shows down right after the failover")
	}
	hc, err := server.Dial(s.d.DriverAddr, "")
	if err != nil {
		t.Fatal(err)
	}
	defer hc.Close()
	if h, err := grpc_health_v1.NewHealthClient(hc).Check(ctx, &grpc_health_v1.HealthCheckRequest{Service: "backend/" + be}); err != nil ||
		h.GetStatus() != grpc_health_v1.HealthCheckResponse_SERVING {
		t.Fatalf("health of backend/%s right after the failover: %v %v", be, h, err)
	}
	// Made while failed over, without replication: it comes home unreplicated.
	if _, err := dc.CreateVolume(ctx, &driverv1.CreateVolumeRequest{Backend: be, VolumeId: "plain", SizeGb: 1}); err != nil {
		t.Fatal(err)
	}
	// Made while failed over with a replicated type: it joins the
	// protection group when it comes home.
	if _, err := dc.CreateVolume(ctx, &driverv1.CreateVolumeRequest{Backend: be, VolumeId: "av2", SizeGb: 1, VolumeType: asyncType}); err != nil {
		t.Fatal(err)
	}

	// Fail back while the primary is still down; bring it back meanwhile.
	type answer struct {
		r   *driverv1.FailoverHostResponse
		err error
	}
	done := make(chan answer, 1)
	go func() {
		cctx, cancel := context.WithTimeout(ctx, 90*time.Second)
		defer cancel()
		r, err := dc.FailoverHost(cctx, &driverv1.FailoverHostRequest{Backend: be, SecondaryId: "default"})
		done <- answer{r, err}
	}()
	waitFor(t, func() bool {
		select {
		case a := <-done:
			t.Fatalf("the failback did not wait for the primary: %v %v", a.r, a.err)
		default:
		}
		for _, line := range strings.Split(s.d.Logs(), "\n") {
			if strings.Contains(line, `msg="waiting for an array to answer"`) && strings.Contains(line, `array="primary array"`) {
				return true
			}
		}
		return false
	})
	back := time.Now()
	s.a.Start() // returns once the primary serves
	var a answer
	select {
	case a = <-done:
	case <-time.After(60 * time.Second):
		t.Fatalf("the failback has not returned 60s after the primary came back:\n%s", s.d.Logs())
	}
	took := time.Since(back)
	t.Logf("failback returned %s after the primary was restarted", took.Round(time.Millisecond))
	if a.err != nil {
		t.Fatalf("failback: %v", a.err)
	}
	if took > 10*time.Second {
		t.Fatalf("failback took %s after the primary was restarted; it must reconnect at once", took)
	}
	if a.r.GetActiveBackendId() != "default" {
		t.Fatalf("failback: %v", a.r)
	}
	got := map[string]driverv1.ReplicationStatus{}
	for _, u := range a.r.GetVolumeUpdates() {
		got[u.GetVolumeId()] = u.GetUpdates().GetReplicationStatus()
	}
	if got["av"] != driverv1.ReplicationStatus_REPLICATION_STATUS_ENABLED {
		t.Errorf("replicated volume after failback: %v, want ENABLED", got["av"])
	}
	if got["av2"] != driverv1.ReplicationStatus_REPLICATION_STATUS_ENABLED {
		t.Errorf("replicated volume made while failed over, after failback: %v, want ENABLED", got["av2"])
	}
	if got["plain"] != driverv1.ReplicationStatus_REPLICATION_STATUS_DISABLED {
		t.Errorf("unreplicated volume made while failed over, after failback: %v, want DISABLED", got["plain"])
	}
	lv, err := dc.ListVolumes(ctx, &driverv1.ListVolumesRequest{Backend: be})
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range lv.GetVolumes() {
		if s := v.GetReplicationStatus(); s != got[v.GetId()] {
			t.Errorf("ListVolumes after failback: %s is %v; the failback said %v", v.GetId(), s, got[v.GetId()])
		}
	}
}
