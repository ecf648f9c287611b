package e2e

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/volrep/volrep/array"
	"github.com/volrep/volrep/array/client"
	"github.com/volrep/volrep/server"
)

// doctor runs `volrep doctor ARGS` with no --addr, so the daemon's address
// comes from the config's driver_listen, and returns stdout+stderr and the
// exit code.
func doctor(t *testing.T, args ...string) (string, int) {
	t.Helper()
	_, cli := binaries(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, cli, append([]string{"doctor"}, args...)...).CombinedOutput()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return string(out), code
}

// waitLink waits until site-a's link to site-b is in state, so that doctor
// runs after the backend has converged rather than racing it.
func waitLink(t *testing.T, d *Daemon, name, state string) {
	t.Helper()
	cc, err := server.Dial(d.ArrayA, d.TokenA)
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	r := client.NewReplication(cc)
	waitFor(t, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		l, err := r.GetLink(ctx, name)
		return err == nil && l.State == state
	})
}

func wantAll(t *testing.T, out string, wants ...string) {
	t.Helper()
	for _, w := range wants {
		if !strings.Contains(out, w) {
			t.Errorf("doctor output lacks %q:\n%s", w, out)
		}
	}
}

// TestDoctorHealthy: a running daemon whose backend is up and whose link
// is connected gets a clean bill of health, exit 0.
func TestDoctorHealthy(t *testing.T) {
	d := NewDaemon(t)
	d.Start()
	waitLink(t, d, "site-b", array.LinkConnected)

	out, code := doctor(t, "--config", d.Conf)
	t.Logf("volrep doctor --config %s:\n%s", d.Conf, out)
	if code != 0 {
		t.Fatalf("doctor exit %d, want 0:\n%s\ndaemon log:\n%s", code, out, d.Logs())
	}
	wantAll(t, out,
		"Configuration "+d.Conf+"\n  no problems",
		"OK     volrepd at "+d.DriverAddr+": answers; 1 backend(s)",
		"OK     [demo]: up; active default; targets site-b(async)",
		"OK     [demo] primary array at "+d.ArrayA+": array site-a answers, token accepted",
		"OK     [demo] replication_device site-b at "+d.ArrayB+": array site-b answers, token accepted",
		"OK     [demo] primary site-a: link site-b -> "+d.ArrayB+": connected to array site-b",
		"Everything checked is fine.",
	)
	for _, tok := range []string{d.TokenA, d.TokenB} {
		if strings.Contains(out, tok) {
			t.Errorf("doctor printed a token:\n%s", out)
		}
	}
}

// TestDoctorWrongTargetToken: the replication_device's token is wrong. The
// backend itself is up (its primary answers), so `volrep backend list`
// looks fine; doctor finds the target rejecting the token, and the link
// that was therefore never made, and exits 1.
func TestDoctorWrongTargetToken(t *testing.T) {
	d := NewDaemon(t)
	d.WriteConfig(fmt.Sprintf("replication_device = backend_id:site-b,san_ip:%s,api_token:not-%s,type:async", d.ArrayB, d.TokenB), "")
	d.Start()
	// Give replication setup time to fail at least once.
	waitFor(t, func() bool { return strings.Contains(d.Logs(), "replication setup incomplete") })

	out, code := doctor(t, "--config", d.Conf)
	t.Logf("volrep doctor --config %s:\n%s", d.Conf, out)
	if code != 1 {
		t.Errorf("doctor exit %d, want 1:\n%s", code, out)
	}
	wantAll(t, out,
		"OK     [demo]: up",
		"FAIL   [demo] replication_device site-b at "+d.ArrayB+": rejected the token (UNAUTHENTICATED)",
		fmt.Sprintf("fix: check the token: api_token of the replication_device site-b in [demo] (%s:", d.Conf),
		"FAIL   [demo] primary site-a: link site-b: missing",
		"volrep: doctor found 2 problem(s)",
	)
	if strings.Contains(out, "not-"+d.TokenB) {
		t.Errorf("doctor printed the wrong token:\n%s", out)
	}
}
